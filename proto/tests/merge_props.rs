//! Properties of merge and diff: merging is idempotent and keeps the base; the diff of a merge
//! shows exactly what the addition brought; rendering round-trips.

use indexmap::IndexMap;
use openshell_proto::policy::merge::EndpointIdentity;
use openshell_proto::policy::*;
use proptest::prelude::*;

fn rule_strategy() -> impl Strategy<Value = RuleMatch> {
    (
        prop::sample::select(vec!["GET", "POST", "*", "PUT"]),
        prop::sample::select(vec![
            "/repos/*/issues",
            "/**",
            "/a/b",
            "/**/info/refs",
            "/x/*",
        ]),
        prop::option::of(prop::sample::select(vec!["v1*", "git-upload-pack"])),
    )
        .prop_map(|(m, p, q)| RuleMatch {
            method: m.to_string(),
            path: p.to_string(),
            query: q.map(|g| {
                let mut map = IndexMap::new();
                map.insert("tag".to_string(), QueryMatcher::Glob(g.to_string()));
                map
            }),
        })
}

fn endpoint_strategy() -> impl Strategy<Value = Endpoint> {
    let host = prop::sample::select(vec![
        "api.github.com",
        "*.example.com",
        "pypi.org",
        "**.hf.co",
    ]);
    let port = prop::sample::select(vec![443i64, 80, 8443]);
    let l7 = prop_oneof![
        Just(None),
        prop::sample::select(vec![Access::ReadOnly, Access::ReadWrite, Access::Full])
            .prop_map(|a| Some((Some(a), None))),
        prop::collection::vec(rule_strategy(), 1..3).prop_map(|r| Some((None, Some(r)))),
    ];
    let enforcement = prop::option::of(prop::sample::select(vec![
        Enforcement::Enforce,
        Enforcement::Audit,
    ]));
    (host, port, l7, enforcement).prop_map(|(host, port, l7, enforcement)| {
        let mut ep = Endpoint {
            host: host.to_string(),
            port: Some(port),
            ..Endpoint::default()
        };
        if let Some((access, rules)) = l7 {
            ep.protocol = Some(Protocol::Rest);
            ep.enforcement = enforcement;
            ep.access = access;
            ep.rules = rules.map(|rs: Vec<RuleMatch>| {
                let mut out: Vec<AllowRule> = Vec::new();
                for r in rs {
                    let r = AllowRule { allow: r };
                    if !out.contains(&r) {
                        out.push(r);
                    }
                }
                out
            });
        }
        ep
    })
}

fn entry_strategy() -> impl Strategy<Value = NetworkPolicy> {
    (
        prop::collection::vec(endpoint_strategy(), 1..3),
        prop::collection::vec(
            prop::sample::select(vec!["/usr/bin/curl", "/usr/bin/git", "**"]),
            1..3,
        ),
        prop::option::of(Just("display".to_string())),
    )
        .prop_map(|(eps, bins, name)| {
            // No two endpoints of one entry share an identity, so each diff item is unambiguous.
            let mut endpoints: Vec<Endpoint> = Vec::new();
            for ep in eps {
                if !endpoints
                    .iter()
                    .any(|e| EndpointIdentity::of(e) == EndpointIdentity::of(&ep))
                {
                    endpoints.push(ep);
                }
            }
            let mut binaries: Vec<Binary> = Vec::new();
            for b in bins {
                let b = Binary {
                    path: b.to_string(),
                };
                if !binaries.contains(&b) {
                    binaries.push(b);
                }
            }
            NetworkPolicy {
                name,
                endpoints,
                binaries,
            }
        })
}

fn policy_strategy() -> impl Strategy<Value = Policy> {
    (
        prop::collection::vec(
            (
                prop::sample::select(vec!["gh", "pypi", "hf", "misc"]),
                entry_strategy(),
            ),
            0..4,
        ),
        prop::option::of(prop::collection::vec(
            prop::sample::select(vec!["/usr", "/etc", "/opt"]),
            0..3,
        )),
    )
        .prop_map(|(entries, ro)| {
            let mut network_policies = IndexMap::new();
            for (k, e) in entries {
                network_policies.entry(k.to_string()).or_insert(e);
            }
            Policy {
                version: 1,
                filesystem_policy: ro.map(|ro| {
                    let mut read_only: Vec<String> = Vec::new();
                    for p in ro {
                        if !read_only.iter().any(|x| x == p) {
                            read_only.push(p.to_string());
                        }
                    }
                    FilesystemPolicy {
                        read_only,
                        ..Default::default()
                    }
                }),
                landlock: None,
                process: None,
                network_policies,
            }
        })
}

