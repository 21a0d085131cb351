//! Running more commands in a live sandbox (`openshell sandbox exec`, upload, download).
//! The supervisor asks PID 1 over their socket; PID 1 forks the command with the same
//! confinement as the main one, on pipes the supervisor made, and reports its exit.

use super::fdpass;
use super::init::{self, InitSpec, Report};
use nix::sys::signalfd::SignalFd;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

#[derive(Debug, Serialize, Deserialize)]
struct Request {
    id: u64,
    argv: Vec<String>,
    env: Vec<(String, String)>,
    cwd: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Reply {
    id: u64,
    /// Exit status (128+signal when killed); None while starting.
    code: Option<i32>,
    error: Option<String>,
}

/// PID 1's loop after the command started: reaps children, runs exec requests, and returns
/// the main command's exit status.
pub fn serve(spec: &InitSpec, main: Pid, ctl: OwnedFd, sfd: SignalFd) -> i32 {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let mut running: HashMap<Pid, u64> = HashMap::new();
    let mut ctl_open = true;
    loop {
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        if ctl_open {
            fds.push(PollFd::new(ctl.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::Error::EINTR) => continue,
            Err(_) => return init::EXIT_SETUP,
        }
        let ctl_ready = fds
            .get(1)
            .and_then(|f| f.revents())
            .is_some_and(|r| !r.is_empty());
        drop(fds);
        // Drain the signalfd, then reap everything that ended.
        while let Ok(Some(_)) = sfd.read_signal() {}
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => {
                    if pid == main {
                        return code;
                    }
                    finish(&ctl, &mut running, pid, code);
                }
                Ok(WaitStatus::Signaled(pid, sig, _)) => {
                    if pid == main {
                        return 128 + sig as i32;
                    }
                    finish(&ctl, &mut running, pid, 128 + sig as i32);
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => {}
            }
        }
        if ctl_ready {
            match fdpass::recv_msg(&ctl) {
                Ok((payload, fds)) if !payload.is_empty() => {
                    start(spec, &ctl, &mut running, &payload, fds)
                }
                // The supervisor is gone; PDEATHSIG ends us soon.
                _ => ctl_open = false,
            }
        }
    }
}

fn reply(ctl: &OwnedFd, r: &Reply) {
    if let Ok(bytes) = serde_json::to_vec(r) {
        let _ = fdpass::send_msg(ctl, &bytes, &[]);
    }
}

fn finish(ctl: &OwnedFd, running: &mut HashMap<Pid, u64>, pid: Pid, code: i32) {
    if let Some(id) = running.remove(&pid) {
        reply(
            ctl,
            &Reply {
                id,
                code: Some(code),
                error: None,
            },
        );
    }
}

fn start(
    spec: &InitSpec,
    ctl: &OwnedFd,
    running: &mut HashMap<Pid, u64>,
    payload: &[u8],
    fds: Vec<OwnedFd>,
) {
    let req: Request = match serde_json::from_slice(payload) {
        Ok(r) => r,
        Err(e) => {
            reply(
                ctl,
                &Reply {
                    id: 0,
                    code: None,
                    error: Some(format!("bad exec request: {e}")),
                },
            );
            return;
        }
    };
    let fail = |error: String| {
        reply(
            ctl,
            &Reply {
                id: req.id,
                code: None,
                error: Some(error),
            },
        )
    };
    let Ok(stdio) = <[OwnedFd; 3]>::try_from(fds) else {
        fail("an exec request needs three descriptors".into());
        return;
    };
    let prepared = match init::prepare(spec, &mut Report::discard()) {
        Ok(p) => p,
        Err(e) => {
            fail(e);
            return;
        }
    };
    match init::spawn(
        spec,
        &req.argv,
        &req.env,
        req.cwd.as_deref().map(Path::new),
        prepared,
        Some(stdio),
    ) {
        Ok(pid) => {
            running.insert(pid, req.id);
        }
        Err(e) => fail(e),
    }
}

/// The supervisor's side: sends requests to PID 1 and routes its replies.
/// Execs waiting for their exit status, by request id.
type Waiting = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<i32, String>>>>>;

pub struct Execs {
    ctl: Arc<tokio::io::unix::AsyncFd<OwnedFd>>,
    next: std::sync::atomic::AtomicU64,
    waiting: Waiting,
}

/// A running exec: its standard streams and its exit.
pub struct Running {
    pub stdin: tokio::net::unix::pipe::Sender,
    pub stdout: tokio::net::unix::pipe::Receiver,
    pub stderr: tokio::net::unix::pipe::Receiver,
    pub exit: oneshot::Receiver<Result<i32, String>>,
}

impl Execs {
    /// Takes over the control socket; must be called inside the runtime.
    pub fn new(ctl: OwnedFd) -> std::io::Result<Arc<Execs>> {
        let flags = nix::fcntl::fcntl(ctl.as_fd(), nix::fcntl::FcntlArg::F_GETFL)?;
        let flags = nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK;
        nix::fcntl::fcntl(ctl.as_fd(), nix::fcntl::FcntlArg::F_SETFL(flags))?;
        let execs = Arc::new(Execs {
            // SAFETY: we own `ctl` and keep it open for as long as the AsyncFd exists.
            ctl: Arc::new(
                unsafe { tokio::io::unix::AsyncFd::register(ctl) }
                    .map_err(|e| std::io::Error::other(e.to_string()))?,
            ),
            next: std::sync::atomic::AtomicU64::new(1),
            waiting: Arc::default(),
        });
        let (ctl, waiting) = (execs.ctl.clone(), execs.waiting.clone());
        tokio::spawn(async move {
            loop {
                let Ok(mut guard) = ctl.readable().await else {
                    return;
                };
                let got = guard.try_io(|fd| fdpass::recv_msg(fd.get_ref()));
                match got {
                    Ok(Ok((payload, _))) if !payload.is_empty() => {
                        if let Ok(r) = serde_json::from_slice::<Reply>(&payload) {
                            let outcome = match (r.code, r.error) {
                                (Some(c), _) => Ok(c),
                                (None, Some(e)) => Err(e),
                                (None, None) => continue,
                            };
                            if let Some(tx) = waiting.lock().ok().and_then(|mut w| w.remove(&r.id))
                            {
                                let _ = tx.send(outcome);
                            }
                        }
                    }
                    Ok(_) => return,
                    Err(_would_block) => continue,
                }
            }
        });
        Ok(execs)
    }

    /// Starts `argv` in the sandbox.
    pub fn exec(
        &self,
        argv: Vec<String>,
        env: Vec<(String, String)>,
        cwd: Option<String>,
    ) -> std::io::Result<Running> {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (in_r, in_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let (out_r, out_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let (tx, rx) = oneshot::channel();
        if let Ok(mut w) = self.waiting.lock() {
            w.insert(id, tx);
        }
        let payload =
            serde_json::to_vec(&Request { id, argv, env, cwd }).map_err(std::io::Error::other)?;
        fdpass::send_msg(
            self.ctl.get_ref(),
            &payload,
            &[in_r.as_raw_fd(), out_w.as_raw_fd(), err_w.as_raw_fd()],
        )?;
        // Our copies of the child's ends go: EOF on its output then means it finished.
        drop((in_r, out_w, err_w));
        Ok(Running {
            stdin: tokio::net::unix::pipe::Sender::from_owned_fd(in_w)?,
            stdout: tokio::net::unix::pipe::Receiver::from_owned_fd(out_r)?,
            stderr: tokio::net::unix::pipe::Receiver::from_owned_fd(err_r)?,
            exit: rx,
        })
    }
}
