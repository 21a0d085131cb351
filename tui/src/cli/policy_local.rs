//! `openshell policy validate|explain|presets|merge`: policy work that needs no gateway.

use anyhow::{Context, Result, bail};
use clap::Args;
use openshell_proto::catalog;
use openshell_proto::policy::{self, Policy, PolicyErrors, Severity};
use openshell_sandbox::engine::{self, Action, EngineKind, L7Input, NetworkInput, request};
use std::io::Read;
use std::net::IpAddr;

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Policy files (`-` reads standard input).
    #[arg(required = true)]
    pub files: Vec<String>,
    /// Print only errors.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Policy file (`-` reads standard input).
    pub file: String,
    /// Destination host.
    #[arg(long)]
    pub host: String,
    /// Destination port.
    #[arg(long, default_value_t = 443)]
    pub port: u16,
    /// The calling executable, e.g. /usr/bin/curl.
    #[arg(long)]
    pub binary: Option<String>,
    /// HTTP method of a request on the connection (inspected endpoints).
    #[arg(long)]
    pub method: Option<String>,
    /// Request target: path and optional `?query`.
    #[arg(long)]
    pub path: Option<String>,
    /// Address the host resolves to (repeatable), to test the SSRF checks.
    #[arg(long = "ip")]
    pub ips: Vec<IpAddr>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Which engine decides: the native `fast` one or the reference `rego` program.
    #[arg(long, default_value = "fast")]
    pub engine: EngineKind,
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The policy to add to.
    pub base: String,
    /// Preset names or policy files, merged in order.
    #[arg(required = true)]
    pub presets: Vec<String>,
}

pub fn read_source(file: &str) -> Result<String> {
    if file == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading the policy from standard input")?;
        return Ok(s);
    }
    std::fs::read_to_string(file).with_context(|| format!("cannot read policy file `{file}`"))
}

/// Loads a policy file, printing its errors (with line and column) on failure.
pub fn load_file(file: &str) -> Result<policy::Loaded> {
    let text = read_source(file)?;
    let name = if file == "-" { "<stdin>" } else { file };
    policy::load(&text, name).map_err(|e: PolicyErrors| anyhow::anyhow!("{e}"))
}

pub fn validate(args: &ValidateArgs) -> Result<bool> {
    let mut all_ok = true;
    for file in &args.files {
        let text = match read_source(file) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("{file}: error: {e:#}");
                all_ok = false;
                continue;
            }
        };
        match policy::load(&text, file) {
            Ok(loaded) => {
                println!("{file}: ok ({})", summary(&loaded.policy));
                if !args.quiet {
                    for f in &loaded.findings {
                        println!("{f}");
                    }
                }
            }
            Err(errors) => {
                all_ok = false;
                for e in &errors.0 {
                    eprintln!("{e}");
                }
                eprintln!(
                    "{file}: invalid ({} error{})",
                    errors.0.len(),
                    plural(errors.0.len())
                );
            }
        }
    }
    Ok(all_ok)
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `2 network entries, 3 endpoints (1 inspected), 4 read-only and 2 read-write paths`
pub fn summary(p: &Policy) -> String {
    let entries = p.network_policies.len();
    let endpoints: Vec<_> = p
        .network_policies
        .values()
        .flat_map(|e| &e.endpoints)
        .collect();
    let inspected = endpoints.iter().filter(|e| e.is_inspected()).count();
    let (ro, rw) = p
        .filesystem_policy
        .as_ref()
        .map(|f| (f.read_only.len(), f.read_write.len()))
        .unwrap_or((0, 0));
    format!(
        "{entries} network entr{}, {} endpoint{} ({inspected} inspected), {ro} read-only and {rw} read-write path{}",
        if entries == 1 { "y" } else { "ies" },
        endpoints.len(),
        plural(endpoints.len()),
        plural(rw)
    )
}

