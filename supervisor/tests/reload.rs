//! Hot reload while traffic flows: one keep-alive tunnel sends requests without pause while
//! the policy file is rewritten. Invalid files and static changes are refused and change
//! nothing; a valid revision takes over between two requests (never half-applied); a
//! revision that drops the host closes the open tunnel.

use openshell_e2e::netns::NetNs;
use openshell_e2e::standin::StandIn;
use openshell_e2e::{binary, read_events};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn entry(key: &str) -> String {
    format!(
        "network_policies:\n  {key}:\n    endpoints:\n      - host: api.github.com\n        port: 443\n        protocol: rest\n        rules:\n          - allow: {{ method: GET, path: \"/v1/**\" }}\n    binaries:\n      - {{ path: \"/usr/bin/python3*\" }}\n"
    )
}

const CLIENT: &str = r#"
import http.client, ssl, sys, time
ctx = ssl.create_default_context(cafile="/run/openshell/ca-bundle.pem")
c = http.client.HTTPSConnection("127.0.0.1", 3128, context=ctx, timeout=10)
c.set_tunnel("api.github.com", 443)
i = 0
deadline = time.time() + 60
while time.time() < deadline:
    try:
        c.request("GET", f"/v1/{i}")
        r = c.getresponse(); r.read()
        print(i, r.status, flush=True)
    except Exception as e:
        print("closed", type(e).__name__, e, flush=True)
        sys.exit(0)
    i += 1
print("deadline", flush=True)
sys.exit(1)
"#;

fn write_atomic(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

fn wait_for(
    log: &Path,
    what: &str,
    f: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let start = Instant::now();
    loop {
        let events = read_events(log);
        if f(&events) {
            return events;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}: {events:#?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn allowed_by(events: &[serde_json::Value], key: &str) -> usize {
    events
        .iter()
        .filter(|e| e["layer"] == "l7" && e["action"] == "allow" && e["policy"] == key)
        .count()
}

fn policy_message(events: &[serde_json::Value], needle: &str) -> usize {
    events
        .iter()
        .filter(|e| {
            e["kind"] == "policy" && e["message"].as_str().is_some_and(|m| m.contains(needle))
        })
        .count()
}

#[test]
fn reload_under_traffic() {
    let ns = NetNs::create();
    let gh = StandIn::https(&ns, &["api.github.com"], 443);
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("policy.yaml");
    let log = dir.path().join("events.log");
    let work = dir.path().join("work");
    std::fs::create_dir(&work).expect("workdir");
    std::fs::write(work.join("client.py"), CLIENT).expect("client");
    write_atomic(&policy, &entry("rev_a"));

    let child = Command::new(binary("openshell-sandbox"))
        .arg("run")
        .arg("--policy")
        .arg(&policy)
        .arg("--workdir")
        .arg(&work)
        .arg("--upstream-ca")
        .arg(gh.ca_file.as_ref().expect("https"))
        .arg("--resolve")
        .arg(format!("api.github.com={}", ns.addr))
        .arg("--log")
        .arg(&log)
        .args(["--", "python3", "/sandbox/client.py"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sandbox");

    wait_for(&log, "traffic under rev_a", |e| {
        allowed_by(e, "rev_a") >= 20
    });

    // An invalid file: refused, and rev_a keeps deciding.
    write_atomic(
        &policy,
        "network_policies:\n  broken:\n    endpoints: [ { host: api.github.com, port: 99999 } ]\n    binaries: []\n",
    );
    wait_for(&log, "the invalid file's refusal", |e| {
        policy_message(e, "reload refused") >= 1
    });
    let before = allowed_by(&read_events(&log), "rev_a");
    wait_for(&log, "rev_a still deciding", |e| {
        allowed_by(e, "rev_a") >= before + 10
    });

    // A static section changed: refused, naming it.
    write_atomic(
        &policy,
        &format!(
            "filesystem_policy:\n  read_only: [/usr]\n  read_write: [/tmp]\n{}",
            entry("rev_static")
        ),
    );
    let events = wait_for(&log, "the static change's refusal", |e| {
        policy_message(e, "reload refused") >= 2
    });
    assert!(
        policy_message(&events, "filesystem_policy") >= 1,
        "the refusal names the section: {events:#?}"
    );

    // A valid revision: takes over, and from then on only it decides.
    write_atomic(&policy, &entry("rev_b"));
    wait_for(&log, "traffic under rev_b", |e| {
        allowed_by(e, "rev_b") >= 20
    });

    // A revision without the host: the open tunnel is closed.
    write_atomic(
        &policy,
        "network_policies:\n  other:\n    endpoints: [ { host: example.org, port: 443 } ]\n    binaries: [ { path: /usr/bin/curl } ]\n",
    );
    let out = child.wait_with_output().expect("sandbox exits");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "client: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout
            .lines()
            .last()
            .is_some_and(|l| l.starts_with("closed")),
        "tunnel closed: {stdout}"
    );

    // Every request before the tunnel closed was allowed, and the deciding entry switched
    // from rev_a to rev_b exactly once: no request saw a mix.
    let events = read_events(&log);
    let deciders: Vec<&str> = events
        .iter()
        .filter(|e| e["layer"] == "l7")
        .map(|e| e["policy"].as_str().unwrap_or("?"))
        .collect();
    assert!(
        events
            .iter()
            .filter(|e| e["layer"] == "l7")
            .all(|e| e["action"] == "allow"),
        "an L7 request was denied: {events:#?}"
    );
    let switches = deciders.windows(2).filter(|w| w[0] != w[1]).count();
    assert_eq!(switches, 1, "deciders: {deciders:?}");
    assert_eq!(deciders.first(), Some(&"rev_a"));
    assert_eq!(deciders.last(), Some(&"rev_b"));
    assert!(stdout.lines().filter(|l| l.ends_with(" 200")).count() >= 40);
    assert!(
        events.iter().any(|e| e["message"]
            .as_str()
            .is_some_and(|m| m.contains("no longer allows"))),
        "the closed tunnel is an event: {events:#?}"
    );
}
