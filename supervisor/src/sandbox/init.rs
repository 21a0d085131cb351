//! The sandbox's PID 1: waits for the supervisor's go, builds the root, runs the boot hook and
//! then the command as the sandbox user, confined; reaps orphans; exits with the command's
//! status. Runs single-threaded in the child of [`super::spawn::clone_into_namespaces`].

use super::mounts::{self, RootPlan};
use crate::confine;
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, kill, sigaction};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork};
use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};

/// Exit status when the sandbox could not be set up (as `env` and container runtimes do).
pub const EXIT_SETUP: i32 = 125;
/// The command exists but could not be executed.
pub const EXIT_CANNOT_EXEC: i32 = 126;
/// The command was not found.
pub const EXIT_NOT_FOUND: i32 = 127;

/// Processes the sandbox user may have at once (RLIMIT_NPROC).
pub const PROCESS_LIMIT: u64 = 4096;
/// Open files per process inside the sandbox (RLIMIT_NOFILE).
pub const FILE_LIMIT: u64 = 4096;

/// Everything PID 1 needs, prepared by the supervisor before the clone.
#[derive(Debug, Clone)]
pub struct InitSpec {
    pub hostname: String,
    pub root: RootPlan,
    /// The complete environment of the boot hook and the command.
    pub env: Vec<(String, String)>,
    pub command: Vec<String>,
    pub cwd: PathBuf,
    pub uid: u32,
    pub gid: u32,
    pub fs_rules: confine::landlock::FsRules,
    pub compat: confine::landlock::Compat,
    pub boot_hook: PathBuf,
    /// The supervisor runs unprivileged (the sandbox has its own user namespace).
    pub unprivileged: bool,
}

/// Messages PID 1 sends the supervisor, one per line: `W text` (a warning) or `E text`
/// (setup failed).
pub(super) struct Report(Option<std::fs::File>);

impl Report {
    /// A report nobody reads.
    pub(super) fn discard() -> Report {
        Report(None)
    }

    fn warn(&mut self, msg: &str) {
        if let Some(f) = self.0.as_mut() {
            let _ = writeln!(f, "W {}", msg.replace('\n', " "));
        }
    }
    fn error(&mut self, msg: &str) {
        if let Some(f) = self.0.as_mut() {
            let _ = writeln!(f, "E {}", msg.replace('\n', " "));
        }
    }
    /// The command was executed: the sandbox is running.
    fn started(&mut self) {
        if let Some(f) = self.0.as_mut() {
            let _ = writeln!(f, "{STARTED}");
        }
    }
}

/// The report line that says the command was executed.
pub const STARTED: &str = "S";

