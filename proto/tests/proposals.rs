//! Deny → allow proposals without an engine: the fragments and summaries they produce, the
//! refusals and their explanations, and the aggregation key. The engine properties (the
//! applied proposal allows exactly the denied traffic) live in supervisor/tests/proposals.rs.

use openshell_proto::pb::Event;
use openshell_proto::policy::proposal::{
    Denied, Layer, NoProposal, Proposal, Why, apply, key, normalize_path, propose,
};
use openshell_proto::policy::{Policy, load, parse, to_yaml};

const CURL: &str = "/usr/bin/curl";

fn policy(text: &str) -> Policy {
    parse(text).expect("test policy is valid")
}

const BASE: &str = r#"
version: 1
network_policies:
  github_api:
    name: GitHub API
    endpoints:
      - host: api.github.com
        port: 443
        protocol: rest
        rules:
          - allow: { method: GET, path: "/repos/**" }
    binaries: [{ path: /usr/bin/curl }]
  pypi:
    endpoints:
      - { host: pypi.org, port: 443 }
    binaries: [{ path: /usr/bin/pip }]
"#;

fn ok(d: &Denied, p: &Policy) -> Proposal {
    match propose(d, p) {
        Ok(p) => p,
        Err(e) => panic!("expected a proposal for {d:?}, got {e:?}"),
    }
}

fn no(d: &Denied, p: &Policy) -> NoProposal {
    match propose(d, p) {
        Ok(p) => panic!(
            "expected no proposal for {d:?}, got {}\n{}",
            p.summary, p.yaml
        ),
        Err(e) => e,
    }
}

/// The proposal's invariants that need no engine: the YAML is the fragment, the fragment
/// loads on its own, applying loads, is idempotent and keeps the user's entries and order.
fn check(current: &Policy, p: &Proposal) -> Policy {
    assert_eq!(p.yaml, to_yaml(&p.fragment));
    assert!(
        p.fragment.filesystem_policy.is_none()
            && p.fragment.landlock.is_none()
            && p.fragment.process.is_none()
    );
    assert_eq!(p.fragment.network_policies.len(), 1);
    assert!(p.fragment.network_policies.contains_key(&p.entry));
    assert_eq!(p.extends, current.network_policies.contains_key(&p.entry));
    load(&p.yaml, "fragment").expect("the fragment loads on its own");
    let once = apply(current, p);
    assert_eq!(apply(&once, p), once, "apply is idempotent");
    let loaded = load(&to_yaml(&once), "applied").expect("the result loads");
    assert_eq!(loaded.policy, once, "the result round-trips");
    let before: Vec<&String> = current.network_policies.keys().collect();
    let after: Vec<&String> = once.network_policies.keys().take(before.len()).collect();
    assert_eq!(before, after, "the user's entries keep their order");
    for (k, e) in &current.network_policies {
        if *k != p.entry {
            assert_eq!(&once.network_policies[k], e, "entry {k} is untouched");
        }
    }
    assert!(!p.summary.contains('\n'));
    once
}

#[test]
fn l7_adds_a_rule_to_the_covering_entry() {
    let current = policy(BASE);
    let d = Denied::l7("api.github.com", 443, CURL, "POST", "/repos/o/r/issues");
    let p = ok(&d, &current);
    assert_eq!(
        p.summary,
        "allow POST /repos/o/r/issues on api.github.com:443 for /usr/bin/curl (adds a rule to github_api)"
    );
    assert_eq!(p.entry, "github_api");
    assert!(p.extends);
    assert_eq!(
        p.yaml,
        "version: 1
network_policies:
  github_api:
    endpoints:
    - host: api.github.com
      port: 443
      protocol: rest
      rules:
      - allow:
          method: POST
          path: /repos/o/r/issues
    binaries:
    - path: /usr/bin/curl
"
    );
    let after = check(&current, &p);
    let gh = &after.network_policies["github_api"];
    assert_eq!(gh.name.as_deref(), Some("GitHub API"));
    assert_eq!(
        gh.endpoints.len(),
        1,
        "the existing endpoint gained the rule"
    );
    let rules: Vec<String> = gh.endpoints[0]
        .rules
        .iter()
        .flatten()
        .map(|r| format!("{} {}", r.allow.method, r.allow.path))
        .collect();
    assert_eq!(rules, ["GET /repos/**", "POST /repos/o/r/issues"]);
}

