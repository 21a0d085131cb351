//! Reaching a gateway on another machine: `OPENSHELL_GATEWAY=https://HOST:PORT` (or
//! `--gateway`), over mutual TLS with the gateway's CA and a client certificate it made, from
//! `OPENSHELL_TLS_DIR` (default: the local state dir's `tls/`, which is where a gateway on
//! this machine keeps them).

use super::client::Client;
use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// Set by `--gateway`; wins over `OPENSHELL_GATEWAY`.
static OVERRIDE: OnceLock<String> = OnceLock::new();

/// Uses `url` instead of `OPENSHELL_GATEWAY` (the `--gateway` flag).
pub fn set_gateway(url: String) {
    let _ = OVERRIDE.set(url);
}

/// Where the gateway is.
#[derive(Debug, Clone)]
pub enum Target {
    /// The local gateway's Unix socket.
    Local(PathBuf),
    Remote(Remote),
}

/// A gateway over TCP with mutual TLS.
#[derive(Debug, Clone)]
pub struct Remote {
    pub url: String,
    pub host: String,
    pub tls_dir: PathBuf,
}

impl Target {
    /// The gateway this command talks to.
    pub fn current() -> Result<Target> {
        target()
    }
}

/// The gateway this command talks to.
pub fn target() -> Result<Target> {
    let chosen = OVERRIDE
        .get()
        .cloned()
        .or_else(|| std::env::var("OPENSHELL_GATEWAY").ok())
        .filter(|v| !v.trim().is_empty());
    let Some(url) = chosen else {
        return Ok(Target::Local(openshell_proto::paths::socket_path()));
    };
    if let Some(path) = url.strip_prefix("unix://") {
        return Ok(Target::Local(PathBuf::from(path)));
    }
    let Some(rest) = url.strip_prefix("https://") else {
        bail!("the gateway `{url}` is neither https://HOST:PORT nor unix://PATH");
    };
    let authority = rest.trim_end_matches('/');
    let host = match authority.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok() => {
            h.trim_start_matches('[').trim_end_matches(']').to_string()
        }
        _ => bail!("the gateway `{url}` needs a host and a port: https://HOST:PORT"),
    };
    let tls_dir = std::env::var_os("OPENSHELL_TLS_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| openshell_proto::paths::state_dir().join("tls"));
    Ok(Target::Remote(Remote {
        url: format!("https://{authority}"),
        host,
        tls_dir,
    }))
}

impl Remote {
    /// Connects and checks the gateway accepts this client (with TLS 1.3 a refused client
    /// certificate only shows on the first request).
    pub async fn connect(&self) -> Result<Client> {
        let files = ["ca.pem", "client.pem", "client.key"].map(|f| self.tls_dir.join(f));
        let missing: Vec<String> = files
            .iter()
            .filter(|p| !p.exists())
            .map(|p| p.display().to_string())
            .collect();
        if !missing.is_empty() {
            bail!(
                "cannot reach the gateway at {}: missing {}. A remote gateway needs its CA and a client certificate: \
                 copy ca.pem, client.pem and client.key from the gateway host's state dir (STATE/tls/, made by \
                 `openshell-gateway --listen tcp://...`) into {} (or point OPENSHELL_TLS_DIR at them)",
                self.url,
                missing.join(", "),
                self.tls_dir.display()
            );
        }
        let read = |p: &PathBuf| {
            std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))
        };
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read(&files[0])?))
            .identity(Identity::from_pem(read(&files[1])?, read(&files[2])?))
            .domain_name(self.host.clone());
        let channel = Endpoint::from_shared(self.url.clone())
            .with_context(|| format!("`{}` is not a gateway address", self.url))?
            .tls_config(tls)
            .with_context(|| format!("cannot use the TLS files in {}", self.tls_dir.display()))?
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .map_err(|e| {
                let why = error_chain(&e);
                let hint = if why.contains("invalid peer certificate") {
                    format!(
                        " (its certificate is not from the CA in {}: copy ca.pem from the gateway host's state dir tls/)",
                        self.tls_dir.join("ca.pem").display()
                    )
                } else {
                    String::new()
                };
                anyhow::anyhow!("cannot reach the gateway at {}: {why}{hint}", self.url)
            })?;
        let mut client = openshell_proto::pb::gateway_client::GatewayClient::new(channel)
            .max_decoding_message_size(64 * 1024 * 1024);
        client
            .health(openshell_proto::pb::Empty {})
            .await
            .map_err(|s| {
                anyhow::anyhow!(
                    "the gateway at {} refused this client ({}): its certificate in {} must come from that gateway's CA \
                     (copy client.pem and client.key from its state dir's tls/)",
                    self.url,
                    status_chain(&s),
                    self.tls_dir.display()
                )
            })?;
        Ok(client)
    }
}

/// An error and its causes on one line (TLS failures hide in the causes).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = c.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = c.source();
    }
    parts.join(": ")
}

fn status_chain(s: &tonic::Status) -> String {
    use std::error::Error;
    match s.source() {
        // The message often repeats the first cause.
        Some(src) => {
            let chain = error_chain(src);
            if chain.starts_with(s.message()) {
                chain
            } else {
                format!("{}: {chain}", s.message())
            }
        }
        None => s.message().to_string(),
    }
}
