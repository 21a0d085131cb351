//! Keymaps: action name → keys, loaded from YAML. Input is turned into named [`Action`]s here;
//! screens never look at a key code.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// The built-in keymaps, compiled in from `keymaps/`.
pub const BUILTIN: &[(&str, &str)] = &[
    ("default", include_str!("../../../keymaps/default.yaml")),
    ("vim", include_str!("../../../keymaps/vim.yaml")),
];

macro_rules! actions {
    ($($variant:ident $name:literal $desc:literal,)*) => {
        /// Everything a key can ask for. Each has a name (the keymap's key) and a description
        /// (what help shows).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Action { $($variant,)* }

        impl Action {
            pub const ALL: &[Action] = &[$(Action::$variant,)*];

            pub fn name(self) -> &'static str {
                match self { $(Action::$variant => $name,)* }
            }

            pub fn description(self) -> &'static str {
                match self { $(Action::$variant => $desc,)* }
            }

            pub fn from_name(s: &str) -> Option<Action> {
                match s { $($name => Some(Action::$variant),)* _ => None }
            }
        }
    };
}

actions! {
    Quit "quit" "quit (from the sandboxes view)",
    ForceQuit "force_quit" "quit from anywhere",
    Back "back" "go back, cancel, clear the filter",
    Open "open" "open the selected item",
    Confirm "confirm" "apply the previewed change, answer yes",
    Up "up" "move up",
    Down "down" "move down",
    PageUp "page_up" "page up",
    PageDown "page_down" "page down",
    Top "top" "go to the top",
    Bottom "bottom" "go to the bottom (follow the logs)",
    NextTab "next_tab" "next tab",
    PrevTab "prev_tab" "previous tab",
    Logs "logs" "show the logs tab",
    Denials "denials" "show the denials tab",
    Policy "policy" "show the policy tab",
    Allow "allow" "preview the rule that allows this denial",
    Reject "reject" "reject this denial",
    Edit "edit" "edit the policy (esc leaves the editor and keeps the edits)",
    Diff "diff" "diff the edits against the active revision",
    Apply "apply" "apply the edited policy (hot reload, waits for the supervisor)",
    Revert "revert" "discard the edits (asks first)",
    History "history" "policy revisions: diff and roll back",
    Rollback "rollback" "roll back to the selected revision (asks first)",
    Create "create" "create a sandbox",
    Delete "delete" "delete the selected sandbox (asks first)",
    Pause "pause" "pause or resume the log stream",
    DenyOnly "deny_only" "show only denials",
    Source "source" "cycle the source: all, sandbox, gateway",
    Level "level" "cycle the lowest level shown",
    Wrap "wrap" "wrap long lines",
    Timestamps "timestamps" "show or hide timestamps",
    Toggle "toggle" "toggle the item under the cursor (a preset in the create form)",
    Filter "filter" "filter the list",
    Command "command" "command mode (:sandboxes, :policy, :logs, :denials, :providers, :themes, :quit)",
    Help "help" "show the keys of this view",
}

/// One key with its modifiers, as written in a keymap (`a`, `G`, `ctrl-c`, `enter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    pub code: KeyCode,
    pub mods: KeyModifiers,
}

impl Key {
    /// The key of a terminal event, normalised: SHIFT is dropped for characters (the character
    /// already says `G` or `?`).
    pub fn from_event(e: &KeyEvent) -> Key {
        let mut mods = e.modifiers & (KeyModifiers::CONTROL | KeyModifiers::ALT);
        if !matches!(e.code, KeyCode::Char(_)) {
            mods |= e.modifiers & KeyModifiers::SHIFT;
        }
        let code = match e.code {
            KeyCode::Char(c) if mods.contains(KeyModifiers::CONTROL) => {
                KeyCode::Char(c.to_ascii_lowercase())
            }
            // Some terminals report shift-tab as SHIFT+Tab, others as BackTab.
            KeyCode::Tab if e.modifiers.contains(KeyModifiers::SHIFT) => {
                mods.remove(KeyModifiers::SHIFT);
                KeyCode::BackTab
            }
            KeyCode::BackTab => {
                mods.remove(KeyModifiers::SHIFT);
                KeyCode::BackTab
            }
            c => c,
        };
        Key { code, mods }
    }