#[test]
fn l7_method_is_upper_cased_and_path_normalised() {
    let current = policy(BASE);
    let d = Denied::l7("API.GitHub.com.", 443, CURL, "post", "/repos/%6F/r/%2a");
    let p = ok(&d, &current);
    assert_eq!(
        p.summary,
        "allow POST /repos/o/r/%2A on api.github.com:443 for /usr/bin/curl (adds a rule to github_api)"
    );
    check(&current, &p);
}

#[test]
fn l7_beside_an_access_preset_adds_an_exact_endpoint() {
    let current = policy(
        "version: 1\nnetwork_policies:\n  gh:\n    endpoints:\n      - { host: api.github.com, port: 443, protocol: rest, access: read-only }\n    binaries: [{ path: /usr/bin/curl }]\n",
    );
    let d = Denied::l7("api.github.com", 443, CURL, "DELETE", "/repos/o/r");
    let p = ok(&d, &current);
    assert_eq!(
        p.summary,
        "allow DELETE /repos/o/r on api.github.com:443 for /usr/bin/curl (adds a rule to gh, on a new api.github.com:443 endpoint)"
    );
    let after = check(&current, &p);
    let eps = &after.network_policies["gh"].endpoints;
    assert_eq!(eps.len(), 2);
    assert_eq!(eps[0], current.network_policies["gh"].endpoints[0]);
    assert_eq!(eps[1].host, "api.github.com");
    assert!(eps[1].access.is_none());
}

#[test]
fn l7_under_a_host_glob_or_several_ports_never_widens_to_them() {
    for ep in [
        "{ host: \"*.github.com\", port: 443, protocol: rest, rules: [{ allow: { method: GET, path: /x } }] }",
        "{ host: api.github.com, ports: [443, 8443], protocol: rest, rules: [{ allow: { method: GET, path: /x } }] }",
    ] {
        let current = policy(&format!(
            "version: 1\nnetwork_policies:\n  gh:\n    endpoints:\n      - {ep}\n    binaries: [{{ path: /usr/bin/curl }}]\n"
        ));
        let d = Denied::l7("api.github.com", 443, CURL, "POST", "/y");
        let p = ok(&d, &current);
        let new = &p.fragment.network_policies["gh"].endpoints[0];
        assert_eq!(new.host, "api.github.com");
        assert_eq!(new.port_list(), [443]);
        let after = check(&current, &p);
        assert_eq!(after.network_policies["gh"].endpoints.len(), 2, "{ep}");
        assert_eq!(
            after.network_policies["gh"].endpoints[0],
            current.network_policies["gh"].endpoints[0]
        );
    }
}

#[test]
fn l7_names_the_other_binaries_of_the_entry() {
    let current = policy(
        "version: 1\nnetwork_policies:\n  github_api:\n    endpoints:\n      - { host: api.github.com, port: 443, protocol: rest, rules: [{ allow: { method: GET, path: /x } }] }\n    binaries: [{ path: /usr/bin/gh }, { path: /usr/bin/curl }]\n",
    );
    let p = ok(
        &Denied::l7("api.github.com", 443, CURL, "POST", "/y"),
        &current,
    );
    assert_eq!(
        p.summary,
        "allow POST /y on api.github.com:443 for /usr/bin/curl (adds a rule to github_api, so /usr/bin/gh gets it too)"
    );
    check(&current, &p);
}

