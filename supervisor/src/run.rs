//! Standalone mode: one sandboxed command with its policy from a file, events to a log, hot
//! reload on SIGHUP or when the file changes. Exit status is the command's.

use crate::control::{CommandState, Control, Reloader};
use crate::events::{self, Events};
use crate::net;
use crate::policy_state::{Active, Current};
use crate::proxy::{self, owner::OwnerLookup, tls, upstream::Pins};
use crate::sandbox::{env, fdpass, idmap, init, mounts::Injected, plan, spawn};
use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;
use openshell_proto::policy::{self, LandlockCompatibility, Policy, inherit_static};
use std::io::{BufRead, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;

/// What `openshell-sandbox run` was asked.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub workdir: PathBuf,
    pub name: String,
    pub env: Vec<(String, String)>,
    pub command: Vec<String>,
    pub upstream_ca: Vec<PathBuf>,
    pub pins: Pins,
    /// Runs before the command, inside the sandbox; must succeed.
    pub boot_hook: PathBuf,
    /// How long the proxy polls after its traffic stops before it sleeps (zero: never).
    pub busy_poll: std::time::Duration,
}

/// The policy a sandbox starts with: `text`, with the baseline's static sections where it has
/// none (a network-only policy still gets a confined filesystem and user).
pub fn starting_policy(text: &str, label: &str) -> Result<Policy> {
    let loaded = policy::load(text, label).map_err(|e| anyhow::anyhow!("{e}"))?;
    let base = openshell_proto::catalog::baseline();
    let mut p = inherit_static(&base, &loaded.policy);
    if p.landlock.is_none() {
        p.landlock.clone_from(&base.landlock);
    }
    if p.process.is_none() {
        p.process.clone_from(&base.process);
    }
    Ok(p)
}

