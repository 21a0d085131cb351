//! `openshell term` on a pseudo-terminal: what it drew (raw, and as a vt100 screen shows it),
//! and a way to type.

use crate::cli::Env;
use nix::pty::{Winsize, openpty};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ROWS: u16 = 30;
const COLS: u16 = 110;

pub struct Term {
    master: std::fs::File,
    pub child: Child,
    out: Arc<Mutex<Vec<u8>>>,
    /// The screen as a terminal would show it, fed the same bytes.
    screen: Arc<Mutex<vt100::Parser>>,
    seen: usize,
}

impl Term {
    /// Starts `BIN term` (`env!("CARGO_BIN_EXE_openshell")`) with `env`'s variables and no
    /// user themes or keymaps from the machine running the test.
    pub fn start(env: &Env, bin: impl AsRef<Path>) -> Term {
        let ws = Winsize {
            ws_row: ROWS,
            ws_col: COLS,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = openpty(Some(&ws), None).expect("openpty");
        let slave: OwnedFd = pty.slave;
        let mut cmd = env.command(bin.as_ref());
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
        let screen = Arc::new(Mutex::new(vt100::Parser::new(ROWS, COLS, 0)));
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

    /// From now on, `wait_for` only looks at what is drawn after this point.
    pub fn mark(&mut self) {
        self.seen = self.out.lock().expect("lock").len();
    }

    /// Waits until `text` is drawn since the last mark, escapes stripped. Only changed cells
    /// are redrawn, so `text` must be new on screen (and spaces may be skipped).
    pub fn wait_for(&mut self, text: &str) {
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
    pub fn contents(&self) -> String {
        self.screen.lock().expect("lock").screen().contents()
    }

    /// Waits until the screen shows `text` (as a terminal would display it now).
    pub fn wait_screen(&self, text: &str) -> String {
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

    /// Types `bytes` (marking first), then lets the app read them as one key sequence.
    pub fn keys(&mut self, bytes: &[u8]) {
        self.mark();
        self.master.write_all(bytes).expect("type");
        std::thread::sleep(Duration::from_millis(200));
    }

    /// Everything the app wrote so far.
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().expect("lock")).into_owned()
    }

    /// Waits for the app to exit, at most `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(start.elapsed() < timeout, "openshell term did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
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