#[test]
fn l7_prefers_the_entry_of_that_binary_alone() {
    let current = policy(
        "version: 1\nnetwork_policies:\n  shared:\n    endpoints:\n      - { host: api.github.com, port: 443, protocol: rest, rules: [{ allow: { method: GET, path: /x } }] }\n    binaries: [{ path: /usr/bin/gh }, { path: /usr/bin/curl }]\n  mine:\n    endpoints:\n      - { host: api.github.com, port: 443, protocol: rest, rules: [{ allow: { method: GET, path: /z } }] }\n    binaries: [{ path: /usr/bin/curl }]\n",
    );
    let p = ok(
        &Denied::l7("api.github.com", 443, CURL, "POST", "/y"),
        &current,
    );
    assert_eq!(p.entry, "mine");
    check(&current, &p);
}

#[test]
fn l7_never_extends_an_entry_that_admits_programs_by_pattern() {
    let current = policy(
        "version: 1\nnetwork_policies:\n  anyone:\n    endpoints:\n      - { host: api.github.com, port: 443, protocol: rest, access: read-only }\n    binaries: [{ path: \"**\" }]\n",
    );
    let p = ok(
        &Denied::l7("api.github.com", 443, CURL, "POST", "/y"),
        &current,
    );
    assert_eq!(
        p.summary,
        "allow POST /y on api.github.com:443 for /usr/bin/curl (new entry allow_api_github_com_443_curl; not added to anyone, which admits programs by pattern)"
    );
    assert!(!p.extends);
    check(&current, &p);
}

#[test]
fn l7_without_a_covering_entry_makes_a_rest_entry() {
    let current = policy(BASE);
    let p = ok(
        &Denied::l7("uploads.github.com", 443, CURL, "PUT", "/a/b/"),
        &current,
    );
    assert_eq!(
        p.summary,
        "allow PUT /a/b/ on uploads.github.com:443 for /usr/bin/curl (new entry allow_uploads_github_com_443_curl)"
    );
    assert_eq!(
        p.yaml,
        "version: 1
network_policies:
  allow_uploads_github_com_443_curl:
    name: uploads.github.com:443 for /usr/bin/curl
    endpoints:
    - host: uploads.github.com
      port: 443
      protocol: rest
      rules:
      - allow:
          method: PUT
          path: /a/b/
    binaries:
    - path: /usr/bin/curl
"
    );
    check(&current, &p);
}

#[test]
fn l4_makes_an_entry_for_host_port_and_binary() {
    let current = policy(BASE);
    let p = ok(&Denied::l4("API.GitHub.com", 443, "/usr/bin/pip"), &current);
    assert_eq!(
        p.summary,
        "allow api.github.com:443 for /usr/bin/pip (new entry allow_api_github_com_443_pip)"
    );
    assert_eq!(
        p.yaml,
        "version: 1
network_policies:
  allow_api_github_com_443_pip:
    name: api.github.com:443 for /usr/bin/pip
    endpoints:
    - host: api.github.com
      port: 443
    binaries:
    - path: /usr/bin/pip
"
    );
    let after = check(&current, &p);
    let keys: Vec<&str> = after.network_policies.keys().map(String::as_str).collect();
    assert_eq!(keys, ["github_api", "pypi", "allow_api_github_com_443_pip"]);
}

#[test]
fn l4_keys_are_valid_and_deterministic() {
    let current = Policy::default();
    let cases = [
        (
            "files.pythonhosted.org",
            443,
            "/usr/bin/python3.12",
            "allow_files_pythonhosted_org_443_python3_12",
        ),
        (
            "203.0.113.9",
            8080,
            "/opt/My App/bin/run-it",
            "allow_203_0_113_9_8080_run_it",
        ),
        (
            "[2001:db8::1]",
            443,
            "/usr/bin/curl",
            "allow_2001_db8_1_443_curl",
        ),
        (
            "my_host.example",
            80,
            "/usr/bin/_",
            "allow_my_host_example_80_program",
        ),
    ];
    for (host, port, bin, want) in cases {
        let d = Denied::l4(host, port, bin);
        if bin.contains(' ') {
            // Whitespace cannot be written in a binary rule: refused, see the refusal tests.
            assert_eq!(no(&d, &current).why, Why::UnknownBinary);
            continue;
        }
        let p = ok(&d, &current);
        assert_eq!(p.entry, want);
        assert_eq!(ok(&d, &current), p, "deterministic");
        check(&current, &p);
    }
}