/// Runs the sandbox to completion; returns the command's exit status.
pub fn run(cfg: RunConfig, mut control: Box<dyn Control>) -> Result<i32> {
    raise_fd_limit();
    let (policy_text, policy_label) = control.initial_policy()?;
    let policy = starting_policy(&policy_text, &policy_label)?;
    let active = Active::compile(1, policy.clone()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let workdir = std::fs::canonicalize(&cfg.workdir)
        .with_context(|| format!("the workdir {} does not exist", cfg.workdir.display()))?;

    let ca = Arc::new(tls::SandboxCa::generate(&cfg.name)?);
    let upstream_tls = tls::upstream_client_config(&cfg.upstream_ca)?;
    let identity =
        plan::identity(policy.process.as_ref(), &workdir).map_err(|e| anyhow::anyhow!(e))?;

    let mut files = identity.files.clone();
    files.push(Injected {
        target: PathBuf::from(env::CA_CERT),
        contents: ca.cert_pem().as_bytes().to_vec(),
        mode: 0o644,
    });
    files.push(Injected {
        target: PathBuf::from(env::CA_BUNDLE),
        contents: tls::sandbox_bundle(ca.cert_pem(), &cfg.upstream_ca).into_bytes(),
        mode: 0o644,
    });
    let fs_policy = policy.filesystem_policy.clone().unwrap_or_default();
    let owner = std::fs::metadata(&workdir)
        .map(|m| (m.uid(), m.gid()))
        .unwrap_or((0, 0));
    let unprivileged = !nix::unistd::geteuid().is_root();
    // Unprivileged, the user's own ids are the only ones we may map, and id-mapped mounts are
    // out of reach: the workdir is the user's, seen as the sandbox user's.
    let idmap = if owner.0 != identity.uid && !unprivileged {
        // SAFETY: still single-threaded: no runtime or helper thread exists yet.
        let fd = unsafe { idmap::mapping(owner.0, identity.uid, owner.1, identity.gid) }
            .context("cannot prepare the id-mapped workdir")?;
        Some(Arc::new(fd))
    } else {
        None
    };
    let (root, fs_rules) = plan::filesystem(&fs_policy, &workdir, idmap, files);
    let compat = match policy.landlock.as_ref().and_then(|l| l.compatibility) {
        Some(LandlockCompatibility::HardRequirement) => {
            crate::confine::landlock::Compat::HardRequirement
        }
        _ => crate::confine::landlock::Compat::BestEffort,
    };
    let command = if !cfg.command.is_empty() {
        cfg.command.clone()
    } else if let Ok(c) = std::env::var("OPENSHELL_SANDBOX_COMMAND")
        && !c.trim().is_empty()
    {
        vec!["/bin/sh".into(), "-c".into(), c]
    } else {
        vec!["/bin/bash".into()]
    };
    let environment = env::build(&env::EnvInputs {
        name: &cfg.name,
        user: &identity.user,
        home: plan::WORKDIR,
        term: std::env::var("TERM").ok(),
        lang: std::env::var("LANG").ok(),
        extra: &cfg.env,
    });
    let spec = init::InitSpec {
        hostname: cfg.name.clone(),
        root,
        env: environment,
        command,
        cwd: PathBuf::from(plan::WORKDIR),
        uid: identity.uid,
        gid: identity.gid,
        fs_rules,
        compat,
        boot_hook: cfg.boot_hook.clone(),
        unprivileged,
    };

    if spawn::thread_count() != 1 {
        bail!("internal error: the supervisor must be single-threaded when it creates the sandbox");
    }
    let (go_r, go_w) = pipe()?;
    let (rep_r, rep_w) = pipe()?;
    let (net_parent, net_child) = fdpass::pair().context("cannot create a socket pair")?;
    let extra = if unprivileged { libc::CLONE_NEWUSER } else { 0 };
    // SAFETY: single-threaded (checked above); the child only runs PID 1's code and exits.
    let forked = unsafe { spawn::clone_into_namespaces(extra) }
        .map_err(|e| namespace_error(e, unprivileged))?;
    let child = match forked {
        spawn::Forked::Child => {
            drop(go_w);
            drop(rep_r);
            drop(net_parent);
            let code = init::run(&spec, go_r, rep_w, net_child);
            // SAFETY: leave without running the parent's destructors or atexit handlers.
            unsafe { libc::_exit(code) }
        }
        spawn::Forked::Parent(pid) => pid,
    };
    drop(go_r);
    drop(rep_w);
    drop(net_child);
    if unprivileged && let Err(e) = map_ids(child, identity.uid, identity.gid) {
        init::kill_sandbox(child);
        let _ = waitpid(child, None);
        return Err(e);
    }
    let outcome = supervise(
        &cfg,
        child,
        go_w,
        rep_r,
        net_parent,
        active,
        ca,
        upstream_tls,
        control,
        &policy_label,
    );
    if outcome.is_err() {
        init::kill_sandbox(child);
        let _ = waitpid(child, None);
    }
    outcome
}

/// The proxy holds two descriptors per connection: use all the descriptors we may.
fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

/// Maps the sandbox user's ids onto ours, the only ids an unprivileged user may map.
fn map_ids(child: Pid, uid: u32, gid: u32) -> Result<()> {
    let (our_uid, our_gid) = (
        nix::unistd::getuid().as_raw(),
        nix::unistd::getgid().as_raw(),
    );
    std::fs::write(
        format!("/proc/{child}/uid_map"),
        format!("{uid} {our_uid} 1\n"),
    )
    .context("cannot write the sandbox's uid_map")?;
    std::fs::write(format!("/proc/{child}/setgroups"), "deny")
        .context("cannot deny setgroups in the sandbox")?;
    std::fs::write(
        format!("/proc/{child}/gid_map"),
        format!("{gid} {our_gid} 1\n"),
    )
    .context("cannot write the sandbox's gid_map")?;
    Ok(())
}

/// Why the namespaces could not be made, and what would allow them.
fn namespace_error(e: std::io::Error, unprivileged: bool) -> anyhow::Error {
    if !unprivileged {
        return anyhow::anyhow!("cannot create the sandbox's namespaces: {e}");
    }
    let mut why = format!(
        "cannot create the sandbox's namespaces as an unprivileged user: {e}. Unprivileged user namespaces are not allowed here"
    );
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .map(|s| s.trim().to_string())
    };
    if read("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        why.push_str(": enable them with `sysctl -w kernel.unprivileged_userns_clone=1`");
    } else if read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1")
    {
        why.push_str(
            ": AppArmor restricts them (kernel.apparmor_restrict_unprivileged_userns=1); add an AppArmor profile \
             allowing `userns` for openshell-sandbox, or set the sysctl to 0",
        );
    } else if read("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        why.push_str(": user.max_user_namespaces is 0; raise it with `sysctl -w user.max_user_namespaces=10000`");
    } else {
        why.push_str("; check kernel.unprivileged_userns_clone, user.max_user_namespaces and AppArmor, or run as root");
    }
    anyhow::anyhow!(why)
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("cannot create a pipe")
}

