//! Meaning checks that serde cannot make: paths, globs, ports, CIDRs, combinations of fields.
//! Each finding names the field path; `load` turns the path into a line and column.

use super::glob;
use super::model::*;
use ipnet::IpNet;
use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Worth knowing; the policy is fine.
    Note,
    /// Probably not what was meant; the policy still loads.
    Warning,
    /// The policy is refused.
    Error,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    pub path: String,
    pub message: String,
}

const MAX_PATHS: usize = 256;
const MAX_PATH_LEN: usize = 4096;

/// Every finding for `policy`, in document order.
pub fn validate(policy: &Policy) -> Vec<Finding> {
    let mut v = Validator::default();
    if policy.version != 1 {
        v.error(
            "version",
            format!(
                "unsupported version {}; this OpenShell reads `version: 1`",
                policy.version
            ),
        );
    }
    if let Some(fs) = &policy.filesystem_policy {
        v.filesystem(fs);
    }
    if let Some(p) = &policy.process {
        v.identity("process.run_as_user", p.run_as_user.as_deref(), "user");
        v.identity("process.run_as_group", p.run_as_group.as_deref(), "group");
    }
    for (key, entry) in &policy.network_policies {
        v.network_entry(key, entry);
    }
    v.out
}

#[derive(Default)]
struct Validator {
    out: Vec<Finding>,
}