#[test]
fn l4_key_taken_by_another_program_gets_a_suffix() {
    let current = policy(
        "version: 1\nnetwork_policies:\n  allow_pypi_org_443_curl:\n    endpoints: [{ host: example.com, port: 443 }]\n    binaries: [{ path: /opt/bin/curl }]\n",
    );
    let p = ok(&Denied::l4("pypi.org", 443, CURL), &current);
    assert_eq!(p.entry, "allow_pypi_org_443_curl_2");
    assert!(!p.extends);
    check(&current, &p);

    // An entry for exactly this program is extended: nobody else gains anything.
    let current = policy(
        "version: 1\nnetwork_policies:\n  allow_pypi_org_443_curl:\n    endpoints: [{ host: pypi.org, port: 8443 }]\n    binaries: [{ path: /usr/bin/curl }]\n",
    );
    let p = ok(&Denied::l4("pypi.org", 443, CURL), &current);
    assert_eq!(p.entry, "allow_pypi_org_443_curl");
    assert!(p.extends);
    assert_eq!(
        p.summary,
        "allow pypi.org:443 for /usr/bin/curl (adds an endpoint to allow_pypi_org_443_curl)"
    );
    let after = check(&current, &p);
    assert_eq!(
        after.network_policies["allow_pypi_org_443_curl"]
            .endpoints
            .len(),
        2
    );
}

#[test]
fn public_ip_literals_are_proposed() {
    let p = ok(&Denied::l4("203.0.113.9", 443, CURL), &Policy::default());
    assert_eq!(
        p.fragment.network_policies[&p.entry].endpoints[0].host,
        "203.0.113.9"
    );
}

