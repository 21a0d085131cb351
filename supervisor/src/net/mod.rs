//! The sandbox network namespace: its interfaces and the catcher of direct egress.
//!
//! Inside a sandbox's network namespace the only sanctioned way out is the HTTP
//! proxy on `127.0.0.1:3128`. [`ifconfig::setup_sandbox_network`] makes a TUN
//! device the default route for IPv4 and IPv6, so every direct attempt (any
//! non-loopback destination) lands on that TUN instead of the wire.
//! [`catcher::run`] reads those packets, reports them, and answers each one so
//! the sender fails at once (TCP RST, ICMP unreachable) instead of timing out.

pub mod catcher;
pub mod congestion;
pub mod ifconfig;

pub use catcher::{DirectAttempt, Proto};
pub use ifconfig::{in_netns, setup_sandbox_network};

use std::path::PathBuf;

/// Why the sandbox network could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The tun control device could not be opened (or made).
    #[error(
        "cannot create the tun device {path}: {source}; the sandbox needs CAP_NET_ADMIN in its network namespace and access to the tun device"
    )]
    TunDevice {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `/dev/net/tun` is missing and no private node could be made in its place.
    #[error(
        "cannot create the tun device: /dev/net/tun does not exist and a private node for it (char 10:200) could not be made in {dir}: {source}; load the tun kernel module or give the supervisor /dev/net/tun and CAP_MKNOD"
    )]
    NoTunDevice {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The kernel refused to make the tun interface.
    #[error(
        "cannot create the tun interface {name} (TUNSETIFF): {source}; the sandbox needs CAP_NET_ADMIN in its network namespace"
    )]
    TunInterface {
        name: String,
        #[source]
        source: std::io::Error,
    },
    /// An interface the setup relies on is not in this network namespace.
    #[error("cannot find the network interface {name} in the sandbox network namespace: {source}")]
    NoInterface {
        name: String,
        #[source]
        source: std::io::Error,
    },
    /// A netlink request (link up, address, route) failed.
    #[error("cannot {action}: {source}; the sandbox needs CAP_NET_ADMIN in its network namespace")]
    Configure {
        action: String,
        #[source]
        source: std::io::Error,
    },
}
