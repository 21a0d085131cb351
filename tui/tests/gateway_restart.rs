//! A gateway restart loses nothing (issue 4, DESIGN §6). `kill -9` the gateway in the middle
//! of a burst of 200 `policy set`s (alternating two policies, some with `--wait`) while the
//! sandbox makes traffic; the burst's own commands and `gateway start` bring it back. Then a
//! second kill with the supervisor held up, so a revision is stored (and sent) but its ack is
//! lost, and the gateway stays down for a while the sandbox keeps making traffic. Checked:
//! every revision a `policy set` reported is stored with its exact text; every event the CLI
//! had seen is still there under the same seq, and every request the upstream served has its
//! event (none lost on the way while the gateway was down); only one gateway runs; the sandbox
//! is still `ready`, was re-attached rather than restarted, and enforces (and reports) the
//! newest revision: traffic shows it, and a `policy set --wait` after the restart is
//! acknowledged.

use nix::sys::signal::Signal;
use openshell_e2e::cli::{Env, alive, kill9, runner_workdir, signal, step, wait_for};
use openshell_e2e::netns::NetNs;
use openshell_e2e::standin::StandIn;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const OPS: usize = 200;
const WORKERS: usize = 2;
const SANDBOX: &str = "burst";

/// A network-only policy letting curl reach `host` (inspected, so requests carry their path in
/// events); the static sections stay the running sandbox's.
fn network_policy(host: &str) -> String {
    format!(
        "version: 1\nnetwork_policies:\n  {host}:\n    name: {host}\n    endpoints:\n      - {{ host: {host}.example.com, port: 443, protocol: rest, access: full }}\n    binaries:\n      - {{ path: /usr/bin/curl }}\n"
    )
}

/// Requests to both hosts while `/sandbox/traffic.on` exists; one line per request in
/// `traffic.log`, and `traffic.done` once it stops.
const TRAFFIC: &str = r#"i=0
while [ -f /sandbox/traffic.on ]; do
  i=$((i+1))
  for h in alpha beta; do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 https://$h.example.com/n/$h/$i)
    echo "$h $i $code" >> /sandbox/traffic.log
  done
done
echo done > /sandbox/traffic.done
"#;

#[derive(Debug)]
struct Op {
    i: usize,
    /// "alpha" or "beta": the policy sent.
    host: &'static str,
    wait: bool,
    started: Instant,
    ended: Instant,
    /// `policy set --json`'s answer, or its stderr.
    outcome: Result<Value, String>,
}

