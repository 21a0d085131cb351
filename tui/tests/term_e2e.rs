//! `openshell term` against a real gateway and a real sandbox, driven through a
//! pseudo-terminal: the sandbox is blocked, the denial shows in the denials tab, `a` previews
//! the rule, `Enter` applies it and the status line reports the enforced revision, and the
//! request now passes; and the policy editor: a typo is marked on its line, fixed, applied and
//! enforced; and a sandbox created from the form and deleted with `d`. Offline: api.github.com is a local stand-in in a network namespace.

use nix::pty::{Winsize, openpty};
use openshell_e2e::netns::NetNs;
use openshell_e2e::standin::{StandIn, ZEN};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A private gateway: its own state dir and socket, stopped on drop.
struct Env {
    dir: tempfile::TempDir,
    vars: Vec<(String, String)>,
}

impl Env {
    fn new(ca: &Path, resolve: &str) -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let vars = vec![
            (
                "OPENSHELL_STATE_DIR".into(),
                dir.path().join("state").display().to_string(),
            ),
            (
                "OPENSHELL_GATEWAY_SOCKET".into(),
                dir.path().join("gw.sock").display().to_string(),
            ),
            ("OPENSHELL_UPSTREAM_CA".into(), ca.display().to_string()),
            ("OPENSHELL_RESOLVE".into(), resolve.to_string()),
            // No user themes or keymaps from the machine running the test.
            (
                "XDG_CONFIG_HOME".into(),
                dir.path().join("config").display().to_string(),
            ),
        ];
        Env { dir, vars }
    }

    fn cli(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_openshell"))
            .args(args)
            .envs(self.vars.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("run openshell")
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = self.cli(&["sandbox", "delete", "--all"]);
        let _ = self.cli(&["gateway", "stop"]);
    }
}

/// `openshell term` on a pseudo-terminal: what it drew so far, and a way to type.
struct Term {
    master: std::fs::File,
    child: std::process::Child,
    out: Arc<Mutex<Vec<u8>>>,
    /// The screen as a terminal would show it, fed the same bytes.
    screen: Arc<Mutex<vt100::Parser>>,
    seen: usize,
}

