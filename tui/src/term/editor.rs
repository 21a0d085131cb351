//! The policy editor's state: an editable YAML buffer over the active revision, checked as it
//! is typed by the same loader the gateway uses, with its highlighting and its diff against the
//! active revision kept up to date on every edit (so rendering stays cheap and pure).

use super::highlight::{Highlighter, LineTokens};
use crossterm::event::{KeyCode, KeyModifiers};
use openshell_proto::policy::{self, Severity};
use ratatui_textarea::{CursorMove, Input, Key as TaKey, TextArea};
use std::cell::Cell;

/// What the policy tab shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The buffer, read-only keys (scroll, then `e` to edit).
    View,
    /// Keys go to the buffer; `Esc` leaves and keeps the edits.
    Edit,
    /// The unified diff of the buffer against the active revision.
    Diff,
}

/// One located problem in the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based, as the loader reports them.
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub error: bool,
}

/// One sandbox's policy buffer.
#[derive(Debug, Clone)]
pub struct PolicyEditor {
    pub sandbox: String,
    /// The active revision the buffer started from and is compared with.
    pub base_revision: u64,
    pub base_text: String,
    /// `base_text` parsed once (None when it does not parse), for the static-change check
    /// that runs on every key.
    base_policy: Option<policy::Policy>,
    pub textarea: TextArea<'static>,
    pub mode: Mode,
    /// Errors first, then warnings, each by position.
    pub problems: Vec<Problem>,
    /// Static fields the buffer changes relative to the active revision.
    pub static_changes: Vec<String>,
    pub highlighter: Highlighter,
    /// The diff against the active revision; empty when there is no change.
    pub diff: String,
    pub diff_scroll: usize,
    /// The first buffer line on screen; moved by rendering to keep the cursor visible.
    pub top: Cell<usize>,
    /// A newer revision became active while this buffer had unsaved edits.
    pub base_moved: Option<u64>,
    /// An apply is in flight.
    pub applying: bool,
}

impl PolicyEditor {
    pub fn new(sandbox: &str, revision: u64, text: &str) -> PolicyEditor {
        let mut e = PolicyEditor {
            sandbox: sandbox.to_string(),
            base_revision: revision,
            base_text: text.to_string(),
            base_policy: policy::parse(text).ok(),
            textarea: TextArea::default(),
            mode: Mode::View,
            problems: Vec::new(),
            static_changes: Vec::new(),
            highlighter: Highlighter::default(),
            diff: String::new(),
            diff_scroll: 0,
            top: Cell::new(0),
            base_moved: None,
            applying: false,
        };
        e.set_buffer(text);
        e
    }

    /// Replaces the buffer (a fresh revision, a proposal opened for editing).
    pub fn set_buffer(&mut self, text: &str) {
        let mut ta = TextArea::new(text.lines().map(String::from).collect());
        // Policies are indented by two spaces; a tab key inserts them.
        ta.set_tab_length(2);
        self.textarea = ta;
        self.top.set(0);
        self.refresh();
    }

    /// The buffer as one document, with the trailing newline a file would have.
    pub fn text(&self) -> String {
        let mut s = self.textarea.lines().join("\n");
        s.push('\n');
        s
    }

    /// The highlighted tokens of each buffer line.
    pub fn tokens(&self) -> &[LineTokens] {
        self.highlighter.tokens()
    }

    pub fn dirty(&self) -> bool {
        !self.diff.is_empty()
    }

    pub fn has_errors(&self) -> bool {
        self.problems.iter().any(|p| p.error)
    }

    /// The first error, else the first warning.
    pub fn first_problem(&self) -> Option<&Problem> {
        self.problems.first()
    }

    /// The problems on buffer line `row` (0-based).
    pub fn problems_on(&self, row: usize) -> impl Iterator<Item = &Problem> {
        self.problems.iter().filter(move |p| p.line == row + 1)
    }

