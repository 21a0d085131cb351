//! Deny → allow, held to the engine: for generated policies and denials, applying the
//! proposal makes the evaluator allow exactly the denied traffic, and everything around it
//! (another method, a sibling path, another binary, another host or port) is decided as before.
//! Where no proposal is made, the engine agrees with the reason given.

use openshell_proto::policy::proposal::{self, Denied, Layer, Proposal, Why};
use openshell_proto::policy::{
    Access, AllowRule, Binary, Endpoint, Enforcement, NetworkPolicy, Policy, Protocol, RuleMatch,
    glob, load, to_yaml,
};
use openshell_sandbox::engine::{
    self, Action, Engine, EngineKind, L7Input, NetworkInput, request, ssrf::RangeTable,
};
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

const HOSTS: &[&str] = &[
    "api.github.com",
    "uploads.github.com",
    "pypi.org",
    "example.com",
    "x.example.com",
    "other.org",
];
const PORTS: &[u16] = &[443, 80];
const BINARIES: &[&str] = &[
    "/usr/bin/curl",
    "/usr/bin/git",
    "/usr/bin/python3",
    "/opt/tool",
];
const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"];

fn build(p: &Policy) -> Arc<dyn Engine> {
    engine::build(p, EngineKind::Fast).expect("engine builds")
}

fn net(e: &dyn Engine, host: &str, port: u16, binary: &str) -> Action {
    e.network(&NetworkInput {
        host,
        port,
        binary,
        ips: None,
        pinned: false,
    })
    .action
}

fn l7(e: &dyn Engine, host: &str, port: u16, binary: &str, method: &str, path: &str) -> Action {
    e.l7(&L7Input {
        host,
        port,
        binary,
        method,
        path,
        query: &[],
    })
    .action
}

// ---------------------------------------------------------------------------------------
// Generated policies

fn rule_match() -> impl Strategy<Value = RuleMatch> {
    (
        prop::sample::select(vec!["GET", "POST", "*", "DELETE", "PUT"]),
        prop::sample::select(vec![
            "/repos/**",
            "/a/*",
            "/a/b",
            "/x/*/y",
            "/a",
            "/repos/*/x",
        ]),
    )
        .prop_map(|(m, p)| RuleMatch {
            method: m.into(),
            path: p.into(),
            query: None,
        })
}

fn endpoint() -> impl Strategy<Value = Endpoint> {
    let host = prop::sample::select(vec![
        "api.github.com",
        "*.github.com",
        "pypi.org",
        "**.example.com",
        "example.com",
        "uploads.github.com",
    ]);
    let ports = prop_oneof![
        4 => prop::sample::select(PORTS.to_vec()).prop_map(|p| (Some(i64::from(p)), None)),
        1 => Just((None, Some(vec![443i64, 80]))),
    ];
    let everything = AllowRule {
        allow: RuleMatch {
            method: "*".into(),
            path: "/**".into(),
            query: None,
        },
    };
    // None: L4 passthrough; else an access preset or rules, with optional deny rules.
    let l7 = prop::option::of((
        prop_oneof![
            1 => prop::sample::select(vec![Access::ReadOnly, Access::ReadWrite, Access::Full])
                .prop_map(|a| (Some(a), None)),
            1 => Just((None, Some(vec![everything]))),
            4 => prop::collection::vec(rule_match(), 1..4).prop_map(|rs| {
                let mut out: Vec<AllowRule> = Vec::new();
                for r in rs {
                    let r = AllowRule { allow: r };
                    if !out.contains(&r) {
                        out.push(r);
                    }
                }
                (None, Some(out))
            }),
        ],
        prop::option::of(prop::collection::vec(rule_match(), 1..3)),
        prop::sample::select(vec![
            None,
            Some(Enforcement::Enforce),
            Some(Enforcement::Audit),
        ]),
    ));
    (host, ports, l7).prop_map(|(host, (port, ports), l7)| {
        let mut ep = Endpoint {
            host: host.into(),
            port,
            ports,
            ..Endpoint::default()
        };
        if let Some(((access, rules), deny, enforcement)) = l7 {
            ep.protocol = Some(Protocol::Rest);
            ep.access = access;
            ep.rules = rules;
            ep.deny_rules = deny;
            ep.enforcement = enforcement;
        }
        ep
    })
}

