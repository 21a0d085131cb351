//! Inside an allowed connection: plain tunnels, and inspected tunnels where TLS is terminated
//! with the sandbox CA and every request (keep-alive included) is decided on its own (by the
//! relay; absolute-form requests, which come through the HTTP server, are forwarded here).
//! Both close themselves when a new policy revision no longer allows their destination.

use super::http::{ProxyBody, full};
use super::prefixed::Prefixed;
use super::{Caller, Shared, Target, upstream};
use crate::engine::{Action, Decision, L7Input, request};
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, Uri, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use std::net::IpAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;

/// One allowed connection and who made it.
pub struct Conn {
    pub shared: Arc<Shared>,
    pub caller: Caller,
    pub target: Target,
    pub ips: Vec<IpAddr>,
    pub pinned: bool,
}

impl Conn {
    /// The `Host` field for requests to the destination: the port only when not the default.
    pub fn host_field(&self) -> String {
        if matches!(self.target.port, 80 | 443) {
            self.target.host.clone()
        } else {
            format!("{}:{}", self.target.host, self.target.port)
        }
    }

    /// Re-decides the connection under the current revision; false (and an event) when the
    /// destination is no longer allowed.
    fn still_allowed(&self) -> bool {
        let d = self
            .shared
            .decide(&self.target, &self.caller, Some((&self.ips, self.pinned)));
        if d.is_denied() {
            let mut e = self.shared.network_event(&d, &self.target, &self.caller);
            e.message =
                "open connection closed: the new policy revision no longer allows it".into();
            self.shared.events.emit(e);
            return false;
        }
        true
    }

    /// Resolves when a policy revision no longer allows this connection.
    async fn revoked(&self) {
        let mut rx = self.shared.revision.clone();
        loop {
            if rx.changed().await.is_err() {
                // The supervisor is shutting down: nothing will change any more.
                std::future::pending::<()>().await;
            }
            if !self.still_allowed() {
                return;
            }
        }
    }
}

/// A tunnel the proxy does not look into: spliced in the kernel when the client's socket can
/// be had back from the HTTP layer, else copied.
pub async fn passthrough(client: hyper::upgrade::Upgraded, up: TcpStream, conn: Conn) {
    match client.downcast::<TokioIo<TcpStream>>() {
        Ok(parts) => {
            // Bytes the client sent right after CONNECT, already read by the HTTP layer.
            passthrough_tcp(parts.io.into_inner(), &parts.read_buf, up, conn).await;
        }
        Err(client) => {
            let mut client = TokioIo::new(client);
            let mut up = up;
            tokio::select! {
                _ = tokio::io::copy_bidirectional_with_sizes(&mut client, &mut up, 256 * 1024, 256 * 1024) => {}
                _ = conn.revoked() => {}
            }
        }
    }
}

/// A tunnel the proxy does not look into, between two sockets: `early` (bytes the client sent
/// right after its CONNECT) goes first, then the kernel splices both ways until both end or
/// a policy revision revokes the tunnel.
pub async fn passthrough_tcp(mut client: TcpStream, early: &[u8], mut up: TcpStream, conn: Conn) {
    if !early.is_empty() && super::http::write_now(&up, early).await.is_err() {
        return;
    }
    tokio::select! {
        _ = super::splice::bidirectional(&mut client, &mut up) => {}
        _ = conn.revoked() => {}
    }
}