static CHILD: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int) {
    let pid = CHILD.load(Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// Makes the sandbox's network from inside it: loopback up, the tun that catches direct
/// connections, the proxy's listening socket and a sock_diag socket, handed to the supervisor.
fn network(net: &OwnedFd, unprivileged: bool, report: &mut Report) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    let tun = match crate::net::setup_sandbox_network() {
        Ok(t) => Some(t),
        Err(e) if unprivileged => {
            crate::net::ifconfig::loopback_only().map_err(|e| e.to_string())?;
            report.warn(&format!(
                "direct connections are refused but not logged: {e} (an unprivileged sandbox needs /dev/net/tun to be usable by its user, mode 0666 on most systems)"
            ));
            None
        }
        Err(e) => return Err(e.to_string()),
    };
    // Before the listener: sockets take the namespace's default when they are made.
    if let Err(e) = crate::net::congestion::unpaced_loopback() {
        report.warn(&format!(
            "the sandbox keeps the host's TCP congestion control, so a pacing one (bbr) slows traffic to the proxy: cannot set it: {e}"
        ));
    }
    let listener = std::net::TcpListener::bind(super::env::PROXY_ADDR).map_err(|e| {
        format!(
            "cannot listen on {} inside the sandbox: {e}",
            super::env::PROXY_ADDR
        )
    })?;
    let diag = crate::proxy::owner::sock_diag_socket()
        .map_err(|e| format!("cannot open a sock_diag socket: {e}"))?;
    let mut fds = vec![listener.as_raw_fd(), diag.as_raw_fd()];
    fds.extend(tun.as_ref().map(|t| t.as_raw_fd()));
    super::fdpass::send(net, &fds)
        .map_err(|e| format!("cannot hand the network to the supervisor: {e}"))
}

/// Runs PID 1 to completion and returns its exit status.
pub fn run(spec: &InitSpec, go: OwnedFd, report: OwnedFd, net: OwnedFd) -> i32 {
    let mut report = Report(Some(std::fs::File::from(report)));
    // If the supervisor dies, the sandbox dies with it (PID 1's death ends the namespace):
    // nothing may run unsupervised, without its proxy.
    // SAFETY: prctl with integer arguments.
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
    }
    // The supervisor sends one byte once our ids are mapped; EOF means it died (also before
    // the prctl above took effect).
    let mut byte = [0u8; 1];
    if !matches!(std::fs::File::from(go).read(&mut byte), Ok(1)) {
        return EXIT_SETUP;
    }
    if let Err(e) = network(&net, spec.unprivileged, &mut report) {
        super::fdpass::send_error(&net, &e);
        return EXIT_SETUP;
    }
    // From here the same socket carries exec requests from the supervisor.
    let ctl = net;
    match setup(spec, &mut report) {
        Ok(()) => {}
        Err(e) => {
            report.error(&e);
            return EXIT_SETUP;
        }
    }
    for sig in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
    ] {
        let action = SigAction::new(
            SigHandler::Handler(forward),
            SaFlags::SA_RESTART,
            SigSet::empty(),
        );
        // SAFETY: `forward` only calls kill, which is async-signal-safe.
        let _ = unsafe { sigaction(sig, &action) };
    }

    // The command's confinement is prepared first so its warnings (skipped Landlock paths)
    // reach the supervisor once; the boot hook gets the same confinement, silently.
    let prepared = match prepare(spec, &mut report) {
        Ok(p) => p,
        Err(e) => {
            report.error(&e);
            return EXIT_SETUP;
        }
    };
    if spec.boot_hook.exists() {
        let hook = vec!["/bin/sh".to_string(), spec.boot_hook.display().to_string()];
        let outcome =
            prepare(spec, &mut Report::discard()).and_then(|p| spawn_and_wait(spec, &hook, p));
        match outcome {
            Ok(0) => {}
            Ok(code) => {
                report.error(&format!(
                    "the boot hook {} failed with exit status {code}; the command was not started",
                    spec.boot_hook.display()
                ));
                return EXIT_SETUP;
            }
            Err(e) => {
                report.error(&e);
                return EXIT_SETUP;
            }
        }
    }
    // SIGCHLD arrives through a signalfd so one poll waits for children and exec requests.
    let mut chld = SigSet::empty();
    chld.add(Signal::SIGCHLD);
    if chld.thread_block().is_err() {
        return EXIT_SETUP;
    }
    let Ok(sfd) = nix::sys::signalfd::SignalFd::with_flags(
        &chld,
        nix::sys::signalfd::SfdFlags::SFD_CLOEXEC | nix::sys::signalfd::SfdFlags::SFD_NONBLOCK,
    ) else {
        return EXIT_SETUP;
    };
    let main = match spawn_main(spec, prepared) {
        Ok(pid) => pid,
        Err(MainFailed { pid, message }) => {
            report.error(&format!("the command could not start: {message}"));
            drop(report);
            return pid.map_or(EXIT_SETUP, reap_until);
        }
    };
    CHILD.store(main.as_raw(), Ordering::Relaxed);
    // Only now is the sandbox ready: its command runs (a `ready` before the exec would hide
    // a command that cannot start).
    report.started();
    drop(report);
    super::exec::serve(spec, main, ctl, sfd)
}

