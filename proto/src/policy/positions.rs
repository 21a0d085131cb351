//! Where each field of a YAML document sits, so that errors found after parsing (a bad CIDR,
//! a port out of range) can name the line and column the user has to change.

use saphyr_parser::{Event, Parser, Span};
use std::cell::OnceCell;
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
///
/// Indexing checks the structure (syntax, duplicate keys, one document) at once, but builds
/// the path maps only when a position is first asked for: a valid policy with nothing to
/// report never needs them, and building them was about a fifth of loading one.
#[derive(Debug, Clone, Default)]
pub struct Positions<'i> {
    events: Vec<(Event<'i>, Span)>,
    rooted: bool,
    maps: OnceCell<Maps>,
}

#[derive(Debug, Clone, Default)]
struct Maps {
    values: HashMap<String, Pos>,
    keys: HashMap<String, Pos>,
}

impl<'i> Positions<'i> {
    /// Indexes `text`. Fails on YAML syntax errors, duplicate keys and multi-document files.
    pub fn index(text: &'i str) -> Result<Positions<'i>, SyntaxProblem> {
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
        let mut check = Walker::new(&events, false);
        let checked = check.stream();
        let rooted = check.rooted;
        if checked.is_err() {
            // The same walk again, recording paths, names the field of the problem.
            Walker::new(&events, true).stream()?;
        }
        Ok(Positions {
            events,
            rooted,
            maps: OnceCell::new(),
        })
    }

    fn maps(&self) -> &Maps {
        self.maps.get_or_init(|| {
            let mut w = Walker::new(&self.events, true);
            // Indexing already walked these events without a problem.
            let _ = w.stream();
            w.out.take().unwrap_or_default()
        })
    }

    /// False for a document with no content at all.
    pub fn has_root(&self) -> bool {
        self.rooted
    }

    /// Where the value of `path` starts, or the nearest enclosing field that exists.
    pub fn value(&self, path: &str) -> Pos {
        let values = &self.maps().values;
        let mut p = path;
        loop {
            if let Some(pos) = values.get(p) {
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
        self.maps()
            .keys
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

/// The keys of one mapping seen so far: a list while it is short (most mappings in a
/// policy have a handful of keys), a hash map past that.
struct Seen<'a> {
    few: Vec<(&'a str, Pos)>,
    many: HashMap<&'a str, Pos>,
}

impl<'a> Seen<'a> {
    const FEW: usize = 16;

    fn new() -> Seen<'a> {
        Seen {
            few: Vec::new(),
            many: HashMap::new(),
        }
    }

    /// Where `key` was first seen, or None after noting it here.
    fn first(&mut self, key: &'a str, pos: Pos) -> Option<Pos> {
        if self.many.is_empty() {
            if let Some((_, p)) = self.few.iter().find(|(k, _)| *k == key) {
                return Some(*p);
            }
            if self.few.len() < Self::FEW {
                self.few.push((key, pos));
                return None;
            }
            self.many.extend(self.few.drain(..));
        }
        if let Some(p) = self.many.get(key) {
            return Some(*p);
        }
        self.many.insert(key, pos);
        None
    }
}

/// One walk over the events: always checks the structure; with `out`, records every path.
struct Walker<'a, 'i> {
    events: &'a [(Event<'i>, Span)],
    at: usize,
    rooted: bool,
    out: Option<Maps>,
}

impl<'a, 'i> Walker<'a, 'i> {
    fn new(events: &'a [(Event<'i>, Span)], record: bool) -> Walker<'a, 'i> {
        Walker {
            events,
            at: 0,
            rooted: false,
            out: record.then(Maps::default),
        }
    }

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

    /// The path of a child, when paths are recorded.
    fn child(&self, name: impl FnOnce() -> String) -> String {
        if self.out.is_some() {
            name()
        } else {
            String::new()
        }
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
                        self.rooted = true;
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
        if let Some(out) = &mut self.out {
            out.values.insert(path.clone(), Pos::from_span(span));
        }
        match ev {
            Event::SequenceStart(..) => {
                let mut i = 0;
                while !self.peek_is_end() {
                    let child = self.child(|| format!("{path}[{i}]"));
                    self.node(child)?;
                    i += 1;
                }
                self.at += 1;
            }
            Event::MappingStart(..) => {
                let mut seen = Seen::new();
                while !self.peek_is_end() {
                    let Some((kev, kspan)) = self.next() else {
                        break;
                    };
                    let kpos = Pos::from_span(kspan);
                    let key: &'a str = match kev {
                        Event::Scalar(s, ..) => s,
                        // A complex key: skip its subtree, it has no meaning in a policy.
                        _ => {
                            self.at -= 1;
                            let child = self.child(|| format!("{path}.?"));
                            self.node(child)?;
                            "?"
                        }
                    };
                    if let Some(first) = seen.first(key, kpos) {
                        return Err(SyntaxProblem {
                            pos: kpos,
                            path: join_key(&path, key),
                            message: format!(
                                "duplicate key `{key}` (first at line {}); merge the two entries into one",
                                first.line
                            ),
                        });
                    }
                    let child = self.child(|| join_key(&path, key));
                    if let Some(out) = &mut self.out {
                        out.keys.insert(child.clone(), kpos);
                    }
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

    /// A long mapping is checked through the hash map, and the error still names the field.
    #[test]
    fn rejects_duplicate_keys_in_long_mappings_with_their_path() {
        let mut text = String::from("network_policies:\n");
        for i in 0..40 {
            text.push_str(&format!("  p{i}: {{}}\n"));
        }
        text.push_str("  p7: {}\n");
        let err = Positions::index(&text).expect_err("duplicate");
        assert_eq!(
            err.pos,
            Pos {
                line: 42,
                column: 3
            }
        );
        assert_eq!(err.path, "network_policies.p7");
        assert!(err.message.contains("first at line 9"), "{}", err.message);
    }

    #[test]
    fn empty_and_multi_document_files() {
        assert!(
            !Positions::index("")
                .expect("empty is valid YAML")
                .has_root()
        );
        assert!(
            !Positions::index("# only a comment\n")
                .expect("valid")
                .has_root()
        );
        assert!(Positions::index("version: 1\n").expect("valid").has_root());
        let err = Positions::index("version: 1\n---\nversion: 1\n").expect_err("two");
        assert_eq!(err.pos.line, 2);
        assert!(err.message.contains("one YAML document"));
    }

    #[test]
    fn rejects_duplicate_keys() {
        let err = Positions::index("a: 1\nb: 2\na: 3\n").expect_err("duplicate");
        assert_eq!(err.pos, Pos { line: 3, column: 1 });
        assert!(err.message.contains("duplicate key `a`"));
    }
}
