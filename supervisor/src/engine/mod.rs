//! The policy evaluator the proxy calls: network (L4) and request (L7) decisions.
//!
//! Two engines implement the same semantics. [`rego::RegoEngine`] runs one Rego program
//! (`policy.rego`) on regorus and is the reference; [`fast::FastEngine`] is a compiled native
//! matcher the proxy uses on its hot path. Both are built from the same intermediate form
//! ([`ir::Ir`]), once per policy revision, and the test suites hold them to identical answers.

pub mod fast;
pub mod ir;
pub mod rego;
pub mod request;
pub mod ssrf;

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

/// What happens to a connection or request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Allow,
    Deny,
    /// Outside the rules of an `enforcement: audit` endpoint: forwarded and logged.
    Audit,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Deny => "deny",
            Action::Audit => "audit",
        }
    }

    fn parse(s: &str) -> Option<Action> {
        match s {
            "allow" => Some(Action::Allow),
            "deny" => Some(Action::Deny),
            "audit" => Some(Action::Audit),
            _ => None,
        }
    }
}

/// Which check decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// Host, port and binary.
    L4,
    /// Resolved addresses.
    Ssrf,
    /// Method, path and query.
    L7,
}

impl Layer {
    pub fn as_str(self) -> &'static str {
        match self {
            Layer::L4 => "l4",
            Layer::Ssrf => "ssrf",
            Layer::L7 => "l7",
        }
    }

    fn parse(s: &str) -> Option<Layer> {
        match s {
            "l4" => Some(Layer::L4),
            "ssrf" => Some(Layer::Ssrf),
            "l7" => Some(Layer::L7),
            _ => None,
        }
    }
}

/// A connection the proxy is asked to open.
#[derive(Debug, Clone, Copy)]
pub struct NetworkInput<'a> {
    /// Lower-case host name or IP literal, as validated by [`request::normalize_host`].
    pub host: &'a str,
    pub port: u16,
    /// The calling executable, as the kernel reports it.
    pub binary: &'a str,
    /// Resolved addresses; `None` before resolution (the SSRF check is then skipped).
    pub ips: Option<&'a [IpAddr]>,
    /// The addresses come from an operator pin (`--resolve`): only never-reachable ranges
    /// are refused.
    pub pinned: bool,
}

/// An HTTP request inside an allowed connection.
#[derive(Debug, Clone, Copy)]
pub struct L7Input<'a> {
    pub host: &'a str,
    pub port: u16,
    pub binary: &'a str,
    /// Upper-case method.
    pub method: &'a str,
    /// Path after [`request::normalize_path`].
    pub path: &'a str,
    /// Decoded query parameters in request order.
    pub query: &'a [(String, String)],
}

/// The answer, with the policy entry (its key) that decided and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub action: Action,
    pub policy: Option<Arc<str>>,
    pub reason: Cow<'static, str>,
    pub layer: Layer,
    /// For allowed connections: requests on it must be inspected (a `protocol: rest`
    /// endpoint covers it).
    pub inspect: bool,
}

impl Decision {
    pub fn is_denied(&self) -> bool {
        self.action == Action::Deny
    }
}

/// Either engine behind one interface.
pub trait Engine: Send + Sync {
    fn network(&self, input: &NetworkInput<'_>) -> Decision;
    fn l7(&self, input: &L7Input<'_>) -> Decision;
    fn name(&self) -> &'static str;
}

/// Which engine to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EngineKind {
    #[default]
    Fast,
    Rego,
}

impl std::str::FromStr for EngineKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "fast" => Ok(EngineKind::Fast),
            "rego" => Ok(EngineKind::Rego),
            _ => Err(format!("unknown engine `{s}`; use `fast` or `rego`")),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("policy does not compile: {0}")]
    Compile(String),
    #[error("the Rego program failed: {0}")]
    Rego(String),
}

/// Compiles `policy` into a shareable engine of the given kind.
pub fn build(
    policy: &openshell_proto::policy::Policy,
    kind: EngineKind,
) -> Result<Arc<dyn Engine>, EngineError> {
    let ir = ir::Ir::from_policy(policy);
    Ok(match kind {
        EngineKind::Fast => Arc::new(fast::FastEngine::new(&ir)?),
        EngineKind::Rego => Arc::new(rego::RegoEngine::new(&ir)?),
    })
}
