//! Reaching the gateway, starting it on first use.

use anyhow::{Context, Result, bail};
use openshell_proto::pb::gateway_client::GatewayClient;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

pub use super::remote_gateway::Target;

pub type Client = GatewayClient<Channel>;

/// How long a freshly started gateway may take to answer.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A program shipped beside this one (the workspace's target dir, or an install dir), else
/// one on PATH.
pub fn sibling(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join(name)))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// A client of the running gateway, or None when none answers.
pub async fn try_connect() -> Option<Client> {
    match super::remote_gateway::target() {
        Ok(Target::Local(socket)) => openshell_proto::transport::unix_channel(&socket)
            .await
            .ok()
            .map(client_of),
        Ok(Target::Remote(r)) => r.connect().await.ok(),
        Err(_) => None,
    }
}

fn client_of(c: Channel) -> Client {
    GatewayClient::new(c).max_decoding_message_size(64 * 1024 * 1024)
}

/// A client of the gateway, started first if none runs (a local one only: a remote gateway
/// is started on its own host).
pub async fn connect() -> Result<Client> {
    if let Target::Remote(r) = super::remote_gateway::target()? {
        return r.connect().await;
    }
    if let Some(c) = try_connect().await {
        return Ok(c);
    }
    start().await?;
    try_connect()
        .await
        .context("the gateway started but does not answer")
}

/// Starts the gateway in the background (its own session, output to `<state>/gateway.log`)
/// and waits until it answers.
pub async fn start() -> Result<()> {
    start_with(&[]).await
}

/// `start`, with more arguments for `openshell-gateway` (`--listen tcp://...`).
pub async fn start_with(args: &[String]) -> Result<()> {
    let state = openshell_proto::paths::state_dir();
    std::fs::create_dir_all(&state)
        .with_context(|| format!("cannot create {}", state.display()))?;
    let log_path = state.join("gateway.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let bin = sibling("openshell-gateway");
    let mut c = Command::new(&bin);
    c.args(args);
    c.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
    // SAFETY: only setsid between fork and exec: the gateway outlives this command and its
    // terminal.
    unsafe {
        c.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    let mut child = c.spawn().with_context(|| {
        format!(
            "cannot start the gateway ({}); build it with `cargo build --workspace` or put openshell-gateway on PATH",
            bin.display()
        )
    })?;
    let deadline = Instant::now() + START_TIMEOUT;
    while Instant::now() < deadline {
        if try_connect().await.is_some() {
            // Reaped by nobody: the gateway is now a daemon; a zombie entry would only appear
            // if it exits while we are still running, which the next check reports.
            std::mem::forget(child);
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            // It may have lost a race: another command started a gateway at the same moment,
            // and this one stepped aside once that one served. Use that one.
            for _ in 0..50 {
                if try_connect().await.is_some() {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let tail = std::fs::read_to_string(&log_path)
                .unwrap_or_default()
                .lines()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            bail!("the gateway exited at start ({status}):\n{tail}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!(
        "the gateway did not answer within {}s; see {}",
        START_TIMEOUT.as_secs(),
        log_path.display()
    )
}

/// A gRPC error in words a person can act on.
pub fn explain(s: tonic::Status) -> anyhow::Error {
    use tonic::Code;
    let msg = s.message().to_string();
    match s.code() {
        Code::Unavailable if msg.contains("transport") || msg.is_empty() => anyhow::anyhow!(
            "the gateway is not answering ({msg}); check `openshell gateway status`"
        ),
        _ => anyhow::anyhow!(msg),
    }
}