fn entry() -> impl Strategy<Value = NetworkPolicy> {
    (
        prop::collection::vec(endpoint(), 1..3),
        prop::collection::vec(
            prop::sample::select(vec![
                "/usr/bin/curl",
                "/usr/bin/git",
                "/usr/bin/python3",
                "**",
                "/usr/bin/*",
            ]),
            1..3,
        ),
    )
        .prop_map(|(endpoints, bins)| {
            let mut binaries: Vec<Binary> = Vec::new();
            for b in bins {
                let b = Binary { path: b.into() };
                if !binaries.contains(&b) {
                    binaries.push(b);
                }
            }
            NetworkPolicy {
                name: None,
                endpoints,
                binaries,
            }
        })
}

fn policy() -> impl Strategy<Value = Policy> {
    let key = prop::sample::select(vec![
        "e0",
        "e1",
        "e2",
        "e3",
        "allow_pypi_org_443_curl",
        "allow_api_github_com_443_curl",
    ]);
    prop::collection::vec((key, entry()), 0..5).prop_map(|es| {
        let mut p = Policy::default();
        for (k, e) in es {
            p.network_policies.insert(k.into(), e);
        }
        p
    })
}

// ---------------------------------------------------------------------------------------
// Generated denials

/// Path segments, including characters that must be taken literally (`*`, `?`), escapes
/// that normalise (`%41`, `%2a`), and ones the proxy refuses (`..`, `%2F`, empty).
fn path() -> impl Strategy<Value = String> {
    let seg = prop_oneof![
        6 => prop::sample::select(vec!["a", "b", "x", "y", "repos", "o", "r", "issues"])
            .prop_map(String::from),
        3 => "[a-zA-Z0-9._~-]{1,5}",
        2 => prop::sample::select(vec![
            "*", "**", "a*b", "?", "q?", "%2a", "%2A", "%41", "%7e", "%3F", "[1]", "{x}", "#f",
        ])
        .prop_map(String::from),
        1 => prop::sample::select(vec!["..", ".", "", "%2F", "%2e", "a b", "%zz"])
            .prop_map(String::from),
    ];
    let built = prop::collection::vec(seg, 1..5).prop_map(|segs| format!("/{}", segs.join("/")));
    // Paths the generated rules speak about, so allow and deny rules decide often.
    let near_rules = prop::sample::select(vec![
        "/a",
        "/a/b",
        "/a/c",
        "/a/b/",
        "/repos/o/r",
        "/repos/o/x",
        "/x/1/y",
        "/x/*/y",
        "/a/*",
    ])
    .prop_map(String::from);
    prop_oneof![2 => built, 1 => near_rules]
}

fn request() -> impl Strategy<Value = Option<(&'static str, String)>> {
    prop_oneof![
        1 => Just(None),
        3 => (prop::sample::select(METHODS.to_vec()), path()).prop_map(Some),
    ]
}

fn make(target: (String, u16, String), l7: Option<(&str, String)>) -> Denied {
    let (host, port, binary) = target;
    match l7 {
        None => Denied::l4(&host, port, &binary),
        Some((m, p)) => Denied::l7(&host, port, &binary, m, &p),
    }
}

/// Any host, port and binary from the pools.
fn denial() -> impl Strategy<Value = Denied> {
    let target = (
        prop::sample::select(HOSTS.to_vec()).prop_map(String::from),
        prop::sample::select(PORTS.to_vec()),
        prop::sample::select(BINARIES.to_vec()).prop_map(String::from),
    );
    (target, request()).prop_map(|(t, r)| make(t, r))
}

/// A policy and a denial, most often aimed at a host, port and binary the policy names, so
/// that rules are added to existing entries as often as new entries are made.
fn scenario() -> impl Strategy<Value = (Policy, Denied)> {
    policy().prop_flat_map(|current| {
        let concrete_host = |h: &str| match h {
            "*.github.com" => "api.github.com".to_string(),
            "**.example.com" => "x.example.com".to_string(),
            h => h.to_string(),
        };
        let concrete_binary = |b: &str| match b {
            "**" | "/usr/bin/*" => "/usr/bin/curl".to_string(),
            b => b.to_string(),
        };
        let mut named: Vec<(String, u16, String)> = Vec::new();
        for e in current.network_policies.values() {
            for ep in &e.endpoints {
                for port in ep.port_list() {
                    for b in &e.binaries {
                        named.push((
                            concrete_host(&ep.host),
                            u16::try_from(port).unwrap_or(443),
                            concrete_binary(&b.path),
                        ));
                    }
                }
            }
        }
        let d = if named.is_empty() {
            denial().boxed()
        } else {
            prop_oneof![
                1 => denial(),
                2 => (prop::sample::select(named), request()).prop_map(|(t, r)| make(t, r)),
            ]
            .boxed()
        };
        (Just(current), d)
    })
}

