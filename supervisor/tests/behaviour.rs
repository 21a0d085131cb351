//! What a user of `openshell-sandbox run` relies on: exit statuses, command resolution, the
//! environment, the boot hook, absolute-form HTTP, audit mode, WebSocket upgrades, and that
//! a sandbox never outlives its supervisor.

use openshell_e2e::netns::NetNs;
use openshell_e2e::standin::StandIn;
use openshell_e2e::{binary, read_events};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

struct Sandbox {
    dir: tempfile::TempDir,
    args: Vec<String>,
    envs: Vec<(String, String)>,
}

impl Sandbox {
    fn new(policy: &str) -> Sandbox {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("policy.yaml"), policy).expect("policy");
        std::fs::create_dir(dir.path().join("work")).expect("workdir");
        Sandbox {
            dir,
            args: Vec::new(),
            envs: Vec::new(),
        }
    }

    fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("events.log")
    }

    fn arg(mut self, a: impl Into<String>) -> Sandbox {
        self.args.push(a.into());
        self
    }

    fn env(mut self, k: &str, v: &str) -> Sandbox {
        self.envs.push((k.into(), v.into()));
        self
    }

    fn command(&self, cmd: &[&str]) -> Command {
        let mut c = Command::new(binary("openshell-sandbox"));
        c.arg("run")
            .arg("--policy")
            .arg(self.dir.path().join("policy.yaml"))
            .arg("--workdir")
            .arg(self.work())
            .arg("--log")
            .arg(self.log())
            .args(&self.args)
            .env_remove("OPENSHELL_SANDBOX_COMMAND");
        for (k, v) in &self.envs {
            c.env(k, v);
        }
        if !cmd.is_empty() {
            c.arg("--").args(cmd);
        }
        c
    }

    fn run(&self, cmd: &[&str]) -> Output {
        self.command(cmd)
            .stdin(Stdio::null())
            .output()
            .expect("run openshell-sandbox")
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const NO_NETWORK: &str = "network_policies: {}\n";

#[test]
fn exit_status_is_the_commands() {
    let s = Sandbox::new(NO_NETWORK);
    assert_eq!(s.run(&["sh", "-c", "exit 7"]).status.code(), Some(7));
    assert_eq!(s.run(&["true"]).status.code(), Some(0));
    // Killed by a signal: 128 + the signal, as a shell reports it.
    assert_eq!(
        s.run(&["sh", "-c", "kill -TERM $$"]).status.code(),
        Some(143)
    );
    let out = s.run(&["no-such-command-anywhere"]);
    assert_eq!(out.status.code(), Some(127));
    assert!(
        text(&out.stderr).contains("command not found"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn command_comes_from_args_then_environment_then_bash() {
    let s = Sandbox::new(NO_NETWORK).env("OPENSHELL_SANDBOX_COMMAND", "echo from-environment");
    assert_eq!(text(&s.run(&[]).stdout).trim(), "from-environment");
    assert_eq!(
        text(&s.run(&["echo", "from-args"]).stdout).trim(),
        "from-args"
    );
    let s = Sandbox::new(NO_NETWORK);
    let mut c = s.command(&[]);
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(b"echo \"shell=$BASH_VERSION\"\n")
            .expect("write");
    }
    let out = child.wait_with_output().expect("wait");
    assert!(
        text(&out.stdout).starts_with("shell=5"),
        "bash ran: {}",
        text(&out.stdout)
    );
}

#[test]
fn environment_is_built_not_inherited() {
    let s = Sandbox::new(NO_NETWORK)
        .arg("--env")
        .arg("GREETING=hello world")
        .env("HOST_ONLY_SECRET", "s3cret");
    let out = s.run(&["env"]);
    let env = text(&out.stdout);
    assert!(env.lines().any(|l| l == "GREETING=hello world"), "{env}");
    assert!(
        env.lines()
            .any(|l| l == "HTTPS_PROXY=http://127.0.0.1:3128"),
        "{env}"
    );
    assert!(env.lines().any(|l| l == "NODE_USE_ENV_PROXY=1"), "{env}");
    assert!(
        env.lines()
            .any(|l| l == "SSL_CERT_FILE=/run/openshell/ca-bundle.pem"),
        "{env}"
    );
    assert!(
        !env.contains("s3cret") && !env.contains("CARGO"),
        "host variables leaked: {env}"
    );
}

/// Its only TCP is loopback to the proxy, where a pacing algorithm (bbr, which a new network
/// namespace takes from the host) would only throttle.
#[test]
fn loopback_tcp_does_not_pace() {
    let s = Sandbox::new(NO_NETWORK);
    let out = s.run(&["cat", "/proc/sys/net/ipv4/tcp_congestion_control"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let cc = text(&out.stdout);
    assert!(
        matches!(cc.trim(), "cubic" | "reno"),
        "the sandbox uses {cc:?}"
    );
}

#[test]
fn boot_hook_runs_first_and_must_succeed() {
    let s = Sandbox::new(NO_NETWORK)
        .arg("--boot-hook")
        .arg("/sandbox/boot.sh");
    std::fs::write(s.work().join("boot.sh"), "echo booted > /sandbox/booted\n").expect("hook");
    let out = s.run(&["cat", "/sandbox/booted"]);
    assert_eq!(text(&out.stdout).trim(), "booted", "{}", text(&out.stderr));

    std::fs::write(s.work().join("boot.sh"), "exit 3\n").expect("hook");
    let out = s.run(&["touch", "/sandbox/ran"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("boot hook /sandbox/boot.sh failed with exit status 3"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        !s.work().join("ran").exists(),
        "the command ran after a failed hook"
    );
}

#[test]
fn the_sandbox_dies_with_its_supervisor() {
    let s = Sandbox::new(NO_NETWORK);
    let mut sup = s.command(&["sleep", "300"]).spawn().expect("spawn");
    let pid = sup.id();
    let ours = std::fs::read_link("/proc/self/ns/net").ok();
    let start = Instant::now();
    let init = loop {
        let kids =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        if let Some(c) = kids
            .split_whitespace()
            .filter_map(|c| c.parse::<u32>().ok())
            .find(|c| {
                let ns = std::fs::read_link(format!("/proc/{c}/ns/net")).ok();
                ns.is_some() && ns != ours
            })
        {
            break c;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no sandbox appeared"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    std::thread::sleep(Duration::from_millis(200));
    sup.kill().expect("kill -9 the supervisor");
    let _ = sup.wait();
    let start = Instant::now();
    while Path::new(&format!("/proc/{init}/status")).exists()
        && !std::fs::read_to_string(format!("/proc/{init}/status"))
            .unwrap_or_default()
            .contains("State:\tZ")
    {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the sandbox outlived its supervisor"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn policy_for(host: &str, port: u16, extra: &str) -> String {
    format!(
        "network_policies:\n  svc:\n    endpoints:\n      - host: {host}\n        port: {port}\n{extra}    binaries: [ {{ path: \"/usr/bin/*\" }} ]\n"
    )
}

#[test]
fn absolute_form_http_is_decided_per_request() {
    let ns = NetNs::create();
    let plain = StandIn::http(&ns, 80);
    let s = Sandbox::new(&policy_for(
        "plain.test",
        80,
        "        protocol: rest\n        rules:\n          - allow: { method: GET, path: \"/ok/**\" }\n",
    ))
    .arg("--resolve")
    .arg(format!("plain.test={}", ns.addr));
    let out = s.run(&[
        "sh",
        "-c",
        "curl -sS http://plain.test/ok/1; echo; curl -sS http://plain.test/no/2",
    ]);
    let body = text(&out.stdout);
    assert!(
        body.contains("GET /ok/1"),
        "allowed request answered: {body}"
    );
    assert!(
        body.contains(r#"{"error":"policy_denied","detail":"GET /no/2 not permitted by policy""#),
        "denied request refused: {body}"
    );
    assert!(
        !plain.hits().iter().any(|h| h.contains("/no/2")),
        "{:?}",
        plain.hits()
    );
}

#[test]
fn audit_mode_forwards_and_records() {
    let ns = NetNs::create();
    let gh = StandIn::https(&ns, &["api.github.com"], 443);
    let s = Sandbox::new(&policy_for(
        "api.github.com",
        443,
        "        protocol: rest\n        enforcement: audit\n        rules:\n          - allow: { method: GET, path: \"/zen\" }\n",
    ))
    .arg("--upstream-ca")
    .arg(gh.ca_file.as_ref().expect("ca").display().to_string())
    .arg("--resolve")
    .arg(format!("api.github.com={}", ns.addr));
    let out = s.run(&[
        "curl",
        "-sS",
        "-X",
        "POST",
        "https://api.github.com/repos/o/r/issues",
    ]);
    assert!(
        text(&out.stdout).contains("created"),
        "forwarded: {} {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let events = read_events(&s.log());
    assert!(
        events
            .iter()
            .any(|e| e["action"] == "audit" && e["method"] == "POST" && e["layer"] == "l7"),
        "audit event: {events:#?}"
    );
}

#[test]
fn websocket_upgrade_passes_when_allowed() {
    let ns = NetNs::create();
    let gh = StandIn::https(&ns, &["api.github.com"], 443);
    let s = Sandbox::new(
        "network_policies:\n  ws:\n    endpoints:\n      - host: api.github.com\n        port: 443\n        protocol: rest\n        rules:\n          - allow: { method: GET, path: \"/socket\" }\n    binaries: [ { path: \"/usr/bin/python3*\" } ]\n",
    )
    .arg("--upstream-ca")
    .arg(gh.ca_file.as_ref().expect("ca").display().to_string())
    .arg("--resolve")
    .arg(format!("api.github.com={}", ns.addr));
    let client = r#"
import http.client, ssl
ctx = ssl.create_default_context(cafile="/run/openshell/ca-bundle.pem")
c = http.client.HTTPSConnection("127.0.0.1", 3128, context=ctx, timeout=10)
c.set_tunnel("api.github.com", 443)
c.connect()
c.sock.sendall(b"GET /socket HTTP/1.1\r\nHost: api.github.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
head = b""
while b"\r\n\r\n" not in head:
    head += c.sock.recv(1)
print(head.split(b"\r\n")[0].decode(), flush=True)
c.sock.sendall(b"ping-through-the-proxy")
print(c.sock.recv(100).decode(), flush=True)
"#;
    std::fs::write(s.work().join("ws.py"), client).expect("client");
    let out = s.run(&["python3", "/sandbox/ws.py"]);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("101"),
        "upgrade accepted: {stdout} {}",
        text(&out.stderr)
    );
    assert!(
        stdout.contains("ping-through-the-proxy"),
        "bytes flow both ways: {stdout}"
    );
}

#[test]
fn runs_unprivileged_in_a_user_namespace() {
    use std::os::unix::fs::PermissionsExt;
    let s = Sandbox::new(NO_NETWORK);
    for p in [s.dir.path().to_path_buf(), s.work()] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::os::unix::fs::chown(&p, Some(65534), Some(65534)).expect("chown");
    }
    let mut c = Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(binary("openshell-sandbox"))
        .arg("run")
        .arg("--policy")
        .arg(s.dir.path().join("policy.yaml"))
        .arg("--workdir")
        .arg(s.work())
        .arg("--log")
        .arg(s.log())
        .args(["--", "sh", "-c", "id -u; cat /proc/sys/net/ipv4/tcp_congestion_control; echo written > /sandbox/out; cat /etc/shadow; curl -sS -m 5 https://example.com"]);
    let out = c.output().expect("setpriv (util-linux) runs");
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert_eq!(stdout.lines().next(), Some("65534"), "{stdout}\n{stderr}");
    // The namespace's owner may set its congestion control too.
    assert!(
        matches!(stdout.lines().nth(1), Some("cubic" | "reno")),
        "{stdout}"
    );
    assert_eq!(
        std::fs::read_to_string(s.work().join("out"))
            .ok()
            .as_deref(),
        Some("written\n"),
        "{stderr}"
    );
    assert!(
        stderr.contains("/etc/shadow: Permission denied"),
        "{stderr}"
    );
    assert!(stderr.contains("403"), "the proxy decided: {stderr}");
    let events = read_events(&s.log());
    assert!(
        events.iter().any(|e| e["action"] == "deny"
            && e["host"] == "example.com"
            && e["binary"] == "/usr/bin/curl"),
        "{events:#?}"
    );
}
