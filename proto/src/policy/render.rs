//! Writing policies back out: canonical YAML and one-line summaries for lists and diffs.

use super::model::*;

/// The canonical YAML rendering of a policy.
pub fn to_yaml(p: &Policy) -> String {
    // Serialising plain data structures cannot fail; keep a readable fallback anyway.
    serde_yaml::to_string(p).unwrap_or_else(|e| format!("# could not render policy: {e}\n"))
}

/// `api.github.com:443 rest read-only` / `pypi.org:443` / `api.github.com:443 rest [POST /x]`
pub fn endpoint_summary(ep: &Endpoint) -> String {
    let ports: Vec<String> = ep.port_list().iter().map(i64::to_string).collect();
    let mut s = format!("{}:{}", ep.host, ports.join(","));
    if ep.protocol == Some(Protocol::Rest) {
        s.push_str(" rest");
    }
    if let Some(a) = ep.access {
        s.push(' ');
        s.push_str(a.as_str());
    }
    if let Some(rules) = &ep.rules {
        let r: Vec<String> = rules.iter().map(|r| rule_summary(&r.allow)).collect();
        s.push_str(&format!(" [{}]", r.join(", ")));
    }
    if let Some(deny) = &ep.deny_rules {
        let r: Vec<String> = deny.iter().map(rule_summary).collect();
        s.push_str(&format!(" deny [{}]", r.join(", ")));
    }
    if ep.enforcement == Some(Enforcement::Audit) {
        s.push_str(" audit");
    }
    if let Some(ips) = &ep.allowed_ips {
        s.push_str(&format!(" allowed_ips [{}]", ips.join(", ")));
    }
    s
}

/// `POST /repos/*/issues?state=open`
pub fn rule_summary(r: &RuleMatch) -> String {
    let mut s = format!("{} {}", r.method.to_ascii_uppercase(), r.path);
    if let Some(q) = &r.query {
        let parts: Vec<String> = q
            .iter()
            .map(|(k, m)| format!("{k}={}", m.globs().join("|")))
            .collect();
        s.push('?');
        s.push_str(&parts.join("&"));
    }
    s
}