// ---------------------------------------------------------------------------------------
// The properties

/// Whether applying `p` must leave `binary` exactly as it was: true unless the proposal
/// extends an entry that lists `binary` (it then shares the new rule, as the summary says).
fn unaffected(current: &Policy, p: &Proposal, binary: &str) -> bool {
    !p.extends
        || !current.network_policies[&p.entry]
            .binaries
            .iter()
            .any(|b| b.path == binary)
}

/// Paths next to `path`: a longer and a shorter last segment, a child, the parent, a
/// replaced last segment, another case; normalised, and without `path` itself.
fn siblings(path: &str) -> Vec<String> {
    let parent = match path.trim_end_matches('/').rsplit_once('/') {
        Some(("", _)) | None => "/".to_string(),
        Some((p, _)) => p.to_string(),
    };
    let mut out = vec![
        format!("{path}x"),
        format!("{}/c", path.trim_end_matches('/')),
        format!("{path}/"),
        parent.clone(),
        format!("{}/zz", parent.trim_end_matches('/')),
        path.to_ascii_uppercase(),
    ];
    if path.len() > 1 {
        out.push(path[..path.len() - 1].to_string());
    }
    out.into_iter()
        .filter_map(|p| request::normalize_path(&p).ok())
        .filter(|p| p != path)
        .collect()
}

