//! `openshell term` against a real gateway and a real sandbox, driven through a
//! pseudo-terminal: the sandbox is blocked, the denial shows in the denials tab, `a` previews
//! the rule, `Enter` applies it and the status line reports the enforced revision, and the
//! request now passes; and the policy editor: a typo is marked on its line, fixed, applied and
//! enforced; and a sandbox created from the form and deleted with `d`. Offline: api.github.com is a local stand-in in a network namespace.

use openshell_e2e::cli::{Env, runner_workdir, step, wait_for};
use openshell_e2e::netns::NetNs;
use openshell_e2e::pty::Term;
use openshell_e2e::standin::{StandIn, ZEN};
use std::time::Duration;

/// A private gateway trusting the stand-in `gh` and resolving api.github.com to it.
fn env_for(ns: &NetNs, gh: &StandIn) -> Env {
    Env::new(
        env!("CARGO_BIN_EXE_openshell"),
        gh.ca_file.as_deref(),
        Some(&format!("api.github.com={}", ns.addr)),
    )
}

fn term(env: &Env) -> Term {
    Term::start(env, env!("CARGO_BIN_EXE_openshell"))
}

#[test]
fn allow_a_denial_with_one_key() {
    openshell_e2e::require_root();
    let ns = NetNs::create();
    let gh = StandIn::https(&ns, &["api.github.com"], 443);
    let env = env_for(&ns, &gh);
    let work = runner_workdir(&env, "work");
    let created = env.cli(&[
        "sandbox",
        "create",
        "--name",
        "demo",
        "--workdir",
        work.to_str().expect("utf-8"),
        "--",
        "sh",
        "/sandbox/runner.sh",
    ]);
    assert!(created.status.success(), "{created:?}");
    let out = step(&work, 1, "curl -sS https://api.github.com/zen");
    assert!(out.contains("403"), "blocked at CONNECT: {out}");

    let mut t = term(&env);
    t.wait_for("healthy");
    t.wait_for("demo");
    t.keys(b"\r"); // open
    t.wait_for("demo › overview");
    t.keys(b"l"); // the log stream: the deny is there
    t.wait_screen("DENY");
    t.wait_screen("api.github.com:443");
    t.keys(b"a"); // on the deny line: the rule, as a diff against the active policy
    let screen = t.wait_screen("allow denial");
    assert!(screen.contains("e edit first"), "{screen}");
    let screen = t.wait_screen("+  ");
    assert!(
        screen.contains("api.github.com"),
        "the diff adds the host:\n{screen}"
    );
    assert!(
        screen.contains("--- revision 1"),
        "a diff against revision 1:\n{screen}"
    );
    t.keys(b"\r"); // apply, wait for the supervisor
    t.wait_for("allowed;");
    t.wait_for("enforced");
    let out = step(&work, 2, "curl -sS https://api.github.com/zen");
    assert_eq!(out.trim(), ZEN, "the approved request passes");

    t.keys(b"\x1b"); // back home
    t.wait_for("(1)");
    t.keys(b"q");
    let status = t.wait_exit(Duration::from_secs(5));
    assert!(status.success(), "openshell term exited with {status}");
    assert!(
        t.output().contains("\x1b[?1049l"),
        "the terminal left the alternate screen"
    );
}

