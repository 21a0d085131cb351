//! Where each field of a YAML document sits, so that errors found after parsing (a bad CIDR,
//! a port out of range) can name the line and column the user has to change.

use saphyr_parser::{Event, Parser, Span};
use std::collections::HashMap;

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    fn from_span(span: &Span) -> Pos {
        Pos {
            line: span.start.line(),
            column: span.start.col() + 1,
        }
    }
}

/// A problem found while reading the raw YAML, before any field has a meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxProblem {
    pub pos: Pos,
    pub path: String,
    pub message: String,
}

/// Field path (`network_policies.x.endpoints[0].port`) → where its key and value start.
#[derive(Debug, Default, Clone)]
pub struct Positions {
    values: HashMap<String, Pos>,
    keys: HashMap<String, Pos>,
}

impl Positions {
    /// Indexes `text`. Fails on YAML syntax errors, duplicate keys and multi-document files.
    pub fn index(text: &str) -> Result<Positions, SyntaxProblem> {
        let mut events = Vec::new();
        for item in Parser::new_from_str(text) {
            match item {
                Ok(ev) => events.push(ev),
                Err(e) => {
                    return Err(SyntaxProblem {
                        pos: Pos {
                            line: e.marker().line(),
                            column: e.marker().col() + 1,
                        },
                        path: String::new(),
                        message: format!("invalid YAML: {}", e.info()),
                    });
                }
            }
        }
        let mut walker = Walker {
            events: &events,
            at: 0,
            out: Positions::default(),
        };
        walker.stream()?;
        Ok(walker.out)
    }

    /// False for a document with no content at all.
    pub fn has_root(&self) -> bool {
        self.values.contains_key("")
    }

    /// Where the value of `path` starts, or the nearest enclosing field that exists.
    pub fn value(&self, path: &str) -> Pos {
        let mut p = path;
        loop {
            if let Some(pos) = self.values.get(p) {
                return *pos;
            }
            match parent(p) {
                Some(up) => p = up,
                None => return Pos { line: 1, column: 1 },
            }
        }
    }

    /// Where the key of `path` starts (falls back to its value, then its parents).
    pub fn key(&self, path: &str) -> Pos {
        self.keys
            .get(path)
            .copied()
            .unwrap_or_else(|| self.value(path))
    }
}

/// `a.b[2].c` → `a.b[2]` → `a.b` → `a` → ``.
fn parent(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    let cut = path.rfind(['.', '[']).unwrap_or(0);
    Some(&path[..cut])
}

fn join_key(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

struct Walker<'a, 'i> {
    events: &'a [(Event<'i>, Span)],
    at: usize,
    out: Positions,
}

impl<'a, 'i> Walker<'a, 'i> {
    fn next(&mut self) -> Option<&'a (Event<'i>, Span)> {
        let events = self.events;
        let ev = events.get(self.at);
        self.at += 1;
        ev
    }

    fn peek_is_end(&self) -> bool {
        matches!(
            self.events.get(self.at).map(|e| &e.0),
            Some(Event::SequenceEnd | Event::MappingEnd) | None
        )
    }

    fn stream(&mut self) -> Result<(), SyntaxProblem> {
        let mut documents = 0;
        while let Some((ev, span)) = self.events.get(self.at) {
            let span = *span;
            self.at += 1;
            match ev {
                Event::DocumentStart(_) => {
                    documents += 1;
                    if documents > 1 {
                        return Err(SyntaxProblem {
                            pos: Pos::from_span(&span),
                            path: String::new(),
                            message:
                                "a policy file holds one YAML document; remove the second `---`"
                                    .into(),
                        });
                    }
                    if !matches!(
                        self.events.get(self.at).map(|e| &e.0),
                        Some(Event::DocumentEnd)
                    ) {
                        self.node(String::new())?;
                    }
                }
                Event::StreamEnd => break,
                _ => {}
            }
        }
        Ok(())
    }

    fn node(&mut self, path: String) -> Result<(), SyntaxProblem> {
        let Some((ev, span)) = self.next() else {
            return Ok(());
        };
        let span = *span;
        self.out.values.insert(path.clone(), Pos::from_span(&span));
        match ev {
            Event::SequenceStart(..) => {
                let mut i = 0;
                while !self.peek_is_end() {
                    self.node(format!("{path}[{i}]"))?;
                    i += 1;
                }
                self.at += 1;
            }
            Event::MappingStart(..) => {
                let mut seen: HashMap<String, Pos> = HashMap::new();
                while !self.peek_is_end() {
                    let Some((kev, kspan)) = self.next() else {
                        break;
                    };
                    let kpos = Pos::from_span(kspan);
                    let key = match kev {
                        Event::Scalar(s, ..) => s.to_string(),
                        // A complex key: skip its subtree, it has no meaning in a policy.
                        _ => {
                            self.at -= 1;
                            self.node(format!("{path}.?"))?;
                            "?".to_string()
                        }
                    };
                    let child = join_key(&path, &key);
                    if let Some(first) = seen.get(&key) {
                        return Err(SyntaxProblem {
                            pos: kpos,
                            path: child,
                            message: format!(
                                "duplicate key `{key}` (first at line {}); merge the two entries into one",
                                first.line
                            ),
                        });
                    }
                    seen.insert(key, kpos);
                    self.out.keys.insert(child.clone(), kpos);
                    self.node(child)?;
                }
                self.at += 1;
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_fields() {
        let text = "version: 1\nnetwork_policies:\n  gh:\n    endpoints:\n      - host: a.com\n        port: 443\n";
        let p = Positions::index(text).expect("valid yaml");
        assert_eq!(
            p.value("network_policies.gh.endpoints[0].port"),
            Pos {
                line: 6,
                column: 15
            }
        );
        assert_eq!(
            p.key("network_policies.gh.endpoints[0].host"),
            Pos { line: 5, column: 9 }
        );
        // Missing fields fall back to the nearest parent.
        assert_eq!(
            p.value("network_policies.gh.endpoints[0].rules"),
            Pos { line: 5, column: 9 }
        );
    }

    #[test]
    fn rejects_duplicate_keys() {
        let err = Positions::index("a: 1\nb: 2\na: 3\n").expect_err("duplicate");
        assert_eq!(err.pos, Pos { line: 3, column: 1 });
        assert!(err.message.contains("duplicate key `a`"));
    }
}