fn check_applied(current: &Policy, d: &Denied, p: &Proposal) -> Result<(), TestCaseError> {
    // The result: loads, keeps the user's entries and their order, and is idempotent.
    let after_policy = proposal::apply(current, p);
    prop_assert_eq!(&proposal::apply(&after_policy, p), &after_policy);
    let loaded = load(&to_yaml(&after_policy), "applied");
    prop_assert!(
        loaded.is_ok(),
        "{:?}\n{}",
        loaded.err(),
        to_yaml(&after_policy)
    );
    prop_assert!(load(&p.yaml, "fragment").is_ok(), "{}", p.yaml);
    let before_keys: Vec<&String> = current.network_policies.keys().collect();
    let after_keys: Vec<&String> = after_policy
        .network_policies
        .keys()
        .take(before_keys.len())
        .collect();
    prop_assert_eq!(before_keys, after_keys);
    for (k, e) in &current.network_policies {
        let now = &after_policy.network_policies[k];
        if *k == p.entry {
            // The extended entry keeps its name, binaries, and endpoints in order; an
            // endpoint only gains one rule, after its own.
            prop_assert_eq!(&now.name, &e.name);
            prop_assert_eq!(&now.binaries, &e.binaries);
            prop_assert!(now.endpoints.len() >= e.endpoints.len());
            for (old, new) in e.endpoints.iter().zip(&now.endpoints) {
                prop_assert_eq!(
                    &Endpoint {
                        rules: None,
                        ..old.clone()
                    },
                    &Endpoint {
                        rules: None,
                        ..new.clone()
                    }
                );
                let o = old.rules.clone().unwrap_or_default();
                let n = new.rules.clone().unwrap_or_default();
                prop_assert!(n.starts_with(&o) && n.len() <= o.len() + 1);
            }
        } else {
            prop_assert_eq!(now, e);
        }
    }

    let before = build(current);
    let after = build(&after_policy);
    let host = d.host.as_str();
    let port = d.port;
    let binary = d.binary.as_str();

    // The denied traffic is now allowed.
    prop_assert_eq!(
        net(&*after, host, port, binary),
        Action::Allow,
        "{}",
        p.yaml
    );
    let target = match d.layer {
        Layer::L7 => {
            let method = d.method.as_deref().unwrap_or_default();
            let path = request::normalize_path(d.path.as_deref().unwrap_or_default())
                .map_err(TestCaseError::fail)?;
            prop_assert_eq!(
                l7(&*after, host, port, binary, method, &path),
                Action::Allow
            );
            Some((method.to_string(), path))
        }
        _ => None,
    };

    // Requests to probe around it: other methods, sibling paths.
    let mut requests: Vec<(String, String)> = Vec::new();
    match &target {
        Some((method, path)) => {
            for m in METHODS {
                let same = *m == method || (method == "GET" && *m == "HEAD");
                if !same {
                    // (a) another method on the same path.
                    requests.push((m.to_string(), path.clone()));
                }
                // (b) sibling paths, any method.
                for s in siblings(path) {
                    requests.push((m.to_string(), s));
                }
            }
        }
        None => {
            for m in METHODS {
                requests.push((m.to_string(), "/".into()));
                requests.push((m.to_string(), "/a/b".into()));
            }
        }
    }
    // An L4 proposal opens host:port for the binary whatever the request (the connection is
    // passed through, not inspected), so only L7 proposals keep its other requests as they were.
    let own = if target.is_some() {
        &requests[..]
    } else {
        &[][..]
    };
    for (m, path) in own {
        prop_assert_eq!(
            l7(&*before, host, port, binary, m, path),
            l7(&*after, host, port, binary, m, path),
            "{} {} for {} changed\n{}",
            m,
            path,
            binary,
            p.yaml
        );
    }

    // (c) other binaries: as before, unless they share the extended entry (then they can
    // only gain the denied request itself).
    let denied_request = target.as_ref().map(|(m, p)| (m, p));
    for b in BINARIES
        .iter()
        .copied()
        .chain(["/usr/bin/gh", "/usr/bin/curl2"])
    {
        if b == binary {
            continue;
        }
        prop_assert_eq!(net(&*before, host, port, b), net(&*after, host, port, b));
        for (m, path) in requests.iter().chain(target.iter()) {
            let was = l7(&*before, host, port, b, m, path);
            let now = l7(&*after, host, port, b, m, path);
            if unaffected(current, p, b) || Some((m, path)) != denied_request {
                prop_assert_eq!(was, now, "{} {} {} for {}\n{}", m, path, host, b, p.yaml);
            } else {
                prop_assert!(was == now || now == Action::Allow);
            }
        }
    }

    // (d) other hosts and ports, for every binary.
    let probes = HOSTS
        .iter()
        .copied()
        .chain(["API.github.com.evil", "github.com", "y.example.com"])
        .flat_map(|h| PORTS.iter().copied().chain([8443]).map(move |p| (h, p)))
        .filter(|(h, p)| (*h, *p) != (host, port));
    let path_here = target.as_ref().map_or("/", |(_, p)| p.as_str());
    for (h, pt) in probes {
        for b in BINARIES.iter().copied().chain(["/usr/bin/gh"]) {
            prop_assert_eq!(
                net(&*before, h, pt, b),
                net(&*after, h, pt, b),
                "{}:{} for {}",
                h,
                pt,
                b
            );
            for m in METHODS {
                prop_assert_eq!(
                    l7(&*before, h, pt, b, m, path_here),
                    l7(&*after, h, pt, b, m, path_here),
                    "{} {} on {}:{} for {}\n{}",
                    m,
                    path_here,
                    h,
                    pt,
                    b,
                    p.yaml
                );
            }
        }
    }
    Ok(())
}