#[test]
fn edit_the_policy_typo_fix_apply() {
    openshell_e2e::require_root();
    let ns = NetNs::create();
    let gh = StandIn::https(&ns, &["api.github.com"], 443);
    let env = env_for(&ns, &gh);
    let work = runner_workdir(&env, "work");
    let created = env.cli(&[
        "sandbox",
        "create",
        "--name",
        "ed",
        "--workdir",
        work.to_str().expect("utf-8"),
        "--",
        "sh",
        "/sandbox/runner.sh",
    ]);
    assert!(created.status.success(), "{created:?}");
    let out = step(&work, 1, "curl -sS https://api.github.com/zen");
    assert!(out.contains("403"), "blocked at CONNECT: {out}");
    // The buffer is the active revision's text: the new entry goes after its last line.
    let active = env.cli(&["policy", "get", "ed"]);
    assert!(active.status.success(), "{active:?}");
    let lines = String::from_utf8_lossy(&active.stdout).lines().count();
    assert!(
        String::from_utf8_lossy(&active.stdout)
            .lines()
            .rev()
            .find(|l| !l.starts_with(' ') && !l.starts_with('#') && !l.is_empty())
            .is_some_and(|l| l.starts_with("network_policies:")),
        "the baseline ends with its network policies"
    );

    let mut t = term(&env);
    t.wait_screen("healthy");
    t.wait_screen("│ed "); // its row in the table
    t.keys(b"\r");
    t.wait_screen("ed › overview");
    t.keys(b"p");
    t.wait_screen("revision 1 · view");
    t.keys(b"e");
    t.wait_screen("EDITING");
    t.keys(b"\x1b>"); // alt->: the last line
    t.keys(b"\x1b[F"); // end of it
    for line in [
        "  github:",
        "    endpoints:",
        "      - { host: api.github.com, port: 443x }",
        "    binaries:",
        "      - { path: /usr/bin/curl }",
    ] {
        t.keys(b"\r");
        t.keys(line.as_bytes());
    }
    // The typo is marked on its line (the third one typed), with the field and the reason.
    let typo_line = lines + 3;
    t.wait_screen(&format!(
        "{}         - {{ path: /usr/bin/curl }}",
        lines + 5
    ));
    let screen = t.wait_screen("1 error");
    let want = format!("line {typo_line}:");
    assert!(screen.contains(&want), "want {want:?} in:\n{screen}");
    assert!(screen.contains("endpoints[0].port"), "{screen}");
    assert!(screen.contains(&format!("{typo_line} ●")), "{screen}");
    // Apply refuses it and says where.
    t.keys(b"\x13"); // ctrl-s
    t.wait_screen(&format!("not applied: line {typo_line}"));
    // Fix: the cursor is on the error (the value); delete the `x` after `443`.
    t.keys(b"\x1b[C\x1b[C\x1b[C"); // right ×3
    t.keys(b"\x1b[3~"); // delete
    t.wait_screen("valid");
    t.keys(b"\x13"); // ctrl-s: apply and wait for the supervisor
    t.wait_screen("applied and enforced by the supervisor");
    let out = step(&work, 2, "curl -sS https://api.github.com/zen");
    assert_eq!(out.trim(), ZEN, "the edited policy is enforced");
    // A complete document is stored as written (layout and comments kept).
    let stored = env.cli(&["policy", "get", "ed"]);
    let stored = String::from_utf8_lossy(&stored.stdout).to_string();
    assert!(
        stored.contains("      - { host: api.github.com, port: 443 }\n"),
        "{stored}"
    );
    assert_eq!(stored.lines().count(), lines + 5, "{stored}");
    let history = env.cli(&["policy", "history", "ed"]);
    assert!(
        String::from_utf8_lossy(&history.stdout).contains("editor"),
        "{history:?}"
    );
    t.keys(b"\x1b"); // leave the editor
    t.keys(b"q"); // q does nothing in a sandbox view
    t.keys(b"\x1b"); // home
    t.keys(b"q");
    t.wait_exit(Duration::from_secs(5));
}

#[test]
fn create_and_delete_from_the_tui() {
    openshell_e2e::require_root();
    let ns = NetNs::create();
    let gh = StandIn::https(&ns, &["api.github.com"], 443);
    let env = env_for(&ns, &gh);
    let mut t = term(&env);
    t.wait_screen("healthy");
    t.keys(b"c");
    t.wait_screen("create a sandbox");
    t.keys(b"formed");
    t.keys(b"\t"); // presets
    t.keys(b"\x1b[B"); // the second preset
    t.keys(b" ");
    t.keys(b"\t"); // command
    t.keys(b"sleep 300");
    t.keys(b"\r");
    t.wait_screen("sandbox formed created");
    wait_for(
        Duration::from_secs(20),
        "the sandbox made in the form to be ready",
        || (env.json(&["sandbox", "get", "formed", "--json"])["phase"] == "ready").then_some(()),
    );
    // The live table shows it; `d` asks, `enter` deletes. The row is waited for by its
    // border, since the status line "sandbox formed created" also holds the name.
    t.wait_screen("│formed ");
    t.keys(b"d");
    t.wait_screen("Delete sandbox formed?");
    t.keys(b"\r");
    t.wait_screen("sandbox formed deleted");
    let list = env.cli(&["sandbox", "list"]);
    assert!(
        !String::from_utf8_lossy(&list.stdout).contains("formed"),
        "{list:?}"
    );
    t.keys(b"q");
}
