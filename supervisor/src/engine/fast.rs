//! The native engine: the Rego program's semantics, compiled to plain matchers. Built once per
//! revision; a decision visits, in policy order, the endpoints whose host is that literal name
//! (one hash lookup) and those whose host is a pattern, and allocates only to explain a denial.

use super::ir::{Ir, IrEndpoint, IrRule, Pattern, PatternKind};
use super::ssrf::Classifier;
use super::{Action, Decision, Engine, EngineError, L7Input, Layer, NetworkInput};
use ipnet::IpNet;
use openshell_proto::policy::glob::Glob;
use std::borrow::Cow;
use std::collections::HashMap;
use std::iter::Peekable;
use std::net::IpAddr;
use std::sync::Arc;

/// Native glob matching (no regex), the same language as the Rego engine's regexes.
struct Matcher(Glob);

impl Matcher {
    fn new(p: &Pattern) -> Result<Matcher, EngineError> {
        Ok(Matcher(match p.kind {
            PatternKind::Any => Glob::Any,
            PatternKind::Lit => Glob::Literal(p.v.clone().into_boxed_str()),
            PatternKind::Re => Glob::new(&p.src, p.glob_kind),
        }))
    }

    #[inline]
    fn is_match(&self, s: &str) -> bool {
        self.0.is_match(s)
    }

    fn literal(&self) -> Option<&str> {
        match &self.0 {
            Glob::Literal(l) => Some(l),
            _ => None,
        }
    }
}

struct Rule {
    method: Box<str>,
    path: Matcher,
    query: Vec<(Box<str>, Vec<Matcher>)>,
}

impl Rule {
    fn new(r: &IrRule) -> Result<Rule, EngineError> {
        Ok(Rule {
            method: r.method.clone().into_boxed_str(),
            path: Matcher::new(&r.path)?,
            query: r
                .query
                .iter()
                .map(|q| {
                    let globs = q.globs.iter().map(Matcher::new).collect::<Result<_, _>>()?;
                    Ok((q.key.clone().into_boxed_str(), globs))
                })
                .collect::<Result<_, EngineError>>()?,
        })
    }

    fn method_ok(&self, method: &str) -> bool {
        &*self.method == "*"
            || &*self.method == method
            || (&*self.method == "GET" && method == "HEAD")
    }

    /// Allow rules: every listed key is present and every one of its values matches.
    fn allows(&self, i: &L7Input<'_>) -> bool {
        self.method_ok(i.method)
            && self.path.is_match(i.path)
            && self.query.iter().all(|(key, globs)| {
                let mut vals = i.query.iter().filter(|(k, _)| **k == **key).peekable();
                vals.peek().is_some() && vals.all(|(_, v)| globs.iter().any(|g| g.is_match(v)))
            })
    }

    /// Deny rules: every listed key has some value that matches.
    fn denies(&self, i: &L7Input<'_>) -> bool {
        self.method_ok(i.method)
            && self.path.is_match(i.path)
            && self.query.iter().all(|(key, globs)| {
                i.query
                    .iter()
                    .any(|(k, v)| **k == **key && globs.iter().any(|g| g.is_match(v)))
            })
    }
}

struct Endpoint {
    host: Matcher,
    ports: Vec<u16>,
    l7: bool,
    audit: bool,
    allow: Vec<Rule>,
    deny: Vec<Rule>,
    allowed_ips: Vec<IpNet>,
    host_ip: Option<IpAddr>,
}

impl Endpoint {
    fn new(e: &IrEndpoint) -> Result<Endpoint, EngineError> {
        Ok(Endpoint {
            host: Matcher::new(&e.host)?,
            ports: e.ports.clone(),
            l7: e.l7,
            audit: e.audit,
            allow: e.allow.iter().map(Rule::new).collect::<Result<_, _>>()?,
            deny: e.deny.iter().map(Rule::new).collect::<Result<_, _>>()?,
            allowed_ips: e
                .allowed_ips
                .iter()
                .filter_map(|c| c.parse().ok())
                .collect(),
            host_ip: e.host_ip.parse().ok(),
        })
    }

    fn denied_here(&self, i: &L7Input<'_>) -> bool {
        self.deny.iter().any(|r| r.denies(i))
    }
}