#[test]
fn a_killed_gateway_loses_nothing_and_its_sandbox_reattaches() {
    openshell_e2e::require_root();
    let ns = NetNs::create();
    let upstream = StandIn::https(&ns, &["alpha.example.com", "beta.example.com"], 443);
    let env = Env::new(
        env!("CARGO_BIN_EXE_openshell"),
        Some(upstream.ca_file.as_deref().expect("ca")),
        Some(&format!(
            "alpha.example.com={a},beta.example.com={a}",
            a = ns.addr
        )),
    );
    let work = runner_workdir(&env, "work");
    let created = env.json(&[
        "sandbox",
        "create",
        "--name",
        SANDBOX,
        "--workdir",
        work.to_str().expect("utf-8"),
        "--json",
        "--",
        "sh",
        "/sandbox/runner.sh",
    ]);
    assert_eq!(created["phase"], "ready", "{created}");

    // The two policies, in the form the gateway stores them (static sections filled in from
    // the running sandbox), so "its exact text" can be compared byte for byte.
    let mut text = BTreeMap::new();
    for host in ["alpha", "beta"] {
        let f = env.dir.path().join(format!("{host}-draft.yaml"));
        std::fs::write(&f, network_policy(host)).expect("policy");
        env.ok(&[
            "policy",
            "set",
            SANDBOX,
            "--policy",
            f.to_str().expect("utf-8"),
            "--wait",
        ]);
        let stored = env.ok(&["policy", "get", SANDBOX]);
        assert!(stored.contains(&format!("{host}.example.com")), "{stored}");
        assert!(stored.contains("filesystem_policy"), "{stored}");
        std::fs::write(env.dir.path().join(format!("{host}.yaml")), &stored).expect("policy");
        text.insert(host, stored);
    }
    let file = |host: &str| env.dir.path().join(format!("{host}.yaml"));

    // Traffic to both hosts for the whole burst: one is allowed, the other denied, in turn.
    std::fs::write(work.join("traffic.sh"), TRAFFIC).expect("traffic");
    std::fs::write(work.join("traffic.on"), "").expect("traffic.on");
    step(
        &work,
        1,
        "nohup sh /sandbox/traffic.sh > /dev/null 2>&1 &\necho started",
    );
    wait_for(Duration::from_secs(10), "the first requests", || {
        let log = std::fs::read_to_string(work.join("traffic.log")).unwrap_or_default();
        (log.lines().count() >= 4).then_some(())
    });
    wait_for(Duration::from_secs(10), "the first served request", || {
        (!upstream.hits().is_empty()).then_some(())
    });

    // The burst: WORKERS CLI processes at a time, alternating the two policies, every fourth
    // with --wait. The gateway is killed once half of them have returned.
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let ops: Mutex<Vec<Op>> = Mutex::new(Vec::new());
    let (seen, old_pid, killed_at, back_at) = std::thread::scope(|s| {
        for _ in 0..WORKERS {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= OPS {
                        return;
                    }
                    let host = if i.is_multiple_of(2) { "alpha" } else { "beta" };
                    let wait = i % 4 == 1;
                    let f = file(host);
                    let mut args = vec![
                        "policy",
                        "set",
                        SANDBOX,
                        "--policy",
                        f.to_str().expect("utf-8"),
                        "--json",
                    ];
                    if wait {
                        args.push("--wait");
                    }
                    let started = Instant::now();
                    let out = env.run(&args);
                    let ended = Instant::now();
                    let outcome = if out.status.success() {
                        serde_json::from_slice::<Value>(&out.stdout).map_err(|e| {
                            format!(
                                "succeeded but printed no JSON ({e}): {}",
                                String::from_utf8_lossy(&out.stdout)
                            )
                        })
                    } else {
                        Err(String::from_utf8_lossy(&out.stderr).into_owned())
                    };
                    ops.lock().expect("ops").push(Op {
                        i,
                        host,
                        wait,
                        started,
                        ended,
                        outcome,
                    });
                    done.fetch_add(1, Ordering::SeqCst);
                }
            });
        }

        wait_for(Duration::from_secs(120), "half the burst", || {
            (done.load(Ordering::SeqCst) >= OPS / 2).then_some(())
        });
        // What the CLI has seen, read just before the kill: all of it must survive.
        let seen = env.events(SANDBOX);
        let old_pid = env.gateway_pid().expect("the gateway runs");
        kill9(old_pid);
        let killed_at = Instant::now();
        wait_for(Duration::from_secs(5), "the killed gateway to die", || {
            (!alive(old_pid)).then_some(())
        });
        // Restart it by hand while the burst's own commands start it too (auto-start).
        let started = env.cli(&["gateway", "start"]);
        assert!(
            started.status.success(),
            "gateway start after a kill -9: {}{}",
            String::from_utf8_lossy(&started.stderr),
            env.gateway_log_tail()
        );
        let new_pid = wait_for(Duration::from_secs(15), "a new gateway", || {
            env.gateway_pid().filter(|p| *p != old_pid)
        });
        let back_at = Instant::now();
        eprintln!("gateway {old_pid} killed; {new_pid} serves");
        (seen, old_pid, killed_at, back_at)
    });
    let ops = ops.into_inner().expect("ops");
    assert_eq!(ops.len(), OPS);
    for op in &ops {
        if let Err(e) = &op.outcome {
            eprintln!("policy set #{} failed: {}", op.i, e.trim());
        }
    }
    eprintln!(
        "burst: {} ops, {} failed, killed after {:?}",
        ops.len(),
        ops.iter().filter(|o| o.outcome.is_err()).count(),
        killed_at.duration_since(ops.iter().map(|o| o.started).min().expect("ops"))
    );

    // Exactly one gateway serves the socket, however many commands tried to start one.
    let gateways = env.gateway_processes();
    assert_eq!(
        gateways.len(),
        1,
        "gateways serving {}: {gateways:?}{}",
        env.socket().display(),
        env.gateway_log_tail()
    );
    assert_ne!(gateways[0], old_pid);

    // A command may fail only while the gateway was down or coming back.
    for op in &ops {
        if let Err(e) = &op.outcome {
            assert!(
                op.started < back_at && op.ended >= killed_at,
                "policy set #{} ({}) failed outside the restart window: {e}",
                op.i,
                op.host
            );
        }
    }
    let after_restart = ops
        .iter()
        .filter(|o| o.started >= back_at && o.outcome.is_ok())
        .count();
    assert!(
        after_restart >= OPS / 4,
        "only {after_restart} policy sets ran after the restart"
    );

    // Every revision a `policy set` reported is stored, with its exact text.
    let history = env.json(&["policy", "history", SANDBOX, "--json"]);
    let stored: BTreeSet<u64> = history
        .as_array()
        .expect("history is a list")
        .iter()
        .map(|r| r["revision"].as_u64().expect("revision"))
        .collect();
    let mut new_revs = BTreeSet::new();
    let mut checked = BTreeSet::new();
    for op in &ops {
        let Ok(v) = &op.outcome else { continue };
        let rev = v["revision"].as_u64().expect("revision");
        assert!(
            stored.contains(&rev),
            "policy set #{} reported revision {rev}, history has {stored:?}",
            op.i
        );
        if v["unchanged"] == false {
            assert!(
                new_revs.insert(rev),
                "revision {rev} reported as new twice (#{})",
                op.i
            );
        }
        if op.wait {
            assert_eq!(
                v["acknowledged"], true,
                "policy set --wait #{} returned without the ack: {v}",
                op.i
            );
        }
        if checked.insert(rev) {
            let got = env.run(&["policy", "get", SANDBOX, "--rev", &rev.to_string()]);
            assert!(got.status.success(), "policy get --rev {rev}");
            assert_eq!(
                String::from_utf8_lossy(&got.stdout),
                text[op.host].as_str(),
                "revision {rev} (from policy set #{}, {}) lost its text",
                op.i,
                op.host
            );
        }
    }
    assert!(
        new_revs.len() >= OPS / 2,
        "only {} new revisions",
        new_revs.len()
    );

    // A second kill, after a quiet moment, with the supervisor held up (SIGSTOP) meanwhile: the
    // gateway stores and sends a revision whose ack never reaches it, then stays down for a
    // while the sandbox keeps making traffic (events with nowhere to go yet).
    let supervisor = env.supervisor_pid(SANDBOX).expect("the supervisor runs");
    let before = env.json(&["sandbox", "get", SANDBOX, "--json"]);
    let before_rev = before["policy_revision"].as_u64().expect("revision");
    let before_text = env.ok(&["policy", "get", SANDBOX]);
    let other = if before_text == text["alpha"] {
        "beta"
    } else {
        "alpha"
    };
    signal(supervisor, Signal::SIGSTOP);
    let held = env.json(&[
        "policy",
        "set",
        SANDBOX,
        "--policy",
        file(other).to_str().expect("utf-8"),
        "--json",
    ]);
    let held_rev = held["revision"].as_u64().expect("revision");
    assert_eq!(held_rev, before_rev + 1, "{held}");
    let seen_again = env.events(SANDBOX);
    let pid = env.gateway_pid().expect("the gateway runs");
    kill9(pid);
    wait_for(Duration::from_secs(5), "the killed gateway to die", || {
        (!alive(pid)).then_some(())
    });
    signal(supervisor, Signal::SIGCONT);
    let hits_at_kill = upstream.hits().len();
    std::thread::sleep(Duration::from_millis(1500));
    let hits_at_start = upstream.hits().len();
    env.ok(&["gateway", "start"]);
    let served_while_down = hits_at_start - hits_at_kill;
    assert!(
        served_while_down > 0,
        "the sandbox made no traffic while the gateway was down"
    );

    // Stop the traffic, then: every event seen before either kill is still there, unchanged,
    // under the same seq; and every request the upstream served has its allow event (none was
    // lost on its way from the supervisor while the gateway was down).
    std::fs::remove_file(work.join("traffic.on")).expect("traffic.on");
    wait_for(Duration::from_secs(20), "the traffic to stop", || {
        work.join("traffic.done").exists().then_some(())
    });
    let served: BTreeSet<String> = upstream
        .hits()
        .iter()
        .filter_map(|h| h.strip_prefix("GET ").map(str::to_string))
        .filter(|p| p.starts_with("/n/"))
        .collect();
    assert!(served.len() >= 10, "too little traffic: {served:?}");
    eprintln!(
        "{} requests served, {served_while_down} while the gateway was down",
        served.len()
    );
    let mut missing = Vec::new();
    let events = wait_for(
        Duration::from_secs(10),
        "an allow event for every served request",
        || {
            let events = env.events(SANDBOX);
            let allowed: BTreeSet<&str> = events
                .iter()
                .filter(|e| e["action"] == "allow")
                .filter_map(|e| e["path"].as_str())
                .collect();
            missing = served
                .iter()
                .filter(|p| !allowed.contains(p.as_str()))
                .cloned()
                .collect();
            if missing.is_empty() {
                Some(events)
            } else {
                eprintln!(
                    "no allow event for {} served requests: {:?}",
                    missing.len(),
                    missing.iter().take(10).collect::<Vec<_>>()
                );
                None
            }
        },
    );
    let by_seq: BTreeMap<u64, &Value> = events
        .iter()
        .map(|e| (e["seq"].as_u64().expect("every event has a seq"), e))
        .collect();
    assert!(seen.len() > 10, "too few events before the kill");
    for e in seen.iter().chain(&seen_again) {
        let seq = e["seq"].as_u64().expect("seq");
        assert_eq!(
            by_seq.get(&seq).copied(),
            Some(e),
            "event {seq} changed or vanished across a restart"
        );
    }
    let has_traffic = |action: &str| {
        seen.iter()
            .any(|e| e["action"] == action && e["kind"] == "network")
    };
    assert!(
        has_traffic("allow") && has_traffic("deny"),
        "the events before the kill include the sandbox's traffic"
    );

    // The sandbox was re-attached, not restarted: the same supervisor, still ready, registered
    // once; and it enforces the revision stored just before the kill, acknowledged.
    assert!(alive(supervisor));
    let registrations = events
        .iter()
        .filter(|e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("supervisor registered"))
        })
        .count();
    assert_eq!(registrations, 1, "the supervisor registered again");
    let sandbox = wait_for(
        Duration::from_secs(10),
        "the sandbox to report enforcing its newest revision",
        || {
            let s = env.json(&["sandbox", "get", SANDBOX, "--json"]);
            assert_eq!(s["phase"], "ready", "{s}");
            (s["enforced_revision"] == s["policy_revision"]).then_some(s)
        },
    );
    assert_eq!(sandbox["policy_revision"], held_rev, "{sandbox}");
    let applied = format!("from gateway revision {held_rev} is now enforced");
    wait_for(
        Duration::from_secs(5),
        "the supervisor's event saying it applied the held revision",
        || {
            env.events(SANDBOX)
                .iter()
                .any(|e| {
                    e["source"] == "sandbox"
                        && e["message"].as_str().is_some_and(|m| m.contains(&applied))
                })
                .then_some(())
        },
    );
    let on = other;
    let off = if on == "alpha" { "beta" } else { "alpha" };

    // Traffic proves it: only the enforced revision's host is reachable...
    let probe = |n: u32, host: &str| {
        step(
            &work,
            n,
            &format!(
                "curl -sS --max-time 5 -o /dev/null -w '%{{http_code}}' https://{host}.example.com/probe/{n}"
            ),
        )
    };
    let out = probe(2, on);
    assert_eq!(out.trim(), "200", "{on} under revision {held_rev}: {out}");
    let out = probe(3, off);
    assert!(
        out.contains("403"),
        "{off} under revision {held_rev}: {out}"
    );

    // ...and a new revision is pushed to the re-attached supervisor and acknowledged.
    let set = env.ok(&[
        "policy",
        "set",
        SANDBOX,
        "--policy",
        file(off).to_str().expect("utf-8"),
        "--wait",
    ]);
    assert!(
        set.contains(&format!("revision {} is enforced", held_rev + 1)),
        "{set}"
    );
    let out = probe(4, off);
    assert_eq!(out.trim(), "200", "{off} after the switch: {out}");
    let out = probe(5, on);
    assert!(out.contains("403"), "{on} after the switch: {out}");
    assert!(
        upstream.hits().iter().any(|h| h == "GET /probe/4"),
        "the allowed probe reached the upstream"
    );
    let s = env.json(&["sandbox", "get", SANDBOX, "--json"]);
    assert_eq!(s["enforced_revision"], held_rev + 1, "{s}");
}

