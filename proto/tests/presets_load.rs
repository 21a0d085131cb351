//! Every built-in preset under `policies/presets` is a valid, self-describing policy, and
//! presets can be merged together without their entries colliding.

use openshell_proto::policy::load;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Presets are shown one per line by `openshell policy presets`.
const MAX_DESCRIPTION: usize = 70;
const MIN_PRESETS: usize = 19;

fn preset_files() -> Vec<PathBuf> {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../policies/presets"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_preset_loads_and_keys_are_unique() {
    let files = preset_files();
    assert!(
        files.len() >= MIN_PRESETS,
        "expected at least {MIN_PRESETS} presets, found {}: {files:?}",
        files.len()
    );

    let mut problems = Vec::new();
    // Entry key -> preset that defines it.
    let mut owners: BTreeMap<String, String> = BTreeMap::new();
    for path in &files {
        let shown = path.display().to_string();
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("?")
            .to_string();
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {shown}: {e}"));

        let first = text.lines().next().unwrap_or("");
        if !first.starts_with("# ") {
            problems.push(format!(
                "{shown}:1: first line must be `# <description>`, got `{first}`"
            ));
        } else if first.len() >= MAX_DESCRIPTION {
            problems.push(format!(
                "{shown}:1: description is {} characters; keep it under {MAX_DESCRIPTION}",
                first.len()
            ));
        }

        let loaded = match load(&text, &shown) {
            Ok(l) => l,
            Err(errors) => {
                problems.push(errors.to_string());
                continue;
            }
        };
        for f in &loaded.findings {
            problems.push(format!("{f} (presets should load without findings)"));
        }
        let policy = loaded.policy;
        if policy.network_policies.is_empty() {
            problems.push(format!("{shown}: no network_policies entries"));
        }
        if policy.filesystem_policy.is_some()
            || policy.landlock.is_some()
            || policy.process.is_some()
        {
            problems.push(format!("{shown}: presets hold only network_policies"));
        }
        for (key, entry) in &policy.network_policies {
            if let Some(other) = owners.insert(key.clone(), name.clone()) {
                problems.push(format!(
                    "{shown}: entry `{key}` is also defined by preset `{other}`"
                ));
            }
            if entry.binaries.iter().any(|b| b.path == "**") {
                problems.push(format!("{shown}: entry `{key}` allows every binary (`**`)"));
            }
            if entry.binaries.is_empty() || entry.endpoints.is_empty() {
                problems.push(format!(
                    "{shown}: entry `{key}` needs endpoints and binaries"
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "preset problems:\n{}",
        problems.join("\n")
    );
}
