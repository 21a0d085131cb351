//! Static sections (fixed when a sandbox starts) versus dynamic ones (hot-reloadable).

use super::model::*;

/// The sections that cannot change on a running sandbox.
pub const STATIC_SECTIONS: [&str; 3] = ["filesystem_policy", "landlock", "process"];

/// The part of a policy fixed at sandbox start, with defaults made explicit so that two
/// spellings of the same thing compare equal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticPart {
    pub include_workdir: bool,
    pub read_only: Vec<String>,
    pub read_write: Vec<String>,
    pub compatibility: LandlockCompatibility,
    pub run_as_user: Option<String>,
    pub run_as_group: Option<String>,
}

impl StaticPart {
    pub fn of(p: &Policy) -> StaticPart {
        let fs = p.filesystem_policy.clone().unwrap_or_default();
        let norm = |v: &[String]| {
            let mut v: Vec<String> = v
                .iter()
                .map(|s| {
                    let t = s.trim_end_matches('/');
                    if t.is_empty() {
                        "/".to_string()
                    } else {
                        t.to_string()
                    }
                })
                .collect();
            v.sort();
            v.dedup();
            v
        };
        let process = p.process.clone().unwrap_or_default();
        StaticPart {
            include_workdir: fs.include_workdir(),
            read_only: norm(&fs.read_only),
            read_write: norm(&fs.read_write),
            compatibility: p
                .landlock
                .as_ref()
                .and_then(|l| l.compatibility)
                .unwrap_or_default(),
            run_as_user: process.run_as_user,
            run_as_group: process.run_as_group,
        }
    }
}

/// The static fields that differ between `running` and `proposed`, by name; empty when a
/// proposed policy may be hot-reloaded.
pub fn static_changes(running: &Policy, proposed: &Policy) -> Vec<String> {
    let (a, b) = (StaticPart::of(running), StaticPart::of(proposed));
    let mut out = Vec::new();
    let mut check = |name: &str, same: bool| {
        if !same {
            out.push(name.to_string());
        }
    };
    check(
        "filesystem_policy.include_workdir",
        a.include_workdir == b.include_workdir,
    );
    check("filesystem_policy.read_only", a.read_only == b.read_only);
    check("filesystem_policy.read_write", a.read_write == b.read_write);
    check("landlock.compatibility", a.compatibility == b.compatibility);
    check("process.run_as_user", a.run_as_user == b.run_as_user);
    check("process.run_as_group", a.run_as_group == b.run_as_group);
    out
}

/// `proposed` with any static section it leaves out taken from `running`, so that a file
/// holding only `network_policies` can be applied to a running sandbox.
pub fn inherit_static(running: &Policy, proposed: &Policy) -> Policy {
    let mut out = proposed.clone();
    if out.filesystem_policy.is_none() {
        out.filesystem_policy.clone_from(&running.filesystem_policy);
    }
    if out.landlock.is_none() {
        out.landlock.clone_from(&running.landlock);
    }
    if out.process.is_none() {
        out.process.clone_from(&running.process);
    }
    out
}

/// The dynamic part alone (for hot reload and for display).
pub fn dynamic_part(p: &Policy) -> Policy {
    Policy {
        version: p.version,
        network_policies: p.network_policies.clone(),
        ..Policy::default()
    }
}
