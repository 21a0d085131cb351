//! The gateway's figures (issue 4, "Figures"), measured end to end: a private gateway, real
//! supervisors, real namespaces. Prints a table to paste into a closing note.
//!
//! ```text
//! cargo build --release -p openshell-gateway -p openshell-sandbox -p openshell
//! cargo bench -p openshell-gateway --bench figures [-- OPTIONS]
//! ```
//!
//! The binaries are taken from the directory the bench runs from (`target/release`, or
//! `$OPENSHELL_BIN_DIR`); the bench stops with the build command above when one is missing.
//! It needs what sandboxes need (root, or unprivileged user namespaces).
//!
//! 1. `sandbox create` → command running: the command is `date +%s%N`, whose output (the
//!    supervisor's output file) is compared with the realtime clock read just before the
//!    `CreateSandbox` RPC; p50/p90 over `--creates` sandboxes, each deleted after. Once more
//!    through the CLI, for information.
//! 2. `--sandboxes` sandboxes running `sleep infinity` at once: all reach `ready`; the
//!    gateway's VmRSS (its pid from `Health`), and the supervisors' for information.
//! 3. `SetPolicy{wait: true}` alternating two revisions on one running sandbox: p50/p90 over
//!    `--policy-sets`; once through `openshell policy set --wait`, for information.
//! 4. One `StreamEvents{follow: true}` watcher, no filter. 4a: `--generators` `PushEvents`
//!    streams push batches of `--batch` events for a real sandbox as fast as the gateway
//!    takes them, for `--fanout-secs`: the events/s the watcher receives. 4b: the same plus
//!    `--chatty` sandboxes running curl against a denied host in a tight loop, for
//!    `--ingest-secs`: events/s again; no event lost (the watcher's seqs are contiguous, it saw
//!    every generated event, every denial a chatty sandbox counted is stored and was seen); the
//!    gateway's RSS every second.
//!
//! Everything (sandboxes, supervisors, the gateway, its temporary state) is removed at the
//! end, also on failure or Ctrl-C.

use anyhow::{Context, Result, bail, ensure};
use openshell_proto::pb::{
    self, gateway_client::GatewayClient, supervisor_client::SupervisorClient,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tonic::transport::Channel;

const BUILD: &str = "cargo build --release -p openshell-gateway -p openshell-sandbox -p openshell";
const RUN: &str = "cargo bench -p openshell-gateway --bench figures";
/// Unmeasured rounds before each latency series (page cache, first connections).
const WARMUP: usize = 3;

type Gw = GatewayClient<Channel>;

// ---------------------------------------------------------------------------------------------
// Options

#[derive(Debug, Clone)]
struct Opts {
    creates: usize,
    sandboxes: usize,
    policy_sets: usize,
    chatty: usize,
    generators: usize,
    batch: usize,
    fanout_secs: u64,
    ingest_secs: u64,
    denials: bool,
    only: Vec<u32>,
    args: Vec<String>,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            creates: 30,
            sandboxes: 50,
            policy_sets: 60,
            chatty: 20,
            generators: 1,
            batch: 500,
            fanout_secs: 10,
            ingest_secs: 30,
            denials: false,
            only: vec![1, 2, 3, 4],
            args: Vec::new(),
        }
    }
}

const USAGE: &str = "figures: the gateway's figures (issue 4)

usage: cargo bench -p openshell-gateway --bench figures [-- OPTIONS]

  --creates N       sandboxes created one after another for figure 1 [30]
  --sandboxes N     sandboxes running at once for figure 2 [50]
  --policy-sets N   SetPolicy{wait} calls for figure 3 [60]
  --chatty N        sandboxes looping on a denied curl for figure 4 [20]
  --generators N    PushEvents load streams for figure 4 [1]
  --batch N         events per pushed batch [500]
  --fanout-secs S   figure 4a (load streams alone; 0 skips it) [10]
  --ingest-secs S   figure 4b (load streams and chatty sandboxes) [30]
  --denials         the load streams push denials (as chatty sandboxes do), not allows
  --only LIST       figures to run, e.g. 1,3 [1,2,3,4]
";

fn parse_args() -> Result<Opts> {
    let mut o = Opts::default();
    let mut it = std::env::args().skip(1);
    fn num<T: std::str::FromStr>(flag: &str, v: Option<String>) -> Result<T> {
        let v = v.with_context(|| format!("{flag} needs a value"))?;
        v.parse()
            .map_err(|_| anyhow::anyhow!("{flag}: `{v}` is not a number"))
    }
    while let Some(a) = it.next() {
        match a.as_str() {
            // cargo bench passes --bench to harness = false targets.
            "--bench" => continue,
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            "--creates" => o.creates = num(&a, it.next())?,
            "--sandboxes" => o.sandboxes = num(&a, it.next())?,
            "--policy-sets" => o.policy_sets = num(&a, it.next())?,
            "--chatty" => o.chatty = num(&a, it.next())?,
            "--generators" => o.generators = num(&a, it.next())?,
            "--batch" => o.batch = num(&a, it.next())?,
            "--fanout-secs" => o.fanout_secs = num(&a, it.next())?,
            "--ingest-secs" => o.ingest_secs = num(&a, it.next())?,
            "--denials" => o.denials = true,
            "--only" => {
                let v: String = num(&a, it.next())?;
                o.only = v
                    .split(',')
                    .map(|s| s.trim().parse::<u32>())
                    .collect::<Result<_, _>>()
                    .map_err(|_| anyhow::anyhow!("--only: `{v}` is not a list like 1,3"))?;
            }
            other => bail!("unknown argument `{other}`\n\n{USAGE}"),
        }
    }
    // The command line printed with the figures: every option that differs from its default.
    o.args = printed_args(&o);
    ensure!(
        o.creates > 0 && o.policy_sets > 0,
        "counts must be positive"
    );
    ensure!(
        o.batch > 0 && o.ingest_secs > 0,
        "--batch and --ingest-secs must be positive"
    );
    Ok(o)
}

