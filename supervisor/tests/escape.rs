//! The escape suite: an agent that wants out runs `fixtures/escape.py` inside a real sandbox.
//! Every attempt must fail (and fail at once), nothing may reach the outside, and the
//! supervisor must keep working through a fork bomb and an fd flood.

use openshell_e2e::netns::NetNs;
use openshell_e2e::standin::{StandIn, ZEN};
use openshell_e2e::{binary, read_events};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

const POLICY: &str = r#"
network_policies:
  github_paths:
    endpoints:
      - host: api.github.com
        port: 443
        protocol: rest
        rules:
          - allow: { method: GET, path: "/allowed/**" }
          - allow: { method: GET, path: "/zen" }
    binaries:
      - { path: /usr/bin/curl }
"#;

struct World {
    ns: NetNs,
    gh: StandIn,
    dir: tempfile::TempDir,
}

fn world() -> World {
    let ns = NetNs::create();
    let gh = StandIn::https(&ns, &["api.github.com"], 443);
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("policy.yaml"), POLICY).expect("policy");
    let work = dir.path().join("work");
    std::fs::create_dir(&work).expect("workdir");
    World { ns, gh, dir }
}

fn sandbox(
    w: &World,
    extra_env: &[(&str, String)],
    cmd: &[&str],
) -> (Output, Vec<serde_json::Value>) {
    let log = w.dir.path().join("events.log");
    let _ = std::fs::remove_file(&log);
    let mut c = Command::new(binary("openshell-sandbox"));
    c.arg("run")
        .arg("--policy")
        .arg(w.dir.path().join("policy.yaml"))
        .arg("--workdir")
        .arg(w.dir.path().join("work"))
        .args(["--name", "escape"])
        .arg("--upstream-ca")
        .arg(w.gh.ca_file.as_ref().expect("https"))
        .arg("--resolve")
        .arg(format!("api.github.com={}", w.ns.addr))
        .arg("--log")
        .arg(&log)
        // A secret in the supervisor's own environment must never reach the sandbox.
        .env("ESCAPE_SECRET_TOKEN", "hunter2");
    for (k, v) in extra_env {
        c.arg("--env").arg(format!("{k}={v}"));
    }
    let out = c
        .arg("--")
        .args(cmd)
        .output()
        .expect("run openshell-sandbox");
    (out, read_events(&log))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn every_escape_attempt_fails() {
    let w = world();
    let work = w.dir.path().join("work");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/escape.py"),
        work.join("escape.py"),
    )
    .expect("script");
    // A setuid-root copy of `id`: inside, it must not make anyone root.
    std::fs::copy("/usr/bin/id", work.join("id-suid")).expect("copy id");
    std::fs::set_permissions(
        work.join("id-suid"),
        std::fs::Permissions::from_mode(0o4755),
    )
    .expect("chmod");

    // A service on the host's loopback that nothing in the sandbox may reach.
    let host_service = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    host_service.set_nonblocking(true).expect("nonblocking");
    let host_port = host_service.local_addr().expect("addr").port();

    let (out, events) = sandbox(
        &w,
        &[
            ("ESCAPE_GH_IP", w.ns.addr.to_string()),
            ("ESCAPE_HOST_PORT", host_port.to_string()),
        ],
        &["python3", "/sandbox/escape.py"],
    );
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "escape.py failed: {}\n{stdout}",
        text(&out.stderr)
    );
    let results: Vec<serde_json::Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(
        results.len() >= 30,
        "at least 30 attempts, got {}:\n{stdout}",
        results.len()
    );
    let escaped: Vec<String> = results
        .iter()
        .filter(|r| r["escaped"] != false)
        .map(|r| format!("{}: {}", r["name"], r["detail"]))
        .collect();
    assert!(escaped.is_empty(), "escapes:\n{}", escaped.join("\n"));

    // Nothing leaked out.
    let mut buf = [0u8; 1];
    let reached = host_service
        .accept()
        .map(|(mut s, _)| s.read(&mut buf))
        .is_ok();
    assert!(!reached, "the host's loopback service was reached");
    let hits = w.gh.hits();
    assert!(
        !hits.iter().any(|h| h.contains("denied")),
        "a path trick reached upstream: {hits:?}"
    );
    let shadow = std::fs::read_to_string("/etc/passwd").expect("passwd");
    assert!(!shadow.contains("evil::0:0"), "/etc/passwd was modified");
    assert!(
        !Path::new("/usr/bin/openshell-escape").exists()
            && !Path::new("/etc/openshell-escape").exists()
    );

    // Direct connections became deny events naming their destination.
    let gh_ip = w.ns.addr.to_string();
    for dest in [gh_ip.as_str(), "2001:db8::1", "8.8.8.8"] {
        assert!(
            events
                .iter()
                .any(|e| e["action"] == "deny" && e["layer"] == "bypass" && e["host"] == dest),
            "no bypass deny event for {dest}: {events:#?}"
        );
    }
}

#[test]
fn fork_bomb_and_fd_flood_leave_the_proxy_working() {
    let w = world();
    // The bomb forks until the kernel refuses, the flood opens proxy connections until the
    // sandbox runs out of descriptors; then, with both still in place, curl must get through.
    let script = r#"
import os, socket, subprocess, sys, time
kids = 0
try:
    while kids < 100000:
        pid = os.fork()
        if pid == 0:
            time.sleep(4); os._exit(0)
        kids += 1
except OSError as e:
    print(f"fork refused after {kids}: {e}", flush=True)
socks = []
try:
    while len(socks) < 100000:
        socks.append(socket.create_connection(("127.0.0.1", 3128), timeout=2))
except OSError as e:
    print(f"connections refused after {len(socks)}: {e}", flush=True)
for s in socks: s.close()
while True:
    try:
        os.wait()
    except ChildProcessError:
        break
p = subprocess.run(["curl", "-sS", "-m", "10", "https://api.github.com/zen"], capture_output=True, text=True)
print("curl:", p.returncode, p.stdout.strip(), p.stderr.strip(), flush=True)
"#;
    std::fs::write(w.dir.path().join("work/bomb.py"), script).expect("script");
    let (out, _events) = sandbox(&w, &[], &["python3", "/sandbox/bomb.py"]);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("fork refused after"),
        "the fork bomb was not stopped: {stdout}\n{}",
        text(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("curl: 0 {ZEN}")),
        "the proxy stopped working: {stdout}\n{}",
        text(&out.stderr)
    );
    // And the host is fine: we can still fork here.
    let counted = Arc::new(AtomicUsize::new(0));
    let c = counted.clone();
    std::thread::spawn(move || c.fetch_add(1, Ordering::Relaxed))
        .join()
        .expect("thread");
    assert_eq!(counted.load(Ordering::Relaxed), 1);
}
