//! `openshell term`'s sandboxes table follows the gateway's `WatchSandboxes` stream: sandboxes
//! created and deleted behind its back appear and go without a key press; a stopped gateway
//! shows the banner, and a restarted one is picked up again. Driven through a pseudo-terminal
//! against a private gateway.

use openshell_e2e::cli::{Env, kill9};
use openshell_e2e::pty::Term;
use std::time::Duration;

#[test]
fn table_follows_the_stream_and_survives_a_gateway_restart() {
    openshell_e2e::require_root();
    let env = Env::new(env!("CARGO_BIN_EXE_openshell"), None, None);
    let created = env.cli(&["sandbox", "create", "--name", "alpha"]);
    assert!(created.status.success(), "{created:?}");

    let mut t = Term::start(&env, env!("CARGO_BIN_EXE_openshell"));
    t.wait_for("healthy");
    t.wait_for("alpha");

    // Created and deleted behind the app's back: the table follows with no key pressed.
    t.mark();
    let created = env.cli(&["sandbox", "create", "--name", "beta"]);
    assert!(created.status.success(), "{created:?}");
    t.wait_for("beta");
    t.mark();
    let deleted = env.cli(&["sandbox", "delete", "alpha"]);
    assert!(deleted.status.success(), "{deleted:?}");
    // Only changed cells are redrawn: beta moving up into alpha's row is what shows.
    t.wait_for("beta");

    // The gateway goes away: the banner says so; a new one starts: the app reconnects. (Killed
    // rather than stopped: a stopped gateway lingers, holding its lock, while supervisors stay
    // connected, so a new one could not start at once.)
    t.mark();
    let pid = env.gateway_pid().expect("the gateway's pid");
    kill9(pid);
    t.wait_for("gateway lost");
    t.mark();
    let started = env.cli(&["gateway", "start"]);
    assert!(started.status.success(), "{started:?}");
    t.wait_for("healthy");
    // And the stream again: a sandbox created now shows up.
    t.mark();
    let created = env.cli(&["sandbox", "create", "--name", "gamma"]);
    assert!(created.status.success(), "{created:?}");
    t.wait_for("gamma");

    t.keys(b"q");
    let status = t.wait_exit(Duration::from_secs(5));
    assert!(status.success(), "openshell term exited with {status}");
    let raw = t.output();
    assert!(raw.contains("\x1b[?1000h"), "the mouse was captured");
    assert!(raw.contains("\x1b[?1000l"), "the mouse was released");
    assert!(
        raw.contains("\x1b[?1049l"),
        "the terminal left the alternate screen"
    );
}