#[test]
fn refusals_explain_themselves() {
    let current = policy(BASE);
    let l7 = |path: &str| Denied::l7("api.github.com", 443, CURL, "POST", path);
    let cases: Vec<(Denied, Why, &str)> = vec![
        (
            Denied {
                layer: Layer::Bypass,
                ..Denied::l4("93.184.216.34", 443, "")
            },
            Why::Bypass,
            "must use the proxy",
        ),
        (
            Denied {
                layer: Layer::Ssrf,
                ..Denied::l4("db.corp.example", 5432, CURL)
            },
            Why::Ssrf,
            "allowed_ips",
        ),
        (
            Denied::l4("pypi.org", 443, ""),
            Why::UnknownBinary,
            "kernel could not tell",
        ),
        (
            Denied::l4("pypi.org", 443, "/usr/bin/curl (deleted)"),
            Why::UnknownBinary,
            "deleted",
        ),
        (
            Denied::l4("pypi.org", 443, "curl"),
            Why::UnknownBinary,
            "not an executable path",
        ),
        (
            Denied::l4("pypi.org", 443, "/usr/bin/*"),
            Why::Inexpressible,
            "wildcard",
        ),
        (
            Denied::l4("pypi.org", 443, "/opt/a b"),
            Why::UnknownBinary,
            "whitespace",
        ),
        (
            Denied::l4("pypi.org", 0, CURL),
            Why::Inexpressible,
            "port 0",
        ),
        (
            Denied::l4("*.evil.com", 443, CURL),
            Why::Inexpressible,
            "wildcard",
        ),
        (
            Denied::l4("a b.com", 443, CURL),
            Why::Inexpressible,
            "not a host name",
        ),
        (Denied::l4("", 443, CURL), Why::Inexpressible, "no host"),
        (
            Denied::l4("127.0.0.1", 8080, CURL),
            Why::Unreachable,
            "loopback",
        ),
        (
            Denied::l4("169.254.169.254", 80, CURL),
            Why::Unreachable,
            "link-local",
        ),
        (Denied::l4("[::1]", 80, CURL), Why::Unreachable, "loopback"),
        (Denied::l4("10.0.0.5", 5432, CURL), Why::Ssrf, "private"),
        (Denied::l4("fd00::1", 5432, CURL), Why::Ssrf, "unique local"),
        (l7("/repos/*/issues"), Why::Inexpressible, "contains `*`"),
        (l7("/a/**"), Why::Inexpressible, "contains `*`"),
        (l7("/search?q=1"), Why::Inexpressible, "contains `?`"),
        (l7("/a[1]"), Why::Inexpressible, "contains `[`"),
        (l7("/a#frag"), Why::Inexpressible, "fragments"),
        (l7("/a/../b"), Why::RefusedByProxy, "`..`"),
        (l7("/a/%2e%2E/b"), Why::RefusedByProxy, "`..`"),
        (l7("/a%2Fb"), Why::RefusedByProxy, "encoded `/`"),
        (l7("/a//b"), Why::RefusedByProxy, "`//`"),
        (l7("/a b"), Why::RefusedByProxy, "space"),
        (l7("relative"), Why::RefusedByProxy, "not absolute"),
        (l7("/bad%zz"), Why::RefusedByProxy, "percent-escape"),
        (
            Denied::l7("api.github.com", 443, CURL, "M-SEARCH", "/x"),
            Why::Inexpressible,
            "letters only",
        ),
        (
            Denied {
                path: None,
                ..l7("/x")
            },
            Why::Incomplete,
            "method and path",
        ),
        (
            Denied::l7("api.github.com", 443, CURL, "GET", "/repos/o/r"),
            Why::AlreadyAllowed {
                entry: "github_api".into(),
            },
            "already allowed",
        ),
        (
            Denied::l7("api.github.com", 443, CURL, "HEAD", "/repos/o/r"),
            Why::AlreadyAllowed {
                entry: "github_api".into(),
            },
            "already allowed",
        ),
        (
            Denied::l4("api.github.com", 443, CURL),
            Why::AlreadyAllowed {
                entry: "github_api".into(),
            },
            "entry `github_api` allows it",
        ),
        (
            // An uninspected endpoint lets every request through.
            Denied::l7("pypi.org", 443, "/usr/bin/pip", "DELETE", "/x"),
            Why::AlreadyAllowed {
                entry: "pypi".into(),
            },
            "already allowed",
        ),
    ];
    for (d, why, says) in cases {
        let e = no(&d, &current);
        assert_eq!(e.why, why, "{d:?}: {}", e.explanation);
        assert!(
            e.explanation.contains(says),
            "{d:?}: `{}` should say `{says}`",
            e.explanation
        );
        assert_eq!(e.to_string(), e.explanation);
    }
}

#[test]
fn deny_rules_are_not_overridden() {
    let current = policy(
        "version: 1\nnetwork_policies:\n  up:\n    endpoints:\n      - host: uploads.github.com\n        port: 443\n        protocol: rest\n        access: read-write\n        deny_rules:\n          - { method: POST, path: \"/repos/*/*/releases/**\" }\n          - { method: DELETE, path: /x, query: { force: \"1\" } }\n    binaries: [{ path: /usr/bin/curl }]\n",
    );
    let e = no(
        &Denied::l7(
            "uploads.github.com",
            443,
            CURL,
            "POST",
            "/repos/o/r/releases/1",
        ),
        &current,
    );
    assert_eq!(e.why, Why::DenyRule { entry: "up".into() });
    assert!(e.explanation.contains("deny rule in entry `up`"));
    // A deny rule that depends on the query does not decide a request without one.
    let p = ok(
        &Denied::l7("uploads.github.com", 443, CURL, "DELETE", "/x"),
        &current,
    );
    check(&current, &p);
}

#[test]
fn audit_endpoint_whose_deny_rule_matches_is_not_extended() {
    let current = policy(
        "version: 1\nnetwork_policies:\n  au:\n    endpoints:\n      - host: audit.example.net\n        port: 443\n        protocol: rest\n        enforcement: audit\n        rules: [{ allow: { method: GET, path: \"/public/*\" } }]\n        deny_rules: [{ method: GET, path: /public/secret }]\n    binaries: [{ path: /usr/bin/curl }]\n",
    );
    let p = ok(
        &Denied::l7("audit.example.net", 443, CURL, "GET", "/public/secret"),
        &current,
    );
    assert!(
        p.summary
            .contains("on a new audit.example.net:443 endpoint"),
        "{}",
        p.summary
    );
    let after = check(&current, &p);
    assert_eq!(after.network_policies["au"].endpoints.len(), 2);
}

