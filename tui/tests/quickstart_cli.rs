//! The seed quickstart through the CLI and a real gateway: blocked → `policy set --wait` →
//! GET allowed → POST denied with `policy_denied` → the denial is listed → `approve` lets the
//! POST through → `logs` shows it all. Offline: api.github.com is a local stand-in in a network
//! namespace, trusted and pinned through the gateway's settings.

use openshell_e2e::cli::{Env, runner_workdir, step};
use openshell_e2e::netns::NetNs;
use openshell_e2e::standin::{StandIn, ZEN};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

#[test]
fn quickstart_through_the_cli() {
    openshell_e2e::require_root();
    let ns = NetNs::create();
    let gh = StandIn::https(&ns, &["api.github.com"], 443);
    let env = Env::new(
        env!("CARGO_BIN_EXE_openshell"),
        gh.ca_file.as_deref(),
        Some(&format!("api.github.com={}", ns.addr)),
    );
    let work = runner_workdir(&env, "work");

    // 1. Create (the gateway starts by itself) with the default policy: blocked.
    let created = env.ok(&[
        "sandbox",
        "create",
        "--name",
        "demo",
        "--workdir",
        work.to_str().expect("utf-8"),
        "--json",
        "--",
        "sh",
        "/sandbox/runner.sh",
    ]);
    let v: serde_json::Value = serde_json::from_str(created.trim()).expect("create --json");
    assert_eq!(v["phase"], "ready", "{created}");
    assert_eq!(v["driver"], "process");
    let out = step(&work, 1, "curl -sS https://api.github.com/zen");
    assert!(out.contains("403"), "blocked at CONNECT: {out}");

    // 2. Apply the quickstart policy and wait for enforcement.
    let set = env.ok(&[
        "policy",
        "set",
        "demo",
        "--policy",
        repo("examples/sandbox-policy-quickstart/policy.yaml")
            .to_str()
            .expect("utf-8"),
        "--wait",
    ]);
    assert!(set.contains("revision 2 is enforced"), "{set}");

    // 3. GET allowed, POST denied by L7.
    let out = step(&work, 2, "curl -sS https://api.github.com/zen");
    assert_eq!(out.trim(), ZEN);
    let post = "curl -sS -X POST https://api.github.com/repos/octocat/hello-world/issues -d '{\"title\":\"oops\"}'";
    let out = step(&work, 3, post);
    assert!(
        out.starts_with(r#"{"error":"policy_denied","detail":"POST /repos/octocat/hello-world/issues not permitted by policy""#),
        "{out}"
    );

    // 4. The denial is listed with its proposal.
    let start = Instant::now();
    let denial = loop {
        let list: serde_json::Value =
            serde_json::from_str(env.ok(&["policy", "denials", "demo", "--json"]).trim())
                .expect("denials --json");
        if let Some(d) = list.as_array().and_then(|a| {
            a.iter()
                .find(|d| d["method"] == "POST" && d["path"] == "/repos/octocat/hello-world/issues")
                .cloned()
        }) {
            break d;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no POST denial listed: {list}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(denial["host"], "api.github.com");
    assert_eq!(denial["port"], 443);
    assert_eq!(denial["binary"], "/usr/bin/curl");
    assert!(denial["count"].as_u64().is_some_and(|c| c >= 1));
    let id = denial["id"].as_str().expect("id").to_string();

    // 5. Approve: the POST now passes.
    let approved = env.ok(&["policy", "approve", "demo", &id, "--wait"]);
    assert!(approved.contains("enforced"), "{approved}");
    let out = step(&work, 4, post);
    assert!(
        out.contains("created"),
        "the approved POST reached the stand-in: {out}"
    );
    assert!(
        gh.hits()
            .iter()
            .any(|h| h.starts_with("POST /repos/octocat/hello-world/issues"))
    );

    // 6. The logs tell the story (events reach the gateway in batches: give the last a moment).
    let start = Instant::now();
    let (logs, events) = loop {
        let logs = env.ok(&["logs", "demo", "--json"]);
        let events: Vec<serde_json::Value> = logs
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let done = events
            .iter()
            .any(|e| e["action"] == "allow" && e["method"] == "POST");
        if done || start.elapsed() > Duration::from_secs(10) {
            break (logs, events);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let has = |f: &dyn Fn(&serde_json::Value) -> bool| events.iter().any(f);
    assert!(
        has(&|e| e["action"] == "deny" && e["layer"] == "l4" && e["host"] == "api.github.com"),
        "{logs}"
    );
    assert!(
        has(&|e| e["action"] == "allow" && e["method"] == "GET" && e["path"] == "/zen"),
        "{logs}"
    );
    assert!(
        has(&|e| e["action"] == "deny" && e["method"] == "POST"),
        "{logs}"
    );
    assert!(
        has(&|e| e["action"] == "allow" && e["method"] == "POST"),
        "{logs}"
    );
    assert!(has(&|e| e["kind"] == "policy"), "{logs}");
    assert!(events.iter().all(|e| e["sandbox"] == "demo"));
}
