//! Address classes a sandbox may not reach through the proxy (DESIGN §4).
//!
//! `blocked` ranges are never reachable (loopback, link-local including cloud metadata,
//! unspecified, multicast); `internal` ranges are reachable only when an endpoint's
//! `allowed_ips` covers the address.

use ipnet::IpNet;
use serde::Serialize;
use std::net::IpAddr;

#[derive(Debug, Clone, Serialize)]
pub struct RangeTable {
    /// `[cidr, class]`, never reachable.
    pub blocked: Vec<(String, String)>,
    /// `[cidr, class]`, reachable only through `allowed_ips`.
    pub internal: Vec<(String, String)>,
}

const BLOCKED: &[(&str, &str)] = &[
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("0.0.0.0/8", "unspecified"),
    ("224.0.0.0/4", "multicast"),
    ("255.255.255.255/32", "broadcast"),
    ("::1/128", "loopback"),
    ("::/128", "unspecified"),
    ("fe80::/10", "link-local"),
    ("ff00::/8", "multicast"),
    ("::ffff:127.0.0.0/104", "loopback"),
    ("::ffff:169.254.0.0/112", "link-local"),
    ("::ffff:0.0.0.0/104", "unspecified"),
];

const INTERNAL: &[(&str, &str)] = &[
    ("10.0.0.0/8", "private"),
    ("172.16.0.0/12", "private"),
    ("192.168.0.0/16", "private"),
    ("100.64.0.0/10", "shared (CGNAT)"),
    ("192.0.0.0/24", "IETF protocol"),
    ("198.18.0.0/15", "benchmarking"),
    ("240.0.0.0/4", "reserved"),
    ("fc00::/7", "unique local"),
    ("fec0::/10", "site-local"),
    ("::ffff:10.0.0.0/104", "private"),
    ("::ffff:172.16.0.0/108", "private"),
    ("::ffff:192.168.0.0/112", "private"),
    ("::ffff:100.64.0.0/106", "shared (CGNAT)"),
];

impl RangeTable {
    pub fn standard() -> RangeTable {
        let own = |t: &[(&str, &str)]| {
            t.iter()
                .map(|(c, k)| ((*c).to_string(), (*k).to_string()))
                .collect()
        };
        RangeTable {
            blocked: own(BLOCKED),
            internal: own(INTERNAL),
        }
    }
}

/// Parsed ranges for the native engine.
#[derive(Debug, Clone)]
pub struct Classifier {
    blocked: Vec<(IpNet, &'static str)>,
    internal: Vec<(IpNet, &'static str)>,
}

impl Default for Classifier {
    fn default() -> Self {
        let parse = |t: &'static [(&'static str, &'static str)]| {
            t.iter()
                .filter_map(|(c, k)| c.parse::<IpNet>().ok().map(|n| (n, *k)))
                .collect()
        };
        Classifier {
            blocked: parse(BLOCKED),
            internal: parse(INTERNAL),
        }
    }
}

impl Classifier {
    /// The class of a never-reachable address.
    pub fn blocked(&self, ip: &IpAddr) -> Option<&'static str> {
        self.blocked
            .iter()
            .find(|(n, _)| n.contains(ip))
            .map(|(_, k)| *k)
    }

    /// The class of an address reachable only through `allowed_ips`.
    pub fn internal(&self, ip: &IpAddr) -> Option<&'static str> {
        self.internal
            .iter()
            .find(|(n, _)| n.contains(ip))
            .map(|(_, k)| *k)
    }
}
