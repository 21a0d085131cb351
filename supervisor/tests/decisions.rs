//! Table-driven decisions: every glob rule and decision path, on both engines.

use openshell_proto::policy::{self, Policy};
use openshell_sandbox::engine::{
    self, Action, Engine, EngineKind, L7Input, Layer, NetworkInput, request,
};
use std::net::IpAddr;
use std::sync::Arc;

const CURL: &str = "/usr/bin/curl";
const ANY: &str = "/usr/local/bin/anything";

fn load(text: &str) -> Policy {
    policy::load(text, "fixture")
        .expect("fixture policy is valid")
        .policy
}

fn table_policy() -> Policy {
    load(include_str!("fixtures/table.yaml"))
}

fn seed(name: &str) -> Policy {
    let path = format!(
        "{}/../proto/tests/fixtures/seeds/{name}.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    load(&std::fs::read_to_string(path).expect("seed fixture"))
}

fn engines(p: &Policy) -> Vec<Arc<dyn Engine>> {
    vec![
        engine::build(p, EngineKind::Fast).expect("fast engine"),
        engine::build(p, EngineKind::Rego).expect("rego engine"),
    ]
}

/// Expected outcome: action, deciding policy key (or none), layer, and a reason fragment.
struct Want {
    action: Action,
    policy: Option<&'static str>,
    layer: Layer,
    reason: &'static str,
}

fn allow(policy: &'static str, layer: Layer) -> Want {
    Want {
        action: Action::Allow,
        policy: Some(policy),
        layer,
        reason: "",
    }
}
fn deny(policy: Option<&'static str>, layer: Layer, reason: &'static str) -> Want {
    Want {
        action: Action::Deny,
        policy,
        layer,
        reason,
    }
}
fn audit(policy: &'static str) -> Want {
    Want {
        action: Action::Audit,
        policy: Some(policy),
        layer: Layer::L7,
        reason: "audit",
    }
}

fn check(case: &str, engine: &dyn Engine, got: engine::Decision, want: &Want) {
    let label = format!("{case} [{}]", engine.name());
    assert_eq!(got.action, want.action, "{label}: action ({})", got.reason);
    assert_eq!(
        got.policy.as_deref(),
        want.policy,
        "{label}: policy ({})",
        got.reason
    );
    assert_eq!(got.layer, want.layer, "{label}: layer ({})", got.reason);
    assert!(
        got.reason.contains(want.reason),
        "{label}: reason `{}` lacks `{}`",
        got.reason,
        want.reason
    );
}

fn net_case(
    p: &Policy,
    host: &str,
    port: u16,
    binary: &str,
    ips: Option<&[&str]>,
    pinned: bool,
    want: Want,
) {
    let host = request::normalize_host(host).expect("valid host");
    let ips: Option<Vec<IpAddr>> = ips.map(|v| v.iter().map(|s| s.parse().expect("ip")).collect());
    for e in engines(p) {
        let d = e.network(&NetworkInput {
            host: &host,
            port,
            binary,
            ips: ips.as_deref(),
            pinned,
        });
        check(
            &format!("{host}:{port} {binary} {ips:?}"),
            e.as_ref(),
            d,
            &want,
        );
    }
}

fn l7_case(p: &Policy, host: &str, binary: &str, method: &str, target: &str, want: Want) {
    let (raw_path, raw_query) = request::split_target(target);
    let query = request::parse_query(raw_query);
    for e in engines(p) {
        let net = e.network(&NetworkInput {
            host,
            port: 443,
            binary,
            ips: None,
            pinned: false,
        });
        let case = format!("{method} {host}{target} {binary}");
        assert_eq!(
            net.action,
            Action::Allow,
            "{case}: connection must be allowed first ({})",
            net.reason
        );
        assert!(net.inspect, "{case}: endpoint must be inspected");
        let d = match request::normalize_path(raw_path) {
            Ok(path) => e.l7(&L7Input {
                host,
                port: 443,
                binary,
                method,
                path: &path,
                query: &query,
            }),
            Err(why) => engine::Decision {
                action: Action::Deny,
                policy: None,
                reason: why.into(),
                layer: Layer::L7,
                inspect: true,
            },
        };
        check(&case, e.as_ref(), d, &want);
    }
}

#[test]
fn host_port_and_binary() {
    let p = table_policy();
    use Layer::L4;
    net_case(
        &p,
        "api.github.com",
        443,
        CURL,
        None,
        false,
        allow("github_api", L4),
    );
    net_case(
        &p,
        "API.GitHub.COM",
        443,
        CURL,
        None,
        false,
        allow("github_api", L4),
    );
    net_case(
        &p,
        "api.github.com.",
        443,
        CURL,
        None,
        false,
        allow("github_api", L4),
    );
    net_case(
        &p,
        "api.github.com",
        80,
        CURL,
        None,
        false,
        deny(
            None,
            L4,
            "endpoint api.github.com:80 is not allowed by any policy",
        ),
    );
    net_case(
        &p,
        "api.github.com",
        443,
        "/usr/bin/wget",
        None,
        false,
        deny(
            Some("github_api"),
            L4,
            "binary '/usr/bin/wget' is not allowed",
        ),
    );
    net_case(
        &p,
        "evil.com",
        443,
        CURL,
        None,
        false,
        deny(None, L4, "not allowed by any policy"),
    );
    net_case(
        &p,
        "github.com",
        443,
        "/usr/lib/git-core/git-remote-https",
        None,
        false,
        allow("git", L4),
    );
    net_case(
        &p,
        "github.com",
        443,
        "/usr/lib/git-core/git",
        None,
        false,
        deny(
            Some("git"),
            L4,
            "allows /usr/lib/git-core/git-remote-http*, /usr/bin/git",
        ),
    );
    net_case(
        &p,
        "github.com",
        443,
        "/usr/bin/git",
        None,
        false,
        allow("git", L4),
    );
    net_case(
        &p,
        "uploads.github.com",
        443,
        CURL,
        None,
        false,
        allow("github_write", L4),
    );
    net_case(
        &p,
        "uploads.github.com",
        443,
        "/usr/bin/sub/curl",
        None,
        false,
        deny(Some("github_write"), L4, "binary"),
    );
    net_case(
        &p,
        "db.internal.test",
        5432,
        "/opt/pg/17/bin/client",
        None,
        false,
        allow("internal", L4),
    );
    net_case(
        &p,
        "db.internal.test",
        5432,
        "/opt/bin/client",
        None,
        false,
        allow("internal", L4),
    );
    net_case(
        &p,
        "db.internal.test",
        5432,
        "/usr/bin/client",
        None,
        false,
        deny(Some("internal"), L4, "binary"),
    );
    net_case(
        &p,
        "ports.test",
        8080,
        CURL,
        None,
        false,
        allow("multi_port", L4),
    );
    net_case(
        &p,
        "ports.test",
        8443,
        CURL,
        None,
        false,
        allow("multi_port", L4),
    );
    net_case(
        &p,
        "ports.test",
        443,
        CURL,
        None,
        false,
        deny(None, L4, "not allowed by any policy"),
    );
    net_case(
        &p,
        "nobody.test",
        443,
        CURL,
        None,
        false,
        deny(Some("nobin"), L4, "binary"),
    );
}

#[test]
fn host_globs() {
    let p = table_policy();
    use Layer::L4;
    net_case(
        &p,
        "a.example.com",
        443,
        ANY,
        None,
        false,
        allow("wildcard_hosts", L4),
    );
    net_case(
        &p,
        "A.EXAMPLE.com",
        443,
        ANY,
        None,
        false,
        allow("wildcard_hosts", L4),
    );
    net_case(
        &p,
        "a.b.example.com",
        443,
        ANY,
        None,
        false,
        deny(None, L4, "not allowed by any policy"),
    );
    net_case(
        &p,
        "example.com",
        443,
        ANY,
        None,
        false,
        deny(None, L4, "not allowed by any policy"),
    );
    net_case(
        &p,
        "x.deep.example.org",
        8443,
        ANY,
        None,
        false,
        allow("wildcard_hosts", L4),
    );
    net_case(
        &p,
        "x.y.z.deep.example.org",
        8443,
        ANY,
        None,
        false,
        allow("wildcard_hosts", L4),
    );
    net_case(
        &p,
        "deep.example.org",
        8443,
        ANY,
        None,
        false,
        deny(None, L4, "not allowed by any policy"),
    );
    net_case(
        &p,
        "xdeep.example.org",
        8443,
        ANY,
        None,
        false,
        deny(None, L4, "not allowed by any policy"),
    );
    net_case(
        &p,
        "api-v2.svc.test",
        80,
        ANY,
        None,
        false,
        allow("wildcard_hosts", L4),
    );
    net_case(
        &p,
        "API-V2.svc.test",
        80,
        ANY,
        None,
        false,
        allow("wildcard_hosts", L4),
    );
    net_case(
        &p,
        "apiv2.svc.test",
        80,
        ANY,
        None,
        false,
        deny(None, L4, "not allowed by any policy"),
    );
    net_case(
        &p,
        "api-v2.x.svc.test",
        80,
        ANY,
        None,
        false,
        deny(None, L4, "not allowed by any policy"),
    );
    net_case(
        &p,
        "x.api-v2.svc.test",
        80,
        ANY,
        None,
        false,
        deny(None, L4, "not allowed by any policy"),
    );
}

#[test]
fn resolved_addresses() {
    let p = table_policy();
    use Layer::{L4, Ssrf};
    let gh = "api.github.com";
    net_case(
        &p,
        gh,
        443,
        CURL,
        Some(&["140.82.112.5"]),
        false,
        allow("github_api", L4),
    );
    net_case(
        &p,
        gh,
        443,
        CURL,
        Some(&["2606:50c0:8000::154"]),
        false,
        allow("github_api", L4),
    );
    net_case(
        &p,
        gh,
        443,
        CURL,
        Some(&["10.0.0.1"]),
        false,
        deny(None, Ssrf, "10.0.0.1 (private)"),
    );
    net_case(
        &p,
        gh,
        443,
        CURL,
        Some(&["192.168.1.1"]),
        false,
        deny(None, Ssrf, "(private)"),
    );
    net_case(
        &p,
        gh,
        443,
        CURL,
        Some(&["169.254.169.254"]),
        false,
        deny(None, Ssrf, "169.254.169.254 (link-local)"),
    );
    net_case(
        &p,
        gh,
        443,
        CURL,
        Some(&["127.0.0.1"]),
        false,
        deny(None, Ssrf, "(loopback)"),
    );
    net_case(
        &p,
        gh,
        443,
        CURL,
        Some(&["::1"]),
        false,
        deny(None, Ssrf, "(loopback)"),
    );
    net_case(
        &p,
        gh,
        443,
        CURL,
        Some(&["fd00::1"]),
        false,
        deny(None, Ssrf, "(unique local)"),
    );
    net_case(
        &p,
        gh,
        443,
        CURL,
        Some(&["::ffff:10.0.0.1"]),
        false,
        deny(None, Ssrf, "(private)"),
    );
    net_case(
        &p,
        gh,
        443,
        CURL,
        Some(&["0.0.0.0"]),
        false,
        deny(None, Ssrf, "(unspecified)"),
    );
    net_case(
        &p,
        gh,
        443,
        CURL,
        Some(&["140.82.112.5", "10.1.2.3"]),
        false,
        deny(None, Ssrf, "10.1.2.3"),
    );
    // An operator pin is trusted for private ranges, never for loopback or link-local.
    net_case(
        &p,
        gh,
        443,
        CURL,
        Some(&["10.0.0.1"]),
        true,
        allow("github_api", L4),
    );
    net_case(
        &p,
        gh,
        443,
        CURL,
        Some(&["127.0.0.1"]),
        true,
        deny(None, Ssrf, "(loopback)"),
    );
    let db = "db.internal.test";
    net_case(
        &p,
        db,
        5432,
        "/usr/bin/psql",
        Some(&["10.20.1.5"]),
        false,
        allow("internal", L4),
    );
    net_case(
        &p,
        db,
        5432,
        "/usr/bin/psql",
        Some(&["10.21.0.1"]),
        false,
        deny(None, Ssrf, "10.21.0.1"),
    );
    net_case(
        &p,
        db,
        5432,
        "/usr/bin/psql",
        Some(&["127.0.0.1"]),
        false,
        deny(None, Ssrf, "(loopback)"),
    );
    net_case(
        &p,
        "10.30.0.7",
        9000,
        "/usr/bin/psql",
        Some(&["10.30.0.7"]),
        false,
        allow("internal", L4),
    );
}

#[test]
fn empty_policy_denies_everything() {
    let p = load("version: 1\n");
    net_case(
        &p,
        "api.github.com",
        443,
        CURL,
        None,
        false,
        deny(None, Layer::L4, "network connections not allowed by policy"),
    );
}

#[test]
fn methods_and_presets() {
    let p = table_policy();
    use Layer::L7;
    let gh = "api.github.com";
    l7_case(&p, gh, CURL, "GET", "/zen", allow("github_api", L7));
    l7_case(&p, gh, CURL, "HEAD", "/zen", allow("github_api", L7));
    l7_case(&p, gh, CURL, "OPTIONS", "/", allow("github_api", L7));
    l7_case(
        &p,
        gh,
        CURL,
        "POST",
        "/repos/octocat/hello-world/issues",
        deny(
            Some("github_api"),
            L7,
            "POST /repos/octocat/hello-world/issues not permitted by policy",
        ),
    );
    l7_case(
        &p,
        gh,
        CURL,
        "DELETE",
        "/repos/o/r",
        deny(Some("github_api"), L7, "not permitted"),
    );
    let up = "uploads.github.com";
    l7_case(
        &p,
        up,
        CURL,
        "POST",
        "/repos/a/b/issues",
        allow("github_write", L7),
    );
    l7_case(
        &p,
        up,
        CURL,
        "PATCH",
        "/repos/a/b",
        allow("github_write", L7),
    );
    l7_case(
        &p,
        up,
        CURL,
        "DELETE",
        "/repos/a/b",
        deny(Some("github_write"), L7, "not permitted"),
    );
}

#[test]
fn deny_rules_win() {
    let p = table_policy();
    use Layer::L7;
    let up = "uploads.github.com";
    l7_case(
        &p,
        up,
        CURL,
        "POST",
        "/repos/a/b/releases/1/assets",
        deny(Some("github_write"), L7, "blocked by a deny rule"),
    );
    l7_case(
        &p,
        up,
        CURL,
        "POST",
        "/repos/a/b/releases",
        deny(Some("github_write"), L7, "blocked by a deny rule"),
    ); // `/**` also covers the bare prefix
    l7_case(
        &p,
        up,
        CURL,
        "POST",
        "/repos/a/b/releasesx",
        allow("github_write", L7),
    );
    l7_case(
        &p,
        up,
        CURL,
        "GET",
        "/admin/users",
        deny(Some("github_write"), L7, "blocked by a deny rule"),
    );
    l7_case(
        &p,
        up,
        CURL,
        "GET",
        "/admin",
        deny(Some("github_write"), L7, "blocked by a deny rule"),
    );
    l7_case(
        &p,
        up,
        CURL,
        "GET",
        "/administrator",
        allow("github_write", L7),
    );
    l7_case(
        &p,
        up,
        CURL,
        "GET",
        "/admin/",
        deny(Some("github_write"), L7, "deny rule"),
    );
    let s = "search.test";
    l7_case(
        &p,
        s,
        CURL,
        "GET",
        "/any/thing?debug=1",
        deny(Some("queries"), L7, "deny rule"),
    );
    l7_case(
        &p,
        s,
        CURL,
        "GET",
        "/any/thing?x=1&debug=",
        deny(Some("queries"), L7, "deny rule"),
    );
    l7_case(&p, s, CURL, "GET", "/any/thing?x=1", allow("queries", L7));
    l7_case(&p, s, CURL, "PUT", "/any/a/b", allow("queries", L7));
}

#[test]
fn path_globs() {
    let p = table_policy();
    use Layer::L7;
    let git = "/usr/bin/git";
    let gh = "github.com";
    l7_case(
        &p,
        gh,
        git,
        "GET",
        "/org/repo.git/info/refs?service=git-upload-pack",
        allow("git", L7),
    );
    l7_case(
        &p,
        gh,
        git,
        "GET",
        "/info/refs?service=git-upload-pack",
        allow("git", L7),
    );
    l7_case(
        &p,
        gh,
        git,
        "GET",
        "/a/b/c/info/refs?service=git-upload-pack",
        allow("git", L7),
    );
    l7_case(
        &p,
        gh,
        git,
        "GET",
        "/org/repo.git/info/refs?service=git-receive-pack",
        deny(Some("git"), L7, "not permitted"),
    );
    l7_case(
        &p,
        gh,
        git,
        "GET",
        "/org/repo.git/info/refs",
        deny(Some("git"), L7, "not permitted"),
    );
    l7_case(
        &p,
        gh,
        git,
        "GET",
        "/o/r/info/refs?service=git-upload-pack&service=evil",
        deny(Some("git"), L7, "not permitted"),
    );
    l7_case(
        &p,
        gh,
        git,
        "POST",
        "/org/repo.git/git-upload-pack",
        allow("git", L7),
    );
    l7_case(&p, gh, git, "POST", "/git-upload-pack", allow("git", L7));
    l7_case(
        &p,
        gh,
        git,
        "POST",
        "/org/repo.git/git-receive-pack",
        deny(Some("git"), L7, "not permitted"),
    );
    l7_case(
        &p,
        gh,
        git,
        "GET",
        "/org/repo.git/info/refsx?service=git-upload-pack",
        deny(Some("git"), L7, "not permitted"),
    );
    let a = "audit.example.net";
    let py = "/usr/bin/python3.12";
    l7_case(&p, a, py, "GET", "/public/x", allow("audit_ep", L7));
    l7_case(&p, a, py, "GET", "/public/a/b", audit("audit_ep")); // `*` stays in one segment
    l7_case(&p, a, py, "GET", "/public/secret", audit("audit_ep"));
    l7_case(&p, a, py, "POST", "/public/x", audit("audit_ep"));
}

#[test]
fn query_matching() {
    let p = table_policy();
    use Layer::L7;
    let s = "search.test";
    l7_case(&p, s, CURL, "GET", "/search?tag=v1.2", allow("queries", L7));
    l7_case(
        &p,
        s,
        CURL,
        "GET",
        "/search?tag=v2.0&tag=v1.0",
        allow("queries", L7),
    );
    l7_case(
        &p,
        s,
        CURL,
        "GET",
        "/search?tag=v1%2E2",
        allow("queries", L7),
    );
    l7_case(
        &p,
        s,
        CURL,
        "GET",
        "/search?tag=v3",
        deny(Some("queries"), L7, "not permitted"),
    );
    l7_case(
        &p,
        s,
        CURL,
        "GET",
        "/search?tag=v1.0&tag=v3",
        deny(Some("queries"), L7, "not permitted"),
    );
    l7_case(
        &p,
        s,
        CURL,
        "GET",
        "/search",
        deny(Some("queries"), L7, "not permitted"),
    );
}

#[test]
fn path_tricks_are_refused() {
    let p = table_policy();
    use Layer::L7;
    let gh = "api.github.com";
    for target in [
        "/allowed/../denied",
        "/a/%2e%2e/b",
        "/a/%2E%2E/b",
        "/a/.%2e/b",
        "/a/./b",
        "/a//b",
        "//a",
        "/a/%2F/b",
        "/a%2fb",
        "/a/%5C/b",
        "/a\\b",
        "/a/%zz",
        "/a b",
    ] {
        l7_case(&p, gh, CURL, "GET", target, deny(None, L7, ""));
    }
    // Unreserved characters are decoded before matching, like the upstream will.
    l7_case(
        &p,
        "search.test",
        CURL,
        "GET",
        "/%61ny/x",
        allow("queries", L7),
    );
    l7_case(
        &p,
        "uploads.github.com",
        CURL,
        "GET",
        "/%61dmin/x",
        deny(Some("github_write"), L7, "deny rule"),
    );
}

#[test]
fn normalization_table() {
    let ok = [
        ("/", "/"),
        ("/trailing/", "/trailing/"),
        ("/%7Euser", "/~user"),
        ("/a/%41", "/a/A"),
        ("/a%20b", "/a%20b"),
        ("/a%3ab", "/a%3Ab"),
        ("/a;b=c", "/a;b=c"),
    ];
    for (raw, want) in ok {
        assert_eq!(request::normalize_path(raw).as_deref(), Ok(want), "{raw}");
    }
    for bad in [
        "relative", "*", "/a/../b", "/..", "/a/.", "/a//", "/%2e", "/%",
    ] {
        assert!(
            request::normalize_path(bad).is_err(),
            "{bad} must be refused"
        );
    }
    assert_eq!(
        request::normalize_host("API.GitHub.COM.").as_deref(),
        Ok("api.github.com")
    );
    assert_eq!(request::normalize_host("[::1]").as_deref(), Ok("::1"));
    for bad in ["", "a..b", "a b", "a/b", "a:443"] {
        assert!(
            request::normalize_host(bad).is_err(),
            "{bad:?} must be refused"
        );
    }
}

#[test]
fn seed_quickstart() {
    let p = seed("quickstart");
    use Layer::{L4, L7};
    let gh = "api.github.com";
    l7_case(&p, gh, CURL, "GET", "/zen", allow("github_api", L7));
    l7_case(
        &p,
        gh,
        CURL,
        "POST",
        "/repos/octocat/hello-world/issues",
        deny(
            Some("github_api"),
            L7,
            "POST /repos/octocat/hello-world/issues not permitted by policy",
        ),
    );
    net_case(
        &p,
        gh,
        443,
        "/usr/bin/python3",
        None,
        false,
        deny(Some("github_api"), L4, "binary"),
    );
    net_case(
        &p,
        "example.com",
        443,
        CURL,
        None,
        false,
        deny(
            None,
            L4,
            "endpoint example.com:443 is not allowed by any policy",
        ),
    );
    // The baseline lets curl reach nothing.
    net_case(
        &openshell_proto::catalog::baseline(),
        gh,
        443,
        CURL,
        None,
        false,
        deny(None, L4, "not allowed by any policy"),
    );
}

#[test]
fn seed_read_everything() {
    let p = seed("read_everything");
    use Layer::L7;
    let gh = "api.github.com";
    l7_case(
        &p,
        gh,
        ANY,
        "POST",
        "/repos/myorg/myrepo/issues/42/comments",
        allow("github_one_issue", L7),
    );
    l7_case(
        &p,
        gh,
        ANY,
        "POST",
        "/repos/myorg/myrepo/issues/43/comments",
        deny(Some("read_everything"), L7, "not permitted"),
    );
    l7_case(
        &p,
        gh,
        ANY,
        "GET",
        "/repos/myorg/myrepo",
        allow("read_everything", L7),
    );
    l7_case(
        &p,
        "pypi.org",
        ANY,
        "GET",
        "/simple/",
        allow("read_everything", L7),
    );
    l7_case(
        &p,
        "pypi.org",
        ANY,
        "PUT",
        "/simple/",
        deny(Some("read_everything"), L7, "not permitted"),
    );
    net_case(
        &p,
        "pypi.org",
        80,
        ANY,
        None,
        false,
        deny(None, Layer::L4, "not allowed by any policy"),
    );
}
