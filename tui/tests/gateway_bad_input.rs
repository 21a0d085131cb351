//! Bad input through the CLI and a real gateway (issue 4): malformed and dangerous policies,
//! static-section changes, unknown names, oversize policies and requests, a second gateway on
//! the same socket (or state), gateways racing to start after a crash, bad `sandbox create`
//! requests and a command that does not exist. Each gets a clear error, and the state is what
//! it was. Also: sandboxes created back to back all come up (the watcher once took a sandbox
//! still being started for a dead one).

use openshell_e2e::cli::{Env, alive, kill9, wait_for};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

fn env() -> Env {
    Env::new(env!("CARGO_BIN_EXE_openshell"), None, None)
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// What a refused request must leave alone: every sandbox with its phase and revisions, and
/// each one's policy history and current text.
fn state(env: &Env) -> Value {
    let list = env.json(&["sandbox", "list", "--json"]);
    let mut out = Vec::new();
    for s in list.as_array().expect("a list") {
        let name = s["name"].as_str().expect("name");
        out.push(json!({
            "name": name,
            "phase": s["phase"],
            "created": s["created"],
            "policy_revision": s["policy_revision"],
            "enforced_revision": s["enforced_revision"],
            "history": env.json(&["policy", "history", name, "--json"]),
            "policy": env.ok(&["policy", "get", name]),
        }));
    }
    Value::Array(out)
}

fn create(env: &Env, name: &str) {
    let s = env.json(&["sandbox", "create", "--name", name, "--json"]);
    assert_eq!(s["phase"], "ready", "{s}");
}

/// A bad policy: its file name, text, and where and what the error must say.
struct Bad {
    file: &'static str,
    text: &'static str,
    at: &'static str,
    says: &'static [&'static str],
}

