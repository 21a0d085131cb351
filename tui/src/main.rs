//! `openshell`: the CLI and `openshell term`.

use anyhow::Result;
use clap::{Parser, Subcommand};
use openshell::cli::{policy_local, remote};
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "openshell",
    version,
    about = "The safe, private runtime for autonomous AI agents"
)]
struct Cli {
    /// The gateway: https://HOST:PORT for a remote one (mutual TLS with the files in
    /// $OPENSHELL_TLS_DIR, default the state dir's tls/) [default: the local socket].
    #[arg(long, global = true, env = "OPENSHELL_GATEWAY", value_name = "URL")]
    gateway: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The full-screen terminal app (sandboxes, policy editor, live denials, shell).
    Term(openshell::term::TermArgs),
    /// Write, test and apply policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Create, list and delete sandboxes.
    #[command(subcommand)]
    Sandbox(remote::SandboxCommand),
    /// Start, stop and check the gateway (it starts by itself on first use).
    #[command(subcommand)]
    Gateway(remote::GatewayCommand),
    /// Events of a sandbox (or all): decisions, policy changes, lifecycle.
    Logs(remote::LogsArgs),
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Check policy files: a one-line summary each, or every error as file:line:column.
    Validate(policy_local::ValidateArgs),
    /// Show what a policy decides for one connection or request, and why.
    Explain(policy_local::ExplainArgs),
    /// List the built-in presets.
    Presets {
        /// Print a JSON list.
        #[arg(long)]
        json: bool,
    },
    /// Print BASE with presets (names or files) merged in (`baseline` names the baseline).
    Merge(policy_local::MergeArgs),
    #[command(flatten)]
    Remote(remote::RemotePolicy),
}

fn run(cli: Cli) -> Result<ExitCode> {
    if let Some(g) = cli.gateway {
        openshell::cli::remote_gateway::set_gateway(g);
    }
    match cli.command {
        Command::Term(a) => openshell::term::run(a).map(|()| ExitCode::SUCCESS),
        Command::Policy(cmd) => match cmd {
            PolicyCommand::Validate(a) => Ok(if policy_local::validate(&a)? {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }),
            PolicyCommand::Explain(a) => policy_local::explain(&a).map(|()| ExitCode::SUCCESS),
            PolicyCommand::Presets { json } => {
                policy_local::presets(json).map(|()| ExitCode::SUCCESS)
            }
            PolicyCommand::Merge(a) => policy_local::merge(&a).map(|()| ExitCode::SUCCESS),
            PolicyCommand::Remote(cmd) => block_on(remote::policy(cmd)),
        },
        Command::Sandbox(cmd) => block_on(remote::sandbox(cmd)),
        Command::Gateway(cmd) => block_on(remote::gateway(cmd)),
        Command::Logs(a) => block_on(remote::logs(a)),
    }
}

/// Runs one gateway command on a small runtime.
fn block_on(f: impl std::future::Future<Output = Result<()>>) -> Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(f).map(|()| ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
