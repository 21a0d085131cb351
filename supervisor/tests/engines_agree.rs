//! The native engine and the Rego program decide alike on generated policies and requests.

use indexmap::IndexMap;
use openshell_proto::policy::*;
use openshell_sandbox::engine::{self, EngineKind, L7Input, NetworkInput};
use proptest::prelude::*;
use std::net::IpAddr;

fn rule() -> impl Strategy<Value = RuleMatch> {
    (
        prop::sample::select(vec!["GET", "POST", "*", "DELETE"]),
        prop::sample::select(vec!["/a/*", "/a/**", "/**/b", "**", "/a/b", "/*", "/a/*/c"]),
        prop::option::of(prop::sample::select(vec!["v1*", "x", "*"])),
    )
        .prop_map(|(m, p, q)| RuleMatch {
            method: m.into(),
            path: p.into(),
            query: q.map(|g| IndexMap::from([("k".to_string(), QueryMatcher::Glob(g.into()))])),
        })
}

fn endpoint() -> impl Strategy<Value = Endpoint> {
    (
        prop::sample::select(vec![
            "a.test", "*.test", "**.test", "b.a.test", "x-*.test", "10.1.2.3",
        ]),
        prop::sample::select(vec![80i64, 443]),
        0..4u8,
        prop::collection::vec(rule(), 1..3),
        prop::collection::vec(rule(), 0..2),
        any::<bool>(),
        prop::option::of(prop::sample::select(vec![
            "10.0.0.0/8",
            "10.1.0.0/16",
            "fd00::/8",
        ])),
    )
        .prop_map(|(host, port, mode, rules, deny, audit, ips)| {
            let mut ep = Endpoint {
                host: host.into(),
                port: Some(port),
                ..Endpoint::default()
            };
            if mode > 0 {
                ep.protocol = Some(Protocol::Rest);
                ep.enforcement = Some(if audit {
                    Enforcement::Audit
                } else {
                    Enforcement::Enforce
                });
                match mode {
                    1 => ep.access = Some(Access::ReadOnly),
                    2 => ep.access = Some(Access::ReadWrite),
                    _ => {
                        ep.rules =
                            Some(rules.into_iter().map(|allow| AllowRule { allow }).collect())
                    }
                }
                if !deny.is_empty() {
                    ep.deny_rules = Some(deny);
                }
            }
            ep.allowed_ips = ips.map(|c| vec![c.to_string()]);
            ep
        })
}

fn policy() -> impl Strategy<Value = Policy> {
    prop::collection::vec(
        (
            prop::collection::vec(endpoint(), 1..3),
            prop::collection::vec(
                prop::sample::select(vec!["/usr/bin/curl", "/usr/bin/*", "**", "/opt/**/x"]),
                0..3,
            ),
        ),
        0..4,
    )
    .prop_map(|entries| {
        let mut network_policies = IndexMap::new();
        for (i, (endpoints, bins)) in entries.into_iter().enumerate() {
            network_policies.insert(
                format!("e{i}"),
                NetworkPolicy {
                    name: None,
                    endpoints,
                    binaries: bins
                        .into_iter()
                        .map(|p| Binary { path: p.into() })
                        .collect(),
                },
            );
        }
        Policy {
            network_policies,
            ..Policy::default()
        }
    })
}

#[derive(Debug, Clone)]
struct Req {
    host: &'static str,
    port: u16,
    binary: &'static str,
    ips: Option<Vec<IpAddr>>,
    pinned: bool,
    method: &'static str,
    path: &'static str,
    query: Vec<(String, String)>,
}

fn request() -> impl Strategy<Value = Req> {
    (
        prop::sample::select(vec![
            "a.test",
            "b.a.test",
            "c.b.a.test",
            "x-1.test",
            "other.org",
            "10.1.2.3",
        ]),
        prop::sample::select(vec![80u16, 443]),
        prop::sample::select(vec![
            "/usr/bin/curl",
            "/usr/bin/wget",
            "/opt/p/q/x",
            "/opt/x",
            "/bin/sh",
        ]),
        prop::option::of(prop::collection::vec(
            prop::sample::select(vec![
                "1.1.1.1",
                "10.1.2.3",
                "10.9.9.9",
                "127.0.0.1",
                "fd00::5",
                "169.254.169.254",
            ]),
            1..3,
        )),
        any::<bool>(),
        prop::sample::select(vec!["GET", "HEAD", "POST", "DELETE", "PATCH"]),
        prop::sample::select(vec!["/a/b", "/a/b/c", "/b", "/a/x/b", "/", "/a/", "/z/q/b"]),
        prop::collection::vec(
            (
                prop::sample::select(vec!["k", "j"]),
                prop::sample::select(vec!["v1.0", "x", "", "v2"]),
            ),
            0..3,
        ),
    )
        .prop_map(|(host, port, binary, ips, pinned, method, path, q)| Req {
            host,
            port,
            binary,
            ips: ips.map(|v| v.iter().filter_map(|s| s.parse().ok()).collect()),
            pinned,
            method,
            path,
            query: q
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn fast_and_rego_decide_alike(p in policy(), reqs in prop::collection::vec(request(), 1..8)) {
        let text = to_yaml(&p);
        prop_assume!(load(&text, "gen").is_ok());
        let fast = engine::build(&p, EngineKind::Fast).expect("fast");
        let rego = engine::build(&p, EngineKind::Rego).expect("rego");
        for r in &reqs {
            let ni = NetworkInput { host: r.host, port: r.port, binary: r.binary, ips: r.ips.as_deref(), pinned: r.pinned };
            let (a, b) = (fast.network(&ni), rego.network(&ni));
            prop_assert_eq!((a.action, &a.policy, a.layer, a.inspect), (b.action, &b.policy, b.layer, b.inspect),
                "network {:?}\nfast: {}\nrego: {}\npolicy:\n{}", r, a.reason, b.reason, text);
            prop_assert_eq!(&a.reason, &b.reason);
            let li = L7Input { host: r.host, port: r.port, binary: r.binary, method: r.method, path: r.path, query: &r.query };
            let (a, b) = (fast.l7(&li), rego.l7(&li));
            prop_assert_eq!((a.action, &a.policy, a.layer), (b.action, &b.policy, b.layer),
                "l7 {:?}\nfast: {}\nrego: {}\npolicy:\n{}", r, a.reason, b.reason, text);
            prop_assert_eq!(&a.reason, &b.reason);
        }
    }
}