    /// A new active revision arrived. A clean buffer follows it; an edited one keeps the edits,
    /// is diffed against the new revision, and remembers that it moved.
    pub fn rebase(&mut self, revision: u64, text: &str) {
        if revision == self.base_revision && text == self.base_text {
            return;
        }
        let dirty = self.dirty();
        self.set_base(revision, text);
        if dirty {
            self.base_moved = Some(revision);
            self.refresh();
        } else {
            self.base_moved = None;
            let cursor = self.textarea.cursor();
            self.set_buffer(text);
            self.textarea.move_cursor(CursorMove::Jump(
                u16::try_from(cursor.0).unwrap_or(u16::MAX),
                u16::try_from(cursor.1).unwrap_or(u16::MAX),
            ));
        }
    }

    /// Makes `text` the active revision the buffer is compared with (the buffer is kept).
    pub fn set_base(&mut self, revision: u64, text: &str) {
        self.base_revision = revision;
        self.base_text = text.to_string();
        self.base_policy = policy::parse(text).ok();
    }

    /// Throws the edits away.
    pub fn revert(&mut self) {
        let text = self.base_text.clone();
        self.set_buffer(&text);
        self.base_moved = None;
        self.mode = Mode::View;
    }

    /// Re-checks, re-highlights and re-diffs the buffer after a change.
    pub fn refresh(&mut self) {
        let text = self.text();
        self.highlighter.update(self.textarea.lines());
        self.problems.clear();
        self.static_changes.clear();
        match policy::load(&text, "policy") {
            Ok(loaded) => {
                for f in loaded.findings {
                    self.problems.push(problem(&f, false));
                }
                if let Some(base) = &self.base_policy {
                    self.static_changes = policy::static_changes(base, &loaded.policy);
                }
            }
            Err(errors) => {
                for e in &errors.0 {
                    self.problems.push(problem(e, true));
                }
            }
        }
        self.diff = if same_document(&self.base_text, &text) {
            String::new()
        } else {
            policy::diff::unified(
                &self.base_text,
                &text,
                &format!("revision {}", self.base_revision),
                "edited",
            )
        };
        self.diff_scroll = self.diff_scroll.min(self.diff.lines().count());
    }

    /// A key typed into the buffer; true when the text changed.
    pub fn type_key(&mut self, code: KeyCode, mods: KeyModifiers) -> bool {
        let key = match code {
            KeyCode::Char(c) => TaKey::Char(c),
            KeyCode::Enter => TaKey::Enter,
            KeyCode::Backspace => TaKey::Backspace,
            KeyCode::Delete => TaKey::Delete,
            KeyCode::Left => TaKey::Left,
            KeyCode::Right => TaKey::Right,
            KeyCode::Up => TaKey::Up,
            KeyCode::Down => TaKey::Down,
            KeyCode::Home => TaKey::Home,
            KeyCode::End => TaKey::End,
            KeyCode::PageUp => TaKey::PageUp,
            KeyCode::PageDown => TaKey::PageDown,
            KeyCode::Tab => TaKey::Tab,
            _ => return false,
        };
        let changed = self.textarea.input(Input {
            key,
            ctrl: mods.contains(KeyModifiers::CONTROL),
            alt: mods.contains(KeyModifiers::ALT),
            shift: mods.contains(KeyModifiers::SHIFT),
        });
        if changed {
            self.refresh();
        }
        changed
    }

    /// Moves the cursor by whole lines (view mode scrolling).
    pub fn move_lines(&mut self, delta: isize) {
        let row = self.textarea.cursor().0;
        let last = self.textarea.lines().len().saturating_sub(1);
        let to = row.saturating_add_signed(delta).min(last);
        self.textarea
            .move_cursor(CursorMove::Jump(u16::try_from(to).unwrap_or(u16::MAX), 0));
    }

    pub fn move_top(&mut self) {
        self.textarea.move_cursor(CursorMove::Top);
    }

    pub fn move_bottom(&mut self) {
        self.textarea.move_cursor(CursorMove::Bottom);
    }

    /// Puts the cursor on the first problem, so `e` lands where the fix is needed.
    pub fn jump_to_problem(&mut self) {
        if let Some(p) = self.problems.first() {
            let row = u16::try_from(p.line.saturating_sub(1)).unwrap_or(u16::MAX);
            let col = u16::try_from(p.column.saturating_sub(1)).unwrap_or(u16::MAX);
            self.textarea.move_cursor(CursorMove::Jump(row, col));
        }
    }

