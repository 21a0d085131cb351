//! Every kind of malformed policy fails with the right line, column, field and advice.

use openshell_proto::policy::load;

/// A valid endpoint preamble: the entry starts at line 3, its first endpoint at line 5.
fn entry(endpoint_fields: &str, extra: &str) -> String {
    format!(
        "version: 1\nnetwork_policies:\n  gh:\n    endpoints:\n      - host: api.github.com\n{endpoint_fields}    binaries:\n      - {{ path: /usr/bin/curl }}\n{extra}"
    )
}

#[track_caller]
fn fails(text: &str, line: usize, column: usize, field: &str, says: &str) {
    let errors = match load(text, "bad.yaml") {
        Ok(_) => panic!("policy should be refused:\n{text}"),
        Err(e) => e.0,
    };
    let hit = errors.iter().find(|e| e.field == field);
    let Some(e) = hit else {
        panic!(
            "no error on field `{field}`; got:\n{}",
            errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        );
    };
    assert_eq!((e.line, e.column), (line, column), "position of `{e}`");
    assert_eq!(e.file, "bad.yaml");
    assert!(e.message.contains(says), "`{e}` should say `{says}`");
    assert!(
        e.to_string()
            .starts_with(&format!("bad.yaml:{line}:{column}: {field}")),
        "{e}"
    );
}

#[test]
fn unknown_fields() {
    fails(
        &entry("        port: 443\n        hots: x\n", ""),
        7,
        9,
        "network_policies.gh.endpoints[0]",
        "unknown field `hots`, expected one of `host`",
    );
    fails(
        "version: 1\nfilesystem_policy:\n  read_olny: [/usr]\n",
        3,
        3,
        "filesystem_policy",
        "unknown field `read_olny`",
    );
    fails("versoin: 1\n", 1, 1, "", "unknown field `versoin`");
    fails(
        &entry("        port: 443\n", "    harness: true\n"),
        9,
        5,
        "network_policies.gh",
        "unknown field `harness`",
    );
    fails(
        &entry(
            "        port: 443\n        protocol: rest\n        rules:\n          - allow: { method: GET, path: /x, qurey: {} }\n",
            "",
        ),
        9,
        45,
        "network_policies.gh.endpoints[0].rules[0].allow",
        "unknown field `qurey`",
    );
}

#[test]
fn wrong_types() {
    fails(
        &entry("        port: \"443\"\n", ""),
        6,
        15,
        "network_policies.gh.endpoints[0].port",
        "wrong type: string \"443\", expected an integer",
    );
    fails(
        "version: 1\nfilesystem_policy:\n  read_only: /usr\n",
        3,
        14,
        "filesystem_policy.read_only",
        "expected a sequence",
    );
    fails(
        &entry("        port: 443\n        protocol: grpc\n", ""),
        7,
        19,
        "network_policies.gh.endpoints[0].protocol",
        "unknown variant `grpc`, expected `rest`",
    );
    fails(
        &entry("        port: 443\n        access: readonly\n", ""),
        7,
        17,
        "network_policies.gh.endpoints[0].access",
        "expected one of `read-only`, `read-write`, `full`",
    );
    fails(
        "version: 1\nlandlock:\n  compatibility: strict\n",
        3,
        18,
        "landlock.compatibility",
        "expected `best_effort` or `hard_requirement`",
    );
    fails(
        "- a\n- b\n",
        1,
        1,
        "",
        "expected a mapping starting with `version: 1`",
    );
}

#[test]
fn access_with_rules() {
    fails(
        &entry(
            "        port: 443\n        protocol: rest\n        access: read-only\n        rules:\n          - allow: { method: POST, path: /x }\n",
            "",
        ),
        10,
        11,
        "network_policies.gh.endpoints[0].rules",
        "mutually exclusive",
    );
}