fn printed_args(o: &Opts) -> Vec<String> {
    let d = Opts::default();
    let mut v = Vec::new();
    let mut push = |flag: &str, val: String, default: String| {
        if val != default {
            v.push(flag.to_string());
            v.push(val);
        }
    };
    push("--creates", o.creates.to_string(), d.creates.to_string());
    push(
        "--sandboxes",
        o.sandboxes.to_string(),
        d.sandboxes.to_string(),
    );
    push(
        "--policy-sets",
        o.policy_sets.to_string(),
        d.policy_sets.to_string(),
    );
    push("--chatty", o.chatty.to_string(), d.chatty.to_string());
    push(
        "--generators",
        o.generators.to_string(),
        d.generators.to_string(),
    );
    push("--batch", o.batch.to_string(), d.batch.to_string());
    push(
        "--fanout-secs",
        o.fanout_secs.to_string(),
        d.fanout_secs.to_string(),
    );
    push(
        "--ingest-secs",
        o.ingest_secs.to_string(),
        d.ingest_secs.to_string(),
    );
    let only = |l: &[u32]| {
        l.iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    push("--only", only(&o.only), only(&d.only));
    if o.denials {
        v.push("--denials".into());
    }
    v
}

// ---------------------------------------------------------------------------------------------
// The report

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Pass,
    Miss,
    Info,
}

struct Row {
    figure: String,
    measured: String,
    target: String,
    verdict: Verdict,
}

#[derive(Default)]
struct Report {
    rows: Vec<Row>,
    notes: Vec<String>,
    /// /proc/loadavg when the run started: other work on the machine skews every figure.
    load_at_start: String,
}

impl Report {
    fn row(
        &mut self,
        figure: impl Into<String>,
        measured: impl Into<String>,
        target: &str,
        ok: bool,
    ) {
        let row = Row {
            figure: figure.into(),
            measured: measured.into(),
            target: target.into(),
            verdict: if ok { Verdict::Pass } else { Verdict::Miss },
        };
        eprintln!(
            "  {} | {} | {} | {}",
            row.figure,
            row.measured,
            row.target,
            verdict(row.verdict)
        );
        self.rows.push(row);
    }

    fn info(&mut self, figure: impl Into<String>, measured: impl Into<String>) {
        let row = Row {
            figure: figure.into(),
            measured: measured.into(),
            target: "(information)".into(),
            verdict: Verdict::Info,
        };
        eprintln!("  {} | {}", row.figure, row.measured);
        self.rows.push(row);
    }

    fn note(&mut self, n: impl Into<String>) {
        let n = n.into();
        eprintln!("  note: {n}");
        self.notes.push(n);
    }

    fn print(&self, o: &Opts, failure: Option<&anyhow::Error>) {
        let args = if o.args.is_empty() {
            String::new()
        } else {
            format!(" -- {}", o.args.join(" "))
        };
        println!();
        println!("### Gateway figures (issue 4)");
        println!();
        println!(
            "{}; load average {} at the start, {} at the end",
            machine(),
            self.load_at_start,
            loadavg()
        );
        println!();
        println!("```");
        println!("{BUILD}");
        println!("{RUN}{args}");
        println!("```");
        println!();
        println!("| Figure | Measured | Target | |");
        println!("|---|---|---|---|");
        for r in &self.rows {
            println!(
                "| {} | {} | {} | {} |",
                r.figure,
                r.measured,
                r.target,
                verdict(r.verdict)
            );
        }
        if !self.notes.is_empty() {
            println!();
            for n in &self.notes {
                println!("- {n}");
            }
        }
        if let Some(e) = failure {
            println!();
            println!("**The run stopped early:** {e:#}");
        }
        let missed = self
            .rows
            .iter()
            .filter(|r| r.verdict == Verdict::Miss)
            .count();
        println!();
        println!(
            "{} figure(s) pass, {missed} miss.",
            self.rows
                .iter()
                .filter(|r| r.verdict == Verdict::Pass)
                .count()
        );
    }
}

fn verdict(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "PASS",
        Verdict::Miss => "MISS",
        Verdict::Info => "",
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args(args)
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let rev = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty = git(&["status", "--porcelain"]).is_some_and(|s| !s.is_empty());
    let when = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let root = nix::unistd::geteuid().is_root();
    format!(
        "{when}, commit {rev}{}, {cores} cores ({cpu}), Linux {kernel}, {}, release build, state on the target dir's disk",
        if dirty {
            " (+ uncommitted changes)"
        } else {
            ""
        },
        if root { "as root" } else { "unprivileged" }
    )
}

// ---------------------------------------------------------------------------------------------
// Numbers

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or_default()
}

/// Nearest-rank percentile of `v` (sorted in place).
fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

fn mb(kb: u64) -> String {
    format!("{:.1} MB", kb as f64 / 1024.0)
}

// ---------------------------------------------------------------------------------------------
// Processes

fn status_kb(pid: u32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(key) && l[key.len()..].starts_with(':'))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
}

fn rss_kb(pid: u32) -> u64 {
    status_kb(pid, "VmRSS").unwrap_or(0)
}

/// Proportional set size: shared pages (the supervisor's text) split among their users.
fn pss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Pss:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

fn pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn ppid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')')
        .next()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Every process started for this gateway's sandboxes: `openshell-sandbox` processes (the
/// supervisors and the sandboxes' PID 1, which is a fork of its supervisor) whose
/// environment points at our socket. Other gateways' supervisors are never matched.
fn our_supervisor_processes(socket: &Path) -> Vec<u32> {
    let needle = format!("OPENSHELL_ENDPOINT=unix://{}", socket.display());
    pids()
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .map(|env| env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()))
                .unwrap_or(false)
        })
        .collect()
}

/// (supervisors, every process under them including themselves).
fn supervisor_trees(socket: &Path) -> (Vec<u32>, Vec<u32>) {
    let ours: HashSet<u32> = our_supervisor_processes(socket).into_iter().collect();
    let tops: Vec<u32> = ours
        .iter()
        .copied()
        .filter(|p| ppid(*p).is_none_or(|pp| !ours.contains(&pp)))
        .collect();
    let parents: HashMap<u32, u32> = pids()
        .into_iter()
        .filter_map(|p| Some((p, ppid(p)?)))
        .collect();
    let mut tree: HashSet<u32> = tops.iter().copied().collect();
    loop {
        let before = tree.len();
        for (p, pp) in &parents {
            if tree.contains(pp) {
                tree.insert(*p);
            }
        }
        if tree.len() == before {
            break;
        }
    }
    (tops, tree.into_iter().collect())
}

fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
}

// ---------------------------------------------------------------------------------------------
// The private gateway

