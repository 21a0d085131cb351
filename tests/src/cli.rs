//! Driving the real `openshell` CLI against a private gateway: each [`Env`] has its own state
//! directory and socket, so tests run in parallel without meeting, and its gateway and
//! sandboxes are stopped when it is dropped.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A private gateway: its own state dir and socket, stopped (with its sandboxes) on drop.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub vars: Vec<(String, String)>,
    bin: PathBuf,
}

impl Env {
    /// `bin` is the `openshell` binary (`env!("CARGO_BIN_EXE_openshell")`); `ca` and `resolve`
    /// become the gateway's `OPENSHELL_UPSTREAM_CA` and `OPENSHELL_RESOLVE`.
    pub fn new(bin: impl Into<PathBuf>, ca: Option<&Path>, resolve: Option<&str>) -> Env {
        crate::require_root();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut vars = vec![
            (
                "OPENSHELL_STATE_DIR".to_string(),
                dir.path().join("state").display().to_string(),
            ),
            (
                "OPENSHELL_GATEWAY_SOCKET".to_string(),
                dir.path().join("gw.sock").display().to_string(),
            ),
        ];
        if let Some(ca) = ca {
            vars.push(("OPENSHELL_UPSTREAM_CA".into(), ca.display().to_string()));
        }
        if let Some(r) = resolve {
            vars.push(("OPENSHELL_RESOLVE".into(), r.to_string()));
        }
        Env {
            dir,
            vars,
            bin: bin.into(),
        }
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("gw.sock")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// A command with this environment's variables (for `openshell-gateway` and the like).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(program);
        c.envs(self.vars.iter().map(|(k, v)| (k, v)));
        c
    }

    /// Runs `openshell ARGS` quietly.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(&self.bin)
            .args(args)
            .output()
            .expect("run openshell")
    }

    /// Runs `openshell ARGS` and shows what it said (in the test's output, on failure).
    pub fn cli(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        eprintln!(
            "$ openshell {}  [{}]\n{}{}",
            args.join(" "),
            out.status,
            truncate(&String::from_utf8_lossy(&out.stdout), 4000),
            truncate(&String::from_utf8_lossy(&out.stderr), 4000)
        );
        out
    }

    /// Stdout of a command that must succeed.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "openshell {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr),
            self.gateway_log_tail()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Stderr of a command that must fail.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            !out.status.success(),
            "openshell {} succeeded but should have failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// A command that must succeed and print one JSON value.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.ok(args);
        serde_json::from_str(out.trim())
            .unwrap_or_else(|e| panic!("openshell {}: not JSON ({e}): {out}", args.join(" ")))
    }

    /// `logs NAME --json`: one event per line.
    pub fn events(&self, sandbox: &str) -> Vec<serde_json::Value> {
        let out = self.run(&["logs", sandbox, "--json"]);
        assert!(
            out.status.success(),
            "openshell logs {sandbox} --json failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON event ({e}): {l}"))
            })
            .collect()
    }

    /// The running gateway's pid, from `gateway status --json` (None when none runs).
    pub fn gateway_pid(&self) -> Option<u32> {
        let v = self.json(&["gateway", "status", "--json"]);
        if v["running"] == true {
            v["pid"].as_u64().and_then(|p| u32::try_from(p).ok())
        } else {
            None
        }
    }

    /// Every live `openshell-gateway` process that serves this environment's socket (by its
    /// `--listen` or its environment), so a test can tell that exactly one runs.
    pub fn gateway_processes(&self) -> Vec<u32> {
        let socket = self.socket().display().to_string();
        let mut found = Vec::new();
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return found;
        };
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if !alive(pid) {
                continue;
            }
            let args = cmdline(pid);
            if !args
                .first()
                .is_some_and(|a| a.ends_with("openshell-gateway"))
            {
                continue;
            }
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            let in_env = environ
                .split(|b| *b == 0)
                .any(|kv| kv == format!("OPENSHELL_GATEWAY_SOCKET={socket}").as_bytes());
            let listen = format!("unix://{socket}");
            let in_args = args.contains(&listen);
            let other_listen = args
                .iter()
                .any(|a| a.starts_with("unix://") && *a != listen);
            if in_args || (in_env && !other_listen) {
                found.push(pid);
            }
        }
        found
    }

    /// The supervisor (`openshell-sandbox run --name NAME`) of this environment's sandbox
    /// `name` (started by its gateway: other suites may run sandboxes of the same name), not
    /// the sandbox's PID 1 that it forked (which shares its command line).
    pub fn supervisor_pid(&self, name: &str) -> Option<u32> {
        let endpoint = format!("OPENSHELL_ENDPOINT=unix://{}", self.socket().display());
        let is_supervisor = |pid: u32| {
            let args = cmdline(pid);
            args.first()
                .is_some_and(|a| a.ends_with("openshell-sandbox"))
                && args.windows(2).any(|w| w[0] == "--name" && w[1] == name)
                && std::fs::read(format!("/proc/{pid}/environ"))
                    .unwrap_or_default()
                    .split(|b| *b == 0)
                    .any(|kv| kv == endpoint.as_bytes())
        };
        std::fs::read_dir("/proc")
            .ok()?
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()))
            .filter(|pid| alive(*pid) && is_supervisor(*pid))
            .find(|pid| !ppid(*pid).is_some_and(is_supervisor))
    }

    /// The last lines of the gateway's log, for failure messages.
    pub fn gateway_log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.state_dir().join("gateway.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        format!(
            "\n--- gateway.log (last lines) ---\n{}",
            lines[lines.len().saturating_sub(20)..].join("\n")
        )
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = self.run(&["sandbox", "delete", "--all"]);
        let _ = self.run(&["gateway", "stop"]);
        // A gateway that did not stop (or a second one a test started) must not outlive it.
        for pid in self.gateway_processes() {
            kill9(pid);
        }
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.len() <= n {
        s.to_string()
    } else {
        let mut end = n;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}... ({} bytes)\n", &s[..end], s.len())
    }
}