    pub fn parse(s: &str) -> Result<Key, String> {
        let mut mods = KeyModifiers::NONE;
        let mut rest = s;
        loop {
            if let Some(r) = rest.strip_prefix("ctrl-").filter(|r| !r.is_empty()) {
                mods |= KeyModifiers::CONTROL;
                rest = r;
            } else if let Some(r) = rest.strip_prefix("alt-").filter(|r| !r.is_empty()) {
                mods |= KeyModifiers::ALT;
                rest = r;
            } else {
                break;
            }
        }
        let mut chars = rest.chars();
        let code = match (chars.next(), chars.next()) {
            (Some(c), None) => KeyCode::Char(c),
            _ => match rest {
                "enter" => KeyCode::Enter,
                "esc" => KeyCode::Esc,
                "tab" => KeyCode::Tab,
                "backtab" => KeyCode::BackTab,
                "up" => KeyCode::Up,
                "down" => KeyCode::Down,
                "left" => KeyCode::Left,
                "right" => KeyCode::Right,
                "pgup" => KeyCode::PageUp,
                "pgdown" => KeyCode::PageDown,
                "home" => KeyCode::Home,
                "end" => KeyCode::End,
                "space" => KeyCode::Char(' '),
                "backspace" => KeyCode::Backspace,
                f if f.starts_with('f')
                    && f[1..].parse::<u8>().is_ok_and(|n| (1..=12).contains(&n)) =>
                {
                    KeyCode::F(f[1..].parse().unwrap_or(1))
                }
                _ => {
                    return Err(format!(
                        "{s:?} is not a key (try a, G, enter, esc, ctrl-c, pgdown)"
                    ));
                }
            },
        };
        Ok(Key { code, mods })
    }

    /// The key as a person reads it in the footer and help.
    pub fn label(&self) -> String {
        let base = match self.code {
            KeyCode::Char(' ') => "space".to_string(),
            KeyCode::Char(c) => c.to_string(),
            KeyCode::Enter => "enter".into(),
            KeyCode::Esc => "esc".into(),
            KeyCode::Tab => "tab".into(),
            KeyCode::BackTab => "shift-tab".into(),
            KeyCode::Up => "↑".into(),
            KeyCode::Down => "↓".into(),
            KeyCode::Left => "←".into(),
            KeyCode::Right => "→".into(),
            KeyCode::PageUp => "pgup".into(),
            KeyCode::PageDown => "pgdn".into(),
            KeyCode::Home => "home".into(),
            KeyCode::End => "end".into(),
            KeyCode::Backspace => "bksp".into(),
            KeyCode::F(n) => format!("f{n}"),
            other => format!("{other:?}").to_lowercase(),
        };
        let mut s = String::new();
        if self.mods.contains(KeyModifiers::CONTROL) {
            s.push_str("ctrl-");
        }
        if self.mods.contains(KeyModifiers::ALT) {
            s.push_str("alt-");
        }
        s + &base
    }
}

/// Action → keys.
#[derive(Debug, Clone)]
pub struct Keymap {
    pub name: String,
    bindings: BTreeMap<Action, Vec<Key>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeymapFile {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    bindings: BTreeMap<String, Vec<String>>,
}

impl Keymap {
    /// Every action bound to this key, in declaration order; the view picks the first that
    /// applies to it (so `enter` can be both `open` and `confirm`).
    pub fn actions(&self, key: Key) -> Vec<Action> {
        self.bindings
            .iter()
            .filter(|(_, keys)| keys.contains(&key))
            .map(|(a, _)| *a)
            .collect()
    }

