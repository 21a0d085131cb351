//! `openshell-sandbox`: runs one sandbox.

use anyhow::Result;
use clap::{Parser, Subcommand};
use openshell_sandbox::control::Standalone;
use openshell_sandbox::proxy::upstream::Pins;
use openshell_sandbox::run::{RunConfig, run as run_sandbox};
use openshell_sandbox::sandbox::env::parse_pair;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "openshell-sandbox",
    version,
    about = "Runs one OpenShell sandbox: namespaces, egress proxy, Landlock, seccomp"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one command in a sandbox governed by a policy file (no gateway needed).
    Run(RunArgs),
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The policy file; editing it (or SIGHUP) reloads the network policy live. Not used when
    /// the gateway started this sandbox (OPENSHELL_SANDBOX_ID and OPENSHELL_ENDPOINT set).
    #[arg(long)]
    policy: Option<PathBuf>,
    /// The directory that appears read-write at /sandbox [default: the current directory].
    #[arg(long)]
    workdir: Option<PathBuf>,
    /// The sandbox's name (its hostname, and the name in events).
    #[arg(long, default_value = "sandbox")]
    name: String,
    /// Set a variable in the command's environment (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_pair)]
    env: Vec<(String, String)>,
    /// Also trust this CA for upstream servers, e.g. a corporate CA (repeatable).
    #[arg(
        long = "upstream-ca",
        value_name = "FILE",
        env = "OPENSHELL_UPSTREAM_CA",
        value_delimiter = ':'
    )]
    upstream_ca: Vec<PathBuf>,
    /// Pin a name to an address, like curl's --resolve (repeatable). Environment:
    /// OPENSHELL_RESOLVE=host=ip,host2=ip2.
    #[arg(long = "resolve", value_name = "HOST=IP")]
    resolve: Vec<String>,
    /// After a wake-up the proxy polls instead of sleeping until nothing has moved for this
    /// long: no wake-up delay inside a burst of traffic, at most this much CPU after it
    /// (0 turns it off).
    #[arg(
        long = "busy-poll-us",
        value_name = "MICROSECONDS",
        env = "OPENSHELL_BUSY_POLL_US",
        default_value_t = 200
    )]
    busy_poll_us: u64,
    /// Where events go (JSON lines); standard output when it cannot be written.
    #[arg(long, default_value = "/var/log/openshell.log")]
    log: PathBuf,
    /// The boot hook, a path inside the sandbox; it runs before the command and must succeed.
    #[arg(long, default_value = "/etc/openshell/boot.sh", hide = true)]
    boot_hook: PathBuf,
    /// The command [default: $OPENSHELL_SANDBOX_COMMAND, else /bin/bash].
    #[arg(last = true)]
    command: Vec<String>,
}

fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Run(a) => {
            let mut pins =
                Pins::parse(a.resolve.iter().map(String::as_str)).map_err(anyhow::Error::msg)?;
            if let Ok(v) = std::env::var("OPENSHELL_RESOLVE") {
                pins.merge(
                    Pins::parse_env(&v).map_err(|e| anyhow::anyhow!("OPENSHELL_RESOLVE: {e}"))?,
                );
            }
            let workdir = match a.workdir {
                Some(w) => w,
                None => std::env::current_dir()?,
            };
            let control: Box<dyn openshell_sandbox::control::Control> =
                match openshell_sandbox::control::managed_from_env() {
                    Some((id, endpoint)) => Box::new(
                        openshell_sandbox::control::Managed::register(&id, &endpoint)?,
                    ),
                    None => {
                        let Some(policy) = a.policy else {
                            anyhow::bail!(
                                "--policy FILE is required (unless the gateway started this sandbox)"
                            );
                        };
                        Box::new(Standalone::new(policy, a.log))
                    }
                };
            run_sandbox(
                RunConfig {
                    workdir,
                    name: a.name,
                    env: a.env,
                    command: a.command,
                    upstream_ca: a.upstream_ca,
                    pins,
                    boot_hook: a.boot_hook,
                    busy_poll: std::time::Duration::from_micros(a.busy_poll_us),
                },
                control,
            )
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("openshell-sandbox: {e:#}");
            ExitCode::from(125)
        }
    }
}
