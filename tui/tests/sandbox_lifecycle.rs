//! A sandbox's phase follows its command (issue 4): `ready` only once the command was
//! executed, `failed` with the reason when it could not start, `stopped` with its exit status
//! when it ended, and a `--no-keep` sandbox goes away when its command ends.

use openshell_e2e::cli::{Env, wait_for};
use std::time::Duration;

fn env() -> Env {
    Env::new(env!("CARGO_BIN_EXE_openshell"), None, None)
}

fn ended(env: &Env, name: &str) -> serde_json::Value {
    wait_for(Duration::from_secs(15), "the sandbox to end", || {
        let s = env.json(&["sandbox", "get", name, "--json"]);
        matches!(s["phase"].as_str(), Some("failed" | "stopped")).then_some(s)
    })
}

#[test]
fn ready_means_the_command_runs() {
    let env = env();
    let s = env.json(&[
        "sandbox", "create", "--name", "up", "--json", "--", "sleep", "30",
    ]);
    assert_eq!(s["phase"], "ready", "{s}");
    let events = env.events("up");
    assert!(
        events.iter().any(|e| e["message"]
            .as_str()
            .is_some_and(|m| m.contains("ready: its command runs"))),
        "no ready event: {events:?}"
    );
}

#[test]
fn a_command_that_cannot_start_is_failed_never_ready() {
    let env = env();
    // --json prints the phase `create` saw once it settled: never `ready` first.
    let s = env.json(&[
        "sandbox",
        "create",
        "--name",
        "ghost",
        "--json",
        "--",
        "/no/such/program",
    ]);
    assert_ne!(s["phase"], "ready", "{s}");
    let s = ended(&env, "ghost");
    assert_eq!(s["phase"], "failed", "{s}");
    let reason = s["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("could not start") && reason.contains("/no/such/program"),
        "{s}"
    );
    // Without --json the CLI says so and fails.
    let err = env.fails(&[
        "sandbox",
        "create",
        "--name",
        "ghost2",
        "--",
        "no-such-cmd-xyz",
    ]);
    assert!(err.contains("no-such-cmd-xyz: command not found"), "{err}");
}

#[test]
fn an_ended_command_says_its_exit_status() {
    let env = env();
    env.ok(&[
        "sandbox", "create", "--name", "three", "--", "sh", "-c", "exit 3",
    ]);
    let s = ended(&env, "three");
    assert_eq!(s["phase"], "stopped", "{s}");
    assert!(
        s["reason"]
            .as_str()
            .is_some_and(|r| r.contains("command exited with status 3")),
        "{s}"
    );
    assert_eq!(s["exit_code"], 3, "{s}");

    env.ok(&["sandbox", "create", "--name", "zero", "--", "true"]);
    let s = ended(&env, "zero");
    assert_eq!(s["phase"], "stopped", "{s}");
    assert!(
        s["reason"]
            .as_str()
            .is_some_and(|r| r.contains("command exited with status 0")),
        "{s}"
    );
}

#[test]
fn a_no_keep_sandbox_goes_when_its_command_ends() {
    let env = env();
    env.ok(&[
        "sandbox",
        "create",
        "--name",
        "brief",
        "--no-keep",
        "--",
        "sh",
        "-c",
        "sleep 0.3",
    ]);
    wait_for(Duration::from_secs(15), "the sandbox to be removed", || {
        let list = env.json(&["sandbox", "list", "--json"]);
        (!list
            .as_array()
            .is_some_and(|l| l.iter().any(|s| s["name"] == "brief")))
        .then_some(())
    });
}
