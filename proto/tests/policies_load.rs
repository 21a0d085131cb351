//! Every policy we ship or were specified from loads: the seeds' policies, the baseline, the
//! examples. Presets have their own, stricter test.

use openshell_proto::policy::{Severity, load};
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn must_load(rel: &str) -> openshell_proto::policy::Loaded {
    let path = root().join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {rel}: {e}"));
    match load(&text, rel) {
        Ok(l) => {
            let errors: Vec<String> = l
                .findings
                .iter()
                .filter(|f| f.severity == Severity::Error)
                .map(ToString::to_string)
                .collect();
            assert!(errors.is_empty(), "{rel}: {errors:?}");
            l
        }
        Err(e) => panic!("{rel} must load:\n{e}"),
    }
}

#[test]
fn seed_quickstart_policy_loads() {
    let l = must_load("proto/tests/fixtures/seeds/quickstart.yaml");
    assert!(l.policy.network_policies.contains_key("github_api"));
}

#[test]
fn seed_read_everything_policy_loads() {
    let l = must_load("proto/tests/fixtures/seeds/read_everything.yaml");
    assert!(!l.policy.network_policies.is_empty());
}

#[test]
fn baseline_loads_and_has_no_open_network() {
    let l = must_load("policies/baseline.yaml");
    let fs = l
        .policy
        .filesystem_policy
        .as_ref()
        .expect("baseline has a filesystem policy");
    assert!(fs.read_write.iter().any(|p| p == "/sandbox"));
    assert!(fs.read_write.iter().any(|p| p == "/tmp"));
    for (key, entry) in &l.policy.network_policies {
        assert!(
            entry.binaries.iter().all(|b| b.path != "**"),
            "baseline entry {key} lets every binary out"
        );
        assert!(
            entry.endpoints.iter().all(|e| e.host != "**"),
            "baseline entry {key} allows every host"
        );
    }
}

#[test]
fn quickstart_example_loads() {
    let l = must_load("examples/sandbox-policy-quickstart/policy.yaml");
    assert!(l.policy.network_policies.contains_key("github_api"));
}

#[test]
fn embedded_catalog_matches_files() {
    let baseline =
        std::fs::read_to_string(root().join("policies/baseline.yaml")).expect("baseline");
    assert_eq!(openshell_proto::catalog::baseline_text(), baseline);
    assert!(openshell_proto::catalog::preset("github").is_some());
}