    /// The first line to draw so that the cursor is visible in `height` rows.
    pub fn scroll_for(&self, height: usize) -> usize {
        let row = self.textarea.cursor().0;
        let mut top = self.top.get();
        if row < top {
            top = row;
        } else if height > 0 && row >= top + height {
            top = row + 1 - height;
        }
        self.top.set(top);
        top
    }
}

fn problem(e: &policy::PolicyError, error: bool) -> Problem {
    let kind = match e.severity {
        Severity::Error => "",
        Severity::Warning => "warning: ",
        Severity::Note => "note: ",
    };
    let field = if e.field.is_empty() {
        String::new()
    } else {
        format!("{}: ", e.field)
    };
    Problem {
        line: e.line.max(1),
        column: e.column.max(1),
        message: format!("{kind}{field}{}", e.message),
        error,
    }
}

/// Equal up to trailing whitespace at the end of the document (the buffer always ends with one
/// newline; a stored revision may have none or several).
fn same_document(a: &str, b: &str) -> bool {
    a.trim_end() == b.trim_end()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "version: 1\nnetwork_policies:\n  github:\n    endpoints:\n      - { host: api.github.com, port: 443 }\n    binaries:\n      - { path: /usr/bin/curl }\n";

    fn type_str(e: &mut PolicyEditor, s: &str) {
        for c in s.chars() {
            if c == '\n' {
                e.type_key(KeyCode::Enter, KeyModifiers::NONE);
            } else {
                e.type_key(KeyCode::Char(c), KeyModifiers::NONE);
            }
        }
    }

    #[test]
    fn a_fresh_buffer_is_clean_and_valid() {
        let e = PolicyEditor::new("a", 3, BASE);
        assert!(!e.dirty());
        assert!(!e.has_errors(), "{:?}", e.problems);
        assert_eq!(e.text(), BASE);
    }

    #[test]
    fn a_typo_is_located_on_its_line_and_fixing_it_clears_it() {
        let mut e = PolicyEditor::new("a", 3, BASE);
        // Line 5 is the endpoint; make the port a word.
        let col = BASE
            .lines()
            .nth(4)
            .and_then(|l| l.find("443"))
            .expect("fixture");
        e.textarea.move_cursor(CursorMove::Jump(4, col as u16));
        type_str(&mut e, "x");
        assert!(e.dirty());
        let p = e.first_problem().expect("a problem").clone();
        assert!(p.error);
        assert_eq!(p.line, 5, "{p:?}");
        assert!(e.problems_on(4).count() > 0);
        e.type_key(KeyCode::Backspace, KeyModifiers::NONE);
        assert!(!e.has_errors(), "{:?}", e.problems);
        assert!(!e.dirty());
    }

    #[test]
    fn static_changes_are_flagged() {
        let mut e = PolicyEditor::new("a", 1, BASE);
        e.textarea.move_cursor(CursorMove::Bottom);
        e.textarea.move_cursor(CursorMove::End);
        type_str(&mut e, "\nprocess:\n  run_as_user: nobody");
        assert!(!e.has_errors(), "{:?}", e.problems);
        assert_eq!(e.static_changes, vec!["process.run_as_user".to_string()]);
        assert!(e.diff.contains("+process:"), "{}", e.diff);
    }

    #[test]
    fn a_new_revision_replaces_a_clean_buffer_and_keeps_edits() {
        let mut e = PolicyEditor::new("a", 1, BASE);
        let newer = BASE.replace("443", "8443");
        e.rebase(2, &newer);
        assert_eq!(e.text(), newer);
        assert_eq!(e.base_moved, None);
        e.textarea.move_cursor(CursorMove::Top);
        type_str(&mut e, "# mine\n");
        e.rebase(3, BASE);
        assert!(e.text().starts_with("# mine\n"));
        assert_eq!(e.base_moved, Some(3));
        assert!(e.dirty());
        e.revert();
        assert_eq!(e.text(), BASE);
        assert!(!e.dirty());
    }
}