#[test]
fn filesystem_paths() {
    fails(
        "version: 1\nfilesystem_policy:\n  read_only:\n    - usr/lib\n",
        4,
        7,
        "filesystem_policy.read_only[0]",
        "must be absolute, e.g. `/usr/lib`",
    );
    fails(
        "version: 1\nfilesystem_policy:\n  read_write:\n    - /sandbox/../etc\n",
        4,
        7,
        "filesystem_policy.read_write[0]",
        "contains `..`",
    );
    fails(
        "version: 1\nfilesystem_policy:\n  read_write: [/tmp, /]\n",
        3,
        22,
        "filesystem_policy.read_write[1]",
        "`/` read-write would let the agent change the whole system",
    );
    fails(
        "version: 1\nfilesystem_policy:\n  read_only: [/usr/*]\n",
        3,
        15,
        "filesystem_policy.read_only[0]",
        "wildcard",
    );
}

#[test]
fn bad_globs() {
    fails(
        &entry("        port: 443\n", "").replace("api.github.com", "a**b.github.com"),
        5,
        15,
        "network_policies.gh.endpoints[0].host",
        "`**` must be a whole label",
    );
    fails(
        &entry("        port: 443\n", "").replace("api.github.com", "https://api.github.com"),
        5,
        15,
        "network_policies.gh.endpoints[0].host",
        "without scheme, port or path",
    );
    fails(
        &entry("        port: 443\n", "").replace("api.github.com", "api..github.com"),
        5,
        15,
        "network_policies.gh.endpoints[0].host",
        "empty label",
    );
    fails(
        &entry(
            "        port: 443\n        protocol: rest\n        rules:\n          - allow: { method: GET, path: \"/a/***\" }\n",
            "",
        ),
        9,
        41,
        "network_policies.gh.endpoints[0].rules[0].allow.path",
        "use `*` (one segment) or `**` (any depth)",
    );
    fails(
        &entry(
            "        port: 443\n        protocol: rest\n        rules:\n          - allow: { method: GET, path: \"/search?q=1\" }\n",
            "",
        ),
        9,
        41,
        "network_policies.gh.endpoints[0].rules[0].allow.path",
        "matched separately with `query:`",
    );
    fails(
        &entry(
            "        port: 443\n        protocol: rest\n        rules:\n          - allow: { method: GET, path: \"/a/[0-9]\" }\n",
            "",
        ),
        9,
        41,
        "network_policies.gh.endpoints[0].rules[0].allow.path",
        "character classes",
    );
    fails(
        &entry("        port: 443\n", "").replace("/usr/bin/curl", "curl"),
        8,
        17,
        "network_policies.gh.binaries[0].path",
        "must be absolute",
    );
    fails(
        &entry(
            "        port: 443\n        protocol: rest\n        rules:\n          - allow: { method: \"GET /x\", path: /x }\n",
            "",
        ),
        9,
        30,
        "network_policies.gh.endpoints[0].rules[0].allow.method",
        "is not an HTTP method",
    );
}

#[test]
fn bad_cidrs_and_forbidden_ranges() {
    let ips = |list: &str| {
        entry(
            &format!("        port: 443\n        allowed_ips: [{list}]\n"),
            "",
        )
    };
    fails(
        &ips("10.0.0.0/33"),
        7,
        23,
        "network_policies.gh.endpoints[0].allowed_ips[0]",
        "not an IP address or CIDR",
    );
    fails(
        &ips("10.0.0.0/8, banana"),
        7,
        35,
        "network_policies.gh.endpoints[0].allowed_ips[1]",
        "not an IP address or CIDR",
    );
    fails(
        &ips("127.0.0.1"),
        7,
        23,
        "network_policies.gh.endpoints[0].allowed_ips[0]",
        "covers loopback addresses",
    );
    fails(
        &ips("169.254.169.254/32"),
        7,
        23,
        "network_policies.gh.endpoints[0].allowed_ips[0]",
        "covers link-local addresses",
    );
    fails(
        &ips("\"::1\""),
        7,
        23,
        "network_policies.gh.endpoints[0].allowed_ips[0]",
        "covers loopback",
    );
    fails(
        &ips("\"fe80::/64\""),
        7,
        23,
        "network_policies.gh.endpoints[0].allowed_ips[0]",
        "covers link-local",
    );
    fails(
        &ips("0.0.0.0/0"),
        7,
        23,
        "network_policies.gh.endpoints[0].allowed_ips[0]",
        "covers loopback",
    );
}