impl Validator {
    fn push(&mut self, severity: Severity, path: impl Into<String>, message: impl Into<String>) {
        self.out.push(Finding {
            severity,
            path: path.into(),
            message: message.into(),
        });
    }
    fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.push(Severity::Error, path, message);
    }
    fn warn(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.push(Severity::Warning, path, message);
    }
    fn note(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.push(Severity::Note, path, message);
    }

    fn filesystem(&mut self, fs: &FilesystemPolicy) {
        let total = fs.read_only.len() + fs.read_write.len();
        if total > MAX_PATHS {
            self.error(
                "filesystem_policy",
                format!("{total} paths listed; at most {MAX_PATHS} are allowed, list parent directories instead"),
            );
        }
        for (list, paths) in [("read_only", &fs.read_only), ("read_write", &fs.read_write)] {
            let mut seen = std::collections::HashSet::new();
            for (i, p) in paths.iter().enumerate() {
                let at = format!("filesystem_policy.{list}[{i}]");
                self.fs_path(&at, p);
                if list == "read_write" && p.trim_end_matches('/').is_empty() && p.starts_with('/')
                {
                    self.error(
                        &at,
                        "`/` read-write would let the agent change the whole system; list the \
                         directories it needs, e.g. /sandbox and /tmp",
                    );
                }
                if list == "read_only" && p == "/" {
                    self.warn(
                        &at,
                        "`/` read-only lets the agent read every file the sandbox user can, \
                         including home directories; list system directories instead",
                    );
                }
                if !seen.insert(p.trim_end_matches('/')) {
                    self.warn(&at, format!("`{p}` is listed twice"));
                }
            }
        }
    }

    fn fs_path(&mut self, at: &str, p: &str) {
        if p.len() > MAX_PATH_LEN {
            self.error(at, format!("path is longer than {MAX_PATH_LEN} characters"));
        } else if !p.starts_with('/') {
            self.error(
                at,
                format!(
                    "`{p}` is relative; filesystem paths must be absolute, e.g. `/{}`",
                    p.trim_start_matches("./")
                ),
            );
        } else if p.split('/').any(|s| s == "..") {
            self.error(
                at,
                format!("`{p}` contains `..`; write the directory it resolves to"),
            );
        } else if p.contains(['*', '?']) {
            self.error(
                at,
                format!(
                    "`{p}` contains a wildcard; filesystem paths are literal directories or files"
                ),
            );
        } else if p.contains('\0') {
            self.error(at, "path contains a NUL byte");
        }
    }

    fn identity(&mut self, at: &str, value: Option<&str>, what: &str) {
        let Some(v) = value else { return };
        if v == "root" || v == "0" {
            self.error(
                at,
                format!("the agent must not run as root; use `sandbox` or a numeric {what} id of 1 or more"),
            );
            return;
        }
        if let Ok(n) = v.parse::<i64>() {
            if !(1..=4_294_967_294).contains(&n) {
                self.error(
                    at,
                    format!("{what} id {n} is out of range; use 1 to 4294967294"),
                );
            }
            return;
        }
        let valid = v.len() <= 32
            && v.chars()
                .next()
                .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && v.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if !valid {
            self.error(
                at,
                format!("`{v}` is not a valid {what} name; use `sandbox` or a numeric id"),
            );
        }
    }

    fn network_entry(&mut self, key: &str, entry: &NetworkPolicy) {
        let at = format!("network_policies.{key}");
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            self.error(
                &at,
                format!("entry name `{key}` may hold only letters, digits, `_`, `-` and `.`"),
            );
        }
        if entry.endpoints.is_empty() {
            self.warn(
                format!("{at}.endpoints"),
                "no endpoints: this entry allows nothing",
            );
        }
        if entry.binaries.is_empty() {
            self.warn(
                format!("{at}.binaries"),
                "no binaries: this entry allows nothing; use `- { path: \"**\" }` for any binary",
            );
        }
        for (i, b) in entry.binaries.iter().enumerate() {
            if let Err(e) = glob::validate_binary(&b.path) {
                self.error(format!("{at}.binaries[{i}].path"), e);
            }
        }
        for (i, ep) in entry.endpoints.iter().enumerate() {
            self.endpoint(&format!("{at}.endpoints[{i}]"), ep);
        }
    }

    fn endpoint(&mut self, at: &str, ep: &Endpoint) {
        if let Err(e) = glob::validate_host(&ep.host) {
            self.error(format!("{at}.host"), e);
        } else if ep.host == "**" {
            self.warn(format!("{at}.host"), "`**` matches every host");
        }
        self.ports(at, ep);
        let rest = ep.protocol == Some(Protocol::Rest);
        if ep.access.is_some() && ep.rules.is_some() {
            self.error(
                format!("{at}.rules"),
                "`access` and `rules` are mutually exclusive: keep the preset or list rules, not both",
            );
        }
        if let Some(rules) = &ep.rules {
            if rules.is_empty() {
                self.error(
                    format!("{at}.rules"),
                    "`rules: []` allows nothing; list rules, use `access: full`, or remove it",
                );
            }
            for (j, r) in rules.iter().enumerate() {
                self.rule(&format!("{at}.rules[{j}].allow"), &r.allow);
            }
        }
        if let Some(deny) = &ep.deny_rules {
            if deny.is_empty() {
                self.error(
                    format!("{at}.deny_rules"),
                    "`deny_rules: []` is empty; remove it if nothing is denied",
                );
            }
            if ep.access.is_none() && ep.rules.is_none() {
                self.error(
                    format!("{at}.deny_rules"),
                    "`deny_rules` narrow an allow set; add `access` or `rules` as well",
                );
            }
            for (j, r) in deny.iter().enumerate() {
                self.rule(&format!("{at}.deny_rules[{j}]"), r);
            }
        }
        let has_l7 = ep.rules.is_some() || ep.deny_rules.is_some() || ep.access.is_some();
        if rest {
            if ep.access.is_none() && ep.rules.is_none() {
                self.error(
                    format!("{at}.protocol"),
                    "`protocol: rest` needs `access` (read-only, read-write, full) or `rules` to say which requests pass",
                );
            }
            if ep.tls == Some(TlsMode::Skip) && ep.access != Some(Access::Full) {
                self.error(
                    format!("{at}.tls"),
                    "`tls: skip` leaves HTTPS uninspected, so these rules could not be enforced; \
                     remove `tls: skip` or use `access: full`",
                );
            }
            if ep.enforcement.is_none() {
                self.note(
                    format!("{at}.enforcement"),
                    "enforcement not set: requests outside the rules are denied (`enforce`); \
                     upstream OpenShell would only audit them",
                );
            }
        } else if has_l7 && ep.access != Some(Access::Full) {
            self.error(
                format!("{at}.protocol"),
                "method and path rules need `protocol: rest`; without it the proxy cannot see \
                 requests and would allow all of them",
            );
        }
        if matches!(ep.tls, Some(TlsMode::Terminate | TlsMode::Passthrough)) {
            self.note(
                format!("{at}.tls"),
                "accepted for compatibility: TLS on rest endpoints is detected and terminated, \
                 other endpoints are tunnelled as they are",
            );
        }
        if let Some(ips) = &ep.allowed_ips {
            for (j, ip) in ips.iter().enumerate() {
                self.allowed_ip(&format!("{at}.allowed_ips[{j}]"), ip);
            }
        }
    }

    fn ports(&mut self, at: &str, ep: &Endpoint) {
        if ep.port.is_none() && ep.ports.as_ref().is_none_or(Vec::is_empty) {
            self.error(
                format!("{at}.port"),
                "missing `port`; add the TCP port, e.g. `port: 443`",
            );
        }
        if let Some(p) = ep.port {
            self.port(&format!("{at}.port"), p);
        }
        for (j, p) in ep.ports.iter().flatten().enumerate() {
            self.port(&format!("{at}.ports[{j}]"), *p);
        }
    }

    fn port(&mut self, at: &str, p: i64) {
        if !(1..=65535).contains(&p) {
            self.error(at, format!("port {p} is out of range; use 1 to 65535"));
        }
    }

    fn rule(&mut self, at: &str, r: &RuleMatch) {
        let m = r.method.as_str();
        if m != "*" && (m.is_empty() || !m.chars().all(|c| c.is_ascii_alphabetic())) {
            self.error(
                format!("{at}.method"),
                format!("`{m}` is not an HTTP method; use e.g. GET, POST, or `*` for any"),
            );
        }
        if r.path != "**"
            && let Err(e) = glob::validate_path(&r.path)
        {
            self.error(format!("{at}.path"), e);
        }
        for (k, qm) in r.query.iter().flatten() {
            if k.is_empty() {
                self.error(format!("{at}.query"), "query parameter name is empty");
            }
            if qm.globs().is_empty() {
                self.error(
                    format!("{at}.query.{k}"),
                    "`any: []` matches nothing; list at least one glob",
                );
            }
        }
    }

    fn allowed_ip(&mut self, at: &str, text: &str) {
        let net = match text.parse::<IpNet>() {
            Ok(n) => n,
            Err(_) => match text.parse::<IpAddr>() {
                Ok(ip) => IpNet::from(ip),
                Err(_) => {
                    self.error(
                        at,
                        format!("`{text}` is not an IP address or CIDR; write e.g. `10.0.5.0/24` or `10.0.5.7`"),
                    );
                    return;
                }
            },
        };
        if net.trunc() != net {
            self.warn(
                at,
                format!("`{text}` has host bits set; it means `{}`", net.trunc()),
            );
        }
        if let Some(what) = forbidden_overlap(&net) {
            self.error(
                at,
                format!("`{text}` covers {what} addresses, which a sandbox may never reach; list only the private ranges it needs"),
            );
            return;
        }
        let broad = match net {
            IpNet::V4(n) => n.prefix_len() < 16,
            IpNet::V6(n) => n.prefix_len() < 48,
        };
        if broad {
            self.warn(at, format!("`{text}` is a very broad range"));
        }
    }
}

/// Ranges that `allowed_ips` may never open: loopback, link-local, unspecified.
fn forbidden_overlap(net: &IpNet) -> Option<&'static str> {
    const FORBIDDEN: [(&str, &str); 8] = [
        ("127.0.0.0/8", "loopback"),
        ("::ffff:127.0.0.0/104", "loopback"),
        ("::ffff:169.254.0.0/112", "link-local"),
        ("169.254.0.0/16", "link-local"),
        ("0.0.0.0/32", "unspecified"),
        ("::1/128", "loopback"),
        ("fe80::/10", "link-local"),
        ("::/128", "unspecified"),
    ];
    FORBIDDEN.iter().find_map(|(cidr, what)| {
        let f: IpNet = cidr.parse().ok()?;
        let overlaps = net.contains(&f.network()) || f.contains(&net.network());
        overlaps.then_some(*what)
    })
}