const BAD: &[Bad] = &[
    Bad {
        file: "syntax.yaml",
        text: "version: 1
network_policies:
  api:
    name: api
    endpoints: [ { host: api.example.com, port: 443 }
    binaries:
      - { path: /usr/bin/curl }
",
        at: "6:5",
        says: &["invalid YAML"],
    },
    Bad {
        file: "unknown-field.yaml",
        text: "version: 1
network_policies:
  api:
    name: api
    endpoints:
      - host: api.example.com
        port: 443
        acess: read-only
    binaries:
      - { path: /usr/bin/curl }
",
        at: "8:9",
        says: &["network_policies.api.endpoints[0]", "unknown field `acess`"],
    },
    Bad {
        file: "bad-port.yaml",
        text: "version: 1
network_policies:
  api:
    name: api
    endpoints:
      - host: api.example.com
        port: 70000
    binaries:
      - { path: /usr/bin/curl }
",
        at: "7:15",
        says: &["endpoints[0].port", "70000", "1 to 65535"],
    },
    Bad {
        file: "access-and-rules.yaml",
        text: "version: 1
network_policies:
  api:
    name: api
    endpoints:
      - host: api.example.com
        port: 443
        protocol: rest
        access: read-only
        rules:
          - allow: { method: POST, path: /x }
    binaries:
      - { path: /usr/bin/curl }
",
        at: "11:11",
        says: &["endpoints[0].rules", "mutually exclusive"],
    },
    Bad {
        file: "loopback.yaml",
        text: "version: 1
network_policies:
  api:
    name: api
    endpoints:
      - host: api.example.com
        port: 443
        allowed_ips:
          - 10.0.0.0/8
          - 127.0.0.1/32
    binaries:
      - { path: /usr/bin/curl }
",
        at: "10:13",
        says: &["allowed_ips[1]", "127.0.0.1/32", "loopback"],
    },
];

#[test]
fn malformed_and_dangerous_policies_are_refused_where_they_are_wrong() {
    let env = env();
    create(&env, "target");
    let before = state(&env);
    for bad in BAD {
        let f = env.dir.path().join(bad.file);
        std::fs::write(&f, bad.text).expect("policy");
        let err = env.fails(&["policy", "set", "target", "--policy", path_str(&f)]);
        let at = format!("{}:{}: ", f.display(), bad.at);
        assert!(
            err.contains(&at),
            "{} should be located at {at}: {err}",
            bad.file
        );
        for s in bad.says {
            assert!(
                err.contains(s),
                "{}: the error should say {s:?}: {err}",
                bad.file
            );
        }
        let err = env.fails(&[
            "policy",
            "set",
            "target",
            "--policy",
            path_str(&f),
            "--wait",
        ]);
        assert!(err.contains(bad.at), "{err}");
        assert_eq!(state(&env), before, "{} changed the state", bad.file);

        // The same policy on a new sandbox: refused, located, and nothing is created.
        let err = env.fails(&[
            "sandbox",
            "create",
            "--name",
            "fresh",
            "--policy",
            path_str(&f),
        ]);
        assert!(err.contains(&format!(":{}: ", bad.at)), "{err}");
        assert_eq!(state(&env), before, "create with {} left state", bad.file);
    }
    assert!(env.supervisor_pid("fresh").is_none());
}

#[test]
fn static_sections_cannot_change_on_a_running_sandbox() {
    let env = env();
    create(&env, "target");
    let before = state(&env);
    let current = env.ok(&["policy", "get", "target"]);
    assert!(current.contains("    - /opt\n"), "{current}");
    assert!(current.contains("run_as_user: sandbox"), "{current}");
    let changed = current
        .replace("    - /opt\n", "    - /opt\n    - /data\n")
        .replace("run_as_user: sandbox", "run_as_user: nobody");
    let f = env.dir.path().join("static.yaml");
    std::fs::write(&f, changed).expect("policy");
    let err = env.fails(&[
        "policy",
        "set",
        "target",
        "--policy",
        path_str(&f),
        "--wait",
    ]);
    assert!(err.contains("static sections cannot change"), "{err}");
    assert!(err.contains("filesystem_policy.read_only"), "{err}");
    assert!(err.contains("process.run_as_user"), "{err}");
    assert!(
        !err.contains("filesystem_policy.read_write") && !err.contains("landlock"),
        "only the changed fields are named: {err}"
    );
    assert_eq!(state(&env), before);
}

#[test]
fn oversize_policies_and_requests_are_refused_clearly() {
    let env = env();
    create(&env, "target");
    let before = state(&env);
    let pid = env.gateway_pid().expect("gateway");
    let current = env.ok(&["policy", "get", "target"]);
    // Valid policies but for their size: the text plus a long comment.
    let big = env.dir.path().join("big.yaml");
    std::fs::write(&big, format!("{current}# {}\n", "x".repeat(1 << 20))).expect("big");
    let huge = env.dir.path().join("huge.yaml");
    std::fs::write(&huge, format!("{current}# {}\n", "x".repeat(9 << 20))).expect("huge");

    // Over the policy limit (1 MiB): located, and says the limit.
    let err = env.fails(&["policy", "set", "target", "--policy", path_str(&big)]);
    assert!(err.contains(&format!("{}:1:1: ", big.display())), "{err}");
    assert!(err.contains("the limit is 1048576"), "{err}");
    let err = env.fails(&[
        "sandbox",
        "create",
        "--name",
        "fresh",
        "--policy",
        path_str(&big),
    ]);
    assert!(err.contains("the limit is 1048576"), "{err}");

    // Far over it: the CLI refuses the file without reading it, before anything is sent
    // (the gateway's own 8 MiB request limit stays for other clients).
    let err = env.fails(&["policy", "set", "target", "--policy", path_str(&huge)]);
    assert!(err.contains(&format!("{}:1:1: ", huge.display())), "{err}");
    assert!(err.contains("at most 1 MiB"), "{err}");
    let err = env.fails(&[
        "sandbox",
        "create",
        "--name",
        "fresh",
        "--policy",
        path_str(&huge),
    ]);
    assert!(err.contains("at most 1 MiB"), "{err}");

    // The same gateway still serves, and nothing changed.
    assert_eq!(env.gateway_pid(), Some(pid));
    assert_eq!(state(&env), before);
}

#[test]
fn unknown_sandbox_names_list_the_known_ones() {
    let env = env();
    create(&env, "alpha");
    create(&env, "beta");
    let before = state(&env);
    let f = env.dir.path().join("p.yaml");
    std::fs::write(&f, env.ok(&["policy", "get", "alpha"])).expect("policy");
    let commands: &[&[&str]] = &[
        &["sandbox", "get", "gamma"],
        &["sandbox", "get", "gamma", "--json"],
        &["sandbox", "delete", "gamma"],
        &["policy", "set", "gamma", "--policy", path_str(&f)],
        &["policy", "set", "gamma", "--policy", path_str(&f), "--wait"],
        &["policy", "get", "gamma"],
        &["policy", "history", "gamma"],
        &["policy", "denials", "gamma"],
        &["policy", "denials", "gamma", "--json"],
        &["policy", "rollback", "gamma", "1"],
        &["policy", "approve", "gamma", "1"],
        &["policy", "reject", "gamma", "1"],
        &["policy", "diff", "gamma", "1", "2"],
        &["logs", "gamma"],
    ];
    for args in commands {
        let err = env.fails(args);
        assert!(
            err.contains("no sandbox named \"gamma\"") && err.contains("alpha, beta"),
            "openshell {}: {err}",
            args.join(" ")
        );
    }
    // Unknown revisions and denials of a known sandbox: what exists instead.
    let known: &[(&[&str], &str)] = &[
        (
            &["policy", "get", "alpha", "--rev", "99"],
            "sandbox \"alpha\" has no policy revision 99 (its revisions are 1 to 1)",
        ),
        (
            &["policy", "rollback", "alpha", "99"],
            "has no policy revision 99",
        ),
        (
            &["policy", "diff", "alpha", "1", "99"],
            "has no policy revision 99",
        ),
        (
            &["policy", "approve", "alpha", "99"],
            "sandbox \"alpha\" has no denial with id 99",
        ),
        (
            &["policy", "reject", "alpha", "99"],
            "has no denial with id 99",
        ),
        (
            &["policy", "approve", "alpha", "abc"],
            "`abc` is not a denial id",
        ),
        (
            &["logs", "alpha", "--since", "garbage"],
            "`garbage` is not a time",
        ),
    ];
    for (args, says) in known {
        let err = env.fails(args);
        assert!(err.contains(says), "openshell {}: {err}", args.join(" "));
    }
    assert_eq!(state(&env), before);
}

fn gateway_bin() -> PathBuf {
    openshell_e2e::binary("openshell-gateway")
}

/// A gateway this test started: killed (if it still runs) and reaped when dropped, so a
/// failing test leaves none behind.
struct Gateway(Child);

impl Drop for Gateway {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// `openshell-gateway ARGS` in `env`, its output to `log`.
fn spawn_gateway(env: &Env, args: &[&str], log: &Path) -> Gateway {
    let out = std::fs::File::create(log).expect("log");
    Gateway(
        env.command(gateway_bin())
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .expect("start openshell-gateway"),
    )
}

/// Waits for `g` to exit (at most `secs`), and returns its status.
fn exited(g: &mut Gateway, secs: u64) -> std::process::ExitStatus {
    wait_for(Duration::from_secs(secs), "a gateway to exit", || {
        g.0.try_wait().expect("try_wait")
    })
}

#[test]
fn a_second_gateway_is_refused_and_the_first_keeps_serving() {
    let env = env();
    env.ok(&["gateway", "start"]);
    create(&env, "target");
    let pid = env.gateway_pid().expect("gateway");
    let before = state(&env);

    // The same socket, named explicitly.
    let listen = format!("unix://{}", env.socket().display());
    let log = env.dir.path().join("second.log");
    let mut second = spawn_gateway(&env, &["--listen", &listen], &log);
    let status = exited(&mut second, 15);
    let said = std::fs::read_to_string(&log).expect("log");
    assert!(!status.success(), "{said}");
    assert!(
        said.contains(&format!(
            "a gateway is already running on {}",
            env.socket().display()
        )),
        "{said}"
    );

    // The same state, another socket: two gateways must not share one database.
    let other = env.dir.path().join("other.sock");
    let log = env.dir.path().join("third.log");
    let mut third = spawn_gateway(
        &env,
        &["--listen", &format!("unix://{}", other.display())],
        &log,
    );
    let status = exited(&mut third, 15);
    let said = std::fs::read_to_string(&log).expect("log");
    assert!(!status.success(), "{said}");
    assert!(said.contains("already uses the state"), "{said}");

    // The first one still serves, and its state is intact and usable.
    assert_eq!(env.gateway_pid(), Some(pid));
    assert_eq!(env.gateway_processes(), vec![pid]);
    assert_eq!(state(&env), before);
    create(&env, "after");
}

#[test]
fn gateways_started_at_once_after_a_crash_leave_exactly_one() {
    let env = env();
    create(&env, "target");
    let mut pid = env.gateway_pid().expect("gateway");
    for round in 0..5 {
        kill9(pid);
        wait_for(Duration::from_secs(5), "the killed gateway to die", || {
            (!alive(pid)).then_some(())
        });
        // The socket file is left behind (stale); six gateways race for it.
        assert!(env.socket().exists());
        let mut started: Vec<(Gateway, PathBuf)> = (0..6)
            .map(|i| {
                let log = env.dir.path().join(format!("race-{round}-{i}.log"));
                (spawn_gateway(&env, &[], &log), log)
            })
            .collect();
        let survivor = wait_for(
            Duration::from_secs(20),
            "all but one racing gateway to exit",
            || {
                let running: Vec<u32> = started
                    .iter_mut()
                    .filter_map(|(g, _)| {
                        g.0.try_wait()
                            .expect("try_wait")
                            .is_none()
                            .then(|| g.0.id())
                    })
                    .collect();
                (running.len() <= 1).then_some(running)
            },
        );
        assert_eq!(survivor.len(), 1, "round {round}: no gateway survived");
        pid = survivor[0];
        for (g, log) in &mut started {
            if g.0.id() == pid {
                continue;
            }
            let status = g.0.wait().expect("wait");
            let said = std::fs::read_to_string(&*log).expect("log");
            assert!(!status.success(), "{said}");
            assert!(
                said.contains("a gateway is already running"),
                "round {round}: a racing gateway should say why it stopped: {said}"
            );
        }
        assert_eq!(env.gateway_pid(), Some(pid), "round {round}");
        assert_eq!(env.gateway_processes(), vec![pid], "round {round}");
        let s = env.json(&["sandbox", "get", "target", "--json"]);
        assert_eq!(s["phase"], "ready", "{s}");
        // Dropping `started` kills the survivor: the next round starts from a crash again.
    }
}

#[test]
fn bad_create_requests_leave_nothing_behind() {
    let env = env();
    create(&env, "keep");
    let before = state(&env);
    let missing = env.dir.path().join("no-such-dir");
    let long = "a".repeat(64);
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["sandbox", "create", "--name", "Bad_Name"],
            &["`Bad_Name` is not a valid sandbox name", "lower-case"],
        ),
        (
            &["sandbox", "create", "--name", "../escape"],
            &["not a valid sandbox name"],
        ),
        (
            &["sandbox", "create", "--name", &long],
            &["not a valid sandbox name", "up to 63"],
        ),
        (
            &[
                "sandbox",
                "create",
                "--name",
                "nowork",
                "--workdir",
                path_str(&missing),
            ],
            &["the workdir", "no-such-dir", "does not exist"],
        ),
        (
            &[
                "sandbox",
                "create",
                "--name",
                "preset",
                "--preset",
                "nosuchpreset",
            ],
            &["no preset `nosuchpreset`", "github"],
        ),
        (
            &["sandbox", "create", "--name", "drv", "--driver", "nosuch"],
            &["driver `nosuch` is not available", "--driver process"],
        ),
        (
            &["sandbox", "create", "--name", "keep"],
            &["a sandbox named \"keep\" already exists"],
        ),
    ];
    for (args, says) in cases {
        let err = env.fails(args);
        for s in *says {
            assert!(
                err.contains(s),
                "openshell {}: should say {s:?}: {err}",
                args.join(" ")
            );
        }
        assert_eq!(state(&env), before, "openshell {}", args.join(" "));
    }
    // No workdir was made for a refused sandbox, nothing escaped the state dir, and no
    // supervisor runs for one.
    let workdirs: Vec<String> = std::fs::read_dir(env.state_dir().join("workdirs"))
        .expect("workdirs")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(workdirs, vec!["keep".to_string()]);
    assert!(!env.state_dir().join("escape").exists());
    assert!(!env.dir.path().join("escape").exists());
    for name in ["nowork", "preset", "drv"] {
        assert!(env.supervisor_pid(name).is_none(), "{name}");
    }
    let s = env.json(&["sandbox", "get", "keep", "--json"]);
    assert_eq!(s["phase"], "ready", "{s}");
}

