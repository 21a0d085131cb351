//! Themes: named styles loaded from YAML. Screen code asks for a style by name
//! (`theme.style("deny")`) and never spells a colour.

use ratatui::style::{Color, Modifier, Style};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::str::FromStr;

/// The built-in themes, compiled in from `themes/`.
pub const BUILTIN: &[(&str, &str)] = &[
    ("default", include_str!("../../../themes/default.yaml")),
    ("light", include_str!("../../../themes/light.yaml")),
    (
        "high-contrast",
        include_str!("../../../themes/high-contrast.yaml"),
    ),
];

/// Every style a screen may ask for; a theme naming anything else is a mistake worth reporting.
pub const STYLE_NAMES: &[&str] = &[
    "base",
    "header",
    "header_label",
    "health_ok",
    "health_bad",
    "banner",
    "title",
    "border",
    "table_header",
    "row",
    "row_selected",
    "phase_ready",
    "phase_provisioning",
    "phase_stopped",
    "phase_failed",
    "tab",
    "tab_active",
    "label",
    "value",
    "log",
    "deny",
    "allow",
    "warn",
    "error",
    "preview",
    "footer_key",
    "footer_desc",
    "status_info",
    "status_error",
    "input",
    "help_key",
    "help_desc",
    "syntax_key",
    "syntax_string",
    "syntax_number",
    "syntax_constant",
    "syntax_comment",
    "syntax_punct",
    "cursor",
    "gutter",
    "gutter_error",
    "gutter_warning",
    "diff_add",
    "diff_del",
    "diff_hunk",
    "dirty",
    "prompt",
    "form_label",
    "form_active",
    "checkbox_on",
];

/// The built-in theme names, then the user's `<config>/themes/*.yaml` that add new ones.
pub fn names(config_dir: Option<&Path>) -> Vec<String> {
    let mut out: Vec<String> = BUILTIN.iter().map(|(n, _)| n.to_string()).collect();
    let mut user: Vec<String> = config_dir
        .and_then(|d| std::fs::read_dir(d.join("themes")).ok())
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".yaml"))
                .map(String::from)
        })
        .filter(|n| !out.contains(n))
        .collect();
    user.sort();
    out.append(&mut user);
    out
}