pub fn explain(args: &ExplainArgs) -> Result<()> {
    let loaded = load_file(&args.file)?;
    let engine = engine::build(&loaded.policy, args.engine)?;
    let host = request::normalize_host(&args.host).map_err(|e| anyhow::anyhow!("--host: {e}"))?;
    let binary = args.binary.as_deref().unwrap_or("");
    let ips = (!args.ips.is_empty()).then_some(args.ips.as_slice());
    let net = engine.network(&NetworkInput {
        host: &host,
        port: args.port,
        binary,
        ips,
        pinned: false,
    });
    let method = args
        .method
        .as_deref()
        .map(str::to_ascii_uppercase)
        .or_else(|| args.path.as_ref().map(|_| "GET".to_string()));
    let target = args.path.clone().unwrap_or_else(|| "/".to_string());

    let mut decision = net.clone();
    let mut note = None;
    let mut req_path = None;
    if let (Action::Allow, Some(method)) = (net.action, method.as_deref()) {
        if net.inspect {
            let (raw_path, raw_query) = request::split_target(&target);
            match request::normalize_path(raw_path) {
                Ok(path) => {
                    let query = request::parse_query(raw_query);
                    decision = engine.l7(&L7Input {
                        host: &host,
                        port: args.port,
                        binary,
                        method,
                        path: &path,
                        query: &query,
                    });
                    req_path = Some(path);
                }
                Err(why) => {
                    decision = engine::Decision {
                        action: Action::Deny,
                        policy: net.policy.clone(),
                        reason: format!("{method} {raw_path} refused: {why}").into(),
                        layer: engine::Layer::L7,
                        inspect: true,
                    };
                }
            }
        } else {
            note = Some(
                "the endpoint is not inspected (no `protocol: rest`): every request on the connection passes",
            );
        }
    }
    if args.binary.is_none() && decision.is_denied() && decision.layer == engine::Layer::L4 {
        note = Some("no --binary given: pass the calling executable, e.g. --binary /usr/bin/curl");
    }
    let entry_name = decision
        .policy
        .as_deref()
        .and_then(|k| loaded.policy.network_policies.get(k))
        .and_then(|e| e.name.clone());

    if args.json {
        let v = serde_json::json!({
            "decision": decision.action.as_str(),
            "policy": decision.policy.as_deref(),
            "policy_name": entry_name,
            "reason": decision.reason,
            "layer": decision.layer.as_str(),
            "inspected": net.inspect,
            "host": host,
            "port": args.port,
            "binary": args.binary,
            "method": method,
            "path": req_path,
            "engine": engine.name(),
            "note": note,
        });
        println!("{v}");
        return Ok(());
    }
    let what = match (&method, &req_path) {
        (Some(m), Some(p)) => format!("{m} {p} on {host}:{}", args.port),
        _ => format!("connection to {host}:{}", args.port),
    };
    println!(
        "{}  {what} from {}",
        decision.action.as_str(),
        args.binary.as_deref().unwrap_or("(no binary given)")
    );
    match (&decision.policy, &entry_name) {
        (Some(k), Some(n)) if n != &**k => println!("  policy: {k} ({n})"),
        (Some(k), _) => println!("  policy: {k}"),
        (None, _) => println!("  policy: (none)"),
    }
    println!("  reason: {}", decision.reason);
    println!("  layer:  {}", decision.layer.as_str());
    if let Some(n) = note {
        println!("  note:   {n}");
    }
    Ok(())
}

pub fn presets(json: bool) -> Result<()> {
    if json {
        let list: Vec<_> = catalog::presets()
            .map(|p| serde_json::json!({"name": p.name, "description": p.description()}))
            .collect();
        println!("{}", serde_json::Value::Array(list));
        return Ok(());
    }
    let width = catalog::presets().map(|p| p.name.len()).max().unwrap_or(0);
    for p in catalog::presets() {
        println!("{:<width$}  {}", p.name, p.description());
    }
    Ok(())
}

/// A preset by name, else a policy file.
pub fn preset_or_file(name: &str) -> Result<Policy> {
    if let Some(p) = catalog::preset(name) {
        return p.policy().map_err(|e| anyhow::anyhow!("{e}"));
    }
    if std::path::Path::new(name).exists() || name == "-" {
        return Ok(load_file(name)?.policy);
    }
    let names: Vec<&str> = catalog::presets().map(|p| p.name).collect();
    bail!(
        "`{name}` is neither a preset nor a file; presets: {}",
        names.join(", ")
    )
}

pub fn merge(args: &MergeArgs) -> Result<()> {
    let mut merged = if args.base == "baseline" {
        catalog::baseline()
    } else {
        load_file(&args.base)?.policy
    };
    for p in &args.presets {
        let add = preset_or_file(p)?;
        policy::merge_into(&mut merged, &add);
    }
    // The result must itself be valid; merging two valid policies always is, but say so if not.
    let text = policy::to_yaml(&merged);
    if let Err(e) = policy::load(&text, "<merged>") {
        bail!("the merged policy is invalid:\n{e}");
    }
    print!("{text}");
    Ok(())
}

/// Prints findings below errors for commands that load a policy for the gateway.
pub fn print_findings(loaded: &policy::Loaded) {
    for f in loaded
        .findings
        .iter()
        .filter(|f| f.severity >= Severity::Warning)
    {
        eprintln!("{f}");
    }
}
