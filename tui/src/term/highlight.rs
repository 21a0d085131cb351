//! YAML syntax highlighting with syntect's parser. Scopes are mapped to a few token kinds and
//! the theme styles them by name (`syntax_key`, `syntax_string`, …), so colours stay in the
//! theme files rather than in a syntect colour scheme.

use std::ops::Range;
use std::sync::OnceLock;
use syntect::parsing::{ParseState, Scope, ScopeStack, SyntaxReference, SyntaxSet};

/// What a run of text is, for styling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token {
    Key,
    String,
    Number,
    Constant,
    Comment,
    Punct,
    Plain,
}

impl Token {
    /// The theme style that draws this token.
    pub fn style_name(self) -> &'static str {
        match self {
            Token::Key => "syntax_key",
            Token::String => "syntax_string",
            Token::Number => "syntax_number",
            Token::Constant => "syntax_constant",
            Token::Comment => "syntax_comment",
            Token::Punct => "syntax_punct",
            Token::Plain => "log",
        }
    }
}

/// Byte ranges of one line with their tokens, in order, covering the line.
pub type LineTokens = Vec<(Range<usize>, Token)>;

struct Yaml {
    set: SyntaxSet,
    /// Scope prefixes in priority order.
    classes: Vec<(Scope, Token)>,
}

impl Yaml {
    fn syntax(&self) -> Option<&SyntaxReference> {
        self.set.find_syntax_by_extension("yaml")
    }
}

/// Loaded once: the default syntax set takes milliseconds to deserialize.
fn yaml() -> &'static Yaml {
    static YAML: OnceLock<Yaml> = OnceLock::new();
    YAML.get_or_init(|| {
        let classes = [
            ("comment", Token::Comment),
            ("entity.name.tag", Token::Key),
            ("constant.numeric", Token::Number),
            ("constant.language", Token::Constant),
            ("string", Token::String),
            ("punctuation", Token::Punct),
            ("keyword", Token::Punct),
        ]
        .into_iter()
        .filter_map(|(s, t)| Scope::new(s).ok().map(|s| (s, t)))
        .collect();
        Yaml {
            set: SyntaxSet::load_defaults_newlines(),
            classes,
        }
    })
}

/// The first class (in priority order) that any scope on the stack belongs to, so a comment's
/// `#` is comment, not punctuation.
fn classify(stack: &ScopeStack, classes: &[(Scope, Token)]) -> Token {
    for (prefix, token) in classes {
        if stack.as_slice().iter().any(|s| prefix.is_prefix_of(*s)) {
            return *token;
        }
    }
    Token::Plain
}

/// The parser's state where a line starts.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LineStart {
    parse: ParseState,
    scopes: ScopeStack,
}

/// Highlighting that re-parses only from the first changed line until the parser's state
/// meets the state it had before the change: typing in a long policy costs a line or two,
/// not the document (syntect's regex engine is too slow to re-run on every key).
#[derive(Debug, Clone, Default)]
pub struct Highlighter {
    lines: Vec<String>,
    /// `starts[i]` is the state before line `i`; one more than `lines` (or empty when the
    /// parser broke, in which case everything is re-parsed next time).
    starts: Vec<LineStart>,
    tokens: Vec<LineTokens>,
}

impl Highlighter {
    pub fn tokens(&self) -> &[LineTokens] {
        &self.tokens
    }

    /// Brings the tokens up to date with `lines`.
    pub fn update(&mut self, lines: &[String]) {
        let y = yaml();
        let Some(syntax) = y.syntax() else {
            self.tokens = lines.iter().map(|l| plain(l)).collect();
            return;
        };
        let (old, new) = (self.lines.len(), lines.len());
        let prefix = self
            .lines
            .iter()
            .zip(lines)
            .take_while(|(a, b)| a == b)
            .count();
        if prefix == old && prefix == new && self.starts.len() == new + 1 {
            return;
        }
        let suffix = self
            .lines
            .iter()
            .rev()
            .zip(lines.iter().rev())
            .take_while(|(a, b)| a == b)
            .count()
            .min(old.min(new) - prefix);
        let mut starts: Vec<LineStart> = if self.starts.len() == old + 1 {
            self.starts[..=prefix].to_vec()
        } else {
            // Nothing reusable: start over.
            vec![LineStart {
                parse: ParseState::new(syntax),
                scopes: ScopeStack::new(),
            }]
        };
        let first = starts.len() - 1;
        let mut tokens: Vec<LineTokens> = self.tokens[..first.min(self.tokens.len())].to_vec();
        let mut row = first;
        let mut buf = String::new();
        while row < new {
            // Past the edit, a line whose old start state is met again ends the work: the
            // rest is as before, shifted.
            if row >= new - suffix && self.starts.len() == old + 1 {
                let old_row = row + old - new;
                if starts[row] == self.starts[old_row] {
                    tokens.extend_from_slice(&self.tokens[old_row..]);
                    starts.extend_from_slice(&self.starts[old_row + 1..]);
                    break;
                }
            }
            let mut st = starts[row].clone();
            let line = &lines[row];
            buf.clear();
            buf.push_str(line);
            buf.push('\n');
            match line_tokens(&mut st, line, &buf, &y.set, &y.classes) {
                Some(t) => tokens.push(t),
                None => {
                    // The parser broke (it should not): plain text from here on.
                    tokens.extend(lines[row..].iter().map(|l| plain(l)));
                    starts.clear();
                    break;
                }
            }
            starts.push(st);
            row += 1;
        }
        self.lines = lines.to_vec();
        self.starts = starts;
        self.tokens = tokens;
    }
}