/// The atomic items of `x` that `a` lacks, as diff paths: what the diff must show.
fn expected_additions(a: &Policy, x: &Policy) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(fx) = &x.filesystem_policy {
        let ro_a = a
            .filesystem_policy
            .as_ref()
            .map(|f| f.read_only.clone())
            .unwrap_or_default();
        for p in &fx.read_only {
            if !ro_a.contains(p) {
                out.push(("filesystem_policy.read_only".to_string(), p.clone()));
            }
        }
    }
    for (key, ex) in &x.network_policies {
        let path = format!("network_policies.{key}");
        let Some(ea) = a.network_policies.get(key) else {
            out.push((path, "entry".into()));
            continue;
        };
        for ep in &ex.endpoints {
            match ea
                .endpoints
                .iter()
                .find(|e| EndpointIdentity::of(e) == EndpointIdentity::of(ep))
            {
                None => out.push((format!("{path}.endpoints"), render::endpoint_summary(ep))),
                Some(existing) => {
                    for r in ep.rules.iter().flatten() {
                        if !existing.rules.iter().flatten().any(|e| e == r) {
                            out.push((
                                format!("{path}.endpoints[..].rules"),
                                render::rule_summary(&r.allow),
                            ));
                        }
                    }
                }
            }
        }
        for b in &ex.binaries {
            if !ea.binaries.contains(b) {
                out.push((format!("{path}.binaries"), b.path.clone()));
            }
        }
    }
    out
}

fn shown_additions(changes: &[Change]) -> Vec<(String, String)> {
    changes
        .iter()
        .map(|c| match c {
            Change::Added { path, what } => {
                let parts: Vec<&str> = path.split('.').collect();
                let p = if path.contains(".endpoints[") && path.ends_with(".rules") {
                    format!("{}.{}.endpoints[..].rules", parts[0], parts[1])
                } else {
                    path.clone()
                };
                let what = if parts.len() == 2 && parts[0] == "network_policies" {
                    "entry".to_string()
                } else {
                    what.clone()
                };
                (p, what)
            }
            other => panic!("a merge must only add, but the diff shows `{other}`"),
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn generated_policies_are_valid(p in policy_strategy()) {
        let text = to_yaml(&p);
        prop_assert!(load(&text, "gen").is_ok(), "{}", text);
    }

    #[test]
    fn merge_is_idempotent(a in policy_strategy(), x in policy_strategy()) {
        let once = merge(&a, &x);
        prop_assert_eq!(merge(&once, &x), once.clone());
        prop_assert_eq!(merge(&a, &a), a.clone());
        prop_assert!(load(&to_yaml(&once), "merged").is_ok());
    }

    #[test]
    fn merge_keeps_the_base_and_its_order(a in policy_strategy(), x in policy_strategy()) {
        let m = merge(&a, &x);
        let keys_a: Vec<_> = a.network_policies.keys().collect();
        let keys_m: Vec<_> = m.network_policies.keys().take(keys_a.len()).collect();
        prop_assert_eq!(keys_a, keys_m);
        for (k, ea) in &a.network_policies {
            let em = &m.network_policies[k];
            prop_assert_eq!(&em.endpoints[..ea.endpoints.len()].len(), &ea.endpoints.len());
            for (i, ep) in ea.endpoints.iter().enumerate() {
                prop_assert_eq!(EndpointIdentity::of(&em.endpoints[i]), EndpointIdentity::of(ep));
                // Rules already there stay first, in order.
                let before: Vec<_> = ep.rules.iter().flatten().collect();
                let after: Vec<_> = em.endpoints[i].rules.iter().flatten().take(before.len()).collect();
                prop_assert_eq!(before, after);
            }
            prop_assert_eq!(&em.binaries[..ea.binaries.len()], &ea.binaries[..]);
        }
    }

    #[test]
    fn diff_of_a_merge_shows_exactly_the_addition(a in policy_strategy(), x in policy_strategy()) {
        let m = merge(&a, &x);
        let changes = diff(&a, &m);
        let mut shown = shown_additions(&changes);
        let mut expected = expected_additions(&a, &x);
        shown.sort();
        expected.sort();
        prop_assert_eq!(shown, expected, "changes: {:?}", changes);
        prop_assert!(diff(&m, &m).is_empty());
    }

    #[test]
    fn rendering_round_trips(p in policy_strategy()) {
        let back = load(&to_yaml(&p), "rt").expect("valid").policy;
        prop_assert_eq!(back, p);
    }
}