fn check_denial(current: &Policy, d: &Denied) -> Result<(), TestCaseError> {
    let before = build(current);
    let got = proposal::propose(d, current);
    let (host, port, binary) = (d.host.as_str(), d.port, d.binary.as_str());
    match d.layer {
        Layer::L4 => {
            if net(&*before, host, port, binary) == Action::Allow {
                prop_assert!(
                    matches!(&got, Err(e) if matches!(e.why, Why::AlreadyAllowed { .. })),
                    "{:?}",
                    got
                );
                return Ok(());
            }
        }
        _ => {
            let raw = d.path.as_deref().unwrap_or_default();
            let method = d.method.as_deref().unwrap_or_default();
            // Proto's normalisation is the proxy's.
            prop_assert_eq!(proposal::normalize_path(raw), request::normalize_path(raw));
            let Ok(path) = request::normalize_path(raw) else {
                prop_assert!(
                    matches!(&got, Err(e) if e.why == Why::RefusedByProxy),
                    "{:?}",
                    got
                );
                return Ok(());
            };
            let decision = before.l7(&L7Input {
                host,
                port,
                binary,
                method,
                path: &path,
                query: &[],
            });
            if decision.action == Action::Allow {
                prop_assert!(
                    matches!(&got, Err(e) if matches!(e.why, Why::AlreadyAllowed { .. })),
                    "{:?}",
                    got
                );
                return Ok(());
            }
            if decision.reason.contains("deny rule") {
                prop_assert!(
                    matches!(&got, Err(e) if matches!(e.why, Why::DenyRule { .. })),
                    "{:?}",
                    got
                );
                return Ok(());
            }
            if path.contains(['*', '?']) || glob::validate_path(&path).is_err() {
                // Taken literally or not at all: never a glob that would widen.
                prop_assert!(
                    matches!(&got, Err(e) if e.why == Why::Inexpressible),
                    "{:?}",
                    got
                );
                return Ok(());
            }
        }
    }
    match got {
        Ok(p) => check_applied(current, d, &p),
        Err(e) => Err(TestCaseError::fail(format!(
            "no proposal for {d:?}: {e:?}\n{}",
            to_yaml(current)
        ))),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(768))]

    #[test]
    fn applied_proposals_allow_exactly_the_denial((current, d) in scenario()) {
        prop_assume!(load(&to_yaml(&current), "generated").is_ok());
        check_denial(&current, &d)?;
    }

    #[test]
    fn normalisation_agrees_with_the_proxy(raw in "/[a-zA-Z0-9%./*?~ \\\\-]{0,12}") {
        prop_assert_eq!(proposal::normalize_path(&raw), request::normalize_path(&raw));
    }
}

// ---------------------------------------------------------------------------------------
// Tables

fn parse(text: &str) -> Policy {
    load(text, "table").expect("table policy is valid").policy
}

#[test]
fn a_literal_star_would_widen_so_it_is_refused() {
    let current = parse(
        "version: 1\nnetwork_policies:\n  gh:\n    endpoints:\n      - { host: api.github.com, port: 443, protocol: rest, rules: [{ allow: { method: GET, path: /x } }] }\n    binaries: [{ path: /usr/bin/curl }]\n",
    );
    let curl = "/usr/bin/curl";
    let d = Denied::l7("api.github.com", 443, curl, "GET", "/files/a*b");
    let e = proposal::propose(&d, &current).expect_err("refused");
    assert_eq!(e.why, Why::Inexpressible);
    // Why: the naive rule would be a glob, and would allow other paths too.
    let mut naive = current.clone();
    naive.network_policies["gh"].endpoints[0]
        .rules
        .get_or_insert_with(Vec::new)
        .push(AllowRule {
            allow: RuleMatch {
                method: "GET".into(),
                path: "/files/a*b".into(),
                query: None,
            },
        });
    let eng = build(&naive);
    assert_eq!(
        l7(&*eng, "api.github.com", 443, curl, "GET", "/files/a*b"),
        Action::Allow
    );
    assert_eq!(
        l7(&*eng, "api.github.com", 443, curl, "GET", "/files/aXXb"),
        Action::Allow
    );
    // `%2A` is no escape for `*`: the proxy keeps it, so it names a different path, and a
    // request for it gets an exact rule of its own.
    assert_eq!(
        request::normalize_path("/files/a%2ab").as_deref(),
        Ok("/files/a%2Ab")
    );
    let p = proposal::propose(
        &Denied::l7("api.github.com", 443, curl, "GET", "/files/a%2ab"),
        &current,
    )
    .expect("an escaped star is literal");
    let eng = build(&proposal::apply(&current, &p));
    assert_eq!(
        l7(&*eng, "api.github.com", 443, curl, "GET", "/files/a%2Ab"),
        Action::Allow
    );
    assert_eq!(
        l7(&*eng, "api.github.com", 443, curl, "GET", "/files/aXb"),
        Action::Deny
    );
    assert_eq!(
        l7(&*eng, "api.github.com", 443, curl, "GET", "/files/a*b"),
        Action::Deny
    );
}

