//! Adding to a policy without disturbing it: presets, approved denials and `policy merge`.
//!
//! Merging is idempotent and keeps the base's entries and their order. Entries match by key;
//! endpoints match by [`EndpointIdentity`] (everything but their rule lists), and a matched
//! endpoint gains only the rules, deny rules and allowed IPs it lacks. An endpoint that differs
//! in any other field is appended beside the existing one, so nothing the user wrote is
//! loosened or rewritten.

use super::model::*;

/// What makes two endpoints "the same" for merging: all fields except the lists that merge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointIdentity {
    host: String,
    ports: Vec<i64>,
    protocol: Option<Protocol>,
    tls: Option<TlsMode>,
    enforcement: Enforcement,
    access: Option<Access>,
    has_rules: bool,
}

impl EndpointIdentity {
    pub fn of(ep: &Endpoint) -> Self {
        EndpointIdentity {
            host: ep.host.to_ascii_lowercase(),
            ports: ep.port_list(),
            protocol: ep.protocol,
            tls: ep.tls,
            enforcement: ep.enforcement(),
            access: ep.access,
            has_rules: ep.rules.is_some(),
        }
    }
}

/// `base` with everything in `addition` that it lacks.
pub fn merge(base: &Policy, addition: &Policy) -> Policy {
    let mut out = base.clone();
    merge_into(&mut out, addition);
    out
}

/// In-place [`merge`].
pub fn merge_into(out: &mut Policy, addition: &Policy) {
    if let Some(add_fs) = &addition.filesystem_policy {
        let fs = out.filesystem_policy.get_or_insert_with(Default::default);
        if fs.include_workdir.is_none() {
            fs.include_workdir = add_fs.include_workdir;
        }
        append_missing(&mut fs.read_only, &add_fs.read_only);
        append_missing(&mut fs.read_write, &add_fs.read_write);
    }
    if out.landlock.is_none() {
        out.landlock.clone_from(&addition.landlock);
    }
    if out.process.is_none() {
        out.process.clone_from(&addition.process);
    }
    for (key, add) in &addition.network_policies {
        match out.network_policies.get_mut(key) {
            None => {
                out.network_policies.insert(key.clone(), add.clone());
            }
            Some(entry) => merge_entry(entry, add),
        }
    }
}

fn merge_entry(entry: &mut NetworkPolicy, add: &NetworkPolicy) {
    for ep in &add.endpoints {
        let id = EndpointIdentity::of(ep);
        match entry
            .endpoints
            .iter_mut()
            .find(|e| EndpointIdentity::of(e) == id)
        {
            Some(existing) => merge_endpoint(existing, ep),
            None => entry.endpoints.push(ep.clone()),
        }
    }
    append_missing(&mut entry.binaries, &add.binaries);
}

fn merge_endpoint(ep: &mut Endpoint, add: &Endpoint) {
    merge_opt_list(&mut ep.rules, &add.rules);
    merge_opt_list(&mut ep.deny_rules, &add.deny_rules);
    merge_opt_list(&mut ep.allowed_ips, &add.allowed_ips);
}

fn merge_opt_list<T: Clone + PartialEq>(into: &mut Option<Vec<T>>, add: &Option<Vec<T>>) {
    if let Some(add) = add {
        append_missing(into.get_or_insert_with(Vec::new), add);
    }
}

fn append_missing<T: Clone + PartialEq>(into: &mut Vec<T>, add: &[T]) {
    for item in add {
        if !into.contains(item) {
            into.push(item.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::load::parse;

    #[test]
    fn merge_adds_rule_endpoint_beside_preset() {
        let base = parse(
            "version: 1\nnetwork_policies:\n  gh:\n    endpoints:\n      - { host: api.github.com, port: 443, protocol: rest, access: read-only }\n    binaries: [{ path: /usr/bin/curl }]\n",
        )
        .expect("base");
        let add = parse(
            "version: 1\nnetwork_policies:\n  gh:\n    endpoints:\n      - host: api.github.com\n        port: 443\n        protocol: rest\n        rules: [{ allow: { method: POST, path: /repos/o/r/issues } }]\n    binaries: [{ path: /usr/bin/curl }]\n",
        )
        .expect("add");
        let merged = merge(&base, &add);
        let gh = &merged.network_policies["gh"];
        assert_eq!(gh.endpoints.len(), 2);
        assert_eq!(gh.binaries.len(), 1);
        assert_eq!(merge(&merged, &add), merged);
    }
}