struct Bins {
    gateway: PathBuf,
    supervisor: PathBuf,
    cli: PathBuf,
}

fn find_bins() -> Result<Bins> {
    let dir = match std::env::var_os("OPENSHELL_BIN_DIR") {
        Some(d) => PathBuf::from(d),
        // target/<profile>/deps/figures-<hash> → target/<profile>
        None => std::env::current_exe()?
            .parent()
            .and_then(Path::parent)
            .context("cannot tell the target directory from the bench's path")?
            .to_path_buf(),
    };
    let bin = |name: &str| -> Result<PathBuf> {
        let p = dir.join(name);
        ensure!(
            p.is_file(),
            "{} is missing; build the binaries first:\n    {BUILD}",
            p.display()
        );
        Ok(p)
    };
    let bins = Bins {
        gateway: bin("openshell-gateway")?,
        supervisor: bin("openshell-sandbox")?,
        cli: bin("openshell")?,
    };
    // A stale binary would measure old code: say so rather than guess.
    if let (Ok(me), Ok(gw)) = (
        std::env::current_exe().and_then(std::fs::metadata),
        std::fs::metadata(&bins.gateway),
    ) && let (Ok(a), Ok(b)) = (me.modified(), gw.modified())
        && b + Duration::from_secs(3600) < a
    {
        eprintln!(
            "figures: warning: {} is over an hour older than this bench; rebuild with `{BUILD}`",
            bins.gateway.display()
        );
    }
    Ok(bins)
}

struct Gateway {
    /// Removed on drop, unless FIGURES_KEEP is set.
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
    state: PathBuf,
    socket: PathBuf,
    log: PathBuf,
    cli: PathBuf,
    child: Option<Child>,
}

impl Gateway {
    fn start(bins: &Bins) -> Result<Gateway> {
        // On the target dir's disk (like the store bench), not a tmpfs: every acknowledged
        // write pays its fsync, as it would in a user's state dir.
        let dir = tempfile::Builder::new()
            .prefix("figures-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .context("cannot create a temporary directory")?;
        let state = dir.path().join("state");
        let socket = dir.path().join("gw.sock");
        let log = dir.path().join("gateway.log");
        let out = std::fs::File::create(&log)?;
        let child = Command::new(&bins.gateway)
            .arg("--state-dir")
            .arg(&state)
            .arg("--listen")
            .arg(format!("unix://{}", socket.display()))
            .arg("--supervisor")
            .arg(&bins.supervisor)
            .env_remove("OPENSHELL_UPSTREAM_CA")
            .env_remove("OPENSHELL_RESOLVE")
            // Its own process group: Ctrl-C on the bench must leave it to us to stop, after
            // the sandboxes are deleted.
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("cannot start {}", bins.gateway.display()))?;
        Ok(Gateway {
            root: dir.path().to_path_buf(),
            dir: Some(dir),
            state,
            socket,
            log,
            cli: bins.cli.clone(),
            child: Some(child),
        })
    }

    /// A new connection (its own HTTP/2 connection) to the gateway, waiting for it to answer.
    async fn connect(&mut self) -> Result<Channel> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(c) = openshell_proto::transport::unix_channel(&self.socket).await {
                return Ok(c);
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                bail!(
                    "the gateway exited ({status}):\n{}",
                    openshell_gateway::driver::tail(&self.log, 10)
                );
            }
            ensure!(
                Instant::now() < deadline,
                "the gateway did not answer on {} within 10 s:\n{}",
                self.socket.display(),
                openshell_gateway::driver::tail(&self.log, 10)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn cli(&self) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(&self.cli);
        c.env("OPENSHELL_STATE_DIR", &self.state)
            .env("OPENSHELL_GATEWAY_SOCKET", &self.socket)
            .env_remove("OPENSHELL_UPSTREAM_CA")
            .env_remove("OPENSHELL_RESOLVE")
            .stdin(Stdio::null());
        c
    }

    /// Where the process driver puts a sandbox's output (the command's stdout among it).
    fn output_of(&self, name: &str) -> PathBuf {
        self.state.join("sandboxes").join(format!("{name}.out"))
    }

