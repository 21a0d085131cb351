//! Compute drivers: how a sandbox's supervisor is run. The process driver (the default) runs
//! `openshell-sandbox` on this machine, in its own session so it outlives a gateway restart.

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What a driver needs to start one sandbox.
#[derive(Debug, Clone)]
pub struct Launch {
    pub name: String,
    pub workdir: PathBuf,
    pub command: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// A started supervisor.
#[derive(Debug, Clone, Copy)]
pub struct Started {
    pub pid: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("cannot start the supervisor {bin}: {source}")]
    Spawn { bin: String, source: std::io::Error },
    #[error(
        "driver `{0}` is not available in this build (only `process` is); use --driver process"
    )]
    Unknown(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The driver seam the Docker and Kubernetes drivers will implement.
pub trait Driver: Send + Sync {
    fn name(&self) -> &'static str;
    fn start(&self, l: &Launch) -> Result<Started, DriverError>;
    /// Stops the supervisor (it stops the sandbox with it): asks, and once `deadline` has
    /// passed forces it. Returns whether it is gone.
    fn stop(&self, pid: u32, name: &str, deadline: Duration) -> bool;
    /// Whether the supervisor `pid` of sandbox `name` still runs (for re-attaching).
    fn alive(&self, pid: u32, name: &str) -> bool;
    /// The last lines the supervisor wrote, for failure reasons.
    fn last_output(&self, name: &str, lines: usize) -> String;
}

/// Runs `openshell-sandbox` locally.
pub struct ProcessDriver {
    pub supervisor: PathBuf,
    pub socket: PathBuf,
    pub output_dir: PathBuf,
    pub upstream_ca: Vec<PathBuf>,
    pub resolve: Vec<String>,
}

impl ProcessDriver {
    fn output(&self, name: &str) -> PathBuf {
        self.output_dir.join(format!("{name}.out"))
    }
}

impl Driver for ProcessDriver {
    fn name(&self) -> &'static str {
        "process"
    }

    fn start(&self, l: &Launch) -> Result<Started, DriverError> {
        std::fs::create_dir_all(&self.output_dir)?;
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.output(&l.name))?;
        let mut c = Command::new(&self.supervisor);
        c.arg("run")
            .arg("--name")
            .arg(&l.name)
            .arg("--workdir")
            .arg(&l.workdir);
        for ca in &self.upstream_ca {
            c.arg("--upstream-ca").arg(ca);
        }
        for r in &self.resolve {
            c.arg("--resolve").arg(r);
        }
        for (k, v) in &l.env {
            c.arg("--env").arg(format!("{k}={v}"));
        }
        c.arg("--");
        if l.command.is_empty() {
            // A sandbox without a command stays up for exec and connect.
            c.args(["sleep", "infinity"]);
        } else {
            c.args(&l.command);
        }
        c.env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
            )
            .env("OPENSHELL_SANDBOX_ID", &l.name)
            .env(
                "OPENSHELL_ENDPOINT",
                format!("unix://{}", self.socket.display()),
            )
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        // SAFETY: setsid in the child before exec, nothing else: the supervisor leaves the
        // gateway's session so a gateway restart (or Ctrl-C in its terminal) does not end it.
        unsafe {
            c.pre_exec(|| {
                nix::unistd::setsid().map_err(std::io::Error::from)?;
                Ok(())
            });
        }
        let child = c.spawn().map_err(|source| DriverError::Spawn {
            bin: self.supervisor.display().to_string(),
            source,
        })?;
        let pid = child.id();
        // Reap it when it ends so it never lingers as a zombie; the gateway watches the pid.
        std::thread::spawn(move || {
            let mut child = child;
            let _ = child.wait();
        });
        Ok(Started { pid })
    }

    fn stop(&self, pid: u32, name: &str, deadline: Duration) -> bool {
        use nix::sys::signal::{Signal, kill};
        let target = nix::unistd::Pid::from_raw(pid as i32);
        let gone_by = |until: Instant| {
            while self.alive(pid, name) {
                if Instant::now() >= until {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            true
        };
        let _ = kill(target, Signal::SIGTERM);
        if gone_by(Instant::now() + deadline) {
            return true;
        }
        // Stuck (stopped, wedged, or ignoring SIGTERM): a supervisor that outstays its
        // deadline is killed; its sandbox's PID 1 dies with it (PR_SET_PDEATHSIG).
        tracing::warn!("supervisor {pid} of {name} did not stop within {deadline:?}; killing it");
        let _ = kill(target, Signal::SIGKILL);
        gone_by(Instant::now() + Duration::from_secs(2))
    }

    fn alive(&self, pid: u32, name: &str) -> bool {
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            return false;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // A zombie has ended; a reused pid runs something else.
        let zombie = stat
            .rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z'));
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        !zombie
            && args
                .windows(2)
                .any(|w| w[0] == b"--name" && w[1] == name.as_bytes())
            && args.iter().any(|a| a.ends_with(b"openshell-sandbox"))
    }

    fn last_output(&self, name: &str, lines: usize) -> String {
        tail(&self.output(name), lines)
    }
}

/// The last `n` lines of a file (reads at most the last 64 KiB).
pub fn tail(path: &Path, n: usize) -> String {
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut s = String::new();
    let _ = f.read_to_string(&mut s);
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
