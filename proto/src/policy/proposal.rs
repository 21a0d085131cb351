//! Deny → allow (DESIGN §2): from one denied network decision to the narrowest policy change
//! that would allow exactly that traffic, as a fragment [`merge`] can add.
//!
//! The rules, narrowest first:
//!
//! - **L7** (a method and path refused on an inspected `protocol: rest` endpoint): one
//!   `allow` rule for that exact method and that exact path (as the proxy normalises it, never
//!   a glob). It goes into the entry that already lets the binary reach the endpoint, preferring
//!   an entry that names only that binary, else the first that names its binaries literally; a
//!   rule added there reaches the binaries that entry lists, and the summary says which. Inside
//!   that entry it extends an endpoint written for exactly this host and port with `rules:`;
//!   otherwise (a host glob, several ports, an `access:` preset) it adds an exact-host endpoint
//!   beside the existing one, so the rule never covers other hosts or ports. When no entry
//!   covers the endpoint for the binary, or the covering entries admit binaries by pattern
//!   (`**`, `/usr/bin/*`), a new entry holds the endpoint, the rule and the binary alone.
//! - **L4** (no request seen): a new entry for `host:port` and that binary only, keyed
//!   `allow_<host>_<port>_<program>` (e.g. `allow_api_github_com_443_curl`).
//! - **No proposal** ([`NoProposal`], with an explanation) for a direct connection that skipped
//!   the proxy, an SSRF refusal (`allowed_ips` is for a person to decide), an unknown binary,
//!   an address no policy may open, a request a deny rule refuses (allow rules never win over
//!   deny rules), a request the current policy already allows, and anything an exact rule
//!   cannot express: a path or binary with `*` or `?` (globs have no escape, and `%2A` is a
//!   different path to the proxy), a path the proxy refuses to normalise, a method with other
//!   than letters.
//!
//! The proposal allows the request as the engine decides it: a `GET` rule also admits `HEAD`,
//! and the rule carries no `query:`, so the path is allowed with any query. Deny rules that
//! depend on the query still apply.

use super::glob::{self, Glob, GlobKind};
use super::merge::merge;
use super::model::*;
use super::render::to_yaml;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;

/// Which check refused the traffic (the event's `layer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layer {
    /// Host, port and binary: the connection was refused before any request was seen.
    L4,
    /// Method and path on an inspected endpoint.
    L7,
    /// The destination resolved to an address the sandbox may not reach.
    Ssrf,
    /// A direct connection that skipped the proxy.
    Bypass,
}

impl Layer {
    pub fn as_str(self) -> &'static str {
        match self {
            Layer::L4 => "l4",
            Layer::L7 => "l7",
            Layer::Ssrf => "ssrf",
            Layer::Bypass => "bypass",
        }
    }

    pub fn parse(s: &str) -> Option<Layer> {
        match s {
            "l4" => Some(Layer::L4),
            "l7" => Some(Layer::L7),
            "ssrf" => Some(Layer::Ssrf),
            "bypass" => Some(Layer::Bypass),
            _ => None,
        }
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Layer {
    type Err = String;
    fn from_str(s: &str) -> Result<Layer, String> {
        Layer::parse(s).ok_or_else(|| format!("unknown layer `{s}`; use l4, l7, ssrf or bypass"))
    }
}

/// One denied network decision, as the event reports it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Denied {
    pub host: String,
    pub port: u16,
    /// The calling executable as the kernel reported it; empty when it could not tell.
    pub binary: String,
    pub method: Option<String>,
    /// The request path as the proxy normalised it (or as sent, when it could not).
    pub path: Option<String>,
    pub layer: Layer,
}

impl Denied {
    /// A connection refused at L4.
    pub fn l4(host: &str, port: u16, binary: &str) -> Denied {
        Denied {
            host: host.to_string(),
            port,
            binary: binary.to_string(),
            method: None,
            path: None,
            layer: Layer::L4,
        }
    }

    /// A request refused at L7.
    pub fn l7(host: &str, port: u16, binary: &str, method: &str, path: &str) -> Denied {
        Denied {
            host: host.to_string(),
            port,
            binary: binary.to_string(),
            method: Some(method.to_string()),
            path: Some(path.to_string()),
            layer: Layer::L7,
        }
    }

