//! `openshell term`'s sandboxes table follows the gateway's `WatchSandboxes` stream: sandboxes
//! created and deleted behind its back appear and go without a key press; a stopped gateway
//! shows the banner, and a restarted one is picked up again. Driven through a pseudo-terminal
//! against a private gateway.

use nix::pty::{Winsize, openpty};
use openshell_e2e::cli::Env;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `openshell term` on a pseudo-terminal: what it drew, and a way to type.
struct Term {
    master: std::fs::File,
    child: Child,
    out: Arc<Mutex<Vec<u8>>>,
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
        let mut cmd = env.command(env!("CARGO_BIN_EXE_openshell"));
        cmd.arg("term")
            .env("XDG_CONFIG_HOME", env.dir.path().join("config"))
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
        let sink = out.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().expect("lock").extend_from_slice(&buf[..n]);
            }
        });
        Term {
            master,
            child,
            out,
            seen: 0,
        }
    }

    /// From now on, `wait_for` only looks at what is drawn after this point.
    fn mark(&mut self) {
        self.seen = self.out.lock().expect("lock").len();
    }

    /// Waits until `text` is drawn since the last mark, escapes stripped. Only changed cells
    /// are redrawn, so `text` must be new on screen (a count going from 1 to 2 draws `2`).
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

    fn keys(&mut self, bytes: &[u8]) {
        self.mark();
        self.master.write_all(bytes).expect("type");
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

#[test]
fn table_follows_the_stream_and_survives_a_gateway_restart() {
    openshell_e2e::require_root();
    let env = Env::new(env!("CARGO_BIN_EXE_openshell"), None, None);
    let created = env.cli(&["sandbox", "create", "--name", "alpha"]);
    assert!(created.status.success(), "{created:?}");

    let mut t = Term::start(&env);
    t.wait_for("healthy");
    t.wait_for("alpha");

    // Created and deleted behind the app's back: the table follows with no key pressed.
    t.mark();
    let created = env.cli(&["sandbox", "create", "--name", "beta"]);
    assert!(created.status.success(), "{created:?}");
    t.wait_for("beta");
    t.mark();
    let deleted = env.cli(&["sandbox", "delete", "alpha"]);
    assert!(deleted.status.success(), "{deleted:?}");
    // Only changed cells are redrawn: beta moving up into alpha's row is what shows.
    t.wait_for("beta");

    // The gateway goes away: the banner says so; a new one starts: the app reconnects. (Killed
    // rather than stopped: a stopped gateway lingers, holding its lock, while supervisors stay
    // connected, so a new one could not start at once.)
    t.mark();
    let pid = env.gateway_pid().expect("the gateway's pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the gateway");
    t.wait_for("gateway lost");
    t.mark();
    let started = env.cli(&["gateway", "start"]);
    assert!(started.status.success(), "{started:?}");
    t.wait_for("healthy");
    // And the stream again: a sandbox created now shows up.
    t.mark();
    let created = env.cli(&["sandbox", "create", "--name", "gamma"]);
    assert!(created.status.success(), "{created:?}");
    t.wait_for("gamma");

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
    let raw = String::from_utf8_lossy(&t.out.lock().expect("lock")).to_string();
    assert!(raw.contains("\x1b[?1000h"), "the mouse was captured");
    assert!(raw.contains("\x1b[?1000l"), "the mouse was released");
    assert!(
        raw.contains("\x1b[?1049l"),
        "the terminal left the alternate screen"
    );
}
