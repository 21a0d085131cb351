//! `openshell-gateway`: the control plane. Usually started by the `openshell` CLI on first use.

use anyhow::Result;
use clap::Parser;
use openshell_gateway::serve::{Options, run};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "openshell-gateway",
    version,
    about = "The OpenShell control plane: sandboxes, policy revisions, events and denials"
)]
struct Cli {
    /// Where state lives [default: $OPENSHELL_STATE_DIR, $XDG_STATE_HOME/openshell, ...].
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Where to listen (repeatable): unix://PATH [default: $XDG_RUNTIME_DIR/openshell/
    /// gateway.sock, ...], and tcp://HOST:PORT for remote clients with mutual TLS (the CA and
    /// a client certificate are made under STATE_DIR/tls/ on first use; the Unix socket stays).
    #[arg(long)]
    listen: Vec<String>,
    /// Trust this CA for upstream servers in every sandbox started (repeatable).
    #[arg(
        long = "upstream-ca",
        value_name = "FILE",
        env = "OPENSHELL_UPSTREAM_CA",
        value_delimiter = ':'
    )]
    upstream_ca: Vec<PathBuf>,
    /// Pin HOST to IP in every sandbox started (repeatable; env OPENSHELL_RESOLVE=h=ip,h2=ip2).
    #[arg(
        long = "resolve",
        value_name = "HOST=IP",
        env = "OPENSHELL_RESOLVE",
        value_delimiter = ','
    )]
    resolve: Vec<String>,
    /// The supervisor binary [default: openshell-sandbox beside this one, else on PATH].
    #[arg(long)]
    supervisor: Option<PathBuf>,
    /// Events kept at most.
    #[arg(long, default_value_t = 1_000_000)]
    max_events: u64,
    /// Events kept at most this long.
    #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
    max_event_age: Duration,
}

fn sibling(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join(name)))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(name))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match start(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("openshell-gateway: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn start(cli: Cli) -> Result<()> {
    let mut socket = None;
    let mut tcp = None;
    for l in &cli.listen {
        if let Some(p) = l.strip_prefix("unix://") {
            socket = Some(PathBuf::from(p));
        } else if let Some(a) = l.strip_prefix("tcp://") {
            tcp = Some(a.to_string());
        } else {
            anyhow::bail!("`{l}` is neither unix://PATH nor tcp://HOST:PORT");
        }
    }
    let socket = socket.unwrap_or_else(openshell_proto::paths::socket_path);
    let for_paths = cli.state_dir.clone();
    let state_dir = for_paths.unwrap_or_else(openshell_proto::paths::state_dir);
    for r in &cli.resolve {
        if !r.contains('=') {
            anyhow::bail!("--resolve `{r}` is not HOST=IP");
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run(Options {
        state_dir,
        socket,
        tcp,
        supervisor: cli
            .supervisor
            .unwrap_or_else(|| sibling("openshell-sandbox")),
        upstream_ca: cli.upstream_ca,
        resolve: cli.resolve,
        max_events: cli.max_events,
        max_event_age: cli.max_event_age,
    }))
}
