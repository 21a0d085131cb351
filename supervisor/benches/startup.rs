//! Standalone start to the command's first instruction, p50, beside bubblewrap measured the
//! same way in the same run. The command is `date +%s%N`: it prints the wall clock as its
//! first act, so (its output − the time before spawning) is the start latency.
//!
//! Run: `cargo bench -p openshell-sandbox --bench startup` (needs root and `bwrap`).

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const RUNS: usize = 60;

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// (start latency, whole run) for one run of `cmd`.
fn once(cmd: &mut Command) -> Option<(Duration, Duration)> {
    let t0 = now_ns();
    let out = cmd.output().ok()?;
    let t2 = now_ns();
    let t1: u128 = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
    Some((
        Duration::from_nanos(t1.saturating_sub(t0) as u64),
        Duration::from_nanos(t2.saturating_sub(t0) as u64),
    ))
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn measure(name: &str, mut make: impl FnMut() -> Command) -> Option<Duration> {
    let mut start = Vec::new();
    let mut whole = Vec::new();
    // Warm the page cache and the binary.
    for _ in 0..3 {
        once(&mut make())?;
    }
    for _ in 0..RUNS {
        let (s, w) = once(&mut make())?;
        start.push(s);
        whole.push(w);
    }
    let p50 = percentile(&mut start, 0.5);
    println!(
        "{name:<18} start p50 {:>8.2} ms  p90 {:>8.2} ms   whole run p50 {:>8.2} ms",
        p50.as_secs_f64() * 1e3,
        percentile(&mut start, 0.9).as_secs_f64() * 1e3,
        percentile(&mut whole, 0.5).as_secs_f64() * 1e3,
    );
    Some(p50)
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let exe = env!("CARGO_BIN_EXE_openshell-sandbox");
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, "network_policies: {}\n").expect("policy");
    let log = dir.path().join("events.log");
    let ours = measure("openshell-sandbox", || {
        let mut c = Command::new(exe);
        c.arg("run")
            .arg("--policy")
            .arg(&policy)
            .arg("--workdir")
            .arg(dir.path())
            .arg("--log")
            .arg(&log)
            .args(["--", "date", "+%s%N"]);
        c
    })
    .expect("openshell-sandbox runs (as root)");
    let bwrap = measure("bwrap", || {
        let mut c = Command::new("bwrap");
        c.args(["--unshare-all", "--ro-bind", "/", "/", "date", "+%s%N"]);
        c
    });
    match bwrap {
        Some(b) => println!(
            "ratio openshell-sandbox / bwrap: {:.2}x (targets: ≤ 20 ms, ≤ 5x)",
            ours.as_secs_f64() / b.as_secs_f64()
        ),
        None => println!("bwrap is not installed: apt-get install bubblewrap to compare"),
    }
}
