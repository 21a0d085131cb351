//! Policy evaluation cost with a 100-entry policy: load + compile, L4 and L7 decisions, for the
//! native engine and the regorus reference side by side.
//!
//! Run: `cargo bench -p openshell-sandbox --bench evaluator` (figures: the median time column).

use criterion::{Criterion, criterion_group, criterion_main};
use openshell_proto::policy;
use openshell_sandbox::engine::{self, EngineKind, L7Input, NetworkInput, request};
use std::hint::black_box;
use std::net::IpAddr;

/// 100 entries: literal and wildcard hosts, presets and explicit rules, deny rules, binaries.
fn hundred_entry_policy() -> String {
    let mut s = String::from("version: 1\nnetwork_policies:\n");
    for i in 0..100 {
        s.push_str(&format!(
            "  svc_{i}:\n    name: service-{i}\n    endpoints:\n"
        ));
        match i % 4 {
            0 => s.push_str(&format!(
                "      - {{ host: api{i}.example.com, port: 443, protocol: rest, enforcement: enforce, access: read-only }}\n"
            )),
            1 => s.push_str(&format!(
                "      - host: \"*.svc{i}.example.net\"\n        port: 443\n        protocol: rest\n        enforcement: enforce\n        rules:\n          - allow: {{ method: GET, path: \"/v1/items/*\" }}\n          - allow: {{ method: POST, path: \"/v1/items/*/comments\", query: {{ draft: \"false\" }} }}\n          - allow: {{ method: GET, path: \"/**/info/refs\" }}\n"
            )),
            2 => s.push_str(&format!(
                "      - host: upload{i}.example.org\n        port: 443\n        protocol: rest\n        enforcement: enforce\n        access: read-write\n        deny_rules:\n          - {{ method: POST, path: \"/admin/**\" }}\n      - {{ host: cdn{i}.example.org, port: 443 }}\n"
            )),
            _ => s.push_str(&format!("      - {{ host: \"**.mirror{i}.test\", ports: [80, 443] }}\n")),
        }
        s.push_str("    binaries:\n      - { path: /usr/bin/curl }\n      - { path: \"/usr/lib/git-core/git-remote-http*\" }\n");
    }
    // The requests below decide on the last entries, so every lookup scans the whole policy.
    s.push_str("  github_api:\n    endpoints:\n      - { host: api.github.com, port: 443, protocol: rest, enforcement: enforce, access: read-only }\n    binaries: [{ path: /usr/bin/curl }]\n");
    s
}

fn bench(c: &mut Criterion) {
    let text = hundred_entry_policy();
    let loaded = policy::load(&text, "bench").expect("valid").policy;
    assert_eq!(loaded.network_policies.len(), 101);

    let mut g = c.benchmark_group("load_compile");
    g.bench_function("parse_validate", |b| {
        b.iter(|| policy::load(black_box(&text), "bench"))
    });
    for kind in [EngineKind::Fast, EngineKind::Rego] {
        g.bench_function(format!("{kind:?}").to_lowercase(), |b| {
            b.iter(|| {
                let p = policy::load(black_box(&text), "bench")
                    .expect("valid")
                    .policy;
                engine::build(&p, kind).expect("compiles")
            })
        });
    }
    g.finish();

    let path = request::normalize_path("/repos/octocat/hello-world").expect("path");
    let query: Vec<(String, String)> = Vec::new();
    let ips: Vec<IpAddr> = vec!["140.82.112.5".parse().expect("ip")];
    for kind in [EngineKind::Fast, EngineKind::Rego] {
        let e = engine::build(&loaded, kind).expect("compiles");
        let name = format!("{kind:?}").to_lowercase();
        let mut g = c.benchmark_group("l4");
        g.bench_function(&name, |b| {
            b.iter(|| {
                e.network(black_box(&NetworkInput {
                    host: "api.github.com",
                    port: 443,
                    binary: "/usr/bin/curl",
                    ips: None,
                    pinned: false,
                }))
            })
        });
        g.bench_function(format!("{name}_with_ips"), |b| {
            b.iter(|| {
                e.network(black_box(&NetworkInput {
                    host: "api.github.com",
                    port: 443,
                    binary: "/usr/bin/curl",
                    ips: Some(&ips),
                    pinned: false,
                }))
            })
        });
        g.bench_function(format!("{name}_deny"), |b| {
            b.iter(|| {
                e.network(black_box(&NetworkInput {
                    host: "exfil.attacker.test",
                    port: 443,
                    binary: "/usr/bin/curl",
                    ips: None,
                    pinned: false,
                }))
            })
        });
        g.finish();
        let mut g = c.benchmark_group("l7");
        g.bench_function(&name, |b| {
            b.iter(|| {
                e.l7(black_box(&L7Input {
                    host: "api.github.com",
                    port: 443,
                    binary: "/usr/bin/curl",
                    method: "GET",
                    path: &path,
                    query: &query,
                }))
            })
        });
        g.bench_function(format!("{name}_deny"), |b| {
            b.iter(|| {
                e.l7(black_box(&L7Input {
                    host: "api.github.com",
                    port: 443,
                    binary: "/usr/bin/curl",
                    method: "POST",
                    path: &path,
                    query: &query,
                }))
            })
        });
        g.finish();
    }
    let mut g = c.benchmark_group("request");
    g.bench_function("normalize_path", |b| {
        b.iter(|| request::normalize_path(black_box("/repos/octocat/hello-world/issues/%7E1")))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(2)).warm_up_time(std::time::Duration::from_millis(500));
    targets = bench
}
criterion_main!(benches);
