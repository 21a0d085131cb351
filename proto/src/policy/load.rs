//! Reading a policy from YAML: syntax, types and meaning, each error with file, line, column
//! and field. Nothing is returned unless the whole document is valid.

use super::model::Policy;
use super::positions::{Pos, Positions};
use super::validate::{Severity, validate};
use std::fmt;

/// Largest policy document accepted, so a hostile request cannot make a parser work forever.
pub const MAX_POLICY_BYTES: usize = 1 << 20;

/// One problem, located: `file:line:column: field: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// Dotted field path, e.g. `network_policies.github.endpoints[0].port`; empty for the
    /// document as a whole.
    pub field: String,
    pub message: String,
    pub severity: Severity,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        match self.severity {
            Severity::Error => {}
            Severity::Warning => write!(f, "warning: ")?,
            Severity::Note => write!(f, "note: ")?,
        }
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        write!(f, "{}", self.message)
    }
}

/// Every error found in one document (at least one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// A valid policy and what is worth telling its author.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub policy: Policy,
    /// Warnings and notes, located like errors.
    pub findings: Vec<PolicyError>,
}

/// Parses and validates `text`; `file` names it in messages.
pub fn load(text: &str, file: &str) -> Result<Loaded, PolicyErrors> {
    let at = |pos: Pos, field: &str, message: String| PolicyError {
        file: file.to_string(),
        line: pos.line,
        column: pos.column,
        field: field.to_string(),
        message,
        severity: Severity::Error,
    };
    if text.len() > MAX_POLICY_BYTES {
        return Err(PolicyErrors(vec![at(
            Pos { line: 1, column: 1 },
            "",
            format!(
                "policy is {} bytes; the limit is {MAX_POLICY_BYTES}",
                text.len()
            ),
        )]));
    }
    let positions =
        Positions::index(text).map_err(|p| PolicyErrors(vec![at(p.pos, &p.path, p.message)]))?;
    if !positions.has_root() {
        return Err(PolicyErrors(vec![at(
            Pos { line: 1, column: 1 },
            "",
            "the policy is empty; it needs at least `version: 1`".into(),
        )]));
    }
    let policy: Policy = serde_yaml::from_str(text).map_err(|e| {
        let (field, message) = split_serde_message(&e.to_string());
        let pos = e
            .location()
            .map(|l| Pos {
                line: l.line(),
                column: l.column(),
            })
            .unwrap_or_else(|| positions.value(&field));
        PolicyErrors(vec![at(pos, &field, explain_serde(&message))])
    })?;
    let mut errors = Vec::new();
    let mut findings = Vec::new();
    for f in validate(&policy) {
        let e = PolicyError {
            severity: f.severity,
            ..at(positions.value(&f.path), &f.path, f.message)
        };
        if f.severity == Severity::Error {
            errors.push(e);
        } else {
            findings.push(e);
        }
    }
    errors.sort_by_key(|e| (e.line, e.column));
    findings.sort_by_key(|e| (e.line, e.column));
    if errors.is_empty() {
        Ok(Loaded { policy, findings })
    } else {
        Err(PolicyErrors(errors))
    }
}

/// Parses without a file name, for text that came over the wire.
pub fn parse(text: &str) -> Result<Policy, PolicyErrors> {
    load(text, "<policy>").map(|l| l.policy)
}

/// serde_yaml says `path.to.field: message at line L column C`; split off the path and
/// drop the location, which is reported separately.
fn split_serde_message(msg: &str) -> (String, String) {
    let msg = match msg.rfind(" at line ") {
        Some(i) => &msg[..i],
        None => msg,
    };
    if let Some((path, rest)) = msg.split_once(": ")
        && !path.contains(' ')
        && !path.contains('`')
    {
        return (path.to_string(), rest.to_string());
    }
    (String::new(), msg.to_string())
}

/// Adds what would be right to serde's terse messages.
fn explain_serde(message: &str) -> String {
    if message.starts_with("unknown field") {
        format!("{message} (unknown fields are refused so a typo cannot weaken a policy)")
    } else if message.starts_with("invalid type") {
        let m = message
            .trim_start_matches("invalid type: ")
            .replace("expected i64", "expected an integer")
            .replace("expected u32", "expected an integer")
            .replace(
                "expected struct Policy",
                "expected a mapping starting with `version: 1`",
            );
        let m = match m.find("expected struct ") {
            Some(i) => format!("{}expected a mapping of fields", &m[..i]),
            None => m,
        };
        format!("wrong type: {m}")
    } else {
        message.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_serde_paths() {
        let (f, m) = split_serde_message(
            "network_policies.x.endpoints[0]: unknown field `hots`, expected one of `host` at line 5 column 9",
        );
        assert_eq!(f, "network_policies.x.endpoints[0]");
        assert!(m.starts_with("unknown field `hots`"));
    }
}