/// Whether `pid` runs (a zombie has ended).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// `kill -9 PID`.
pub fn kill9(pid: u32) {
    signal(pid, nix::sys::signal::Signal::SIGKILL);
}

/// Sends `sig` to `pid` (ignoring a process that is already gone).
pub fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    let pid = i32::try_from(pid).expect("pid");
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
}

fn cmdline(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

fn ppid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')')
        .next()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Polls `f` until it returns Some, or panics after `timeout` saying `what`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A sandbox command that runs `/sandbox/step-N.sh` when it appears, output to `out-N`.
pub const RUNNER: &str = r#"n=1
while true; do
  if [ -f /sandbox/step-$n.sh ]; then
    sh /sandbox/step-$n.sh > /sandbox/out-$n.tmp 2>&1; mv /sandbox/out-$n.tmp /sandbox/out-$n
    n=$((n+1))
  fi
  sleep 0.02
done"#;

/// A workdir holding [`RUNNER`] as `runner.sh`; returns its path.
pub fn runner_workdir(env: &Env, name: &str) -> PathBuf {
    let work = env.dir.path().join(name);
    std::fs::create_dir_all(&work).expect("workdir");
    std::fs::write(work.join("runner.sh"), RUNNER).expect("runner");
    work
}

/// Drops step `n` into the runner's workdir and returns its output once it has run.
pub fn step(work: &Path, n: u32, script: &str) -> String {
    std::fs::write(work.join(format!("step-{n}.sh")), script).expect("step");
    let out = work.join(format!("out-{n}"));
    wait_for(Duration::from_secs(30), &format!("step {n} to run"), || {
        out.exists()
            .then(|| std::fs::read_to_string(&out).expect("output"))
    })
}