fn setup(spec: &InitSpec, report: &mut Report) -> Result<(), String> {
    nix::unistd::sethostname(&spec.hostname)
        .map_err(|e| format!("cannot set the hostname: {e}"))?;
    let skipped = mounts::build(&spec.root)
        .map_err(|e| format!("cannot build the sandbox filesystem: {e}"))?;
    for p in skipped {
        report.warn(&format!(
            "filesystem: skipping {}: it does not exist on this host",
            p.display()
        ));
    }
    Ok(())
}

pub(super) fn prepare(spec: &InitSpec, report: &mut Report) -> Result<confine::Prepared, String> {
    let (prepared, warnings) =
        confine::prepare(Some(&spec.fs_rules), spec.compat, spec.uid, spec.gid)
            .map_err(|e| e.to_string())?;
    for w in warnings {
        report.warn(&w);
    }
    Ok(prepared)
}

/// Forks the confined child, execs `argv`, and reaps until it exits.
fn spawn_and_wait(
    spec: &InitSpec,
    argv: &[String],
    prepared: confine::Prepared,
) -> Result<i32, String> {
    let child = spawn(spec, argv, &[], None, prepared, None)?;
    CHILD.store(child.as_raw(), Ordering::Relaxed);
    Ok(reap_until(child))
}

/// Why the main command did not start: the child (when one was forked, to reap) and what it
/// said.
struct MainFailed {
    pid: Option<Pid>,
    message: String,
}

/// Forks the main command and waits until it was executed (its status pipe closes on exec) or
/// could not be (the child writes why before it exits).
fn spawn_main(spec: &InitSpec, prepared: confine::Prepared) -> Result<Pid, MainFailed> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| MainFailed {
        pid: None,
        message: format!("cannot create a pipe: {e}"),
    })?;
    let pid = fork_exec(spec, &spec.command, &[], None, prepared, None, Some(w))
        .map_err(|message| MainFailed { pid: None, message })?;
    let mut said = String::new();
    let _ = std::fs::File::from(r).read_to_string(&mut said);
    if said.is_empty() {
        Ok(pid)
    } else {
        Err(MainFailed {
            pid: Some(pid),
            message: said,
        })
    }
}

/// Forks a confined child running `argv` with the sandbox's environment plus `extra_env`,
/// in `cwd` (default: the workdir), on `stdio` (default: PID 1's own).
pub(super) fn spawn(
    spec: &InitSpec,
    argv: &[String],
    extra_env: &[(String, String)],
    cwd: Option<&Path>,
    prepared: confine::Prepared,
    stdio: Option<[OwnedFd; 3]>,
) -> Result<Pid, String> {
    fork_exec(spec, argv, extra_env, cwd, prepared, stdio, None)
}

/// `spawn`, and when `status` is given the child writes there why it could not exec (the
/// pipe is close-on-exec: it closes empty when the exec succeeds).
fn fork_exec(
    spec: &InitSpec,
    argv: &[String],
    extra_env: &[(String, String)],
    cwd: Option<&Path>,
    prepared: confine::Prepared,
    stdio: Option<[OwnedFd; 3]>,
    status: Option<OwnedFd>,
) -> Result<Pid, String> {
    let Some(first) = argv.first() else {
        return Err("no command given".into());
    };
    let mut env_list = spec.env.clone();
    for (k, v) in extra_env {
        env_list.retain(|(key, _)| key != k);
        env_list.push((k.clone(), v.clone()));
    }
    let program = resolve(first, &env_list).ok_or_else(|| format!("{first}: command not found"));
    let args: Vec<CString> = argv
        .iter()
        .filter_map(|a| CString::new(a.as_bytes()).ok())
        .collect();
    let env: Vec<CString> = env_list
        .iter()
        .filter_map(|(k, v)| CString::new(format!("{k}={v}")).ok())
        .collect();
    let cwd = cwd.unwrap_or(&spec.cwd).to_path_buf();
    // SAFETY: PID 1 is single-threaded; the child only confines itself and execs.
    match unsafe { fork() }.map_err(|e| format!("cannot fork: {e}"))? {
        ForkResult::Child => {
            if let Some(fds) = &stdio {
                use std::os::fd::AsRawFd;
                for (i, fd) in fds.iter().enumerate() {
                    // SAFETY: dup2 onto 0, 1, 2 of descriptors we hold.
                    unsafe {
                        libc::dup2(fd.as_raw_fd(), i as libc::c_int);
                    }
                }
            }
            // PID 1 blocks SIGCHLD for its signalfd; the command starts with nothing blocked.
            let _ = SigSet::empty().thread_set_mask();
            let code = exec_child(&cwd, program, &args, &env, prepared, status.as_ref());
            // SAFETY: _exit is always safe; no destructors must run in the forked child.
            unsafe { libc::_exit(code) }
        }
        // Our copy of the status pipe's write end closes here, so the reader sees EOF.
        ForkResult::Parent { child } => Ok(child),
    }
}