#[test]
fn a_command_that_does_not_exist_fails_naming_it() {
    let env = env();
    for (name, command, says) in [
        ("ghost", "/no/such/cmd-xyz", "/no/such/cmd-xyz"),
        (
            "ghost-on-path",
            "no-such-cmd-xyz",
            "no-such-cmd-xyz: command not found",
        ),
    ] {
        let out = env.cli(&["sandbox", "create", "--name", name, "--json", "--", command]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let s = wait_for(Duration::from_secs(15), "the sandbox to end", || {
            let s = env.json(&["sandbox", "get", name, "--json"]);
            matches!(s["phase"].as_str(), Some("failed" | "stopped")).then_some(s)
        });
        let reason = s["reason"].as_str().expect("reason");
        assert!(reason.contains(says), "{name}: {s} ({stderr})");
        // Its supervisor is gone, and the logs say why.
        wait_for(Duration::from_secs(5), "the supervisor to exit", || {
            env.supervisor_pid(name).is_none().then_some(())
        });
        let events = env.events(name);
        assert!(
            events.iter().any(|e| e["kind"] == "lifecycle"
                && e["message"].as_str().is_some_and(|m| m.contains(command))),
            "{name}: {events:?}"
        );
    }
}

/// Sandboxes created back to back: the gateway's watcher must never take one whose
/// supervisor is still being started for one whose supervisor is gone (it used to mark such a
/// sandbox `stopped`, and delete it outright when created with `--no-keep`).
#[test]
fn sandboxes_created_back_to_back_are_never_taken_for_dead() {
    let env = env();
    let names: Vec<String> = (0..30).map(|i| format!("quick-{i:02}")).collect();
    for name in &names {
        let s = env.json(&["sandbox", "create", "--name", name, "--no-keep", "--json"]);
        assert_eq!(s["phase"], "ready", "{s}");
    }
    std::thread::sleep(Duration::from_millis(600));
    let list = env.json(&["sandbox", "list", "--json"]);
    let listed: Vec<(&str, &str)> = list
        .as_array()
        .expect("a list")
        .iter()
        .map(|s| {
            (
                s["name"].as_str().expect("name"),
                s["phase"].as_str().expect("phase"),
            )
        })
        .collect();
    let expected: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "ready")).collect();
    assert_eq!(listed, expected);

    // Deleting them all: every one goes, supervisor included (the watcher removing a
    // `--no-keep` sandbox whose supervisor `delete` had just stopped made `delete --all` fail
    // half-way, leaving the rest running with no gateway record).
    let out = env.ok(&["sandbox", "delete", "--all"]);
    for name in &names {
        assert!(out.contains(&format!("deleted {name}\n")), "{out}");
    }
    assert_eq!(env.json(&["sandbox", "list", "--json"]), json!([]));
    for name in &names {
        wait_for(Duration::from_secs(5), "the supervisors to exit", || {
            env.supervisor_pid(name).is_none().then_some(())
        });
    }
}
