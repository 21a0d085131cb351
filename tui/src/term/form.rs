//! The create-sandbox form: a name, preset toggles and a command. Plain data; keys are the
//! terminal's (typing, Tab between fields, Space to toggle), Enter submits, Esc cancels.

use crossterm::event::{KeyCode, KeyModifiers};
use openshell_proto::pb;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Name,
    Presets,
    Command,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Preset {
    pub name: String,
    pub description: String,
    pub on: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreateForm {
    pub name: String,
    pub presets: Vec<Preset>,
    pub preset_cursor: usize,
    pub command: String,
    pub field: Field,
    pub error: Option<String>,
}

/// What a key did to the form.
#[derive(Debug, PartialEq)]
pub enum FormOutcome {
    Editing,
    Cancel,
    Submit(Box<pb::CreateSandboxRequest>),
}

impl Default for CreateForm {
    fn default() -> Self {
        CreateForm::new()
    }
}

impl CreateForm {
    pub fn new() -> CreateForm {
        CreateForm {
            name: String::new(),
            presets: openshell_proto::catalog::presets()
                .map(|p| Preset {
                    name: p.name.to_string(),
                    description: p.description().to_string(),
                    on: false,
                })
                .collect(),
            preset_cursor: 0,
            command: String::new(),
            field: Field::Name,
            error: None,
        }
    }

    pub fn key(&mut self, code: KeyCode, mods: KeyModifiers) -> FormOutcome {
        if mods.contains(KeyModifiers::CONTROL) {
            return FormOutcome::Editing;
        }
        match (code, self.field) {
            (KeyCode::Esc, _) => return FormOutcome::Cancel,
            (KeyCode::Enter, _) => return self.submit(),
            (KeyCode::Tab, _) => self.field = self.next_field(),
            (KeyCode::BackTab, _) => self.field = self.prev_field(),
            (KeyCode::Down, Field::Presets) if self.preset_cursor + 1 < self.presets.len() => {
                self.preset_cursor += 1
            }
            (KeyCode::Up, Field::Presets) if self.preset_cursor > 0 => self.preset_cursor -= 1,
            (KeyCode::Down, _) => self.field = self.next_field(),
            (KeyCode::Up, _) => self.field = self.prev_field(),
            (KeyCode::Char(' '), Field::Presets) => {
                if let Some(p) = self.presets.get_mut(self.preset_cursor) {
                    p.on = !p.on;
                }
            }
            (KeyCode::Backspace, Field::Name) => {
                self.name.pop();
            }
            (KeyCode::Backspace, Field::Command) => {
                self.command.pop();
            }
            (KeyCode::Char(c), Field::Name) => self.name.push(c),
            (KeyCode::Char(c), Field::Command) => self.command.push(c),
            _ => {}
        }
        self.error = None;
        FormOutcome::Editing
    }

    fn next_field(&self) -> Field {
        match self.field {
            Field::Name => Field::Presets,
            Field::Presets => Field::Command,
            Field::Command => Field::Name,
        }
    }

    fn prev_field(&self) -> Field {
        match self.field {
            Field::Name => Field::Command,
            Field::Presets => Field::Name,
            Field::Command => Field::Presets,
        }
    }

    pub fn chosen_presets(&self) -> Vec<String> {
        self.presets
            .iter()
            .filter(|p| p.on)
            .map(|p| p.name.clone())
            .collect()
    }

    fn submit(&mut self) -> FormOutcome {
        let name = self.name.trim();
        if !name.is_empty()
            && !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        {
            self.error = Some(format!(
                "`{name}` is not a sandbox name: use letters, digits, `-`, `_` and `.`"
            ));
            self.field = Field::Name;
            return FormOutcome::Editing;
        }
        // The command is split like a shell would for simple words; anything fancier can be
        // written as `sh -c '…'`, which the split keeps together.
        let command = match split_words(&self.command) {
            Ok(c) => c,
            Err(e) => {
                self.error = Some(e);
                self.field = Field::Command;
                return FormOutcome::Editing;
            }
        };
        FormOutcome::Submit(Box::new(pb::CreateSandboxRequest {
            name: name.to_string(),
            presets: self.chosen_presets(),
            command,
            ..Default::default()
        }))
    }
}

/// Splits on whitespace, keeping single- and double-quoted words whole.
fn split_words(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut in_word = false;
    for c in s.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if let Some(q) = quote {
        return Err(format!("the command has an unclosed {q} quote"));
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(f: &mut CreateForm, s: &str) {
        for c in s.chars() {
            f.key(KeyCode::Char(c), KeyModifiers::NONE);
        }
    }

    #[test]
    fn fills_and_submits() {
        let mut f = CreateForm::new();
        assert!(f.presets.len() > 3);
        typed(&mut f, "demo");
        f.key(KeyCode::Tab, KeyModifiers::NONE);
        f.key(KeyCode::Down, KeyModifiers::NONE);
        f.key(KeyCode::Char(' '), KeyModifiers::NONE);
        let chosen = f.presets[1].name.clone();
        f.key(KeyCode::Tab, KeyModifiers::NONE);
        typed(&mut f, "sh -c 'echo hi; sleep 1'");
        match f.key(KeyCode::Enter, KeyModifiers::NONE) {
            FormOutcome::Submit(r) => {
                assert_eq!(r.name, "demo");
                assert_eq!(r.presets, vec![chosen]);
                assert_eq!(r.command, vec!["sh", "-c", "echo hi; sleep 1"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_input_is_explained_and_kept() {
        let mut f = CreateForm::new();
        typed(&mut f, "no/slash");
        assert_eq!(
            f.key(KeyCode::Enter, KeyModifiers::NONE),
            FormOutcome::Editing
        );
        assert!(
            f.error
                .as_deref()
                .unwrap_or("")
                .contains("not a sandbox name")
        );
        assert_eq!(f.name, "no/slash");
        f.name = "ok".into();
        f.field = Field::Command;
        typed(&mut f, "echo 'open");
        assert_eq!(
            f.key(KeyCode::Enter, KeyModifiers::NONE),
            FormOutcome::Editing
        );
        assert!(f.error.as_deref().unwrap_or("").contains("unclosed"));
        assert_eq!(f.key(KeyCode::Esc, KeyModifiers::NONE), FormOutcome::Cancel);
    }
}