/// An inspected tunnel: TLS (detected by its first byte) is terminated with a certificate for
/// the host from the sandbox CA; plain HTTP is read as it is. Every request is then decided
/// on its own ([`super::relay`]).
pub async fn tunnel<C>(mut client: C, up: TcpStream, conn: Conn)
where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut first = vec![0u8; 1024];
    let n = match client.read(&mut first).await {
        Ok(0) | Err(_) => return,
        Ok(n) => n,
    };
    first.truncate(n);
    let is_tls = first[0] == 0x16;
    let client = Prefixed::new(first, client);
    if !is_tls {
        tokio::select! {
            _ = super::relay::serve(client, up, None, &conn) => {}
            _ = conn.revoked() => {}
        }
        return;
    }
    let config = match conn.shared.ca.server_config(&conn.target.host) {
        Ok(c) => c,
        Err(e) => {
            conn.shared
                .events
                .say("error", "network", format!("TLS termination failed: {e}"));
            return;
        }
    };
    let tls = match tokio_rustls::TlsAcceptor::from(config).accept(client).await {
        Ok(t) => t,
        Err(e) => {
            let mut ev = conn.shared.events.event("warn", "network", "");
            ev.host = conn.target.host.clone();
            ev.port = u32::from(conn.target.port);
            ev.binary = conn.caller.binary.to_string();
            ev.message = format!(
                "TLS handshake with the sandbox client failed: {e} (does it trust the sandbox CA?)"
            );
            conn.shared.events.emit(ev);
            return;
        }
    };
    let Ok(name) = ServerName::try_from(conn.target.host.clone()) else {
        conn.shared.events.say(
            "warn",
            "network",
            format!("{} is not a valid TLS server name", conn.target.host),
        );
        return;
    };
    tokio::select! {
        _ = super::relay::serve(tls, up, Some(name), &conn) => {}
        _ = conn.revoked() => {}
    }
}

/// Decides one request inside an allowed connection and records the decision: the decision
/// and the path as shown (normalised when it could be). `named` are the hosts the request
/// itself names (its `Host` field, an absolute-form authority): inside a tunnel they must be
/// the tunnel's host, or one allowed name could carry requests to another site on the same
/// server (domain fronting).
pub fn decide(
    conn: &Conn,
    method: &str,
    raw_path: &str,
    query: &str,
    named: &[&str],
) -> (Decision, String) {
    let method = method.to_ascii_uppercase();
    let refused = |why: String, shown: String| {
        (
            Decision {
                action: Action::Deny,
                policy: None,
                reason: why.into(),
                layer: crate::engine::Layer::L7,
                inspect: true,
            },
            shown,
        )
    };
    let active = conn.shared.current.get();
    let (decision, shown_path) = match (
        named.iter().find_map(|n| other_host(conn, n)),
        request::normalize_path(raw_path),
    ) {
        (Some(why), path) => refused(why, path.unwrap_or_else(|_| raw_path.to_string())),
        (None, Ok(path)) => {
            let query = request::parse_query(query);
            let d = active.engine.l7(&L7Input {
                host: &conn.target.host,
                port: conn.target.port,
                binary: &conn.caller.binary,
                method: &method,
                path: &path,
                query: &query,
            });
            (d, path)
        }
        (None, Err(why)) => refused(why, raw_path.to_string()),
    };
    drop(active);
    let mut ev = conn
        .shared
        .network_event(&decision, &conn.target, &conn.caller);
    ev.method = method;
    ev.path = shown_path.clone();
    conn.shared.events.emit(ev);
    (decision, shown_path)
}

/// Why `named` (a `Host` value or an authority) is not the connection's host and port, if
/// it is not. A name without a port is taken to mean the tunnel's port.
fn other_host(conn: &Conn, named: &str) -> Option<String> {
    let t = &conn.target;
    let differs = || {
        Some(format!(
            "the request names {}, not {}:{}, the host it was allowed to reach",
            named.escape_debug(),
            t.host,
            t.port
        ))
    };
    let Ok(a) = named.trim().parse::<http::uri::Authority>() else {
        return differs();
    };
    let same_host = request::normalize_host(a.host()).is_ok_and(|h| h == t.host);
    let same_port = a.port_u16().is_none_or(|p| p == t.port);
    if same_host && same_port {
        None
    } else {
        differs()
    }
}

