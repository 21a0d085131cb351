//! Denials: the aggregation key of a deny event, and the policy change that would allow it.

use crate::store::DenialKey;
use openshell_proto::pb::Event;
use openshell_proto::policy::Policy;

/// Aggregation key: host, port, binary, and method+path when the request was inspected.
pub fn key_of(e: &Event) -> DenialKey {
    let l7 = e.layer == "l7" && !e.method.is_empty();
    DenialKey {
        host: e.host.clone(),
        port: e.port as u16,
        binary: e.binary.clone(),
        method: l7.then(|| e.method.clone()),
        path: l7.then(|| e.path.clone()),
    }
}

/// The narrowest change that would allow `e`, as YAML (empty when none can be proposed:
/// direct connections, SSRF refusals, unidentified programs).
pub fn proposal_yaml(e: &Event, current: &Policy) -> String {
    use openshell_proto::policy::proposal;
    proposal::Denied::from_event(e)
        .and_then(|d| proposal::propose(&d, current).ok())
        .map(|p| p.yaml)
        .unwrap_or_default()
}
