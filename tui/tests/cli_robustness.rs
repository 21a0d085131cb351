//! Small CLI guarantees (issue 4): policy files are checked before they are sent; a
//! supervisor that will not stop is killed at its deadline; commands that all start the
//! gateway at once all get the one that won.

use openshell_e2e::cli::{Env, alive, signal, wait_for};
use std::time::{Duration, Instant};

fn env() -> Env {
    Env::new(env!("CARGO_BIN_EXE_openshell"), None, None)
}

#[test]
fn an_invalid_policy_file_is_refused_before_it_is_sent() {
    let env = env();
    let s = env.json(&["sandbox", "create", "--name", "target", "--json"]);
    assert_eq!(s["phase"], "ready", "{s}");
    let history = env.json(&["policy", "history", "target", "--json"]);
    let bad = env.dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "version: 1\nnetwork_policies:\n  api:\n    endpoints: 3\n",
    )
    .expect("write");
    let err = env.fails(&[
        "policy",
        "set",
        "target",
        "--policy",
        bad.to_str().expect("utf-8"),
    ]);
    let at = format!("{}:", bad.display());
    let located = err.lines().any(|l| {
        let l = l.strip_prefix("error: ").unwrap_or(l);
        l.strip_prefix(&at).is_some_and(|rest| {
            let mut parts = rest.splitn(3, ':');
            let line = parts.next().and_then(|l| l.parse::<u32>().ok());
            let col = parts.next().and_then(|c| c.parse::<u32>().ok());
            line.is_some() && col.is_some()
        })
    });
    assert!(located, "errors must read FILE:LINE:COL: message: {err}");
    assert!(err.contains("nothing was sent"), "{err}");
    assert_eq!(
        env.json(&["policy", "history", "target", "--json"]),
        history
    );

    let err = env.fails(&[
        "sandbox",
        "create",
        "--name",
        "fresh",
        "--policy",
        bad.to_str().expect("utf-8"),
    ]);
    assert!(err.contains(&at), "{err}");
    let list = env.json(&["sandbox", "list", "--json"]);
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");

    // Over 1 MiB: refused without being read.
    let big = env.dir.path().join("big.yaml");
    let f = std::fs::File::create(&big).expect("create");
    f.set_len(3 << 20).expect("size");
    let err = env.fails(&[
        "policy",
        "set",
        "target",
        "--policy",
        big.to_str().expect("utf-8"),
    ]);
    assert!(
        err.contains("at most 1 MiB") && err.contains(&format!("{}:1:1:", big.display())),
        "{err}"
    );
}

#[test]
fn a_supervisor_that_will_not_stop_is_killed_at_its_deadline() {
    let env = env();
    let s = env.json(&[
        "sandbox", "create", "--name", "stuck", "--json", "--", "sleep", "300",
    ]);
    assert_eq!(s["phase"], "ready", "{s}");
    let pid = env.supervisor_pid("stuck").expect("supervisor");
    // A stopped process cannot act on SIGTERM; only SIGKILL ends it.
    signal(pid, nix::sys::signal::Signal::SIGSTOP);
    let t = Instant::now();
    env.ok(&["sandbox", "delete", "stuck"]);
    let took = t.elapsed();
    assert!(
        took >= Duration::from_secs(4),
        "deleted in {took:?}: was it asked first?"
    );
    assert!(took < Duration::from_secs(15), "deleted in {took:?}");
    wait_for(Duration::from_secs(5), "the supervisor to be gone", || {
        (!alive(pid)).then_some(())
    });
    let list = env.json(&["sandbox", "list", "--json"]);
    assert_eq!(list, serde_json::json!([]));
}

#[test]
fn commands_racing_to_start_the_gateway_all_succeed() {
    for round in 0..3 {
        let env = env();
        let runs: Vec<_> = (0..6)
            .map(|_| {
                env.command(env!("CARGO_BIN_EXE_openshell"))
                    .args(["sandbox", "list", "--json"])
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .expect("spawn")
            })
            .collect();
        for r in runs {
            let out = r.wait_with_output().expect("wait");
            assert!(
                out.status.success(),
                "round {round}: a racing command failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");
        }
        assert_eq!(env.gateway_processes().len(), 1, "round {round}");
    }
}