/// A sandbox whose supervisor died while no gateway ran is not re-attached, nor restarted
/// behind the user's back: the restarted gateway marks it ended, with why, and leaves the
/// others running.
#[test]
fn a_sandbox_that_died_while_the_gateway_was_down_is_marked_ended() {
    openshell_e2e::require_root();
    let env = Env::new(env!("CARGO_BIN_EXE_openshell"), None, None);
    for name in ["doomed", "survivor"] {
        let s = env.json(&["sandbox", "create", "--name", name, "--json"]);
        assert_eq!(s["phase"], "ready", "{s}");
    }
    let doomed = env.supervisor_pid("doomed").expect("supervisor");
    let survivor = env.supervisor_pid("survivor").expect("supervisor");
    let pid = env.gateway_pid().expect("gateway");
    kill9(pid);
    wait_for(Duration::from_secs(5), "the killed gateway to die", || {
        (!alive(pid)).then_some(())
    });
    kill9(doomed);
    wait_for(Duration::from_secs(5), "the supervisor to die", || {
        (!alive(doomed)).then_some(())
    });
    env.ok(&["gateway", "start"]);
    let s = wait_for(
        Duration::from_secs(10),
        "the dead sandbox to be marked",
        || {
            let s = env.json(&["sandbox", "get", "doomed", "--json"]);
            matches!(s["phase"].as_str(), Some("stopped" | "failed")).then_some(s)
        },
    );
    let reason = s["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(&format!("supervisor (pid {doomed}) is gone")),
        "an ended sandbox says why: {s}"
    );
    // Nothing restarted it.
    std::thread::sleep(Duration::from_millis(500));
    assert!(env.supervisor_pid("doomed").is_none());
    let s = env.json(&["sandbox", "get", "doomed", "--json"]);
    assert!(
        matches!(s["phase"].as_str(), Some("stopped" | "failed")),
        "{s}"
    );
    // The other one was re-attached: still ready, same supervisor, and it takes a new revision.
    let s = env.json(&["sandbox", "get", "survivor", "--json"]);
    assert_eq!(s["phase"], "ready", "{s}");
    assert_eq!(env.supervisor_pid("survivor"), Some(survivor));
    let f = env.dir.path().join("alpha.yaml");
    std::fs::write(&f, network_policy("alpha")).expect("policy");
    let set = env.ok(&[
        "policy",
        "set",
        "survivor",
        "--policy",
        f.to_str().expect("utf-8"),
        "--wait",
    ]);
    assert!(set.contains("revision 2 is enforced"), "{set}");
    let events = env.events("doomed");
    assert!(
        events.iter().any(|e| e["kind"] == "lifecycle"
            && e["source"] == "gateway"
            && e["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("sandbox doomed stopped")
                    || m.starts_with("sandbox doomed failed"))),
        "{events:?}"
    );
}
