//! The policy reduced to what decisions need: patterns as literals or anchored regexes,
//! presets expanded, hosts lower-cased. Both engines are built from this, and the Rego engine
//! receives it verbatim as `data.policy`.

use openshell_proto::policy::glob::{self, GlobKind};
use openshell_proto::policy::{Policy, Protocol, RuleMatch, TlsMode};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Ir {
    pub entries: Vec<IrEntry>,
    pub ranges: super::ssrf::RangeTable,
}

#[derive(Debug, Clone, Serialize)]
pub struct IrEntry {
    pub key: String,
    pub name: String,
    pub binaries: Vec<Pattern>,
    pub endpoints: Vec<IrEndpoint>,
}

#[derive(Debug, Clone, Serialize)]
pub struct IrEndpoint {
    pub host: Pattern,
    pub ports: Vec<u16>,
    /// Requests are inspected (`protocol: rest`, TLS not skipped).
    pub l7: bool,
    pub audit: bool,
    pub allow: Vec<IrRule>,
    pub deny: Vec<IrRule>,
    pub allowed_ips: Vec<String>,
    /// The host is an IP literal: that address is implicitly allowed.
    pub host_ip: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct IrRule {
    /// Upper-case method or `*`.
    pub method: String,
    pub path: Pattern,
    pub query: Vec<IrQuery>,
}

#[derive(Debug, Clone, Serialize)]
pub struct IrQuery {
    pub key: String,
    pub globs: Vec<Pattern>,
}

/// A compiled glob: `any` matches everything, `lit` compares, `re` is an anchored regex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pattern {
    pub kind: PatternKind,
    pub v: String,
    /// The glob as written, for messages.
    pub src: String,
    /// What the glob matches; the native engine compiles `src` with it.
    #[serde(skip)]
    pub glob_kind: GlobKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PatternKind {
    Any,
    Lit,
    Re,
}

impl Pattern {
    pub fn new(globtext: &str, kind: GlobKind) -> Pattern {
        let text = if kind == GlobKind::Host {
            globtext.to_ascii_lowercase()
        } else {
            globtext.to_string()
        };
        let any = match kind {
            GlobKind::Host | GlobKind::Path | GlobKind::Binary => text == "**",
            GlobKind::Query => text == "*",
        };
        let src = globtext.to_string();
        if any {
            Pattern {
                kind: PatternKind::Any,
                v: String::new(),
                src,
                glob_kind: kind,
            }
        } else if glob::is_literal(&text) {
            Pattern {
                kind: PatternKind::Lit,
                v: text,
                src,
                glob_kind: kind,
            }
        } else {
            Pattern {
                kind: PatternKind::Re,
                v: glob::to_regex(&text, kind),
                src,
                glob_kind: kind,
            }
        }
    }
}

impl Ir {
    /// The IR of a validated policy.
    pub fn from_policy(p: &Policy) -> Ir {
        let entries = p
            .network_policies
            .iter()
            .map(|(key, e)| IrEntry {
                key: key.clone(),
                name: e.name.clone().unwrap_or_else(|| key.clone()),
                binaries: e
                    .binaries
                    .iter()
                    .map(|b| Pattern::new(&b.path, GlobKind::Binary))
                    .collect(),
                endpoints: e
                    .endpoints
                    .iter()
                    .map(|ep| {
                        let l7 =
                            ep.protocol == Some(Protocol::Rest) && ep.tls != Some(TlsMode::Skip);
                        let host = ep.host.to_ascii_lowercase();
                        IrEndpoint {
                            host: Pattern::new(&host, GlobKind::Host),
                            ports: ep
                                .port_list()
                                .iter()
                                .filter_map(|p| u16::try_from(*p).ok())
                                .collect(),
                            l7,
                            audit: ep.enforcement() == openshell_proto::policy::Enforcement::Audit,
                            allow: ep.effective_rules().iter().map(rule).collect(),
                            deny: ep.deny_rules.iter().flatten().map(rule).collect(),
                            allowed_ips: ep
                                .allowed_ips
                                .iter()
                                .flatten()
                                .filter_map(|t| cidr(t))
                                .collect(),
                            host_ip: host
                                .parse::<std::net::IpAddr>()
                                .map(|ip| ip.to_string())
                                .unwrap_or_default(),
                        }
                    })
                    .collect(),
            })
            .collect();
        Ir {
            entries,
            ranges: super::ssrf::RangeTable::standard(),
        }
    }
}

/// `10.0.5.7` → `10.0.5.7/32`, `10.0.5.9/24` → `10.0.5.0/24`; validation refused anything else.
fn cidr(text: &str) -> Option<String> {
    let net = match text.parse::<ipnet::IpNet>() {
        Ok(n) => n,
        Err(_) => ipnet::IpNet::from(text.parse::<std::net::IpAddr>().ok()?),
    };
    Some(net.trunc().to_string())
}

fn rule(r: &RuleMatch) -> IrRule {
    IrRule {
        method: r.method.to_ascii_uppercase(),
        path: Pattern::new(&r.path, GlobKind::Path),
        query: r
            .query
            .iter()
            .flatten()
            .map(|(k, m)| IrQuery {
                key: k.clone(),
                globs: m
                    .globs()
                    .iter()
                    .map(|g| Pattern::new(g, GlobKind::Query))
                    .collect(),
            })
            .collect(),
    }
}