struct Entry {
    key: Arc<str>,
    binaries: Vec<Matcher>,
    binary_texts: Vec<String>,
    endpoints: Vec<Endpoint>,
}

/// An endpoint by its place in the policy: (entry, endpoint within the entry).
type Slot = (u32, u32);

/// The compiled native engine.
pub struct FastEngine {
    entries: Vec<Entry>,
    /// Endpoints whose host is a literal name, by that name, in policy order.
    by_host: HashMap<Box<str>, Vec<Slot>>,
    /// Endpoints whose host is a pattern, in policy order.
    patterns: Vec<Slot>,
    classes: Classifier,
}

/// Two lists of slots, each in policy order, walked as one list in policy order.
struct Merged<'s> {
    a: Peekable<std::slice::Iter<'s, Slot>>,
    b: Peekable<std::slice::Iter<'s, Slot>>,
}

impl Iterator for Merged<'_> {
    type Item = Slot;

    fn next(&mut self) -> Option<Slot> {
        match (self.a.peek(), self.b.peek()) {
            (Some(x), Some(y)) if x <= y => self.a.next().copied(),
            (Some(_), Some(_)) | (None, Some(_)) => self.b.next().copied(),
            (Some(_), None) => self.a.next().copied(),
            (None, None) => None,
        }
    }
}