#[allow(clippy::too_many_arguments)]
fn supervise(
    cfg: &RunConfig,
    child: Pid,
    go: OwnedFd,
    report: OwnedFd,
    net: OwnedFd,
    active: Active,
    ca: Arc<tls::SandboxCa>,
    upstream_tls: Arc<rustls::ClientConfig>,
    mut control: Box<dyn Control>,
    policy_label: &str,
) -> Result<i32> {
    // Let PID 1 start: it makes the network inside the sandbox and hands it back.
    std::fs::File::from(go)
        .write_all(b"g")
        .context("the sandbox exited before it started")?;
    let mut fds = match fdpass::recv(&net, 2) {
        Ok(fds) => fds.into_iter(),
        Err(e) => {
            let mut why = e;
            for line in std::io::BufReader::new(std::fs::File::from(report))
                .lines()
                .map_while(Result::ok)
            {
                if let Some(msg) = line.strip_prefix("E ") {
                    why = msg.to_string();
                }
            }
            bail!("the sandbox could not start: {why}");
        }
    };
    let (Some(listener), Some(diag)) = (fds.next(), fds.next()) else {
        bail!("the sandbox handed back an incomplete network");
    };
    let tun = fds.next();
    let listener = std::net::TcpListener::from(listener);
    listener.set_nonblocking(true)?;

    // One thread serves the proxy: no cross-thread wake-ups per request, and a sandbox's
    // traffic never needs more than a core (bulk tunnels splice in the kernel).
    let poller = proxy::busy_poll::BusyPoll::new(cfg.busy_poll);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_unpark(poller.on_unpark())
        .build()
        .context("cannot start the async runtime")?;
    let (events, rx) = Events::channel(&cfg.name);
    let sink = control.event_sink();
    let sink_label = sink.describe();
    let status_sink = control.status_sink();
    let writer = events::spawn_writer(&events, rx, sink);
    let current = Arc::new(Current::new(active));
    let (rev_tx, rev_rx) = tokio::sync::watch::channel(1u64);
    let rev_tx = Arc::new(rev_tx);

    let code = runtime.block_on(async {
        let owners = OwnerLookup::new(child.as_raw() as u32, Some(diag))
            .context("cannot watch the sandbox's processes")?;
        let shared = Arc::new(proxy::Shared {
            current: current.clone(),
            events: events.clone(),
            ca,
            upstream_tls,
            pins: cfg.pins.clone(),
            owners,
            revision: rev_rx,
        });
        let listener = tokio::net::TcpListener::from_std(listener)?;
        tokio::spawn(proxy::serve(listener, shared));
        tokio::spawn(poller.run());
        if let Some(tun) = tun {
            let ev = events.clone();
            tokio::spawn(async move {
                let _ = net::catcher::run(tun, move |a| {
                    let mut e = ev.event("warn", "network", "deny");
                    e.host = a.dst.to_string();
                    e.port = u32::from(a.dst_port);
                    e.layer = "bypass".into();
                    e.reason = format!(
                        "direct {} connection bypassing the proxy; only the proxy at {} leads out",
                        a.proto,
                        env::PROXY_ADDR
                    );
                    ev.emit(e);
                })
                .await;
            });
        }
        let execs =
            crate::sandbox::exec::Execs::new(net).context("cannot talk to the sandbox's PID 1")?;
        tokio::spawn(control.follow(Reloader {
            current: current.clone(),
            revision: rev_tx.clone(),
            events: events.clone(),
            execs: Some(execs),
        }));
        forward_signals(child);

        events.say(
            "info",
            "lifecycle",
            format!(
                "sandbox {} started (pid {child}), policy {policy_label}, events to {sink_label}",
                cfg.name,
            ),
        );

        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let report = tokio::task::spawn_blocking({
            let events = events.clone();
            move || read_report(report, &events, started_tx)
        });
        let running = tokio::spawn({
            let status_sink = status_sink.clone();
            async move {
                if started_rx.await.is_ok() {
                    status_sink.report(CommandState::Running).await;
                }
            }
        });
        let status = tokio::task::spawn_blocking(move || wait_exit(child)).await?;
        let (errors, started) = report.await.unwrap_or_default();
        for e in &errors {
            eprintln!("openshell-sandbox: {e}");
        }
        running.abort();
        let end = if started {
            CommandState::Exited(status)
        } else {
            CommandState::Failed(errors.last().cloned().unwrap_or_else(|| {
                format!("the sandbox ended (status {status}) before its command started")
            }))
        };
        // Told before the supervisor exits, so the phase says how it ended; bounded, as the
        // command's status must not wait on an absent gateway.
        let _ =
            tokio::time::timeout(std::time::Duration::from_secs(2), status_sink.report(end)).await;
        let mut e = events.event(if status == 0 { "info" } else { "warn" }, "lifecycle", "");
        e.message = format!("sandbox {} exited with status {status}", cfg.name);
        events.emit(e);
        anyhow::Ok(status)
    })?;
    events.finish();
    drop(events);
    // Let the writer flush, briefly: the command's status must not wait on a slow disk.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while !writer.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    runtime.shutdown_background();
    Ok(code)
}