/// Says why the command cannot run (on its stderr, and on the status pipe when there is one)
/// and returns the exit status for it.
fn cannot(status: Option<&OwnedFd>, code: i32, msg: &str) -> i32 {
    eprintln!("openshell-sandbox: {msg}");
    if let Some(fd) = status {
        let _ = nix::unistd::write(fd, msg.as_bytes());
    }
    code
}

fn exec_child(
    cwd: &Path,
    program: Result<PathBuf, String>,
    args: &[CString],
    env: &[CString],
    prepared: confine::Prepared,
    status: Option<&OwnedFd>,
) -> i32 {
    let program = match program {
        Ok(p) => p,
        Err(e) => return cannot(status, EXIT_NOT_FOUND, &e),
    };
    let _ = std::env::set_current_dir(cwd);
    // A fork bomb or an fd flood inside stays inside: the host's process table and the
    // proxy's descriptors are shared with everyone else.
    for (res, limit) in [
        (nix::sys::resource::Resource::RLIMIT_NPROC, PROCESS_LIMIT),
        (nix::sys::resource::Resource::RLIMIT_NOFILE, FILE_LIMIT),
    ] {
        if let Err(e) = nix::sys::resource::setrlimit(res, limit, limit) {
            return cannot(status, EXIT_SETUP, &format!("cannot set {res:?}: {e}"));
        }
    }
    if let Err(e) = prepared.enter() {
        return cannot(
            status,
            EXIT_SETUP,
            &format!("cannot confine the command: {e}"),
        );
    }
    let Ok(path) = CString::new(program.as_os_str().as_encoded_bytes()) else {
        return cannot(
            status,
            EXIT_NOT_FOUND,
            &format!("{}: the path contains a NUL byte", program.display()),
        );
    };
    let err = nix::unistd::execve(&path, args, env).err();
    let code = match err {
        Some(nix::Error::ENOENT) => EXIT_NOT_FOUND,
        _ => EXIT_CANNOT_EXEC,
    };
    cannot(
        status,
        code,
        &format!(
            "cannot run {}: {}",
            program.display(),
            err.map(|e| e.desc()).unwrap_or("unknown error")
        ),
    )
}

/// Reaps every child (orphans re-parent to PID 1) until `main` exits; its status is ours.
fn reap_until(main: Pid) -> i32 {
    loop {
        match waitpid(Pid::from_raw(-1), None) {
            Ok(WaitStatus::Exited(pid, code)) if pid == main => return code,
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == main => return 128 + sig as i32,
            Ok(_) => {}
            Err(nix::Error::EINTR) => {}
            Err(_) => return EXIT_SETUP,
        }
    }
}

/// Finds `cmd` on the sandbox's `PATH` (from the environment we built, not ours).
fn resolve(cmd: &str, env: &[(String, String)]) -> Option<PathBuf> {
    if cmd.contains('/') {
        return Some(PathBuf::from(cmd));
    }
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str())
        .unwrap_or("/usr/bin:/bin");
    path.split(':').map(|d| Path::new(d).join(cmd)).find(|p| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// Kills the whole sandbox from outside: PID 1's death takes every process with it.
pub fn kill_sandbox(init: Pid) {
    let _ = kill(init, Signal::SIGKILL);
}