/// The refusal of a request (DESIGN §4); unless `close`, the connection stays open for the
/// next one.
fn refusal_response(
    conn: &Conn,
    d: &Decision,
    method: &str,
    shown_path: &str,
    close: bool,
) -> Response<Bytes> {
    let method = method.to_ascii_uppercase();
    let body = super::deny::Body::new(
        "policy_denied",
        format!("{method} {shown_path} not permitted by policy"),
    )
    .field("layer", "l7")
    .field("host", conn.target.host.clone())
    .field("port", conn.target.port)
    .field("binary", conn.caller.binary.to_string())
    .field("method", method)
    .field("path", shown_path)
    .opt("policy", d.policy.as_deref())
    .field("reason", d.reason.to_string());
    super::deny::response(StatusCode::FORBIDDEN, &body, close)
}

/// [`refusal_response`] as it goes on the wire.
pub fn refusal(conn: &Conn, d: &Decision, method: &str, shown_path: &str, close: bool) -> Vec<u8> {
    super::deny::to_bytes(&refusal_response(conn, d, method, shown_path, close))
}

/// The answer to a request the proxy cannot read safely; the connection ends after it.
pub fn bad_request(conn: &Conn, why: &str) -> Vec<u8> {
    let mut ev = conn.shared.events.event("warn", "network", "deny");
    ev.host = conn.target.host.clone();
    ev.port = u32::from(conn.target.port);
    ev.binary = conn.caller.binary.to_string();
    ev.pid = conn.caller.pid;
    ev.layer = "l7".into();
    ev.reason = format!("request refused unread: {why}");
    conn.shared.events.emit(ev);
    let body = super::deny::Body::new("bad_request", format!("request refused: {why}"))
        .field("host", conn.target.host.clone())
        .field("port", conn.target.port);
    super::deny::to_bytes(&super::deny::response(StatusCode::BAD_REQUEST, &body, true))
}

/// The answer when the server cannot be reached or fails before answering; the connection
/// ends after it.
pub fn bad_gateway(conn: &Conn, why: &str) -> Vec<u8> {
    let mut ev = conn
        .shared
        .events
        .event("warn", "network", Action::Allow.as_str());
    ev.host = conn.target.host.clone();
    ev.port = u32::from(conn.target.port);
    ev.binary = conn.caller.binary.to_string();
    ev.pid = conn.caller.pid;
    ev.message = format!("upstream unreachable: {why}");
    conn.shared.events.emit(ev);
    super::deny::to_bytes(&upstream_error_response(conn, why, true))
}

/// The server side of an absolute-form request, reconnected when the server closes it.
pub struct Upstream {
    pending: Option<TcpStream>,
    sender: Option<SendRequest<Incoming>>,
}

impl Upstream {
    pub fn plain(s: TcpStream) -> Upstream {
        Upstream {
            pending: Some(s),
            sender: None,
        }
    }

    async fn ready(&mut self, conn: &Conn) -> Result<&mut SendRequest<Incoming>, String> {
        let usable = match self.sender.as_mut() {
            Some(s) if !s.is_closed() => s.ready().await.is_ok(),
            _ => false,
        };
        if !usable {
            self.sender = None;
            let tcp = match self.pending.take() {
                Some(s) => s,
                None => upstream::connect(&conn.ips, conn.target.port).await?,
            };
            self.sender = Some(handshake(tcp).await?);
        }
        self.sender
            .as_mut()
            .ok_or_else(|| "no upstream connection".to_string())
    }
}

async fn handshake<S>(io: S) -> Result<SendRequest<Incoming>, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::Builder::new()
        .preserve_header_case(true)
        .handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("HTTP handshake with upstream failed: {e}"))?;
    tokio::spawn(async move {
        let _ = connection.with_upgrades().await;
    });
    Ok(sender)
}