/// A set of named styles.
#[derive(Debug, Clone)]
pub struct Theme {
    pub name: String,
    styles: HashMap<String, Style>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ThemeFile {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    styles: BTreeMap<String, StyleSpec>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StyleSpec {
    fg: Option<String>,
    bg: Option<String>,
    #[serde(default)]
    bold: bool,
    #[serde(default)]
    dim: bool,
    #[serde(default)]
    italic: bool,
    #[serde(default)]
    underline: bool,
    #[serde(default)]
    reversed: bool,
}

impl Theme {
    /// The style called `name`; the terminal default when the theme does not set it.
    pub fn style(&self, name: &str) -> Style {
        debug_assert!(STYLE_NAMES.contains(&name), "unknown style name {name}");
        self.styles.get(name).copied().unwrap_or_default()
    }

    /// The built-in theme `name`, if there is one.
    pub fn builtin(name: &str) -> Option<Theme> {
        let (_, text) = BUILTIN.iter().find(|(n, _)| *n == name)?;
        Some(parse(name, text, None).expect("built-in themes parse"))
    }

    /// The built-in default theme.
    pub fn default_theme() -> Theme {
        Theme::builtin("default").expect("the default theme is built in")
    }

    /// Theme `name`: the user's `<config>/themes/NAME.yaml` laid over the built-in default, else
    /// the built-in `name`. On any problem, the built-in default and the reason, for the status
    /// line.
    pub fn load(config_dir: Option<&Path>, name: &str) -> (Theme, Option<String>) {
        if let Some(dir) = config_dir {
            let path = dir.join("themes").join(format!("{name}.yaml"));
            if path.exists() {
                let base = Theme::builtin(name).unwrap_or_else(Theme::default_theme);
                return match std::fs::read_to_string(&path) {
                    Ok(text) => match parse(name, &text, Some(&base)) {
                        Ok(t) => (t, None),
                        Err(e) => (
                            base,
                            Some(format!(
                                "theme {}: {e}; using the built-in theme instead",
                                path.display()
                            )),
                        ),
                    },
                    Err(e) => (
                        base,
                        Some(format!("theme {}: cannot read it: {e}", path.display())),
                    ),
                };
            }
        }
        match Theme::builtin(name) {
            Some(t) => (t, None),
            None => (
                Theme::default_theme(),
                Some(format!(
                    "no theme named {name:?} (built in: {}); using default",
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

/// Parses a theme file, laying its styles over `base` when given.
pub fn parse(name: &str, text: &str, base: Option<&Theme>) -> Result<Theme, String> {
    let file: ThemeFile = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
    let mut styles = base.map(|b| b.styles.clone()).unwrap_or_default();
    for (key, spec) in file.styles {
        if !STYLE_NAMES.contains(&key.as_str()) {
            return Err(format!(
                "unknown style {key:?} (known: {})",
                STYLE_NAMES.join(", ")
            ));
        }
        styles.insert(
            key.clone(),
            to_style(&spec).map_err(|e| format!("{key}: {e}"))?,
        );
    }
    Ok(Theme {
        name: file.name.unwrap_or_else(|| name.to_string()),
        styles,
    })
}

fn color(s: &str) -> Result<Color, String> {
    Color::from_str(s).map_err(|_| {
        format!("{s:?} is not a colour (use a name like red or lightcyan, #rrggbb, or 0-255)")
    })
}

fn to_style(spec: &StyleSpec) -> Result<Style, String> {
    let mut st = Style::default();
    if let Some(fg) = &spec.fg {
        st = st.fg(color(fg)?);
    }
    if let Some(bg) = &spec.bg {
        st = st.bg(color(bg)?);
    }
    for (on, m) in [
        (spec.bold, Modifier::BOLD),
        (spec.dim, Modifier::DIM),
        (spec.italic, Modifier::ITALIC),
        (spec.underline, Modifier::UNDERLINED),
        (spec.reversed, Modifier::REVERSED),
    ] {
        if on {
            st = st.add_modifier(m);
        }
    }
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_parse_and_name_every_style() {
        for (name, _) in BUILTIN {
            let t = Theme::builtin(name).expect("test fixture");
            for s in STYLE_NAMES {
                assert!(t.styles.contains_key(*s), "{name} lacks {s}");
            }
        }
    }

    #[test]
    fn user_file_overrides_one_style() {
        let dir = tempfile::tempdir().expect("test fixture");
        std::fs::create_dir_all(dir.path().join("themes")).expect("test fixture");
        std::fs::write(
            dir.path().join("themes/default.yaml"),
            "styles:\n  deny: { fg: magenta }\n",
        )
        .expect("test fixture");
        let (t, err) = Theme::load(Some(dir.path()), "default");
        assert_eq!(err, None);
        assert_eq!(t.style("deny"), Style::default().fg(Color::Magenta));
        assert_eq!(t.style("allow"), Theme::default_theme().style("allow"));
    }

    #[test]
    fn malformed_file_falls_back_with_a_clear_error() {
        let dir = tempfile::tempdir().expect("test fixture");
        std::fs::create_dir_all(dir.path().join("themes")).expect("test fixture");
        let p = dir.path().join("themes/light.yaml");
        std::fs::write(&p, "styles:\n  deny: { fg: not-a-colour }\n").expect("test fixture");
        let (t, err) = Theme::load(Some(dir.path()), "light");
        let err = err.expect("test fixture");
        assert!(err.contains("not-a-colour"), "{err}");
        assert!(err.contains("light.yaml"), "{err}");
        assert_eq!(
            t.style("deny"),
            Theme::builtin("light").expect("test fixture").style("deny")
        );

        std::fs::write(&p, "styles: [unclosed\n").expect("test fixture");
        let (_, err) = Theme::load(Some(dir.path()), "light");
        assert!(
            err.expect("test fixture")
                .contains("using the built-in theme")
        );

        std::fs::write(&p, "styles:\n  dney: { fg: red }\n").expect("test fixture");
        let (_, err) = Theme::load(Some(dir.path()), "light");
        assert!(
            err.expect("test fixture")
                .contains("unknown style \"dney\"")
        );
    }

    #[test]
    fn unknown_name_falls_back_to_default() {
        let (t, err) = Theme::load(None, "nope");
        assert_eq!(t.name, "default");
        assert!(
            err.expect("test fixture")
                .contains("no theme named \"nope\"")
        );
    }
}