    /// Deletes the sandboxes, stops the gateway, and ends any supervisor of ours that is left
    /// (the gateway leaves supervisors running when it stops, by design). Idempotent.
    fn shutdown(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if matches!(child.try_wait(), Ok(None)) {
            // Only while our gateway runs: the CLI would start a new one otherwise.
            let deleter = std::process::Command::new(&self.cli)
                .args(["sandbox", "delete", "--all"])
                .env("OPENSHELL_STATE_DIR", &self.state)
                .env("OPENSHELL_GATEWAY_SOCKET", &self.socket)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            if let Ok(mut d) = deleter {
                let deadline = Instant::now() + Duration::from_secs(60);
                while matches!(d.try_wait(), Ok(None)) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = d.kill();
                let _ = d.wait();
            }
            signal(child.id(), nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
        }
        let _ = child.wait();
        let left = our_supervisor_processes(&self.socket);
        if !left.is_empty() {
            eprintln!(
                "figures: stopping {} leftover supervisor process(es)",
                left.len()
            );
            for p in &left {
                signal(*p, nix::sys::signal::Signal::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(3);
            while !our_supervisor_processes(&self.socket).is_empty() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            for p in our_supervisor_processes(&self.socket) {
                signal(p, nix::sys::signal::Signal::SIGKILL);
            }
        }
        if std::env::var_os("FIGURES_KEEP").is_some()
            && let Some(dir) = self.dir.take()
        {
            eprintln!("figures: state kept in {}", dir.keep().display());
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.shutdown();
    }
}

// ---------------------------------------------------------------------------------------------
// gRPC helpers

fn phase_of(s: &pb::Sandbox) -> pb::Phase {
    pb::Phase::try_from(s.phase).unwrap_or(pb::Phase::Unspecified)
}

async fn create(c: &mut Gw, name: &str, workdir: Option<&Path>, command: &[&str]) -> Result<()> {
    c.create_sandbox(pb::CreateSandboxRequest {
        name: name.into(),
        workdir: workdir.map(|w| w.display().to_string()).unwrap_or_default(),
        command: command.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    })
    .await
    .with_context(|| format!("CreateSandbox {name}"))?;
    Ok(())
}

async fn delete(c: &mut Gw, name: &str) -> Result<()> {
    c.delete_sandbox(pb::DeleteSandboxRequest {
        name: name.into(),
        all: false,
    })
    .await
    .with_context(|| format!("DeleteSandbox {name}"))?;
    Ok(())
}

async fn delete_all(c: &mut Gw) -> Result<usize> {
    let r = c
        .delete_sandbox(pb::DeleteSandboxRequest {
            name: String::new(),
            all: true,
        })
        .await
        .context("DeleteSandbox --all")?;
    Ok(r.into_inner().deleted.len())
}

/// Waits until every sandbox in `names` is `ready`. A `failed` one ends the wait with its
/// reason; `stopped` is waited through (the gateway may say so before the supervisor
/// registers), until the timeout.
async fn wait_ready(gw: &Gateway, c: &mut Gw, names: &[String], timeout: Duration) -> Result<()> {
    let want: HashSet<&str> = names.iter().map(String::as_str).collect();
    let deadline = Instant::now() + timeout;
    loop {
        let list = c
            .list_sandboxes(pb::ListSandboxesRequest {})
            .await
            .context("ListSandboxes")?
            .into_inner()
            .sandboxes;
        let mut ready = 0;
        let mut not_ready = Vec::new();
        for s in list.iter().filter(|s| want.contains(s.name.as_str())) {
            match phase_of(s) {
                pb::Phase::Ready => ready += 1,
                pb::Phase::Failed => bail!(
                    "sandbox {} failed: {}\n{}",
                    s.name,
                    s.reason,
                    openshell_gateway::driver::tail(&gw.output_of(&s.name), 10)
                ),
                p => not_ready.push(format!("{}: {}", s.name, p.as_str_name())),
            }
        }
        if ready == want.len() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{ready} of {} sandboxes ready after {:?}; not ready: {}",
                want.len(),
                timeout,
                not_ready.join(", ")
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The first line of `path` once it holds a number and a newline.
async fn wait_number(path: &Path, timeout: Duration) -> Result<i128> {
    let deadline = Instant::now() + timeout;
    loop {
        // Only whole lines: the number may be half written. The file also gets the
        // supervisor's own messages.
        if let Ok(s) = std::fs::read_to_string(path)
            && let Some(n) = s
                .split_inclusive('\n')
                .filter(|l| l.ends_with('\n'))
                .find_map(|l| l.trim().parse::<i128>().ok())
        {
            return Ok(n);
        }
        ensure!(
            Instant::now() < deadline,
            "no time printed in {} within {timeout:?}; it holds:\n{}",
            path.display(),
            openshell_gateway::driver::tail(path, 10)
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Figure 1: create → command running

async fn fig_create(gw: &mut Gateway, o: &Opts, r: &mut Report) -> Result<()> {
    eprintln!(
        "figure 1: create → command running ({} sandboxes)",
        o.creates
    );
    let mut c = GatewayClient::new(gw.connect().await?);
    let mut total = Vec::new();
    let mut rpc = Vec::new();
    for i in 0..WARMUP + o.creates {
        let name = format!("create-{i:02}");
        let t0 = now_ns();
        let started = Instant::now();
        create(&mut c, &name, None, &["date", "+%s%N"]).await?;
        let rpc_ms = started.elapsed().as_secs_f64() * 1e3;
        let printed = wait_number(&gw.output_of(&name), Duration::from_secs(20)).await?;
        delete(&mut c, &name).await?;
        if i >= WARMUP {
            total.push((printed - t0) as f64 / 1e6);
            rpc.push(rpc_ms);
        }
    }
    let (p50, p90) = (pct(&mut total, 50.0), pct(&mut total, 90.0));
    let (min, max) = (total[0], total[total.len() - 1]);
    r.row(
        format!(
            "`sandbox create` → command running (gRPC CreateSandbox, n={})",
            o.creates
        ),
        format!("p50 {p50:.1} ms, p90 {p90:.1} ms (min {min:.1}, max {max:.1})"),
        "p50 ≤ 50 ms",
        p50 <= 50.0,
    );
    r.info(
        "… of which the CreateSandbox RPC itself",
        format!(
            "p50 {:.1} ms, p90 {:.1} ms",
            pct(&mut rpc, 50.0),
            pct(&mut rpc, 90.0)
        ),
    );

    // Once through the CLI: process start, connect, create, and its wait for `ready`.
    let name = "create-cli";
    let t0 = now_ns();
    let out = gw
        .cli()
        .args(["sandbox", "create", "--name", name, "--", "date", "+%s%N"])
        .output()
        .await
        .context("run openshell sandbox create")?;
    let returned = now_ns();
    ensure!(
        out.status.success(),
        "openshell sandbox create failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = wait_number(&gw.output_of(name), Duration::from_secs(20)).await?;
    delete(&mut c, name).await?;
    r.info(
        "`openshell sandbox create -- date +%s%N` → command running (CLI, once)",
        format!(
            "{:.1} ms (the CLI returned after {:.1} ms)",
            (printed - t0) as f64 / 1e6,
            (returned - t0) as f64 / 1e6
        ),
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Figure 2: many sandboxes at once

async fn gateway_pid(c: &mut Gw) -> Result<u32> {
    Ok(c.health(pb::Empty {})
        .await
        .context("Health")?
        .into_inner()
        .pid)
}

async fn fig_many(gw: &mut Gateway, o: &Opts, r: &mut Report) -> Result<()> {
    eprintln!("figure 2: {} sandboxes running at once", o.sandboxes);
    let mut c = GatewayClient::new(gw.connect().await?);
    let pid = gateway_pid(&mut c).await?;
    let idle_kb = rss_kb(pid);
    let names: Vec<String> = (0..o.sandboxes).map(|i| format!("many-{i:02}")).collect();
    let started = Instant::now();
    for n in &names {
        create(&mut c, n, None, &["sleep", "infinity"]).await?;
    }
    let created = started.elapsed();
    let ready = wait_ready(gw, &mut c, &names, Duration::from_secs(120)).await;
    let all_ready = started.elapsed();
    let ready_ok = ready.is_ok();
    if let Err(e) = &ready {
        r.note(format!("not every sandbox became ready: {e:#}"));
    }
    // Let the first events and acks settle before reading memory.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let running = c
        .list_sandboxes(pb::ListSandboxesRequest {})
        .await?
        .into_inner()
        .sandboxes
        .iter()
        .filter(|s| phase_of(s) == pb::Phase::Ready)
        .count();
    let gw_kb = rss_kb(pid);
    let gw_hwm = status_kb(pid, "VmHWM").unwrap_or(0);
    let (tops, tree) = supervisor_trees(&gw.socket);
    let sup_rss: u64 = tops.iter().map(|p| rss_kb(*p)).sum();
    let sup_pss: u64 = tops.iter().map(|p| pss_kb(*p)).sum();
    let tree_pss: u64 = tree.iter().map(|p| pss_kb(*p)).sum();
    r.row(
        format!("{} sandboxes running at once: gateway RSS", o.sandboxes),
        format!(
            "{} (peak {}, idle {}); {running}/{} ready, all ready {:.2} s after the first create (creates took {:.2} s)",
            mb(gw_kb),
            mb(gw_hwm),
            mb(idle_kb),
            o.sandboxes,
            all_ready.as_secs_f64(),
            created.as_secs_f64()
        ),
        "≤ 100 MB, all ready",
        ready_ok && running == o.sandboxes && gw_kb <= 100 * 1024,
    );
    r.info(
        format!("… the {} supervisors", tops.len()),
        format!(
            "RSS sum {} (shared text counted {} times), PSS sum {}; with their sandboxes' processes ({} in all) PSS {}",
            mb(sup_rss),
            tops.len(),
            mb(sup_pss),
            tree.len(),
            mb(tree_pss)
        ),
    );
    let t = Instant::now();
    let n = delete_all(&mut c).await?;
    r.info(
        format!("… `sandbox delete --all` of {n}"),
        format!("{:.2} s", t.elapsed().as_secs_f64()),
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Figure 3: policy set --wait

fn policy_doc(host: &str) -> String {
    format!(
        "version: 1
network_policies:
  figures:
    name: figures-{host}
    endpoints:
      - host: {host}
        port: 443
    binaries:
      - {{ path: /usr/bin/curl }}
"
    )
}

async fn fig_policy(gw: &mut Gateway, o: &Opts, r: &mut Report) -> Result<()> {
    eprintln!("figure 3: policy set --wait ({} revisions)", o.policy_sets);
    let mut c = GatewayClient::new(gw.connect().await?);
    let name = "policy";
    create(&mut c, name, None, &["sleep", "infinity"]).await?;
    wait_ready(gw, &mut c, &[name.to_string()], Duration::from_secs(30)).await?;
    let docs = [policy_doc("a.figures.test"), policy_doc("b.figures.test")];
    let mut lat = Vec::new();
    for i in 0..WARMUP + o.policy_sets {
        let started = Instant::now();
        let resp = c
            .set_policy(pb::SetPolicyRequest {
                sandbox: name.into(),
                policy_yaml: docs[i % 2].clone(),
                source_name: format!("figures-{}.yaml", i % 2),
                author: "figures".into(),
                wait: true,
                wait_timeout_ms: 10_000,
            })
            .await
            .context("SetPolicy")?
            .into_inner();
        let ms = started.elapsed().as_secs_f64() * 1e3;
        ensure!(
            resp.acknowledged && !resp.unchanged,
            "revision {} was not a new, acknowledged revision: {resp:?}",
            resp.revision
        );
        if i >= WARMUP {
            lat.push(ms);
        }
    }
    let (p50, p90) = (pct(&mut lat, 50.0), pct(&mut lat, 90.0));
    let (min, max) = (lat[0], lat[lat.len() - 1]);
    r.row(
        format!(
            "`policy set --wait` → enforced (gRPC SetPolicy{{wait}}, n={}, alternating revisions)",
            o.policy_sets
        ),
        format!("p50 {p50:.1} ms, p90 {p90:.1} ms (min {min:.1}, max {max:.1})"),
        "p50 ≤ 30 ms",
        p50 <= 30.0,
    );
    let current = WARMUP + o.policy_sets;
    let file = gw.root.join("policy.yaml");
    std::fs::write(&file, &docs[current % 2])?;
    let started = Instant::now();
    let out = gw
        .cli()
        .args(["policy", "set", name, "--policy"])
        .arg(&file)
        .arg("--wait")
        .output()
        .await
        .context("run openshell policy set")?;
    let ms = started.elapsed().as_secs_f64() * 1e3;
    ensure!(
        out.status.success(),
        "openshell policy set --wait failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    r.info(
        "`openshell policy set --wait` (CLI, once)",
        format!("{ms:.1} ms"),
    );
    delete(&mut c, name).await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Figure 4: one watcher; a load generator alone, then with chatty sandboxes

/// A chatty sandbox: one curl after another, each making 100 requests to a denied host (URL
/// globbing: one process per 100 denials, so the sandboxes' own CPU use does not drown the
/// gateway's), counting the 403s (each one a denial the proxy decided and reported) until
/// /sandbox/stop appears; then it writes "<403s> <other outcomes>" to /sandbox/count and idles,
/// so its supervisor keeps running (a supervisor that exits may drop its last events).
const CHATTY: &str = r#"n=0; o=0
while [ ! -e /sandbox/stop ]; do
  k=$(curl -s -m5 -o /dev/null -w '%{http_code}\n' 'http://denied.test/[1-100]' | grep -c '^403$')
  n=$((n+k)); o=$((o+100-k))
done
echo "$n $o" > /sandbox/count.tmp && mv /sandbox/count.tmp /sandbox/count
exec sleep infinity"#;

/// The sandbox the load generator pushes events for.
const LOAD: &str = "load";
/// The policy name in generated events, which tells them from the `load` sandbox's own.
const GENERATED: &str = "figures-load";

#[derive(Default)]
struct WatchStats {
    received: u64,
    first_seq: u64,
    last_seq: u64,
    /// Seqs that never arrived between two that did.
    missing: u64,
    /// Seqs that arrived at or below one already seen.
    reordered: u64,
    denials: HashMap<String, u64>,
    generated: u64,
    ended: Option<String>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// The watcher: one StreamEvents{follow} over its own connection, no filter, so every stored
/// event comes through it and its seqs must be contiguous.
async fn watch(channel: Channel, stats: Arc<Mutex<WatchStats>>, stop: Arc<AtomicBool>) {
    let mut c = GatewayClient::new(channel).max_decoding_message_size(64 << 20);
    let stream = c
        .stream_events(pb::EventFilter {
            follow: true,
            tail: 1,
            ..Default::default()
        })
        .await;
    let mut stream = match stream {
        Ok(s) => s.into_inner(),
        Err(e) => {
            lock(&stats).ended = Some(format!("StreamEvents: {e}"));
            return;
        }
    };
    let stopped = async {
        while !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::pin!(stopped);
    loop {
        let msg = tokio::select! {
            m = stream.message() => m,
            _ = &mut stopped => return,
        };
        let batch = match msg {
            Ok(Some(b)) => b,
            Ok(None) => {
                lock(&stats).ended = Some("the gateway ended the stream".into());
                return;
            }
            Err(e) => {
                lock(&stats).ended = Some(format!("{:?}: {}", e.code(), e.message()));
                return;
            }
        };
        let mut s = lock(&stats);
        for e in &batch.events {
            s.received += 1;
            if s.first_seq == 0 {
                // The newest stored event (tail: 1), from before the run: only a start.
                s.first_seq = e.seq;
                s.last_seq = e.seq;
                continue;
            } else if e.seq <= s.last_seq {
                s.reordered += 1;
                continue;
            } else {
                s.missing += e.seq - s.last_seq - 1;
            }
            s.last_seq = e.seq;
            if e.sandbox == LOAD && e.policy == GENERATED {
                s.generated += 1;
            } else if e.action == "deny" {
                *s.denials.entry(e.sandbox.clone()).or_default() += 1;
            }
        }
    }
}

/// One load stream: PushEvents for the real sandbox `load`, batches of `batch` allow events,
/// as fast as the gateway takes them. Returns (sent, acknowledged).
async fn generate(
    channel: Channel,
    batch: usize,
    denials: bool,
    stop: Arc<AtomicBool>,
    acked_so_far: Arc<AtomicU64>,
) -> Result<(u64, u64)> {
    let mut client = SupervisorClient::new(channel);
    let template: Vec<pb::Event> = (0..batch)
        .map(|i| {
            if denials {
                // What a chatty sandbox's proxy reports: an L4 denial, aggregated by the gateway.
                pb::Event {
                    sandbox: LOAD.into(),
                    source: "sandbox".into(),
                    level: "warn".into(),
                    kind: "network".into(),
                    action: "deny".into(),
                    host: "denied.test".into(),
                    port: 80,
                    binary: "/usr/bin/curl".into(),
                    pid: 4000 + i as u32,
                    policy: GENERATED.into(),
                    reason: "endpoint denied.test:80 is not allowed by any policy".into(),
                    layer: "l4".into(),
                    ..Default::default()
                }
            } else {
                pb::Event {
                    sandbox: LOAD.into(),
                    source: "sandbox".into(),
                    level: "info".into(),
                    kind: "network".into(),
                    action: "allow".into(),
                    host: "api.github.com".into(),
                    port: 443,
                    binary: "/usr/bin/curl".into(),
                    pid: 4000 + i as u32,
                    method: "GET".into(),
                    path: format!("/repos/acme/widgets/issues/{i}"),
                    policy: GENERATED.into(),
                    layer: "l7".into(),
                    ..Default::default()
                }
            }
        })
        .collect();
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::EventBatch>(2);
    let sender = tokio::spawn(async move {
        let mut sent = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let time = openshell_proto::event::now_rfc3339();
            let mut events = template.clone();
            for e in &mut events {
                e.time.clone_from(&time);
            }
            if tx.send(pb::EventBatch { events }).await.is_err() {
                break;
            }
            sent += batch as u64;
        }
        sent
    });
    let mut acks = client
        .push_events(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .context("PushEvents")?
        .into_inner();
    let mut acked = 0;
    while let Some(a) = acks.message().await.context("PushEvents acks")? {
        acked_so_far.fetch_add(a.acked.saturating_sub(acked), Ordering::Relaxed);
        acked = a.acked;
    }
    let sent = sender.await.context("the load sender")?;
    Ok((sent, acked))
}

/// Stored deny events of `sandbox` (a non-following StreamEvents).
async fn stored_denials(c: &mut Gw, sandbox: &str) -> Result<u64> {
    let mut s = c
        .stream_events(pb::EventFilter {
            sandbox: sandbox.into(),
            action: "deny".into(),
            ..Default::default()
        })
        .await
        .context("StreamEvents")?
        .into_inner();
    let mut n = 0;
    while let Some(b) = s.message().await? {
        n += b.events.len() as u64;
    }
    Ok(n)
}

/// What one load run measured.
struct LoadRun {
    secs: u64,
    /// Events the watcher received during the timed window, and the window.
    received: u64,
    window: Duration,
    /// (second, gateway RSS kB, events the watcher received in that second)
    samples: Vec<(u64, u64, u64)>,
    sent: u64,
    acked: u64,
    /// Acknowledged by the gateway during the timed window (the rest was in flight).
    acked_in_window: u64,
    rss_start: u64,
    rss_drained: u64,
    drain: Duration,
    /// Per chatty sandbox: (403s counted in the sandbox, other outcomes).
    counted: BTreeMap<String, (u64, u64)>,
    stored: BTreeMap<String, u64>,
    watch: WatchStats,
}

/// Creates `n` chatty sandboxes and waits until they run; their names and workdirs.
async fn start_chatty(gw: &Gateway, c: &mut Gw, n: usize) -> Result<Vec<(String, PathBuf)>> {
    let mut chatty = Vec::new();
    for i in 0..n {
        let name = format!("chatty-{i:02}");
        let dir = gw.root.join("work").join(&name);
        std::fs::create_dir_all(&dir)?;
        create(c, &name, Some(&dir), &["sh", "-c", CHATTY]).await?;
        chatty.push((name, dir));
    }
    let names: Vec<String> = chatty.iter().map(|(n, _)| n.clone()).collect();
    wait_ready(gw, c, &names, Duration::from_secs(120)).await?;
    Ok(chatty)
}

/// One watcher; once it is live, `chatty` chatty sandboxes are started (so it sees every
/// denial they cause), then `o.generators` load streams run for `secs` seconds; then
/// everything is stopped and drained, and the counts are collected.
async fn load_run(
    gw: &mut Gateway,
    c: &mut Gw,
    pid: u32,
    o: &Opts,
    secs: u64,
    chatty: usize,
) -> Result<LoadRun> {
    let stats = Arc::new(Mutex::new(WatchStats::default()));
    let stop_watch = Arc::new(AtomicBool::new(false));
    let watcher = tokio::spawn(watch(
        gw.connect().await?,
        stats.clone(),
        stop_watch.clone(),
    ));
    // The watcher is live once the newest stored event came through.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        {
            let s = lock(&stats);
            if s.received > 0 {
                break;
            }
            if let Some(e) = &s.ended {
                bail!("the watcher ended before it started: {e}");
            }
        }
        ensure!(Instant::now() < deadline, "the watcher received nothing");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let chatty = start_chatty(gw, c, chatty).await?;
    let rss_start = rss_kb(pid);
    let stop_gen = Arc::new(AtomicBool::new(false));
    let acked_so_far = Arc::new(AtomicU64::new(0));
    let mut gens = Vec::new();
    for _ in 0..o.generators {
        gens.push(tokio::spawn(generate(
            gw.connect().await?,
            o.batch,
            o.denials,
            stop_gen.clone(),
            acked_so_far.clone(),
        )));
    }
    let started = Instant::now();
    let received_at_start = lock(&stats).received;
    let mut samples = Vec::new();
    let mut last = received_at_start;
    for sec in 1..=secs {
        tokio::time::sleep_until((started + Duration::from_secs(sec)).into()).await;
        let s = lock(&stats);
        samples.push((sec, rss_kb(pid), s.received - last));
        last = s.received;
        if s.ended.is_some() {
            break;
        }
    }
    let window = started.elapsed();
    let received = lock(&stats).received - received_at_start;
    let acked_in_window = acked_so_far.load(Ordering::Relaxed);
    stop_gen.store(true, Ordering::Relaxed);
    let mut sent = 0;
    let mut acked = 0;
    for g in gens {
        let (s, a) = g.await.context("a load stream")??;
        sent += s;
        acked += a;
    }

    // Stop the chatty loops and collect what each counted.
    for (_, d) in &chatty {
        std::fs::write(d.join("stop"), "")?;
    }
    let mut counted = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    for (name, d) in &chatty {
        loop {
            if let Ok(s) = std::fs::read_to_string(d.join("count")) {
                let v: Vec<u64> = s
                    .split_whitespace()
                    .filter_map(|n| n.parse().ok())
                    .collect();
                if let [ok, other] = v[..] {
                    counted.insert(name.clone(), (ok, other));
                    break;
                }
            }
            ensure!(
                Instant::now() < deadline,
                "{name} did not write its count (its loop did not stop?)"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Let what is in flight arrive (supervisors batch for 20 ms): until the watcher has seen
    // every counted denial and every acknowledged event, or nothing moved for 5 s.
    let mut moved = Instant::now();
    let mut seen_before = lock(&stats).received;
    loop {
        let (done, seen) = {
            let s = lock(&stats);
            let denials_done = counted
                .iter()
                .all(|(n, (ok, _))| s.denials.get(n).copied().unwrap_or(0) >= *ok);
            (
                (denials_done && s.generated >= acked) || s.ended.is_some(),
                s.received,
            )
        };
        if done {
            break;
        }
        if seen != seen_before {
            seen_before = seen;
            moved = Instant::now();
        } else if moved.elapsed() > Duration::from_secs(5) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let drain = started.elapsed().saturating_sub(window);
    stop_watch.store(true, Ordering::Relaxed);
    let _ = watcher.await;
    let rss_drained = rss_kb(pid);

    let mut stored = BTreeMap::new();
    for name in counted.keys() {
        stored.insert(name.clone(), stored_denials(c, name).await?);
    }
    let watch = std::mem::take(&mut *lock(&stats));
    Ok(LoadRun {
        secs,
        received,
        window,
        samples,
        sent,
        acked,
        acked_in_window,
        rss_start,
        rss_drained,
        drain,
        counted,
        stored,
        watch,
    })
}

impl LoadRun {
    fn rate(&self) -> f64 {
        self.received as f64 / self.window.as_secs_f64()
    }

    fn per_second(&self) -> String {
        let mut v: Vec<f64> = self.samples.iter().map(|s| s.2 as f64).collect();
        format!(
            "per second p50 {:.0}, min {:.0}, max {:.0}",
            pct(&mut v, 50.0),
            v.first().copied().unwrap_or(0.0),
            v.last().copied().unwrap_or(0.0)
        )
    }

    fn lost(&self) -> (bool, String) {
        let w = &self.watch;
        let counted: u64 = self.counted.values().map(|(ok, _)| ok).sum();
        let stored: u64 = self.stored.values().sum();
        let seen: u64 = self
            .counted
            .keys()
            .map(|n| w.denials.get(n).copied().unwrap_or(0))
            .sum();
        let not_stored: u64 = self
            .counted
            .iter()
            .map(|(n, (ok, _))| ok.saturating_sub(self.stored.get(n).copied().unwrap_or(0)))
            .sum();
        let not_seen: u64 = self
            .counted
            .iter()
            .map(|(n, (ok, _))| ok.saturating_sub(w.denials.get(n).copied().unwrap_or(0)))
            .sum();
        let ok = w.missing == 0
            && w.reordered == 0
            && w.ended.is_none()
            && not_stored == 0
            && not_seen == 0
            && self.acked == self.sent
            && w.generated == self.acked;
        let mut text = String::new();
        if !self.counted.is_empty() {
            text.push_str(&format!(
                "denials: {counted} answered 403 in the sandboxes, {stored} stored ({not_stored} missing), {seen} seen by the watcher ({not_seen} missing); "
            ));
        }
        text.push_str(&format!(
            "generated: {} pushed, {} acknowledged, {} seen by the watcher; watcher seqs {}..{}: {} missing, {} out of order",
            self.sent, self.acked, w.generated, w.first_seq, w.last_seq, w.missing, w.reordered
        ));
        if let Some(e) = &w.ended {
            text.push_str(&format!("; the watcher was cut off: {e}"));
        }
        (ok, text)
    }

    fn curve(&self) -> String {
        self.samples
            .iter()
            .filter(|(sec, _, _)| *sec == 1 || sec % 5 == 0)
            .map(|(sec, kb, n)| {
                format!(
                    "{sec}s: {:.0} MB, {:.1}k",
                    *kb as f64 / 1024.0,
                    *n as f64 / 1000.0
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

async fn fig_watch(gw: &mut Gateway, o: &Opts, r: &mut Report) -> Result<()> {
    eprintln!(
        "figure 4: one watcher; {} load stream(s) alone for {} s, then with {} chatty sandboxes for {} s",
        o.generators, o.fanout_secs, o.chatty, o.ingest_secs
    );
    let mut c = GatewayClient::new(gw.connect().await?).max_decoding_message_size(64 << 20);
    let pid = gateway_pid(&mut c).await?;
    let rss_idle = rss_kb(pid);
    create(&mut c, LOAD, None, &["sleep", "infinity"]).await?;
    wait_ready(gw, &mut c, &[LOAD.to_string()], Duration::from_secs(30)).await?;
    let batches = format!(
        "{} PushEvents stream(s) of {}-event batches{}",
        o.generators,
        o.batch,
        if o.denials { " of denials" } else { "" }
    );

    // 4a. The watcher's figure: the load generator alone, as fast as the gateway ingests.
    if o.fanout_secs > 0 {
        let a = load_run(gw, &mut c, pid, o, o.fanout_secs, 0).await?;
        let (ok, lost) = a.lost();
        r.row(
            format!(
                "one watcher (StreamEvents follow) receives: {batches}, {} s",
                a.secs
            ),
            format!("{:.0} events/s ({})", a.rate(), a.per_second()),
            "≥ 50,000 events/s",
            a.rate() >= 50_000.0 && a.watch.ended.is_none(),
        );
        r.row("… events lost", lost, "none", ok);
        r.info(
            "… gateway ingest (acknowledged by PushEvents)",
            format!(
                "{:.0} events/s acknowledged during the window; {:.1} s more to drain",
                a.acked_in_window as f64 / a.window.as_secs_f64(),
                a.drain.as_secs_f64()
            ),
        );
    }

    // 4b. The same with the chatty sandboxes: loss and memory over a longer run.
    let b = load_run(gw, &mut c, pid, o, o.ingest_secs, o.chatty).await?;
    let (ok, lost) = b.lost();
    r.row(
        format!(
            "one watcher receives, {} chatty sandboxes + {batches}, {} s",
            o.chatty, b.secs
        ),
        format!("{:.0} events/s ({})", b.rate(), b.per_second()),
        "≥ 50,000 events/s",
        b.rate() >= 50_000.0 && b.watch.ended.is_none(),
    );
    r.row(
        format!("… events lost, ingest from {} chatty sandboxes", o.chatty),
        lost,
        "none",
        ok,
    );
    let stored: u64 = b.stored.values().sum();
    let other: u64 = b.counted.values().map(|(_, other)| other).sum();
    r.info(
        "… denials ingested from the chatty sandboxes",
        format!(
            "{:.0}/s ({stored} in {:.1} s){}",
            stored as f64 / b.window.as_secs_f64(),
            b.window.as_secs_f64(),
            if other > 0 {
                format!("; {other} curl calls got no 403 (not counted)")
            } else {
                String::new()
            }
        ),
    );
    if let Some((n, (ok, _))) = b
        .counted
        .iter()
        .max_by_key(|(n, (ok, _))| ok.saturating_sub(b.stored.get(*n).copied().unwrap_or(0)))
        .filter(|(n, (ok, _))| *ok > b.stored.get(*n).copied().unwrap_or(0))
    {
        r.note(format!(
            "most denials missing from the store: {n}, {ok} answered 403, {} stored",
            b.stored.get(n).copied().unwrap_or(0)
        ));
    }
    let at = |frac: f64| {
        let n = b.samples.len();
        let i = ((n as f64 * frac).ceil() as usize).clamp(1, n.max(1)) - 1;
        b.samples.get(i).map(|s| s.1).unwrap_or(0)
    };
    let (mid, end) = (at(0.5), at(1.0));
    let max = b.samples.iter().map(|s| s.1).max().unwrap_or(0);
    let growth = end.saturating_sub(mid);
    // Bounded: the second half of the run adds less than 5 MB (or 5 %), and it all stays
    // under the 100 MB the gateway may use.
    let bounded = growth <= (5 * 1024).max(mid / 20) && max <= 100 * 1024;
    r.row(
        format!("… gateway RSS during those {} s", b.secs),
        format!(
            "idle {}, at start {}, half-way {}, end {}, max {}; {} once drained ({:.1} s), VmHWM {}",
            mb(rss_idle),
            mb(b.rss_start),
            mb(mid),
            mb(end),
            mb(max),
            mb(b.rss_drained),
            b.drain.as_secs_f64(),
            mb(status_kb(pid, "VmHWM").unwrap_or(0)),
        ),
        "bounded: the 2nd half adds < 5 MB (or 5 %), max ≤ 100 MB",
        bounded,
    );
    r.note(format!(
        "figure 4b second by second (gateway RSS, events the watcher received): {}",
        b.curve()
    ));
    delete_all(&mut c).await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------

async fn run(gw: &mut Gateway, o: &Opts, r: &mut Report) -> Result<()> {
    let mut c = GatewayClient::new(gw.connect().await?);
    let h = c.health(pb::Empty {}).await?.into_inner();
    eprintln!(
        "gateway {} pid {} on {} (state {})",
        h.version, h.pid, h.listen, h.state_dir
    );
    for f in &o.only {
        match f {
            1 => fig_create(gw, o, r).await?,
            2 => fig_many(gw, o, r).await?,
            3 => fig_policy(gw, o, r).await?,
            4 => fig_watch(gw, o, r).await?,
            n => bail!("there is no figure {n}"),
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("figures: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let bins = match find_bins() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("figures: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("figures: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut gw = match Gateway::start(&bins) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("figures: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let mut report = Report {
        load_at_start: loadavg(),
        ..Report::default()
    };
    let outcome = runtime.block_on(async {
        tokio::select! {
            r = run(&mut gw, &opts, &mut report) => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        }
    });
    // Stop our tasks (watchers, load streams) before the gateway goes.
    runtime.shutdown_timeout(Duration::from_secs(2));
    if outcome.is_err() {
        eprintln!(
            "figures: the gateway's last words:\n{}",
            openshell_gateway::driver::tail(&gw.log, 20)
        );
    }
    gw.shutdown();
    report.print(&opts, outcome.as_ref().err());
    if outcome.is_err() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
