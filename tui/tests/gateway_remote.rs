//! Remote access (issue 4): `gateway start --listen tcp://...` serves the CLI over TCP with
//! mutual TLS beside the Unix socket. With the gateway's CA and client certificate the CLI
//! works remotely; without a client certificate, with missing files, or with another
//! gateway's certificates it is refused with a clear error.

use openshell_e2e::cli::Env;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `openshell ARGS` against the gateway at `url` with the TLS files in `tls`, and no usable
/// local socket (so nothing can go around TCP).
fn remote(env: &Env, url: &str, tls: &Path, args: &[&str]) -> Output {
    let out = env
        .command(env!("CARGO_BIN_EXE_openshell"))
        .env("OPENSHELL_GATEWAY", url)
        .env("OPENSHELL_TLS_DIR", tls)
        .env(
            "OPENSHELL_GATEWAY_SOCKET",
            env.dir.path().join("not-here.sock"),
        )
        .args(args)
        .output()
        .expect("run openshell");
    eprintln!(
        "$ OPENSHELL_GATEWAY={url} OPENSHELL_TLS_DIR={} openshell {}  [{}]\n{}{}",
        tls.display(),
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn the_cli_works_over_mtls_and_strangers_are_refused() {
    let env = Env::new(env!("CARGO_BIN_EXE_openshell"), None, None);
    let port = free_port();
    let listen = format!("tcp://127.0.0.1:{port}");
    let url = format!("https://127.0.0.1:{port}");
    env.ok(&["gateway", "start", "--listen", &listen]);

    // Made on first use, keys readable by their owner only.
    let tls = env.state_dir().join("tls");
    for f in [
        "ca.pem",
        "server.pem",
        "server.key",
        "client.pem",
        "client.key",
    ] {
        assert!(tls.join(f).exists(), "{f} missing in {}", tls.display());
    }
    for key in ["server.key", "client.key", "ca.key"] {
        let mode = std::fs::metadata(tls.join(key))
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{key}");
    }

    // The Unix socket still works, and status shows both addresses.
    let local = env.json(&["gateway", "status", "--json"]);
    assert_eq!(local["listen_tcp"], listen.as_str(), "{local}");
    env.ok(&["sandbox", "create", "--name", "near", "--", "sleep", "60"]);

    // Over TCP with the certificates: the same gateway.
    let out = remote(&env, &url, &tls, &["gateway", "status", "--json"]);
    assert!(out.status.success());
    let status: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("json");
    assert_eq!(status["running"], true, "{status}");
    assert_eq!(status["pid"], local["pid"], "{status}");
    assert_eq!(status["listen_tcp"], listen.as_str(), "{status}");
    assert!(
        status["listen"]
            .as_str()
            .is_some_and(|l| l.starts_with("unix://")),
        "{status}"
    );
    let out = remote(&env, &url, &tls, &["sandbox", "list"]);
    assert!(out.status.success());
    assert!(stdout(&out).contains("near"), "{}", stdout(&out));
    // The host name in the certificate works too, and so does --gateway.
    let out = remote(
        &env,
        "https://nowhere.invalid:1",
        &tls,
        &[
            "--gateway",
            &format!("https://localhost:{port}"),
            "sandbox",
            "list",
            "--json",
        ],
    );
    assert!(out.status.success());
    assert!(stdout(&out).contains("\"near\""));

    // No client certificate: the TLS handshake is refused.
    let ca = std::fs::read_to_string(tls.join("ca.pem")).expect("ca");
    let refused = openshell_e2e::tls_probe::without_client_cert(
        &format!("127.0.0.1:{port}"),
        "127.0.0.1",
        &ca,
    );
    assert!(
        refused.is_err(),
        "a client without a certificate got an answer: {refused:?}"
    );
    eprintln!("without a client certificate: {refused:?}");

    // Missing files: which, and how to get them.
    let partial = env.dir.path().join("partial");
    std::fs::create_dir_all(&partial).expect("dir");
    std::fs::copy(tls.join("ca.pem"), partial.join("ca.pem")).expect("copy");
    let out = remote(&env, &url, &partial, &["sandbox", "list"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&partial.join("client.pem").display().to_string())
            && err.contains(&partial.join("client.key").display().to_string())
            && err.contains("copy"),
        "{err}"
    );

    // Another gateway's certificates: its CA does not vouch for this server, and this
    // server does not take its client certificate.
    let other = Env::new(env!("CARGO_BIN_EXE_openshell"), None, None);
    other.ok(&[
        "gateway",
        "start",
        "--listen",
        &format!("tcp://127.0.0.1:{}", free_port()),
    ]);
    let other_tls = other.state_dir().join("tls");
    let out = remote(&env, &url, &other_tls, &["sandbox", "list"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cannot reach the gateway"),
        "{}",
        stderr(&out)
    );
    let mixed = env.dir.path().join("mixed");
    std::fs::create_dir_all(&mixed).expect("dir");
    std::fs::copy(tls.join("ca.pem"), mixed.join("ca.pem")).expect("copy");
    for f in ["client.pem", "client.key"] {
        std::fs::copy(other_tls.join(f), mixed.join(f)).expect("copy");
    }
    let out = remote(&env, &url, &mixed, &["sandbox", "list"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("refused this client"),
        "{}",
        stderr(&out)
    );

    // Refusals leave the gateway serving.
    let out = remote(&env, &url, &tls, &["sandbox", "list"]);
    assert!(out.status.success());

    // A remote gateway is not started or stopped from here.
    let out = remote(&env, &url, &tls, &["gateway", "stop"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("its own host"), "{}", stderr(&out));
    assert_eq!(
        env.json(&["gateway", "status", "--json"])["pid"],
        local["pid"]
    );
}