    pub fn keys(&self, action: Action) -> &[Key] {
        self.bindings.get(&action).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The first key of `action`, for hints ("enter apply"); `-` when unbound.
    pub fn hint(&self, action: Action) -> String {
        self.keys(action)
            .first()
            .map(Key::label)
            .unwrap_or_else(|| "-".into())
    }

    pub fn builtin(name: &str) -> Option<Keymap> {
        let (_, text) = BUILTIN.iter().find(|(n, _)| *n == name)?;
        Some(parse(name, text, None).expect("built-in keymaps parse"))
    }

    pub fn default_keymap() -> Keymap {
        Keymap::builtin("default").expect("the default keymap is built in")
    }

    /// Keymap `name`: the user's `<config>/keymaps/NAME.yaml` laid over the built-in, else the
    /// built-in `name`. On any problem, the built-in default and the reason.
    pub fn load(config_dir: Option<&Path>, name: &str) -> (Keymap, Option<String>) {
        if let Some(dir) = config_dir {
            let path = dir.join("keymaps").join(format!("{name}.yaml"));
            if path.exists() {
                let base = Keymap::builtin(name).unwrap_or_else(Keymap::default_keymap);
                let res = std::fs::read_to_string(&path)
                    .map_err(|e| format!("cannot read it: {e}"))
                    .and_then(|text| parse(name, &text, Some(&base)));
                return match res {
                    Ok(k) => (k, None),
                    Err(e) => (
                        base,
                        Some(format!(
                            "keymap {}: {e}; using the built-in keymap instead",
                            path.display()
                        )),
                    ),
                };
            }
        }
        match Keymap::builtin(name) {
            Some(k) => (k, None),
            None => (
                Keymap::default_keymap(),
                Some(format!(
                    "no keymap named {name:?} (built in: {}); using default",
                    BUILTIN
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            ),
        }
    }
}

/// Parses a keymap file, laying its bindings over `base` action by action.
pub fn parse(name: &str, text: &str, base: Option<&Keymap>) -> Result<Keymap, String> {
    let file: KeymapFile = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
    let mut bindings = base.map(|b| b.bindings.clone()).unwrap_or_default();
    for (action, keys) in file.bindings {
        let a = Action::from_name(&action).ok_or_else(|| {
            format!(
                "unknown action {action:?} (known: {})",
                Action::ALL
                    .iter()
                    .map(|a| a.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
        let keys = keys
            .iter()
            .map(|k| Key::parse(k).map_err(|e| format!("{action}: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        bindings.insert(a, keys);
    }
    Ok(Keymap {
        name: file.name.unwrap_or_else(|| name.to_string()),
        bindings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_bind_every_action() {
        for (name, _) in BUILTIN {
            let k = Keymap::builtin(name).expect("test fixture");
            for a in Action::ALL {
                assert!(!k.keys(*a).is_empty(), "{name} leaves {} unbound", a.name());
            }
        }
    }

    #[test]
    fn keys_parse_and_match_events() {
        let k = Keymap::default_keymap();
        let ev = |code, mods| Key::from_event(&KeyEvent::new(code, mods));
        assert_eq!(
            k.actions(ev(KeyCode::Char('G'), KeyModifiers::SHIFT)),
            vec![Action::Bottom]
        );
        assert_eq!(
            k.actions(ev(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            vec![Action::ForceQuit]
        );
        assert_eq!(
            k.actions(ev(KeyCode::Enter, KeyModifiers::NONE)),
            vec![Action::Open, Action::Confirm]
        );
        assert_eq!(
            k.actions(ev(KeyCode::Tab, KeyModifiers::SHIFT)),
            vec![Action::PrevTab]
        );
        assert_eq!(
            Key::parse("ctrl-d").expect("test fixture").label(),
            "ctrl-d"
        );
        assert!(Key::parse("enterr").is_err());
    }

    #[test]
    fn malformed_file_falls_back_with_a_clear_error() {
        let dir = tempfile::tempdir().expect("test fixture");
        std::fs::create_dir_all(dir.path().join("keymaps")).expect("test fixture");
        let p = dir.path().join("keymaps/default.yaml");
        for (text, want) in [
            ("bindings:\n  allow: [enterr]\n", "\"enterr\" is not a key"),
            ("bindings:\n  alow: [a]\n", "unknown action \"alow\""),
            ("bindings: [1, 2\n", "using the built-in keymap"),
        ] {
            std::fs::write(&p, text).expect("test fixture");
            let (k, err) = Keymap::load(Some(dir.path()), "default");
            let err = err.expect("an error");
            assert!(err.contains(want), "{err}");
            assert!(err.contains("default.yaml"), "{err}");
            assert_eq!(k.hint(Action::Allow), "a");
        }
        std::fs::write(&p, "bindings:\n  allow: [A]\n").expect("test fixture");
        let (k, err) = Keymap::load(Some(dir.path()), "default");
        assert_eq!(err, None);
        assert_eq!(k.hint(Action::Allow), "A");
        assert_eq!(k.hint(Action::Reject), "x");
    }
}