impl FastEngine {
    pub fn new(ir: &Ir) -> Result<FastEngine, EngineError> {
        let entries = ir
            .entries
            .iter()
            .map(|e| {
                Ok(Entry {
                    key: Arc::from(e.key.as_str()),
                    binaries: e
                        .binaries
                        .iter()
                        .map(Matcher::new)
                        .collect::<Result<_, _>>()?,
                    binary_texts: e.binaries.iter().map(|b| b.src.clone()).collect(),
                    endpoints: e
                        .endpoints
                        .iter()
                        .map(Endpoint::new)
                        .collect::<Result<_, _>>()?,
                })
            })
            .collect::<Result<Vec<Entry>, EngineError>>()?;
        let mut by_host: HashMap<Box<str>, Vec<Slot>> = HashMap::new();
        let mut patterns = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            for (j, ep) in e.endpoints.iter().enumerate() {
                let slot = (i as u32, j as u32);
                match ep.host.literal() {
                    Some(name) => by_host.entry(name.into()).or_default().push(slot),
                    None => patterns.push(slot),
                }
            }
        }
        Ok(FastEngine {
            entries,
            by_host,
            patterns,
            classes: Classifier::default(),
        })
    }

    /// Every (entry, endpoint) matching host and port, in policy order.
    fn host_port<'s>(
        &'s self,
        host: &'s str,
        port: u16,
    ) -> impl Iterator<Item = (usize, &'s Endpoint)> + 's {
        let named: &[Slot] = self.by_host.get(host).map_or(&[], Vec::as_slice);
        Merged {
            a: named.iter().peekable(),
            b: self.patterns.iter().peekable(),
        }
        .filter_map(move |(i, j)| {
            let ep = &self.entries[i as usize].endpoints[j as usize];
            (ep.ports.contains(&port) && ep.host.is_match(host)).then_some((i as usize, ep))
        })
    }

    fn binary_ok(&self, entry: usize, binary: &str) -> bool {
        self.entries[entry]
            .binaries
            .iter()
            .any(|b| b.is_match(binary))
    }

    /// Matching endpoints whose entry admits the binary.
    fn permitted<'s>(
        &'s self,
        host: &'s str,
        port: u16,
        binary: &'s str,
    ) -> impl Iterator<Item = (usize, &'s Endpoint)> + 's {
        self.host_port(host, port)
            .filter(move |(i, _)| self.binary_ok(*i, binary))
    }

    fn deny(layer: Layer, policy: Option<Arc<str>>, reason: String) -> Decision {
        Decision {
            action: Action::Deny,
            policy,
            reason: Cow::Owned(reason),
            layer,
            inspect: false,
        }
    }

    fn ssrf(&self, input: &NetworkInput<'_>) -> Option<Decision> {
        let ips = input.ips?;
        let mut problems: Vec<(String, &'static str)> = Vec::new();
        for ip in ips {
            if let Some(class) = self.classes.blocked(ip) {
                problems.push((ip.to_string(), class));
            } else if !input.pinned
                && let Some(class) = self.classes.internal(ip)
            {
                let covered =
                    self.permitted(input.host, input.port, input.binary)
                        .any(|(_, ep)| {
                            ep.host_ip == Some(*ip) || ep.allowed_ips.iter().any(|n| n.contains(ip))
                        });
                if !covered {
                    problems.push((ip.to_string(), class));
                }
            }
        }
        // Report the same address the Rego program does: the smallest [ip, class] pair.
        let (ip, class) = problems.into_iter().min()?;
        Some(Self::deny(
            Layer::Ssrf,
            None,
            format!(
                "{}:{} resolves to {} ({}), which the sandbox may not reach unless allowed_ips covers it",
                input.host, input.port, ip, class
            ),
        ))
    }
}

impl Engine for FastEngine {
    fn network(&self, input: &NetworkInput<'_>) -> Decision {
        if self.entries.is_empty() {
            return Self::deny(
                Layer::L4,
                None,
                "network connections not allowed by policy".into(),
            );
        }
        // One pass: the first endpoint for host and port, the first whose entry admits the
        // binary, and whether any admitted one is inspected.
        let (mut first_hp, mut first, mut inspect) = (None, None, false);
        for (i, ep) in self.host_port(input.host, input.port) {
            first_hp.get_or_insert(i);
            if self.binary_ok(i, input.binary) {
                first.get_or_insert(i);
                inspect |= ep.l7;
            }
        }
        let Some(first_hp) = first_hp else {
            return Self::deny(
                Layer::L4,
                None,
                format!(
                    "endpoint {}:{} is not allowed by any policy",
                    input.host, input.port
                ),
            );
        };
        let Some(first) = first else {
            let e = &self.entries[first_hp];
            return Self::deny(
                Layer::L4,
                Some(e.key.clone()),
                format!(
                    "binary '{}' is not allowed to reach {}:{} (policy '{}' allows {})",
                    input.binary,
                    input.host,
                    input.port,
                    e.key,
                    e.binary_texts.join(", ")
                ),
            );
        };
        if let Some(d) = self.ssrf(input) {
            return d;
        }
        Decision {
            action: Action::Allow,
            policy: Some(self.entries[first].key.clone()),
            reason: Cow::Borrowed("allowed by policy"),
            layer: Layer::L4,
            inspect,
        }
    }

    fn l7(&self, i: &L7Input<'_>) -> Decision {
        let mut first_permitted = None;
        let mut first_enforce_deny = None;
        let mut first_allow = None;
        let mut first_audit = None;
        for (e, ep) in self.permitted(i.host, i.port, i.binary) {
            first_permitted.get_or_insert(e);
            if !ep.l7 {
                first_allow.get_or_insert(e);
                continue;
            }
            let denied = ep.denied_here(i);
            if denied && !ep.audit {
                first_enforce_deny.get_or_insert(e);
            }
            if !denied && ep.allow.iter().any(|r| r.allows(i)) {
                first_allow.get_or_insert(e);
            }
            if ep.audit {
                first_audit.get_or_insert(e);
            }
        }
        let key = |e: usize| Some(self.entries[e].key.clone());
        let Some(permitted) = first_permitted else {
            return Self::deny(
                Layer::L7,
                None,
                format!(
                    "{} {} not permitted by policy: no policy lets '{}' reach {}:{}",
                    i.method, i.path, i.binary, i.host, i.port
                ),
            );
        };
        if let Some(e) = first_enforce_deny {
            return Self::deny(
                Layer::L7,
                key(e),
                format!("{} {} blocked by a deny rule", i.method, i.path),
            );
        }
        if let Some(e) = first_allow {
            return Decision {
                action: Action::Allow,
                policy: key(e),
                reason: Cow::Borrowed("allowed by policy"),
                layer: Layer::L7,
                inspect: true,
            };
        }
        if let Some(e) = first_audit {
            return Decision {
                action: Action::Audit,
                policy: key(e),
                reason: Cow::Owned(format!(
                    "{} {} not permitted by policy (audit: forwarded)",
                    i.method, i.path
                )),
                layer: Layer::L7,
                inspect: true,
            };
        }
        Self::deny(
            Layer::L7,
            key(permitted),
            format!("{} {} not permitted by policy", i.method, i.path),
        )
    }

    fn name(&self) -> &'static str {
        "fast"
    }
}