/// PID 1's report: its warnings and errors become events; `started` fires once the command
/// was executed. Returns the errors and whether the command started.
fn read_report(
    report: OwnedFd,
    events: &Events,
    started: tokio::sync::oneshot::Sender<()>,
) -> (Vec<String>, bool) {
    let mut errors = Vec::new();
    let mut started = Some(started);
    for line in std::io::BufReader::new(std::fs::File::from(report)).lines() {
        let Ok(line) = line else { break };
        if line == init::STARTED {
            if let Some(s) = started.take() {
                let _ = s.send(());
            }
        } else if let Some(w) = line.strip_prefix("W ") {
            events.say("warn", "lifecycle", w);
        } else if let Some(e) = line.strip_prefix("E ") {
            events.say("error", "lifecycle", e);
            errors.push(e.to_string());
        }
    }
    (errors, started.is_none())
}

fn wait_exit(child: Pid) -> i32 {
    loop {
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, code)) => return code,
            Ok(WaitStatus::Signaled(_, sig, _)) => return 128 + sig as i32,
            Ok(_) => {}
            Err(nix::Error::EINTR) => {}
            Err(_) => return init::EXIT_SETUP,
        }
    }
}

/// SIGINT and SIGTERM to the supervisor go to the sandbox's PID 1, which passes them on.
fn forward_signals(child: Pid) {
    use tokio::signal::unix::{SignalKind, signal};
    for (kind, sig) in [
        (SignalKind::interrupt(), Signal::SIGINT),
        (SignalKind::terminate(), Signal::SIGTERM),
    ] {
        if let Ok(mut s) = signal(kind) {
            tokio::spawn(async move {
                while s.recv().await.is_some() {
                    let _ = kill(child, sig);
                }
            });
        }
    }
}
