//! Commands that talk to the gateway: `gateway`, `sandbox`, remote `policy` commands, `logs`.

use super::client::{self, explain};
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use openshell_proto::pb;
use serde_json::json;
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum GatewayCommand {
    /// Start the gateway in the background (also automatic on first use).
    Start {
        /// Also listen for remote clients: tcp://HOST:PORT, with mutual TLS (the CA and a
        /// client certificate are made in the state dir's tls/ on first use).
        #[arg(long, value_name = "tcp://HOST:PORT")]
        listen: Option<String>,
    },
    /// Stop the gateway; sandboxes keep running and re-attach when it starts again.
    Stop,
    /// Where it listens, its version, uptime and sandbox count.
    Status {
        #[arg(long)]
        json: bool,
    },
}

pub async fn gateway(cmd: GatewayCommand) -> Result<()> {
    match cmd {
        GatewayCommand::Start { listen } => {
            if let client::Target::Remote(r) = client::Target::current()? {
                bail!(
                    "the gateway is remote ({}); start it on its own host",
                    r.url
                );
            }
            if let Some(l) = &listen
                && !l.starts_with("tcp://")
            {
                bail!("--listen `{l}` is not tcp://HOST:PORT");
            }
            // A gateway that answers the connection but not the health check is one that is
            // going away (it lost a start race, or was just killed): look again briefly.
            let mut running = None;
            for _ in 0..25 {
                let Some(mut c) = client::try_connect().await else {
                    break;
                };
                match c.health(pb::Empty {}).await {
                    Ok(h) => {
                        running = Some(h.into_inner());
                        break;
                    }
                    Err(_) => tokio::time::sleep(std::time::Duration::from_millis(40)).await,
                }
            }
            if let Some(h) = running {
                if let Some(l) = &listen
                    && h.listen_tcp != *l
                {
                    bail!(
                        "a gateway is already running (pid {}) without {l}; stop it with `openshell gateway stop`, then start it with --listen",
                        h.pid
                    );
                }
                println!("the gateway is already running");
                return Ok(());
            }
            let args: Vec<String> = listen
                .iter()
                .flat_map(|l| ["--listen".to_string(), l.clone()])
                .collect();
            client::start_with(&args).await?;
            println!(
                "gateway started on {}{}",
                openshell_proto::paths::socket_path().display(),
                listen
                    .map(|l| format!(
                        " and {l} (mTLS; client certificates in {})",
                        openshell_proto::paths::state_dir().join("tls").display()
                    ))
                    .unwrap_or_default()
            );
        }
        GatewayCommand::Stop => {
            if let client::Target::Remote(r) = client::Target::current()? {
                bail!("the gateway is remote ({}); stop it on its own host", r.url);
            }
            let Some(mut c) = client::try_connect().await else {
                println!("no gateway is running");
                return Ok(());
            };
            let h = c.health(pb::Empty {}).await.map_err(explain)?.into_inner();
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(h.pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            )
            .context("cannot signal the gateway")?;
            for _ in 0..250 {
                if client::try_connect().await.is_none() {
                    println!("gateway stopped (pid {})", h.pid);
                    return Ok(());
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            bail!("the gateway (pid {}) did not stop within 5s", h.pid);
        }
        GatewayCommand::Status { json } => {
            // A remote gateway that does not answer is an error worth its reason (certificates,
            // address), not "no gateway is running".
            let remote = matches!(client::Target::current()?, client::Target::Remote(_));
            let found = if remote {
                Some(client::connect().await?)
            } else {
                client::try_connect().await
            };
            let Some(mut c) = found else {
                if json {
                    println!(
                        "{}",
                        json!({"running": false, "listen": format!("unix://{}", openshell_proto::paths::socket_path().display())})
                    );
                } else {
                    println!(
                        "no gateway is running (it would listen on {}); `openshell gateway start` starts one",
                        openshell_proto::paths::socket_path().display()
                    );
                }
                return Ok(());
            };
            let h = c.health(pb::Empty {}).await.map_err(explain)?.into_inner();
            if json {
                println!(
                    "{}",
                    json!({"running": true, "pid": h.pid, "listen": h.listen, "listen_tcp": h.listen_tcp,
                           "version": h.version, "uptime_secs": h.uptime_secs, "sandboxes": h.sandbox_count,
                           "state_dir": h.state_dir})
                );
            } else {
                println!(
                    "gateway {} (pid {}) on {}{}, up {}, {} sandbox{}, state in {}",
                    h.version,
                    h.pid,
                    h.listen,
                    if h.listen_tcp.is_empty() {
                        String::new()
                    } else {
                        format!(" and {} (mTLS)", h.listen_tcp)
                    },
                    humantime::format_duration(std::time::Duration::from_secs(h.uptime_secs)),
                    h.sandbox_count,
                    if h.sandbox_count == 1 { "" } else { "es" },
                    h.state_dir
                );
            }
        }
    }
    Ok(())
}

#[derive(Debug, Subcommand)]
pub enum SandboxCommand {
    /// Create a sandbox and start its command (none: it stays up for exec and connect).
    Create(CreateArgs),
    /// List sandboxes.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one sandbox.
    Get {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Run a command in a running sandbox; its output streams here and its exit status is ours.
    Exec {
        name: String,
        /// Working directory inside the sandbox [default: /sandbox].
        #[arg(long)]
        workdir: Option<String>,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Copy a local file or directory into a sandbox (DST is a directory inside it).
    Upload {
        name: String,
        src: PathBuf,
        dst: String,
    },
    /// Copy a file or directory out of a sandbox into the local directory DST.
    Download {
        name: String,
        src: String,
        dst: PathBuf,
    },
    /// Stop and remove sandboxes.
    Delete {
        #[arg(required_unless_present = "all")]
        name: Option<String>,
        #[arg(long)]
        all: bool,
    },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    #[arg(long)]
    name: Option<String>,
    /// The policy [default: the baseline].
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Merge a built-in preset (repeatable; `openshell policy presets` lists them).
    #[arg(long = "preset")]
    presets: Vec<String>,
    /// The directory at /sandbox [default: a fresh one in the gateway's state].
    #[arg(long)]
    workdir: Option<PathBuf>,
    /// Remove the sandbox when its command ends.
    #[arg(long)]
    no_keep: bool,
    /// The compute driver.
    #[arg(long, default_value = "process")]
    driver: String,
    /// Set a variable in the command's environment (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    #[arg(long)]
    json: bool,
    #[arg(last = true)]
    command: Vec<String>,
}

fn phase(p: i32) -> &'static str {
    match pb::Phase::try_from(p) {
        Ok(pb::Phase::Provisioning) => "provisioning",
        Ok(pb::Phase::Ready) => "ready",
        Ok(pb::Phase::Stopped) => "stopped",
        Ok(pb::Phase::Failed) => "failed",
        _ => "unknown",
    }
}

fn sandbox_json(s: &pb::Sandbox) -> serde_json::Value {
    json!({
        "name": s.name, "phase": phase(s.phase), "reason": s.reason, "driver": s.driver,
        "policy_revision": s.policy_revision, "enforced_revision": s.acked_revision,
        "created": s.created, "command": s.command, "workdir": s.workdir, "pid": s.pid,
        "recent_denials": s.recent_denials, "exit_code": s.exit_code,
    })
}

pub async fn sandbox(cmd: SandboxCommand) -> Result<()> {
    let mut c = client::connect().await?;
    match cmd {
        SandboxCommand::Create(a) => {
            let policy_yaml = match &a.policy {
                Some(p) => super::policy_file::read_checked(p)?,
                None => String::new(),
            };
            let workdir = match &a.workdir {
                Some(w) => std::fs::canonicalize(w)
                    .with_context(|| format!("the workdir {} does not exist", w.display()))?
                    .display()
                    .to_string(),
                None => String::new(),
            };
            let mut env = std::collections::HashMap::new();
            for kv in &a.env {
                let (k, v) = kv
                    .split_once('=')
                    .with_context(|| format!("`{kv}` is not KEY=VALUE"))?;
                env.insert(k.to_string(), v.to_string());
            }
            let s = c
                .create_sandbox(pb::CreateSandboxRequest {
                    name: a.name.clone().unwrap_or_default(),
                    policy_yaml,
                    presets: a.presets.clone(),
                    workdir,
                    command: a.command.clone(),
                    no_keep: a.no_keep,
                    driver: a.driver.clone(),
                    env,
                    providers: Vec::new(),
                    from: String::new(),
                })
                .await
                .map_err(explain)?
                .into_inner();
            let s = wait_ready(&mut c, &s.name).await.unwrap_or(s);
            if a.json {
                println!("{}", sandbox_json(&s));
            } else {
                println!(
                    "sandbox {} {} (policy revision {})",
                    s.name,
                    phase(s.phase),
                    s.policy_revision
                );
                if phase(s.phase) == "failed" {
                    bail!("sandbox {} failed: {}", s.name, s.reason);
                }
            }
        }
        SandboxCommand::List { json } => {
            let list = c
                .list_sandboxes(pb::ListSandboxesRequest {})
                .await
                .map_err(explain)?
                .into_inner()
                .sandboxes;
            if json {
                println!(
                    "{}",
                    serde_json::Value::Array(list.iter().map(sandbox_json).collect())
                );
            } else if list.is_empty() {
                println!("no sandboxes; `openshell sandbox create` makes one");
            } else {
                println!(
                    "{:<24} {:<13} {:>4} {:>8}  COMMAND",
                    "NAME", "PHASE", "REV", "DENIALS"
                );
                for s in &list {
                    println!(
                        "{:<24} {:<13} {:>4} {:>8}  {}",
                        s.name,
                        phase(s.phase),
                        s.policy_revision,
                        s.recent_denials,
                        s.command.join(" ")
                    );
                }
            }
        }
        SandboxCommand::Get { name, json } => {
            let s = get(&mut c, &name).await?;
            if json {
                println!("{}", sandbox_json(&s));
            } else {
                println!("name:      {}", s.name);
                println!(
                    "phase:     {}{}",
                    phase(s.phase),
                    if s.reason.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", s.reason)
                    }
                );
                println!("driver:    {}", s.driver);
                println!(
                    "policy:    revision {} (enforced {})",
                    s.policy_revision, s.acked_revision
                );
                println!("workdir:   {}", s.workdir);
                println!("command:   {}", s.command.join(" "));
                println!("created:   {}", s.created);
                println!("denials:   {}", s.recent_denials);
            }
        }
        SandboxCommand::Exec {
            name,
            workdir,
            command,
        } => {
            use std::io::IsTerminal;
            let input = if std::io::stdin().is_terminal() {
                Vec::new()
            } else {
                let mut buf = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)?;
                buf
            };
            let code = exec(&mut c, &name, command, workdir, input, &mut Sinks::Terminal).await?;
            std::process::exit(code);
        }
        SandboxCommand::Upload { name, src, dst } => {
            let mut tarball = tar::Builder::new(Vec::new());
            let base = src
                .file_name()
                .with_context(|| format!("{} names no file", src.display()))?
                .to_os_string();
            if src.is_dir() {
                tarball.append_dir_all(&base, &src)?;
            } else {
                tarball.append_path_with_name(&src, &base)?;
            }
            let bytes = tarball.into_inner()?;
            let script = "mkdir -p \"$1\" && tar -x -C \"$1\" -f -".to_string();
            let argv = vec!["sh".into(), "-c".into(), script, "sh".into(), dst.clone()];
            let mut sinks = Sinks::Capture(Vec::new(), Vec::new());
            let code = exec(&mut c, &name, argv, None, bytes, &mut sinks).await?;
            if code != 0 {
                bail!("upload failed (exit {code}): {}", sinks.stderr());
            }
            println!("uploaded {} to {name}:{dst}", src.display());
        }
        SandboxCommand::Download { name, src, dst } => {
            let p = std::path::Path::new(&src);
            let dir = p
                .parent()
                .map(|d| d.display().to_string())
                .filter(|d| !d.is_empty())
                .unwrap_or_else(|| "/".into());
            let file = p
                .file_name()
                .with_context(|| format!("{src} names no file"))?
                .to_string_lossy()
                .into_owned();
            let argv = vec![
                "tar".into(),
                "-c".into(),
                "-C".into(),
                dir,
                "-f".into(),
                "-".into(),
                file,
            ];
            let mut sinks = Sinks::Capture(Vec::new(), Vec::new());
            let code = exec(&mut c, &name, argv, None, Vec::new(), &mut sinks).await?;
            if code != 0 {
                bail!("download failed (exit {code}): {}", sinks.stderr());
            }
            std::fs::create_dir_all(&dst)?;
            if let Sinks::Capture(out, _) = sinks {
                tar::Archive::new(std::io::Cursor::new(out))
                    .unpack(&dst)
                    .with_context(|| format!("cannot unpack into {}", dst.display()))?;
            }
            println!("downloaded {name}:{src} to {}", dst.display());
        }
        SandboxCommand::Delete { name, all } => {
            let r = c
                .delete_sandbox(pb::DeleteSandboxRequest {
                    name: name.unwrap_or_default(),
                    all,
                })
                .await
                .map_err(explain)?
                .into_inner();
            for n in &r.deleted {
                println!("deleted {n}");
            }
            // `--all` goes on past a sandbox that cannot be deleted: each one says why.
            for f in &r.failures {
                eprintln!("cannot delete {f}");
            }
            if !r.failures.is_empty() {
                bail!(
                    "{} sandbox{} could not be deleted",
                    r.failures.len(),
                    if r.failures.len() == 1 { "" } else { "es" }
                );
            }
        }
    }
    Ok(())
}

/// The sandbox, or an error listing the known names.
async fn get(c: &mut client::Client, name: &str) -> Result<pb::Sandbox> {
    c.get_sandbox(pb::GetSandboxRequest {
        name: name.to_string(),
    })
    .await
    .map(|r| r.into_inner())
    .map_err(explain)
}

/// Waits (briefly) until the sandbox is ready or has failed.
async fn wait_ready(c: &mut client::Client, name: &str) -> Option<pb::Sandbox> {
    for _ in 0..500 {
        let s = get(c, name).await.ok()?;
        if matches!(phase(s.phase), "ready" | "failed" | "stopped") {
            return Some(s);
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    None
}

#[derive(Debug, Subcommand)]
pub enum RemotePolicy {
    /// Apply a policy to a running sandbox (hot reload); `--wait` returns once it is enforced.
    Set {
        name: String,
        #[arg(long)]
        policy: PathBuf,
        #[arg(long)]
        wait: bool,
        /// How long `--wait` waits.
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
        #[arg(long)]
        json: bool,
    },
    /// Print a sandbox's policy (the latest revision, or --rev N).
    Get {
        name: String,
        #[arg(long)]
        rev: Option<u64>,
    },
    /// A sandbox's policy revisions.
    History {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// The difference between two revisions.
    Diff { name: String, from: u64, to: u64 },
    /// Go back to an earlier revision (as a new revision).
    Rollback {
        name: String,
        rev: u64,
        #[arg(long)]
        wait: bool,
    },
    /// Denied connections and requests, with the change that would allow each.
    Denials {
        name: String,
        /// Also approved and rejected ones.
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// Merge a denial's proposed change into the policy (a new revision, hot reloaded).
    Approve {
        name: String,
        id: String,
        #[arg(long)]
        wait: bool,
    },
    /// Record that a denial should stay denied (not proposed again).
    Reject { name: String, id: String },
}

pub async fn policy(cmd: RemotePolicy) -> Result<()> {
    let mut c = client::connect().await?;
    match cmd {
        RemotePolicy::Set {
            name,
            policy,
            wait,
            timeout,
            json,
        } => {
            let text = super::policy_file::read_checked(&policy)?;
            let r = c
                .set_policy(pb::SetPolicyRequest {
                    sandbox: name.clone(),
                    policy_yaml: text,
                    source_name: policy.display().to_string(),
                    author: whoami(),
                    wait,
                    wait_timeout_ms: timeout.as_millis().min(u32::MAX as u128) as u32,
                })
                .await
                .map_err(explain)?
                .into_inner();
            if json {
                println!(
                    "{}",
                    json!({"revision": r.revision, "acknowledged": r.acknowledged, "unchanged": r.unchanged, "diff": r.diff})
                );
            } else if r.unchanged {
                println!("{name}: unchanged (revision {})", r.revision);
            } else {
                print!("{}", r.diff);
                if wait {
                    println!("{name}: revision {} is enforced", r.revision);
                } else {
                    println!(
                        "{name}: revision {} stored; the sandbox applies it now",
                        r.revision
                    );
                }
            }
        }
        RemotePolicy::Get { name, rev } => {
            let r = c
                .get_policy(pb::GetPolicyRequest {
                    sandbox: name,
                    revision: rev.unwrap_or(0),
                })
                .await
                .map_err(explain)?
                .into_inner();
            print!("{}", r.yaml);
        }
        RemotePolicy::History { name, json } => {
            let h = c
                .policy_history(pb::PolicyHistoryRequest { sandbox: name })
                .await
                .map_err(explain)?
                .into_inner()
                .revisions;
            if json {
                let v: Vec<_> = h
                    .iter()
                    .map(|r| json!({"revision": r.revision, "author": r.author, "created": r.created, "acked_at": r.acked_at, "error": r.error, "note": r.summary}))
                    .collect();
                println!("{}", serde_json::Value::Array(v));
            } else {
                println!("{:>4}  {:<25} {:<12} NOTE", "REV", "CREATED", "AUTHOR");
                for r in &h {
                    let mark = if !r.error.is_empty() {
                        format!(" (refused: {})", r.error)
                    } else {
                        String::new()
                    };
                    println!(
                        "{:>4}  {:<25} {:<12} {}{mark}",
                        r.revision, r.created, r.author, r.summary
                    );
                }
            }
        }
        RemotePolicy::Diff { name, from, to } => {
            let d = c
                .diff_policy(pb::DiffPolicyRequest {
                    sandbox: name,
                    from,
                    to,
                })
                .await
                .map_err(explain)?
                .into_inner();
            print!("{}", d.diff);
        }
        RemotePolicy::Rollback { name, rev, wait } => {
            let r = c
                .rollback_policy(pb::RollbackPolicyRequest {
                    sandbox: name.clone(),
                    revision: rev,
                    wait,
                    wait_timeout_ms: 0,
                    author: whoami(),
                })
                .await
                .map_err(explain)?
                .into_inner();
            println!(
                "{name}: revision {} restores revision {rev}{}",
                r.revision,
                if r.acknowledged { ", enforced" } else { "" }
            );
        }
        RemotePolicy::Denials { name, all, json } => {
            let d = c
                .list_denials(pb::ListDenialsRequest {
                    sandbox: name.clone(),
                    include_decided: all,
                })
                .await
                .map_err(explain)?
                .into_inner()
                .denials;
            if json {
                let v: Vec<_> = d
                    .iter()
                    .map(|d| json!({"id": d.id, "host": d.host, "port": d.port, "binary": d.binary, "method": d.method,
                                    "path": d.path, "count": d.count, "first_seen": d.first_seen, "last_seen": d.last_seen,
                                    "status": d.status, "proposal": d.proposal_yaml}))
                    .collect();
                println!("{}", serde_json::Value::Array(v));
            } else if d.is_empty() {
                println!("{name}: no denials");
            } else {
                println!(
                    "{:>4}  {:>5}  {:<32} {:<22} REQUEST",
                    "ID", "COUNT", "DESTINATION", "BINARY"
                );
                for d in &d {
                    let req = if d.method.is_empty() {
                        String::new()
                    } else {
                        format!("{} {}", d.method, d.path)
                    };
                    println!(
                        "{:>4}  {:>5}  {:<32} {:<22} {req}",
                        d.id,
                        d.count,
                        format!("{}:{}", d.host, d.port),
                        d.binary
                    );
                }
                println!("approve one with `openshell policy approve {name} ID`");
            }
        }
        RemotePolicy::Approve { name, id, wait } => {
            let r = c
                .approve_denial(pb::DenialDecisionRequest {
                    sandbox: name.clone(),
                    id: id.clone(),
                    wait,
                    wait_timeout_ms: 0,
                    author: whoami(),
                })
                .await
                .map_err(explain)?
                .into_inner();
            print!("{}", r.diff);
            println!(
                "{name}: denial {id} approved as revision {}{}",
                r.revision,
                if r.acknowledged { ", enforced" } else { "" }
            );
        }
        RemotePolicy::Reject { name, id } => {
            c.reject_denial(pb::DenialDecisionRequest {
                sandbox: name.clone(),
                id: id.clone(),
                wait: false,
                wait_timeout_ms: 0,
                author: whoami(),
            })
            .await
            .map_err(explain)?;
            println!("{name}: denial {id} rejected; it will not be proposed again");
        }
    }
    Ok(())
}

fn whoami() -> String {
    std::env::var("USER").unwrap_or_else(|_| format!("uid {}", nix::unistd::getuid()))
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The sandbox (all sandboxes when omitted).
    name: Option<String>,
    /// Keep following new events.
    #[arg(long, short = 'f', alias = "follow")]
    tail: bool,
    /// Only `sandbox` or `gateway` events.
    #[arg(long)]
    source: Option<String>,
    /// Only this level and above (debug, info, warn, error).
    #[arg(long)]
    level: Option<String>,
    /// Only events newer than this (5m, 2h, or an RFC 3339 time).
    #[arg(long)]
    since: Option<String>,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
}

pub async fn logs(a: LogsArgs) -> Result<()> {
    let mut c = client::connect().await?;
    let mut stream = c
        .stream_events(pb::EventFilter {
            sandbox: a.name.clone().unwrap_or_default(),
            source: a.source.clone().unwrap_or_default(),
            level: a.level.clone().unwrap_or_default(),
            kind: String::new(),
            action: String::new(),
            since: a.since.clone().unwrap_or_default(),
            follow: a.tail,
            tail: 0,
        })
        .await
        .map_err(explain)?
        .into_inner();
    use std::io::Write;
    let stdout = std::io::stdout();
    while let Some(batch) = stream.message().await.map_err(explain)? {
        let mut out = stdout.lock();
        for e in &batch.events {
            if a.json {
                writeln!(out, "{}", openshell_proto::event::to_json(e))?;
            } else {
                writeln!(out, "{}", openshell_proto::event::to_line(e))?;
            }
        }
        out.flush()?;
    }
    Ok(())
}

/// Where an exec's output goes.
enum Sinks {
    Terminal,
    Capture(Vec<u8>, Vec<u8>),
}

impl Sinks {
    fn stderr(&self) -> String {
        match self {
            Sinks::Capture(_, e) => String::from_utf8_lossy(e).trim().to_string(),
            Sinks::Terminal => String::new(),
        }
    }
}

/// Runs `argv` in sandbox `name` with `input` as its stdin; returns its exit status.
async fn exec(
    c: &mut client::Client,
    name: &str,
    argv: Vec<String>,
    workdir: Option<String>,
    input: Vec<u8>,
    sinks: &mut Sinks,
) -> Result<i32> {
    use pb::{exec_input, exec_output};
    use std::io::Write;
    let mut frames = vec![pb::ExecInput {
        frame: Some(exec_input::Frame::Start(pb::ExecStart {
            sandbox: name.to_string(),
            command: argv,
            env: Default::default(),
            workdir: workdir.unwrap_or_default(),
            as_root: false,
        })),
    }];
    for chunk in input.chunks(64 * 1024) {
        frames.push(pb::ExecInput {
            frame: Some(exec_input::Frame::Stdin(chunk.to_vec())),
        });
    }
    frames.push(pb::ExecInput {
        frame: Some(exec_input::Frame::StdinEof(pb::Empty {})),
    });
    let mut out = c
        .exec_sandbox(futures::stream::iter(frames))
        .await
        .map_err(explain)?
        .into_inner();
    while let Some(msg) = out.message().await.map_err(explain)? {
        match (msg.frame, &mut *sinks) {
            (Some(exec_output::Frame::Stdout(b)), Sinks::Terminal) => {
                let mut o = std::io::stdout().lock();
                o.write_all(&b)?;
                o.flush()?;
            }
            (Some(exec_output::Frame::Stderr(b)), Sinks::Terminal) => {
                std::io::stderr().lock().write_all(&b)?;
            }
            (Some(exec_output::Frame::Stdout(b)), Sinks::Capture(o, _)) => o.extend_from_slice(&b),
            (Some(exec_output::Frame::Stderr(b)), Sinks::Capture(_, e)) => e.extend_from_slice(&b),
            (Some(exec_output::Frame::Exit(e)), _) => {
                return Ok(if e.signal != 0 {
                    128 + e.signal
                } else {
                    e.code
                });
            }
            _ => {}
        }
    }
    bail!("the sandbox ended the command without an exit status")
}