/// Decides one request (absolute-form, through the HTTP server) and forwards it or answers
/// the refusal.
pub async fn forward(
    req: Request<Incoming>,
    conn: &Conn,
    up: &mut Upstream,
) -> Response<ProxyBody> {
    // Absolute-form: the URL names the host, which the proxy decided on; the Host field the
    // server gets is made from it (RFC 9112 §3.2.2), whatever the client wrote there.
    let (decision, shown_path) = decide(
        conn,
        req.method().as_str(),
        req.uri().path(),
        req.uri().query().unwrap_or(""),
        &[],
    );
    if decision.is_denied() {
        return full(refusal_response(
            conn,
            &decision,
            req.method().as_str(),
            &shown_path,
            false,
        ));
    }
    send(req, conn, up).await
}

/// Forwards an allowed request and streams the answer back; bridges a protocol upgrade
/// (WebSocket) when the server accepts one.
pub async fn send(
    mut req: Request<Incoming>,
    conn: &Conn,
    up: &mut Upstream,
) -> Response<ProxyBody> {
    // Origin-form toward the server, with the Host it expects.
    let pq = req
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    if let Ok(uri) = pq.parse::<Uri>() {
        *req.uri_mut() = uri;
    }
    let headers = req.headers_mut();
    headers.remove("proxy-connection");
    headers.remove(header::PROXY_AUTHORIZATION);
    if let Ok(v) = HeaderValue::from_str(&conn.host_field()) {
        headers.insert(header::HOST, v);
    }
    // Only WebSocket may switch protocols: another (h2c) would carry requests past inspection.
    let wants_upgrade = super::h1::head::is_websocket(
        headers
            .get_all(header::UPGRADE)
            .iter()
            .map(HeaderValue::as_bytes),
    );
    if !wants_upgrade {
        headers.remove(header::UPGRADE);
        headers.remove("http2-settings");
    }
    let client_upgrade = wants_upgrade.then(|| hyper::upgrade::on(&mut req));
    let sender = match up.ready(conn).await {
        Ok(s) => s,
        Err(e) => return upstream_error(conn, &e),
    };
    let mut resp = match sender.send_request(req).await {
        Ok(r) => r,
        Err(e) => {
            up.sender = None;
            return upstream_error(conn, &e.to_string());
        }
    };
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS
        && let Some(client_upgrade) = client_upgrade
    {
        let server_upgrade = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            if let (Ok(c), Ok(s)) = (client_upgrade.await, server_upgrade.await) {
                let _ =
                    tokio::io::copy_bidirectional(&mut TokioIo::new(c), &mut TokioIo::new(s)).await;
            }
        });
        up.sender = None;
        return resp.map(|b| b.boxed());
    }
    if small_body(&resp) {
        // A small answer of known length is gathered first, so it goes back to the client
        // with its head in one write (one TLS record, one wake-up), not head then body.
        let (parts, body) = resp.into_parts();
        return match body.collect().await {
            Ok(b) => full(Response::from_parts(parts, b.to_bytes())),
            Err(e) => {
                up.sender = None;
                upstream_error(conn, &e.to_string())
            }
        };
    }
    resp.map(|b| b.boxed())
}

/// The largest answer gathered before it is passed on.
const SMALL_BODY: u64 = 64 * 1024;

fn small_body<B>(resp: &Response<B>) -> bool {
    let h = resp.headers();
    !h.contains_key(header::TRANSFER_ENCODING)
        && h.get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_some_and(|n| n <= SMALL_BODY)
}

fn upstream_error(conn: &Conn, why: &str) -> Response<ProxyBody> {
    full(upstream_error_response(conn, why, false))
}

fn upstream_error_response(conn: &Conn, why: &str, close: bool) -> Response<Bytes> {
    super::deny::response(
        StatusCode::BAD_GATEWAY,
        &super::deny::Body::new(
            "upstream_unreachable",
            format!(
                "cannot reach {}:{}: {why}",
                conn.target.host, conn.target.port
            ),
        ),
        close,
    )
}