#[test]
fn ports_out_of_range() {
    fails(
        &entry("        port: 70000\n", ""),
        6,
        15,
        "network_policies.gh.endpoints[0].port",
        "port 70000 is out of range; use 1 to 65535",
    );
    fails(
        &entry("        port: 0\n", ""),
        6,
        15,
        "network_policies.gh.endpoints[0].port",
        "out of range",
    );
    fails(
        &entry("        port: -1\n", ""),
        6,
        15,
        "network_policies.gh.endpoints[0].port",
        "out of range",
    );
    fails(
        &entry("        ports: [443, 99999]\n", ""),
        6,
        22,
        "network_policies.gh.endpoints[0].ports[1]",
        "out of range",
    );
    fails(
        &entry("", ""),
        5,
        9,
        "network_policies.gh.endpoints[0].port",
        "missing `port`",
    );
}

#[test]
fn dangerous_or_meaningless_combinations() {
    fails(
        &entry("        port: 443\n        access: read-only\n", ""),
        5,
        9,
        "network_policies.gh.endpoints[0].protocol",
        "need `protocol: rest`",
    );
    fails(
        &entry("        port: 443\n        protocol: rest\n", ""),
        7,
        19,
        "network_policies.gh.endpoints[0].protocol",
        "needs `access`",
    );
    fails(
        &entry(
            "        port: 443\n        protocol: rest\n        tls: skip\n        access: read-only\n",
            "",
        ),
        8,
        14,
        "network_policies.gh.endpoints[0].tls",
        "uninspected",
    );
    fails(
        &entry(
            "        port: 443\n        protocol: rest\n        rules: []\n",
            "",
        ),
        8,
        16,
        "network_policies.gh.endpoints[0].rules",
        "`rules: []` allows nothing",
    );
    fails(
        &entry(
            "        port: 443\n        protocol: rest\n        deny_rules: [{ method: POST, path: /x }]\n",
            "",
        ),
        8,
        21,
        "network_policies.gh.endpoints[0].deny_rules",
        "add `access` or `rules`",
    );
    fails(
        "version: 1\nprocess:\n  run_as_user: root\n",
        3,
        16,
        "process.run_as_user",
        "must not run as root",
    );
    fails(
        "version: 1\nprocess:\n  run_as_group: 0\n",
        3,
        17,
        "process.run_as_group",
        "must not run as root",
    );
    fails(
        "version: 2\n",
        1,
        10,
        "version",
        "this OpenShell reads `version: 1`",
    );
}

#[test]
fn yaml_level_problems() {
    fails("version: 1\n  bad: indent\n", 2, 6, "", "invalid YAML");
    fails(
        &entry("        port: 443\n        port: 80\n", ""),
        7,
        9,
        "network_policies.gh.endpoints[0].port",
        "duplicate key `port` (first at line 6)",
    );
    fails("", 1, 1, "", "the policy is empty");
    fails("# only a comment\n", 1, 1, "", "the policy is empty");
    fails(
        "version: 1\n---\nversion: 1\n",
        2,
        1,
        "",
        "one YAML document",
    );
}

#[test]
fn several_errors_are_all_reported_in_order() {
    let text = entry(
        "        port: 70000\n        allowed_ips: [127.0.0.1]\n",
        "",
    )
    .replace("/usr/bin/curl", "curl");
    let errors = load(&text, "bad.yaml").expect_err("invalid").0;
    let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, vec![6, 7, 9], "{errors:?}");
}
