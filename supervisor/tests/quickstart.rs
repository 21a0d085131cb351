//! The seed quickstart, offline: a local HTTPS stand-in for api.github.com in a network
//! namespace this test makes, trusted with `--upstream-ca` and reached with `--resolve`.
//! Default policy: blocked at CONNECT. Quickstart policy: GET allowed, POST denied by L7.

use openshell_e2e::netns::NetNs;
use openshell_e2e::standin::{StandIn, ZEN};
use openshell_e2e::{binary, read_events};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

struct Run {
    out: Output,
    events: Vec<serde_json::Value>,
}

fn run_sandbox(policy: &Path, gh: &StandIn, ns: &NetNs, cmd: &[&str]) -> Run {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("events.log");
    let work = dir.path().join("work");
    std::fs::create_dir(&work).expect("workdir");
    let out = Command::new(binary("openshell-sandbox"))
        .arg("run")
        .arg("--policy")
        .arg(policy)
        .arg("--workdir")
        .arg(&work)
        .args(["--name", "quickstart"])
        .arg("--upstream-ca")
        .arg(gh.ca_file.as_ref().expect("https stand-in"))
        .arg("--resolve")
        .arg(format!("api.github.com={}", ns.addr))
        .arg("--log")
        .arg(&log)
        .arg("--")
        .args(cmd)
        .output()
        .expect("run openshell-sandbox");
    let events = read_events(&log);
    Run { out, events }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn has_event(
    events: &[serde_json::Value],
    action: &str,
    layer: &str,
    method: Option<&str>,
) -> bool {
    events.iter().any(|e| {
        e["kind"] == "network"
            && e["action"] == action
            && e["layer"] == layer
            && e["host"] == "api.github.com"
            && method.is_none_or(|m| e["method"] == m)
    })
}

#[test]
fn quickstart_blocked_then_get_allowed_and_post_denied() {
    let ns = NetNs::create();
    let gh = StandIn::https(&ns, &["api.github.com"], 443);

    // 1. The default policy has nothing for curl and api.github.com.
    let r = run_sandbox(
        &repo("policies/baseline.yaml"),
        &gh,
        &ns,
        &["curl", "-sS", "https://api.github.com/zen"],
    );
    let err = text(&r.out.stderr);
    assert_eq!(
        r.out.status.code(),
        Some(56),
        "curl exit status; stderr: {err}"
    );
    // Older curl says "Received HTTP code 403 from proxy after CONNECT", newer curl
    // "CONNECT tunnel failed, response 403": both report our 403 to CONNECT.
    assert!(
        err.contains("Received HTTP code 403 from proxy after CONNECT")
            || err.contains("CONNECT tunnel failed, response 403"),
        "stderr: {err}"
    );
    assert!(
        has_event(&r.events, "deny", "l4", None),
        "deny event: {:#?}",
        r.events
    );
    assert!(
        gh.hits().is_empty(),
        "nothing reached the stand-in: {:?}",
        gh.hits()
    );

    // 2. The quickstart policy: read-only GitHub API for curl.
    let qs = repo("examples/sandbox-policy-quickstart/policy.yaml");
    let r = run_sandbox(
        &qs,
        &gh,
        &ns,
        &["curl", "-sS", "https://api.github.com/zen"],
    );
    assert_eq!(
        r.out.status.code(),
        Some(0),
        "stderr: {}",
        text(&r.out.stderr)
    );
    assert_eq!(text(&r.out.stdout).trim(), ZEN);
    assert!(
        has_event(&r.events, "allow", "l7", Some("GET")),
        "allow event: {:#?}",
        r.events
    );

    // 3. POST is not read-only: denied by L7 with the policy_denied body.
    let r = run_sandbox(
        &qs,
        &gh,
        &ns,
        &[
            "curl",
            "-sS",
            "-X",
            "POST",
            "https://api.github.com/repos/octocat/hello-world/issues",
            "-d",
            r#"{"title":"oops"}"#,
        ],
    );
    let body = text(&r.out.stdout);
    assert!(
        body.starts_with(
            r#"{"error":"policy_denied","detail":"POST /repos/octocat/hello-world/issues not permitted by policy""#
        ),
        "body: {body}; stderr: {}",
        text(&r.out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON body");
    assert_eq!(v["layer"], "l7");
    assert_eq!(v["binary"], "/usr/bin/curl");
    assert_eq!(v["policy"], "github_api");
    assert!(
        has_event(&r.events, "deny", "l7", Some("POST")),
        "deny event: {:#?}",
        r.events
    );
    assert!(
        !gh.hits().iter().any(|h| h.starts_with("POST")),
        "the POST never reached the stand-in: {:?}",
        gh.hits()
    );
}