#[test]
fn path_normalisation() {
    for (raw, want) in [
        ("/a/%41%7e", Ok("/a/A~")),
        ("/a/%2a", Ok("/a/%2A")),
        ("/a/", Ok("/a/")),
        ("/", Ok("/")),
        ("/a/./b", Err("`.` or `..`")),
        ("//a", Err("`//`")),
        ("/a\\b", Err("`\\`")),
    ] {
        match (normalize_path(raw), want) {
            (Ok(got), Ok(w)) => assert_eq!(got, w),
            (Err(got), Err(w)) => assert!(got.contains(w), "{raw}: {got}"),
            (got, w) => panic!("{raw}: got {got:?}, want {w:?}"),
        }
    }
}

#[test]
fn aggregation_keys() {
    let cases = [
        (
            Denied::l4("API.GitHub.com.", 443, CURL),
            "l4 api.github.com:443 /usr/bin/curl",
        ),
        (
            Denied::l7("api.github.com", 443, CURL, "post", "/repos/%6f/r"),
            "l7 api.github.com:443 /usr/bin/curl POST /repos/o/r",
        ),
        (
            Denied {
                layer: Layer::Bypass,
                ..Denied::l4("1.2.3.4", 53, "")
            },
            "bypass 1.2.3.4:53 \"\"",
        ),
        (
            Denied {
                layer: Layer::Ssrf,
                ..Denied::l4("db.internal", 5432, CURL)
            },
            "ssrf db.internal:5432 /usr/bin/curl",
        ),
        (
            Denied::l4("pypi.org", 443, "/opt/a b\\c"),
            "l4 pypi.org:443 /opt/a\\u{20}b\\\\c",
        ),
        (
            Denied::l7("x.org", 80, CURL, "GET", "/a b"),
            "l7 x.org:80 /usr/bin/curl GET /a\\u{20}b",
        ),
    ];
    for (d, want) in cases {
        assert_eq!(key(&d), want);
    }
    // Denials that would get the same proposal share a key; others do not.
    assert_eq!(
        key(&Denied::l7("Api.github.com", 443, CURL, "GET", "/%41")),
        key(&Denied::l7("api.github.com", 443, CURL, "get", "/A"))
    );
    assert_ne!(
        key(&Denied::l7("api.github.com", 443, CURL, "GET", "/a")),
        key(&Denied::l7("api.github.com", 443, CURL, "GET", "/b"))
    );
    assert_ne!(
        key(&Denied::l4("api.github.com", 443, CURL)),
        key(&Denied::l4("api.github.com", 443, "/usr/bin/wget"))
    );
}

#[test]
fn denials_from_events() {
    let e = Event {
        kind: "network".into(),
        action: "deny".into(),
        host: "api.github.com".into(),
        port: 443,
        binary: CURL.into(),
        method: "POST".into(),
        path: "/x".into(),
        layer: "l7".into(),
        ..Event::default()
    };
    assert_eq!(
        Denied::from_event(&e),
        Some(Denied::l7("api.github.com", 443, CURL, "POST", "/x"))
    );
    let bypass = Event {
        layer: "bypass".into(),
        binary: String::new(),
        method: String::new(),
        path: String::new(),
        ..e.clone()
    };
    assert_eq!(
        Denied::from_event(&bypass).map(|d| d.layer),
        Some(Layer::Bypass)
    );
    let allowed = Event {
        action: "allow".into(),
        ..e.clone()
    };
    assert_eq!(Denied::from_event(&allowed), None);
    let odd = Event {
        layer: "l9".into(),
        ..e
    };
    assert_eq!(Denied::from_event(&odd), None);
    assert_eq!("ssrf".parse::<Layer>(), Ok(Layer::Ssrf));
    assert!("l9".parse::<Layer>().is_err());
}