    /// The denial a `network` / `deny` event records; `None` for any other event.
    pub fn from_event(e: &crate::pb::Event) -> Option<Denied> {
        if e.kind != "network" || e.action != "deny" {
            return None;
        }
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
        let layer = match Layer::parse(&e.layer) {
            Some(l) => l,
            None if e.layer.is_empty() && !e.method.is_empty() => Layer::L7,
            None if e.layer.is_empty() => Layer::L4,
            None => return None,
        };
        Some(Denied {
            host: e.host.clone(),
            port: u16::try_from(e.port).ok()?,
            binary: e.binary.clone(),
            method: opt(&e.method),
            path: opt(&e.path),
            layer,
        })
    }
}

/// A policy change that would allow one denial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    /// Only `network_policies`: what [`apply`] merges.
    pub fragment: Policy,
    /// One line, e.g. `allow POST /repos/o/r/issues on api.github.com:443 for /usr/bin/curl
    /// (adds a rule to github_api)`.
    pub summary: String,
    /// The fragment rendered.
    pub yaml: String,
    /// The `network_policies` key the fragment adds or extends.
    pub entry: String,
    /// Whether that entry already exists in the policy the proposal was made for.
    pub extends: bool,
}

/// Why no proposal was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    /// A direct connection that skipped the proxy: policy cannot allow it.
    Bypass,
    /// An internal address: `allowed_ips` (or an endpoint for the address) is a person's call.
    Ssrf,
    /// An address no policy may open (loopback, link-local, unspecified, multicast).
    Unreachable,
    /// The calling program is unknown or cannot be named exactly.
    UnknownBinary,
    /// An exact rule for this host, port, method or path cannot be written.
    Inexpressible,
    /// The proxy refuses this request whatever the policy says.
    RefusedByProxy,
    /// A deny rule in this entry refuses the request; allow rules never win over it.
    DenyRule { entry: String },
    /// The current policy already allows it (this entry decides).
    AlreadyAllowed { entry: String },
    /// The denial lacks what its layer needs (an L7 denial without method or path).
    Incomplete,
}

/// No proposal, and the explanation to show instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{explanation}")]
pub struct NoProposal {
    pub why: Why,
    pub explanation: String,
}

fn refuse(why: Why, explanation: impl Into<String>) -> NoProposal {
    NoProposal {
        why,
        explanation: explanation.into(),
    }
}

/// The narrowest change to `current` that allows `denied`, or why there is none.
pub fn propose(denied: &Denied, current: &Policy) -> Result<Proposal, NoProposal> {
    let port = denied.port;
    match denied.layer {
        Layer::Bypass => {
            return Err(refuse(
                Why::Bypass,
                format!(
                    "a direct connection to {}:{port} skipped the proxy; policy cannot allow \
                     direct connections. The program must use the proxy (it is in HTTP_PROXY and \
                     HTTPS_PROXY; Node also needs NODE_USE_ENV_PROXY=1); its requests are then \
                     decided by policy, and a denial there can be approved",
                    denied.host
                ),
            ));
        }
        Layer::Ssrf => {
            let host = exact_host(&denied.host).unwrap_or_else(|_| denied.host.clone());
            let within = current
                .network_policies
                .iter()
                .find(|(_, e)| {
                    admits(e, &denied.binary)
                        && e.endpoints.iter().any(|ep| reaches(ep, &host, port))
                })
                .map(|(k, _)| format!(" in entry `{k}`"))
                .unwrap_or_default();
            return Err(refuse(
                Why::Ssrf,
                format!(
                    "{host}:{port} resolved to an internal address; the sandbox reaches internal \
                     addresses only where an endpoint's `allowed_ips` covers them, and opening a \
                     way into the internal network is for a person to decide: add `allowed_ips` \
                     with the exact address (or the smallest range) to the endpoint for \
                     {host}:{port}{within}. Loopback and link-local addresses (such as \
                     169.254.169.254) can never be allowed"
                ),
            ));
        }
        Layer::L4 | Layer::L7 => {}
    }
    let binary = denied.binary.as_str();
    check_binary(binary)?;
    if port == 0 {
        return Err(refuse(
            Why::Inexpressible,
            "port 0 cannot be allowed; a rule needs a port from 1 to 65535",
        ));
    }
    let host = exact_host(&denied.host).map_err(|e| refuse(Why::Inexpressible, e))?;
    check_address(&host, port)?;
    match denied.layer {
        Layer::L7 => {
            let (Some(method), Some(path)) = (&denied.method, &denied.path) else {
                return Err(refuse(
                    Why::Incomplete,
                    "an l7 denial needs the method and path of the refused request",
                ));
            };
            propose_l7(current, &host, port, binary, method, path)
        }
        _ => propose_l4(current, &host, port, binary),
    }
}

