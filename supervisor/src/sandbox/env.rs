//! The command's environment: built from scratch, never inherited from the supervisor.

/// Where the proxy listens inside the sandbox's network namespace.
pub const PROXY_ADDR: &str = "127.0.0.1:3128";
/// The CA bundle inside the sandbox: the host's roots plus the sandbox CA.
pub const CA_BUNDLE: &str = "/run/openshell/ca-bundle.pem";
/// The sandbox CA alone.
pub const CA_CERT: &str = "/run/openshell/ca.pem";

const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What varies per sandbox.
pub struct EnvInputs<'a> {
    pub name: &'a str,
    pub user: &'a str,
    pub home: &'a str,
    /// `TERM` and `LANG` as the user's terminal has them (only these two are taken).
    pub term: Option<String>,
    pub lang: Option<String>,
    /// `--env K=V` values, applied last so they win.
    pub extra: &'a [(String, String)],
}

/// The full environment, in a stable order.
pub fn build(i: &EnvInputs<'_>) -> Vec<(String, String)> {
    let proxy = format!("http://{PROXY_ADDR}");
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |k: &str, v: &str| {
        env.retain(|(key, _)| key != k);
        env.push((k.to_string(), v.to_string()));
    };
    set("PATH", PATH);
    set("HOME", i.home);
    set("USER", i.user);
    set("LOGNAME", i.user);
    set("SHELL", "/bin/bash");
    set("TERM", i.term.as_deref().unwrap_or("xterm-256color"));
    set("LANG", i.lang.as_deref().unwrap_or("C.UTF-8"));
    set("OPENSHELL_SANDBOX", i.name);
    for k in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "http_proxy",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
        "grpc_proxy",
    ] {
        set(k, &proxy);
    }
    set("NO_PROXY", "localhost,127.0.0.1");
    set("no_proxy", "localhost,127.0.0.1");
    set("NODE_USE_ENV_PROXY", "1");
    for k in [
        "SSL_CERT_FILE",
        "CURL_CA_BUNDLE",
        "REQUESTS_CA_BUNDLE",
        "GIT_SSL_CAINFO",
        "DENO_CERT",
    ] {
        set(k, CA_BUNDLE);
    }
    // Node adds these to its own roots, so the CA alone is enough.
    set("NODE_EXTRA_CA_CERTS", CA_CERT);
    for (k, v) in i.extra {
        set(k, v);
    }
    env
}

/// Parses `K=V`; the error says what was expected.
pub fn parse_pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() && !k.contains('\0') && !v.contains('\0') => {
            Ok((k.to_string(), v.to_string()))
        }
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_values_win_and_nothing_else_leaks() {
        let extra = vec![
            ("HOME".to_string(), "/x".to_string()),
            ("FOO".into(), "1".into()),
        ];
        let env = build(&EnvInputs {
            name: "s",
            user: "sandbox",
            home: "/sandbox",
            term: None,
            lang: None,
            extra: &extra,
        });
        let get = |k: &str| {
            env.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("HOME"), Some("/x"));
        assert_eq!(get("FOO"), Some("1"));
        assert_eq!(get("HTTPS_PROXY"), Some("http://127.0.0.1:3128"));
        assert_eq!(env.iter().filter(|(k, _)| k == "HOME").count(), 1);
        // SAFETY of the claim "never inherited": a variable of this process is absent.
        assert!(get("CARGO").is_none() && get("CARGO_PKG_NAME").is_none());
    }
}