/// Parses one line from `st` (left at the next line's start); None when the parser fails.
fn line_tokens(
    st: &mut LineStart,
    line: &str,
    with_newline: &str,
    set: &SyntaxSet,
    classes: &[(Scope, Token)],
) -> Option<LineTokens> {
    let ops = st.parse.parse_line(with_newline, set).ok()?;
    let mut tokens: LineTokens = Vec::new();
    let push = |range: Range<usize>, t: Token, tokens: &mut LineTokens| {
        if range.is_empty() {
            return;
        }
        match tokens.last_mut() {
            Some((r, prev)) if *prev == t && r.end == range.start => r.end = range.end,
            _ => tokens.push((range, t)),
        }
    };
    let mut last = 0;
    for (pos, op) in ops {
        let pos = pos.min(line.len());
        if pos > last {
            push(last..pos, classify(&st.scopes, classes), &mut tokens);
            last = pos;
        }
        st.scopes.apply(&op).ok()?;
    }
    if last < line.len() {
        push(last..line.len(), classify(&st.scopes, classes), &mut tokens);
    }
    Some(tokens)
}

/// Tokens of every line, from scratch.
pub fn highlight(lines: &[String]) -> Vec<LineTokens> {
    let mut h = Highlighter::default();
    h.update(lines);
    h.tokens
}

fn plain(line: &str) -> LineTokens {
    if line.is_empty() {
        vec![]
    } else {
        vec![(0..line.len(), Token::Plain)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens_of(text: &str) -> Vec<Vec<(String, Token)>> {
        let lines: Vec<String> = text.lines().map(String::from).collect();
        highlight(&lines)
            .into_iter()
            .zip(&lines)
            .map(|(toks, l)| {
                toks.into_iter()
                    .map(|(r, t)| (l[r].to_string(), t))
                    .collect()
            })
            .collect()
    }

    #[test]
    fn keys_values_numbers_and_comments_are_told_apart() {
        let t = tokens_of("# baseline\nversion: 1\nname: \"x\"\nok: true\n");
        assert_eq!(t[0], vec![("# baseline".into(), Token::Comment)]);
        assert!(t[1].contains(&("version".into(), Token::Key)), "{:?}", t[1]);
        assert!(t[1].contains(&("1".into(), Token::Number)), "{:?}", t[1]);
        assert!(
            t[2].iter()
                .any(|(s, tok)| s.contains('x') && *tok == Token::String)
        );
        assert!(
            t[3].contains(&("true".into(), Token::Constant)),
            "{:?}",
            t[3]
        );
    }

    #[test]
    fn every_byte_of_a_line_is_covered_once() {
        let text = "network_policies:\n  github:\n    endpoints:\n      - { host: api.github.com, port: 443 }\n";
        let lines: Vec<String> = text.lines().map(String::from).collect();
        for (toks, line) in highlight(&lines).iter().zip(&lines) {
            let mut at = 0;
            for (r, _) in toks {
                assert_eq!(r.start, at, "{line:?}: {toks:?}");
                at = r.end;
            }
            assert_eq!(at, line.len(), "{line:?}");
        }
    }
}

#[cfg(test)]
mod incremental_tests {
    use super::*;

    #[test]
    fn incremental_updates_equal_a_fresh_parse() {
        let text = openshell_proto::catalog::baseline_text();
        let mut lines: Vec<String> = text.lines().map(String::from).collect();
        let mut h = Highlighter::default();
        h.update(&lines);
        assert_eq!(h.tokens(), highlight(&lines).as_slice());
        // Edit inside a line, open a quote that changes everything after it, close it again,
        // insert and delete lines.
        type Edit = Box<dyn Fn(&mut Vec<String>)>;
        let edits: Vec<Edit> = vec![
            Box::new(|l| l[5].push_str(" # note")),
            Box::new(|l| l[10].insert(4, '"')),
            Box::new(|l| {
                l[10].remove(4);
            }),
            Box::new(|l| l.insert(3, "  extra: [1, 2]".into())),
            Box::new(|l| {
                l.remove(7);
            }),
            Box::new(|l| l.push("  tail: true".into())),
            Box::new(|l| l.truncate(2)),
            Box::new(|l| l.clear()),
        ];
        for (i, edit) in edits.iter().enumerate() {
            edit(&mut lines);
            h.update(&lines);
            assert_eq!(h.tokens(), highlight(&lines).as_slice(), "after edit {i}");
        }
    }
}
