//! Readable differences between two policy revisions: a structural list of changes (what a
//! person reviewing an approval wants) and a unified diff of the rendered YAML.

use super::merge::EndpointIdentity;
use super::model::*;
use super::render::{endpoint_summary, rule_summary, to_yaml};
use std::fmt;

/// One change from revision A to revision B.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Added {
        path: String,
        what: String,
    },
    Removed {
        path: String,
        what: String,
    },
    Changed {
        path: String,
        from: String,
        to: String,
    },
}

impl Change {
    pub fn path(&self) -> &str {
        match self {
            Change::Added { path, .. }
            | Change::Removed { path, .. }
            | Change::Changed { path, .. } => path,
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Added { path, what } => write!(f, "+ {path}: {what}"),
            Change::Removed { path, what } => write!(f, "- {path}: {what}"),
            Change::Changed { path, from, to } => write!(f, "~ {path}: {from} -> {to}"),
        }
    }
}

/// Every change from `a` to `b`, static sections first, then network entries in `b`'s order.
pub fn diff(a: &Policy, b: &Policy) -> Vec<Change> {
    let mut out = Vec::new();
    if a.version != b.version {
        out.push(Change::Changed {
            path: "version".into(),
            from: a.version.to_string(),
            to: b.version.to_string(),
        });
    }
    let (fa, fb) = (
        a.filesystem_policy.clone().unwrap_or_default(),
        b.filesystem_policy.clone().unwrap_or_default(),
    );
    scalar(
        &mut out,
        "filesystem_policy.include_workdir",
        fa.include_workdir(),
        fb.include_workdir(),
    );
    list(
        &mut out,
        "filesystem_policy.read_only",
        &fa.read_only,
        &fb.read_only,
        String::clone,
    );
    list(
        &mut out,
        "filesystem_policy.read_write",
        &fa.read_write,
        &fb.read_write,
        String::clone,
    );
    let compat = |p: &Policy| {
        p.landlock
            .as_ref()
            .and_then(|l| l.compatibility)
            .unwrap_or_default()
    };
    scalar(
        &mut out,
        "landlock.compatibility",
        format!("{:?}", compat(a)),
        format!("{:?}", compat(b)),
    );
    let (pa, pb) = (
        a.process.clone().unwrap_or_default(),
        b.process.clone().unwrap_or_default(),
    );
    scalar(
        &mut out,
        "process.run_as_user",
        show_opt(&pa.run_as_user),
        show_opt(&pb.run_as_user),
    );
    scalar(
        &mut out,
        "process.run_as_group",
        show_opt(&pa.run_as_group),
        show_opt(&pb.run_as_group),
    );

    for (key, eb) in &b.network_policies {
        let path = format!("network_policies.{key}");
        match a.network_policies.get(key) {
            None => out.push(Change::Added {
                path,
                what: entry_summary(eb),
            }),
            Some(ea) => entry_diff(&mut out, &path, ea, eb),
        }
    }
    for (key, ea) in &a.network_policies {
        if !b.network_policies.contains_key(key) {
            out.push(Change::Removed {
                path: format!("network_policies.{key}"),
                what: entry_summary(ea),
            });
        }
    }
    out
}

/// The changes as text, one per line; "no changes" when there are none.
pub fn render_changes(changes: &[Change]) -> String {
    if changes.is_empty() {
        return "no changes\n".to_string();
    }
    changes.iter().map(|c| format!("{c}\n")).collect()
}

/// A unified diff of two policy texts, with three lines of context.
pub fn unified(a_text: &str, b_text: &str, a_label: &str, b_label: &str) -> String {
    similar::TextDiff::from_lines(a_text, b_text)
        .unified_diff()
        .context_radius(3)
        .header(a_label, b_label)
        .to_string()
}

/// A unified diff of the canonical renderings of two policies.
pub fn unified_policies(a: &Policy, b: &Policy, a_label: &str, b_label: &str) -> String {
    unified(&to_yaml(a), &to_yaml(b), a_label, b_label)
}

pub fn entry_summary(e: &NetworkPolicy) -> String {
    let eps: Vec<String> = e.endpoints.iter().map(endpoint_summary).collect();
    let bins: Vec<&str> = e.binaries.iter().map(|b| b.path.as_str()).collect();
    let name = e
        .name
        .as_deref()
        .map(|n| format!("\"{n}\" "))
        .unwrap_or_default();
    format!("{name}{} for {}", eps.join(", "), bins.join(", "))
}

fn entry_diff(out: &mut Vec<Change>, path: &str, a: &NetworkPolicy, b: &NetworkPolicy) {
    scalar(
        out,
        &format!("{path}.name"),
        show_opt(&a.name),
        show_opt(&b.name),
    );
    // Pair endpoints by identity, in order, so an edited rule list reads as rule changes.
    let mut unmatched_a: Vec<Option<&Endpoint>> = a.endpoints.iter().map(Some).collect();
    for eb in &b.endpoints {
        let id = EndpointIdentity::of(eb);
        let found = unmatched_a
            .iter_mut()
            .find(|slot| slot.is_some_and(|ea| EndpointIdentity::of(ea) == id))
            .and_then(Option::take);
        let ep_path = format!("{path}.endpoints[{}]", endpoint_summary(eb));
        match found {
            None => out.push(Change::Added {
                path: format!("{path}.endpoints"),
                what: endpoint_summary(eb),
            }),
            Some(ea) => {
                let rules = |e: &Endpoint| -> Vec<RuleMatch> {
                    e.rules.iter().flatten().map(|r| r.allow.clone()).collect()
                };
                list(
                    out,
                    &format!("{ep_path}.rules"),
                    &rules(ea),
                    &rules(eb),
                    rule_summary,
                );
                let deny = |e: &Endpoint| e.deny_rules.clone().unwrap_or_default();
                list(
                    out,
                    &format!("{ep_path}.deny_rules"),
                    &deny(ea),
                    &deny(eb),
                    rule_summary,
                );
                let ips = |e: &Endpoint| e.allowed_ips.clone().unwrap_or_default();
                list(
                    out,
                    &format!("{ep_path}.allowed_ips"),
                    &ips(ea),
                    &ips(eb),
                    String::clone,
                );
            }
        }
    }
    for ea in unmatched_a.into_iter().flatten() {
        out.push(Change::Removed {
            path: format!("{path}.endpoints"),
            what: endpoint_summary(ea),
        });
    }
    list(
        out,
        &format!("{path}.binaries"),
        &a.binaries,
        &b.binaries,
        |b| b.path.clone(),
    );
}

fn list<T: PartialEq>(
    out: &mut Vec<Change>,
    path: &str,
    a: &[T],
    b: &[T],
    show: impl Fn(&T) -> String,
) {
    for item in b {
        if !a.contains(item) {
            out.push(Change::Added {
                path: path.to_string(),
                what: show(item),
            });
        }
    }
    for item in a {
        if !b.contains(item) {
            out.push(Change::Removed {
                path: path.to_string(),
                what: show(item),
            });
        }
    }
}

fn scalar<T: PartialEq + ToString>(out: &mut Vec<Change>, path: &str, a: T, b: T) {
    if a != b {
        out.push(Change::Changed {
            path: path.to_string(),
            from: a.to_string(),
            to: b.to_string(),
        });
    }
}

fn show_opt(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "(unset)".to_string())
}