impl Term {
    fn start(env: &Env) -> Term {
        let ws = Winsize {
            ws_row: 30,
            ws_col: 110,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = openpty(Some(&ws), None).expect("openpty");
        let slave: OwnedFd = pty.slave;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_openshell"));
        cmd.arg("term")
            .envs(env.vars.iter().map(|(k, v)| (k, v)))
            .env("TERM", "xterm-256color")
            .stdin(Stdio::from(slave.try_clone().expect("dup")))
            .stdout(Stdio::from(slave.try_clone().expect("dup")))
            .stderr(Stdio::from(slave));
        // SAFETY: only async-signal-safe calls between fork and exec: a new session with the
        // pty as its controlling terminal.
        unsafe {
            cmd.pre_exec(|| {
                nix::unistd::setsid().map_err(std::io::Error::from)?;
                if libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn openshell term");
        let master = std::fs::File::from(pty.master);
        let mut reader = master.try_clone().expect("dup master");
        let out = Arc::new(Mutex::new(Vec::new()));
        let screen = Arc::new(Mutex::new(vt100::Parser::new(ws.ws_row, ws.ws_col, 0)));
        let (sink, vt) = (out.clone(), screen.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().expect("lock").extend_from_slice(&buf[..n]);
                vt.lock().expect("lock").process(&buf[..n]);
            }
        });
        Term {
            master,
            child,
            out,
            screen,
            seen: 0,
        }
    }

    /// Waits until `text` is drawn since the last key press, escapes stripped. Only changed
    /// cells are redrawn, so `text` must be new on screen (and spaces may be skipped).
    fn wait_for(&mut self, text: &str) {
        let start = Instant::now();
        loop {
            let raw = self.out.lock().expect("lock")[self.seen..].to_vec();
            let plain = strip_ansi(&String::from_utf8_lossy(&raw));
            if plain.contains(text) {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the screen never showed {text:?}; last output:\n{plain}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The screen's text now, row by row.
    fn contents(&self) -> String {
        self.screen.lock().expect("lock").screen().contents()
    }

    /// Waits until the screen shows `text` (as a terminal would display it now).
    fn wait_screen(&self, text: &str) -> String {
        let start = Instant::now();
        loop {
            let now = self.contents();
            if now.contains(text) {
                return now;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the screen never showed {text:?}; it shows:\n{now}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn keys(&mut self, bytes: &[u8]) {
        self.seen = self.out.lock().expect("lock").len();
        self.master.write_all(bytes).expect("type");
        // Let the app read one key sequence at a time.
        std::thread::sleep(Duration::from_millis(200));
    }
}

impl Drop for Term {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// The sandbox's command: runs `/sandbox/step-N.sh` when it appears, output to `out-N`.
const RUNNER: &str = r#"n=1
while true; do
  if [ -f /sandbox/step-$n.sh ]; then
    sh /sandbox/step-$n.sh > /sandbox/out-$n.tmp 2>&1; mv /sandbox/out-$n.tmp /sandbox/out-$n
    n=$((n+1))
  fi
  sleep 0.02
done"#;

fn step(work: &Path, n: u32, script: &str) -> String {
    std::fs::write(work.join(format!("step-{n}.sh")), script).expect("step");
    let out = work.join(format!("out-{n}"));
    let start = Instant::now();
    while !out.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "step {n} did not run"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    std::fs::read_to_string(out).expect("output")
}

#[test]
fn allow_a_denial_with_one_key() {
    openshell_e2e::require_root();
    let ns = NetNs::create();
    let gh = StandIn::https(&ns, &["api.github.com"], 443);
    let env = Env::new(
        gh.ca_file.as_ref().expect("ca"),
        &format!("api.github.com={}", ns.addr),
    );
    let work = env.dir.path().join("work");
    std::fs::create_dir(&work).expect("workdir");
    std::fs::write(work.join("runner.sh"), RUNNER).expect("runner");
    let created = env.cli(&[
        "sandbox",
        "create",
        "--name",
        "demo",
        "--workdir",
        work.to_str().expect("utf-8"),
        "--",
        "sh",
        "/sandbox/runner.sh",
    ]);
    assert!(created.status.success(), "{created:?}");
    let out = step(&work, 1, "curl -sS https://api.github.com/zen");
    assert!(out.contains("403"), "blocked at CONNECT: {out}");

    let mut t = Term::start(&env);
    t.wait_for("healthy");
    t.wait_for("demo");
    t.keys(b"\r"); // open
    t.wait_for("demo › overview");
    t.keys(b"l"); // the log stream: the deny is there
    t.wait_screen("DENY");
    t.wait_screen("api.github.com:443");
    t.keys(b"a"); // on the deny line: the rule, as a diff against the active policy
    let screen = t.wait_screen("allow denial");
    assert!(screen.contains("e edit first"), "{screen}");
    let screen = t.wait_screen("+  ");
    assert!(
        screen.contains("api.github.com"),
        "the diff adds the host:\n{screen}"
    );
    assert!(
        screen.contains("--- revision 1"),
        "a diff against revision 1:\n{screen}"
    );
    t.keys(b"\r"); // apply, wait for the supervisor
    t.wait_for("allowed;");
    t.wait_for("enforced");
    let out = step(&work, 2, "curl -sS https://api.github.com/zen");
    assert_eq!(out.trim(), ZEN, "the approved request passes");

    t.keys(b"\x1b"); // back home
    t.wait_for("(1)");
    t.keys(b"q");
    let start = Instant::now();
    loop {
        if let Some(status) = t.child.try_wait().expect("wait") {
            assert!(status.success(), "openshell term exited with {status}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "q did not quit");
        std::thread::sleep(Duration::from_millis(20));
    }
    let raw = t.out.lock().expect("lock").clone();
    assert!(
        String::from_utf8_lossy(&raw).contains("\x1b[?1049l"),
        "the terminal left the alternate screen"
    );
}

#[test]
fn edit_the_policy_typo_fix_apply() {
    openshell_e2e::require_root();
    let ns = NetNs::create();
    let gh = StandIn::https(&ns, &["api.github.com"], 443);
    let env = Env::new(
        gh.ca_file.as_ref().expect("ca"),
        &format!("api.github.com={}", ns.addr),
    );
    let work = env.dir.path().join("work");
    std::fs::create_dir(&work).expect("workdir");
    std::fs::write(work.join("runner.sh"), RUNNER).expect("runner");
    let created = env.cli(&[
        "sandbox",
        "create",
        "--name",
        "ed",
        "--workdir",
        work.to_str().expect("utf-8"),
        "--",
        "sh",
        "/sandbox/runner.sh",
    ]);
    assert!(created.status.success(), "{created:?}");
    let out = step(&work, 1, "curl -sS https://api.github.com/zen");
    assert!(out.contains("403"), "blocked at CONNECT: {out}");
    // The buffer is the active revision's text: the new entry goes after its last line.
    let active = env.cli(&["policy", "get", "ed"]);
    assert!(active.status.success(), "{active:?}");
    let lines = String::from_utf8_lossy(&active.stdout).lines().count();
    assert!(
        String::from_utf8_lossy(&active.stdout)
            .lines()
            .rev()
            .find(|l| !l.starts_with(' ') && !l.starts_with('#') && !l.is_empty())
            .is_some_and(|l| l.starts_with("network_policies:")),
        "the baseline ends with its network policies"
    );

    let mut t = Term::start(&env);
    t.wait_screen("healthy");
    t.wait_screen("ed ");
    t.keys(b"\r");
    t.wait_screen("ed › overview");
    t.keys(b"p");
    t.wait_screen("revision 1 · view");
    t.keys(b"e");
    t.wait_screen("EDITING");
    t.keys(b"\x1b>"); // alt->: the last line
    t.keys(b"\x1b[F"); // end of it
    for line in [
        "  github:",
        "    endpoints:",
        "      - { host: api.github.com, port: 443x }",
        "    binaries:",
        "      - { path: /usr/bin/curl }",
    ] {
        t.keys(b"\r");
        t.keys(line.as_bytes());
    }
    // The typo is marked on its line (the third one typed), with the field and the reason.
    let typo_line = lines + 3;
    t.wait_screen(&format!(
        "{}         - {{ path: /usr/bin/curl }}",
        lines + 5
    ));
    let screen = t.wait_screen("1 error");
    let want = format!("line {typo_line}:");
    assert!(screen.contains(&want), "want {want:?} in:\n{screen}");
    assert!(screen.contains("endpoints[0].port"), "{screen}");
    assert!(screen.contains(&format!("{typo_line} ●")), "{screen}");
    // Apply refuses it and says where.
    t.keys(b"\x13"); // ctrl-s
    t.wait_screen(&format!("not applied: line {typo_line}"));
    // Fix: the cursor is on the error (the value); delete the `x` after `443`.
    t.keys(b"\x1b[C\x1b[C\x1b[C"); // right ×3
    t.keys(b"\x1b[3~"); // delete
    t.wait_screen("valid");
    t.keys(b"\x13"); // ctrl-s: apply and wait for the supervisor
    t.wait_screen("applied and enforced by the supervisor");
    let out = step(&work, 2, "curl -sS https://api.github.com/zen");
    assert_eq!(out.trim(), ZEN, "the edited policy is enforced");
    // A complete document is stored as written (layout and comments kept).
    let stored = env.cli(&["policy", "get", "ed"]);
    let stored = String::from_utf8_lossy(&stored.stdout).to_string();
    assert!(
        stored.contains("      - { host: api.github.com, port: 443 }\n"),
        "{stored}"
    );
    assert_eq!(stored.lines().count(), lines + 5, "{stored}");
    let history = env.cli(&["policy", "history", "ed"]);
    assert!(
        String::from_utf8_lossy(&history.stdout).contains("editor"),
        "{history:?}"
    );
    t.keys(b"\x1b"); // leave the editor
    t.keys(b"q"); // q does nothing in a sandbox view
    t.keys(b"\x1b"); // home
    t.keys(b"q");
    let start = Instant::now();
    while t.child.try_wait().expect("wait").is_none() {
        assert!(start.elapsed() < Duration::from_secs(5), "q did not quit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn create_and_delete_from_the_tui() {
    openshell_e2e::require_root();
    let ns = NetNs::create();
    let gh = StandIn::https(&ns, &["api.github.com"], 443);
    let env = Env::new(
        gh.ca_file.as_ref().expect("ca"),
        &format!("api.github.com={}", ns.addr),
    );
    let mut t = Term::start(&env);
    t.wait_screen("healthy");
    t.keys(b"c");
    t.wait_screen("create a sandbox");
    t.keys(b"formed");
    t.keys(b"\t"); // presets
    t.keys(b"\x1b[B"); // the second preset
    t.keys(b" ");
    t.keys(b"\t"); // command
    t.keys(b"sleep 300");
    t.keys(b"\r");
    t.wait_screen("sandbox formed created");
    let start = Instant::now();
    loop {
        let out = env.cli(&["sandbox", "get", "formed", "--json"]);
        let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if s["phase"] == "ready" {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the sandbox made in the form never became ready: {out:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The live table shows it; `d` asks, `enter` deletes.
    t.wait_screen("formed ");
    t.keys(b"d");
    t.wait_screen("Delete sandbox formed?");
    t.keys(b"\r");
    t.wait_screen("sandbox formed deleted");
    let list = env.cli(&["sandbox", "list"]);
    assert!(
        !String::from_utf8_lossy(&list.stdout).contains("formed"),
        "{list:?}"
    );
    t.keys(b"q");
}