#[test]
fn the_quickstart_flow_end_to_end() {
    // curl may read GitHub, a POST is denied, the proposal allows exactly that POST.
    let current = parse(
        "version: 1\nnetwork_policies:\n  github_api:\n    name: GitHub API\n    endpoints:\n      - host: api.github.com\n        port: 443\n        protocol: rest\n        rules:\n          - allow: { method: GET, path: \"/**\" }\n    binaries: [{ path: /usr/bin/curl }]\n",
    );
    let curl = "/usr/bin/curl";
    let d = Denied::l7("api.github.com", 443, curl, "POST", "/repos/o/r/issues");
    let p = proposal::propose(&d, &current).expect("proposal");
    assert_eq!(
        p.summary,
        "allow POST /repos/o/r/issues on api.github.com:443 for /usr/bin/curl (adds a rule to github_api)"
    );
    check_applied(&current, &d, &p).expect("properties hold");
    let eng = build(&proposal::apply(&current, &p));
    let gh = "api.github.com";
    assert_eq!(
        l7(&*eng, gh, 443, curl, "POST", "/repos/o/r/issues"),
        Action::Allow
    );
    assert_eq!(
        l7(&*eng, gh, 443, curl, "POST", "/repos/o/r/pulls"),
        Action::Deny
    );
    assert_eq!(
        l7(&*eng, gh, 443, curl, "DELETE", "/repos/o/r/issues"),
        Action::Deny
    );
    assert_eq!(
        l7(&*eng, gh, 443, "/usr/bin/wget", "POST", "/repos/o/r/issues"),
        Action::Deny
    );

    // And the L4 flow: wget to pypi.org.
    let d = Denied::l4("pypi.org", 443, "/usr/bin/wget");
    let p = proposal::propose(&d, &current).expect("proposal");
    assert_eq!(p.entry, "allow_pypi_org_443_wget");
    check_applied(&current, &d, &p).expect("properties hold");
}

#[test]
fn addresses_the_ssrf_check_refuses_are_never_proposed() {
    // Every range the supervisor refuses is refused here too, as an IP-literal host.
    let table = RangeTable::standard();
    for (cidr, class) in table.blocked.iter().chain(&table.internal) {
        // The network address plus one (`0.0.0.0/8` gives `0.0.0.1`) when the range holds it,
        // as a canonical literal.
        let net: ipnet::IpNet = cidr.parse().expect("cidr");
        let next: IpAddr = match net.network() {
            IpAddr::V4(v4) => Ipv4Addr::from(u32::from(v4).saturating_add(1)).into(),
            IpAddr::V6(v6) => Ipv6Addr::from(u128::from(v6).saturating_add(1)).into(),
        };
        let host = if net.contains(&next) {
            next.to_string()
        } else {
            net.network().to_string()
        };
        let e = proposal::propose(&Denied::l4(&host, 443, "/usr/bin/curl"), &Policy::default())
            .expect_err("refused");
        let want = if table.blocked.iter().any(|(c, _)| c == cidr) {
            Why::Unreachable
        } else {
            Why::Ssrf
        };
        assert_eq!(
            e.why, want,
            "{cidr} ({class}) via {host}: {}",
            e.explanation
        );
    }
}

/// The generators are worth their cases: every kind of proposal and refusal turns up.
#[test]
fn the_generators_reach_every_branch() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    use std::collections::BTreeMap;

    let mut runner = TestRunner::deterministic();
    let strategy = scenario();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..3000 {
        let (current, d) = strategy.new_tree(&mut runner).expect("tree").current();
        if load(&to_yaml(&current), "generated").is_err() {
            *seen.entry("invalid policy (skipped)".into()).or_default() += 1;
            continue;
        }
        let kind = match proposal::propose(&d, &current) {
            Ok(p) if d.layer == Layer::L4 => format!("l4 proposal, extends={}", p.extends),
            Ok(p) if !p.extends => "l7 new entry".into(),
            Ok(p) if p.summary.contains("on a new") => "l7 new endpoint in entry".into(),
            Ok(p) if p.summary.contains("gets it too") => {
                "l7 rule shared with other binaries".into()
            }
            Ok(_) => "l7 rule added in place".into(),
            Err(e) => format!("refused: {:?}", e.why)
                .split([' ', '{'])
                .take(2)
                .collect::<Vec<_>>()
                .join(" "),
        };
        *seen.entry(kind).or_default() += 1;
    }
    println!("{seen:#?}");
    for kind in [
        "l4 proposal, extends=false",
        "l7 new entry",
        "l7 new endpoint in entry",
        "l7 rule added in place",
        "l7 rule shared with other binaries",
        "refused: AlreadyAllowed",
        "refused: DenyRule",
        "refused: Inexpressible",
        "refused: RefusedByProxy",
    ] {
        assert!(
            seen.get(kind).copied().unwrap_or(0) >= 5,
            "{kind} too rare: {seen:#?}"
        );
    }
}