/// `current` with the proposal merged in. Idempotent; keeps the user's entries and order.
pub fn apply(current: &Policy, p: &Proposal) -> Policy {
    merge(current, &p.fragment)
}

/// The aggregation key: layer, host:port, binary and, for L7, method and path, normalised so
/// that denials which would get the same proposal share it. Space-separated; spaces, quotes,
/// backslashes and control characters inside a part are escaped, and an empty part is `""`.
///
/// `l7 api.github.com:443 /usr/bin/curl POST /repos/o/r/issues`
pub fn key(denied: &Denied) -> String {
    let host = exact_host(&denied.host).unwrap_or_else(|_| denied.host.to_ascii_lowercase());
    let mut k = format!(
        "{} {}:{} {}",
        denied.layer,
        esc(&host),
        denied.port,
        esc(&denied.binary)
    );
    if denied.layer == Layer::L7 {
        let method = denied.method.as_deref().unwrap_or_default();
        let path = denied.path.as_deref().unwrap_or_default();
        let path = normalize_path(path).unwrap_or_else(|_| path.to_string());
        k.push(' ');
        k.push_str(&esc(&method.trim().to_ascii_uppercase()));
        k.push(' ');
        k.push_str(&esc(&path));
    }
    k
}

fn esc(s: &str) -> String {
    if s.is_empty() {
        return "\"\"".into();
    }
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            c if c.is_whitespace() || c.is_control() => {
                out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out
}

fn propose_l4(
    current: &Policy,
    host: &str,
    port: u16,
    binary: &str,
) -> Result<Proposal, NoProposal> {
    if let Some((k, _)) = current
        .network_policies
        .iter()
        .find(|(_, e)| admits(e, binary) && e.endpoints.iter().any(|ep| reaches(ep, host, port)))
    {
        return Err(refuse(
            Why::AlreadyAllowed { entry: k.clone() },
            format!("{binary} may already reach {host}:{port}: entry `{k}` allows it"),
        ));
    }
    let endpoint = Endpoint {
        host: host.to_string(),
        port: Some(i64::from(port)),
        ..Endpoint::default()
    };
    let (entry, extends) = own_key(current, host, port, binary);
    let what = format!("allow {host}:{port} for {binary}");
    let summary = if extends {
        format!("{what} (adds an endpoint to {entry})")
    } else {
        format!("{what} (new entry {entry})")
    };
    Ok(finish(
        entry,
        extends,
        label(host, port, binary),
        endpoint,
        binary,
        summary,
    ))
}

fn propose_l7(
    current: &Policy,
    host: &str,
    port: u16,
    binary: &str,
    method: &str,
    raw_path: &str,
) -> Result<Proposal, NoProposal> {
    let method = method.trim().to_ascii_uppercase();
    if method.is_empty() || !method.chars().all(|c| c.is_ascii_alphabetic()) {
        return Err(refuse(
            Why::Inexpressible,
            format!(
                "`{method}` is not a method a rule can name (rules take letters only, e.g. POST)"
            ),
        ));
    }
    let path = normalize_path(raw_path).map_err(|why| {
        refuse(
            Why::RefusedByProxy,
            format!(
                "the proxy refuses `{}` whatever the policy says ({why}); the program must send \
                 the path in its plain form",
                raw_path.escape_debug()
            ),
        )
    })?;
    // What the engine decides today, for a request without a query.
    let mut enforce_deny = None;
    let mut allowed_by = None;
    for (k, e) in &current.network_policies {
        if !admits(e, binary) {
            continue;
        }
        for ep in e.endpoints.iter().filter(|ep| reaches(ep, host, port)) {
            if !ep.is_inspected() {
                allowed_by.get_or_insert(k);
                continue;
            }
            let denied = ep
                .deny_rules
                .iter()
                .flatten()
                .any(|r| matches_request(r, &method, &path));
            if denied && ep.enforcement() == Enforcement::Enforce {
                enforce_deny.get_or_insert(k);
            }
            if !denied
                && ep
                    .effective_rules()
                    .iter()
                    .any(|r| matches_request(r, &method, &path))
            {
                allowed_by.get_or_insert(k);
            }
        }
    }
    if let Some(k) = enforce_deny {
        return Err(refuse(
            Why::DenyRule { entry: k.clone() },
            format!(
                "{method} {path} on {host}:{port} is refused by a deny rule in entry `{k}`; deny \
                 rules win over allow rules, so only editing that deny rule (a person's call) \
                 can allow it"
            ),
        ));
    }
    if let Some(k) = allowed_by {
        return Err(refuse(
            Why::AlreadyAllowed { entry: k.clone() },
            format!(
                "{method} {path} on {host}:{port} is already allowed for {binary} by entry `{k}`"
            ),
        ));
    }

    if let Some(c) = path.chars().find(|c| matches!(c, '*' | '?')) {
        return Err(refuse(
            Why::Inexpressible,
            format!(
                "path `{path}` contains `{c}`, which a rule reads as a wildcard; globs have no \
                 escape (and `%{:02X}` is a different path to the proxy), so an exact rule for it \
                 cannot be written. Write a rule by hand if a pattern is what you mean",
                u32::from(c)
            ),
        ));
    }
    if let Err(e) = glob::validate_path(&path) {
        return Err(refuse(
            Why::Inexpressible,
            format!("no exact rule can be written for this path: {e}"),
        ));
    }

    let rule = AllowRule {
        allow: RuleMatch {
            method: method.clone(),
            path: path.clone(),
            query: None,
        },
    };
    let what = format!("allow {method} {path} on {host}:{port} for {binary}");
    let covering: Vec<(&String, &NetworkPolicy)> = current
        .network_policies
        .iter()
        .filter(|(_, e)| {
            admits(e, binary)
                && e.endpoints
                    .iter()
                    .any(|ep| ep.is_inspected() && reaches(ep, host, port))
        })
        .collect();
    let literal = |e: &NetworkPolicy| e.binaries.iter().all(|b| glob::is_literal(&b.path));
    let chosen = covering
        .iter()
        .find(|(_, e)| e.binaries.iter().all(|b| b.path == binary))
        .or_else(|| covering.iter().find(|(_, e)| literal(e)));

    if let Some((k, e)) = chosen {
        let in_place = e.endpoints.iter().find(|ep| {
            ep.is_inspected()
                && ep.access.is_none()
                && ep.rules.is_some()
                && ep.port_list() == [i64::from(port)]
                && glob::is_literal(&ep.host)
                && ep.host.to_ascii_lowercase() == host
                && !ep
                    .deny_rules
                    .iter()
                    .flatten()
                    .any(|r| matches_request(r, &method, &path))
        });
        let (endpoint, how) = match in_place {
            Some(ep) => (
                Endpoint {
                    host: ep.host.clone(),
                    port: ep.port,
                    ports: ep.ports.clone(),
                    protocol: ep.protocol,
                    tls: ep.tls,
                    enforcement: ep.enforcement,
                    rules: Some(vec![rule]),
                    ..Endpoint::default()
                },
                format!("adds a rule to {k}"),
            ),
            None => (
                rest_endpoint(host, port, rule),
                format!("adds a rule to {k}, on a new {host}:{port} endpoint"),
            ),
        };
        let others: Vec<&str> = e
            .binaries
            .iter()
            .map(|b| b.path.as_str())
            .filter(|b| *b != binary)
            .collect();
        let summary = if others.is_empty() {
            format!("{what} ({how})")
        } else {
            format!("{what} ({how}, so {} gets it too)", others.join(", "))
        };
        return Ok(finish(
            (*k).clone(),
            true,
            label(host, port, binary),
            endpoint,
            binary,
            summary,
        ));
    }

    let (entry, extends) = own_key(current, host, port, binary);
    let how = if extends {
        format!("adds an endpoint to {entry}")
    } else {
        format!("new entry {entry}")
    };
    let summary = match covering.first() {
        Some((k, _)) => {
            format!("{what} ({how}; not added to {k}, which admits programs by pattern)")
        }
        None => format!("{what} ({how})"),
    };
    Ok(finish(
        entry,
        extends,
        label(host, port, binary),
        rest_endpoint(host, port, rule),
        binary,
        summary,
    ))
}

fn rest_endpoint(host: &str, port: u16, rule: AllowRule) -> Endpoint {
    Endpoint {
        host: host.to_string(),
        port: Some(i64::from(port)),
        protocol: Some(Protocol::Rest),
        rules: Some(vec![rule]),
        ..Endpoint::default()
    }
}

fn finish(
    entry: String,
    extends: bool,
    name: String,
    endpoint: Endpoint,
    binary: &str,
    summary: String,
) -> Proposal {
    let mut fragment = Policy::default();
    fragment.network_policies.insert(
        entry.clone(),
        NetworkPolicy {
            // An existing entry keeps its own name; merge never renames.
            name: (!extends).then_some(name),
            endpoints: vec![endpoint],
            binaries: vec![Binary {
                path: binary.to_string(),
            }],
        },
    );
    let yaml = to_yaml(&fragment);
    Proposal {
        fragment,
        summary,
        yaml,
        entry,
        extends,
    }
}

fn label(host: &str, port: u16, binary: &str) -> String {
    format!("{host}:{port} for {binary}")
}

/// `allow_<host>_<port>_<program>`, or the same with `_2`, `_3`... when the key is taken by
/// an entry for other binaries. An entry for exactly this binary is reused (extending it adds
/// nothing for anyone else). Returns the key and whether it exists.
fn own_key(current: &Policy, host: &str, port: u16, binary: &str) -> (String, bool) {
    let program = binary.rsplit('/').next().unwrap_or_default();
    let program = match slug(program) {
        s if s.is_empty() => "program".to_string(),
        s => s,
    };
    let base = format!("allow_{}_{port}_{program}", slug(host));
    let mut n = 1;
    loop {
        let k = if n == 1 {
            base.clone()
        } else {
            format!("{base}_{n}")
        };
        match current.network_policies.get(&k) {
            None => return (k, false),
            Some(e) if !e.binaries.is_empty() && e.binaries.iter().all(|b| b.path == binary) => {
                return (k, true);
            }
            Some(_) => n += 1,
        }
    }
}

/// Lower-case letters and digits, every other run of characters one `_`.
fn slug(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    while out.ends_with('_') {
        out.pop();
    }
    out
}

fn check_binary(binary: &str) -> Result<(), NoProposal> {
    if binary.is_empty() {
        return Err(refuse(
            Why::UnknownBinary,
            "the kernel could not tell which program made this connection (no binary was \
             recorded), so no rule can name it; a rule for every program (`**`) would be far \
             wider than this denial, so write one by hand if that is meant",
        ));
    }
    if binary.ends_with(" (deleted)") {
        return Err(refuse(
            Why::UnknownBinary,
            format!(
                "`{binary}` was deleted or replaced while it ran, so the program that made the \
                 connection can no longer be named; run it again and approve the new denial"
            ),
        ));
    }
    if !binary.starts_with('/') {
        return Err(refuse(
            Why::UnknownBinary,
            format!(
                "`{}` is not an executable path the kernel reports, so a rule cannot name it",
                binary.escape_debug()
            ),
        ));
    }
    if let Some(c) = binary.chars().find(|c| matches!(c, '*' | '?')) {
        return Err(refuse(
            Why::Inexpressible,
            format!(
                "binary `{binary}` contains `{c}`, which a binary rule reads as a wildcard; an \
                 exact rule for it cannot be written"
            ),
        ));
    }
    glob::validate_binary(binary).map_err(|e| {
        refuse(
            Why::UnknownBinary,
            format!("no exact rule can name this program: {e}"),
        )
    })
}

/// The host as policy compares it (lower-case, no trailing dot, IPv6 without brackets), or
/// why no exact endpoint can be written for it.
fn exact_host(raw: &str) -> Result<String, String> {
    let h = raw.trim_end_matches('.');
    let h = h
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(h);
    if h.is_empty() {
        return Err("the denial names no host".into());
    }
    if let Ok(ip) = h.parse::<IpAddr>() {
        return Ok(ip.to_string());
    }
    if h.contains(['*', '?']) {
        return Err(format!(
            "host `{}` contains a wildcard character, which an endpoint would read as a pattern",
            h.escape_debug()
        ));
    }
    if h.len() > 253
        || h.split('.').any(|l| l.is_empty() || l.len() > 63)
        || !h
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    {
        return Err(format!(
            "`{}` is not a host name an endpoint can name",
            h.escape_debug()
        ));
    }
    let h = h.to_ascii_lowercase();
    glob::validate_host(&h)?;
    Ok(h)
}

/// Address classes of DESIGN §4, as the supervisor's SSRF check uses them: never reachable,
/// and reachable only by a person's decision.
const NEVER: &[(&str, &str)] = &[
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

fn class_of(ip: &IpAddr, table: &[(&str, &'static str)]) -> Option<&'static str> {
    table.iter().find_map(|(cidr, class)| {
        let net: IpNet = cidr.parse().ok()?;
        net.contains(ip).then_some(*class)
    })
}

/// An endpoint whose host is an IP literal opens that address, so internal addresses are
/// left to a person, like `allowed_ips`.
fn check_address(host: &str, port: u16) -> Result<(), NoProposal> {
    let Ok(ip) = host.parse::<IpAddr>() else {
        return Ok(());
    };
    if let Some(class) = class_of(&ip, NEVER) {
        return Err(refuse(
            Why::Unreachable,
            format!(
                "{host} is a {class} address, which a sandbox may never reach; no policy can allow it"
            ),
        ));
    }
    if let Some(class) = class_of(&ip, INTERNAL) {
        return Err(refuse(
            Why::Ssrf,
            format!(
                "{host} is a {class} address; an endpoint for it would open a way into the \
                 internal network, which is for a person to decide: add an entry with \
                 `host: {host}` and `port: {port}` by hand if it is meant"
            ),
        ));
    }
    Ok(())
}

fn admits(entry: &NetworkPolicy, binary: &str) -> bool {
    entry
        .binaries
        .iter()
        .any(|b| Glob::new(&b.path, GlobKind::Binary).is_match(binary))
}

fn reaches(ep: &Endpoint, host: &str, port: u16) -> bool {
    ep.port_list().contains(&i64::from(port)) && Glob::new(&ep.host, GlobKind::Host).is_match(host)
}

/// Whether a rule matches a request without a query, as the engine decides (a `GET` rule
/// also admits `HEAD`; a rule that needs query parameters does not match).
fn matches_request(r: &RuleMatch, method: &str, path: &str) -> bool {
    let m = r.method.to_ascii_uppercase();
    (m == "*" || m == method || (m == "GET" && method == "HEAD"))
        && Glob::new(&r.path, GlobKind::Path).is_match(path)
        && r.query.as_ref().is_none_or(|q| q.is_empty())
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The path policy matches, as the supervisor's proxy normalises it (percent-escapes of
/// unreserved characters decoded, others upper-cased), or why the proxy refuses it. Kept
/// identical to `openshell_sandbox::engine::request::normalize_path`; the supervisor's
/// proposal tests hold them to the same answers.
pub fn normalize_path(raw: &str) -> Result<String, String> {
    if !raw.starts_with('/') {
        return Err(format!("path `{}` is not absolute", raw.escape_debug()));
    }
    let b = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let (Some(h), Some(l)) = (
                    b.get(i + 1).copied().and_then(hex),
                    b.get(i + 2).copied().and_then(hex),
                ) else {
                    return Err("path has a malformed percent-escape".into());
                };
                let byte = h * 16 + l;
                if unreserved(byte) {
                    out.push(char::from(byte));
                } else if byte == b'/' || byte == b'\\' {
                    return Err(
                        "path has an encoded `/` or `\\`, which servers decode differently".into(),
                    );
                } else {
                    out.push('%');
                    out.push(char::from(b"0123456789ABCDEF"[usize::from(h)]));
                    out.push(char::from(b"0123456789ABCDEF"[usize::from(l)]));
                }
                i += 3;
            }
            b'\\' => return Err("path contains `\\`, which some servers read as `/`".into()),
            c if !(0x21..0x7f).contains(&c) => {
                return Err("path contains a control, space or non-ASCII byte".into());
            }
            c => {
                out.push(char::from(c));
                i += 1;
            }
        }
    }
    let segments: Vec<&str> = out[1..].split('/').collect();
    let last = segments.len().saturating_sub(1);
    for (n, seg) in segments.iter().enumerate() {
        if *seg == "." || *seg == ".." {
            return Err("path contains a `.` or `..` segment".into());
        }
        if seg.is_empty() && n != last {
            return Err("path contains `//`".into());
        }
    }
    Ok(out)
}
