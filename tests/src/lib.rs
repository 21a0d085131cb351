//! The end-to-end harness: network namespaces that stand in for the outside world, local
//! HTTPS servers that stand in for services we cannot reach, and helpers to run the real
//! binaries. Nothing here imitates OpenShell's own parts.

pub mod cli;
pub mod netns;
pub mod pty;
pub mod standin;
pub mod tls_probe;

use std::path::{Path, PathBuf};

/// Fails loudly when the suite cannot run as it must (root, namespaces): under `CI=true`
/// nothing may be skipped, and elsewhere a silent skip would hide a broken machine too.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the end-to-end suites need root (namespaces, mounts, veth); run them as root"
    );
}

/// The directory holding the workspace's built binaries (next to the test executable).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .expect("test executable lives in target/<profile>/deps")
}

/// A workspace binary by name; panics with the command that builds it when it is missing.
pub fn binary(name: &str) -> PathBuf {
    let p = target_dir().join(name);
    assert!(
        p.exists(),
        "{} is not built; run `cargo build --workspace` (the README's test command builds it)",
        p.display()
    );
    p
}

/// Reads JSON-line events from a log file.
pub fn read_events(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}
