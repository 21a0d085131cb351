//! Where the gateway keeps its state and listens, computed from the environment the same way
//! by the gateway and every client.
//!
//! - state: `$OPENSHELL_STATE_DIR`, else `$XDG_STATE_HOME/openshell`, else
//!   `$HOME/.local/state/openshell`, else `/var/lib/openshell` (root without a home).
//! - socket: `$OPENSHELL_GATEWAY_SOCKET`, else `$XDG_RUNTIME_DIR/openshell/gateway.sock`,
//!   else `<state>/gateway.sock`.

use std::path::PathBuf;

fn var(k: &str) -> Option<PathBuf> {
    std::env::var_os(k)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The gateway's state directory (database, logs, pid file).
pub fn state_dir() -> PathBuf {
    var("OPENSHELL_STATE_DIR")
        .or_else(|| var("XDG_STATE_HOME").map(|d| d.join("openshell")))
        .or_else(|| var("HOME").map(|h| h.join(".local/state/openshell")))
        .unwrap_or_else(|| PathBuf::from("/var/lib/openshell"))
}

/// The gateway's Unix socket.
pub fn socket_path() -> PathBuf {
    var("OPENSHELL_GATEWAY_SOCKET")
        .or_else(|| var("XDG_RUNTIME_DIR").map(|d| d.join("openshell/gateway.sock")))
        .unwrap_or_else(|| state_dir().join("gateway.sock"))
}
