//! Inside an allowed connection: plain tunnels, and inspected tunnels where TLS is terminated
//! with the sandbox CA and every request (keep-alive included) is decided on its own.
//! Both close themselves when a new policy revision no longer allows their destination.

use super::http::{ProxyBody, full};
use super::prefixed::Prefixed;
use super::{Caller, Shared, Target, upstream};
use crate::engine::{Action, Decision, L7Input, request};
use http::{HeaderValue, Request, Response, StatusCode, Uri, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use std::convert::Infallible;
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
pub async fn passthrough_tcp(client: TcpStream, early: &[u8], up: TcpStream, conn: Conn) {
    if !early.is_empty() && super::http::write_now(&up, early).await.is_err() {
        return;
    }
    tokio::select! {
        _ = super::splice::bidirectional(&client, &up) => {}
        _ = conn.revoked() => {}
    }
}

/// An inspected tunnel: TLS (detected by its first byte) is terminated with a certificate for
/// the host from the sandbox CA; plain HTTP is read as it is.
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
    let conn = Arc::new(conn);
    if is_tls {
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
        let name = ServerName::try_from(conn.target.host.clone()).ok();
        serve_inspected(tls, Upstream::tls(up, name), conn).await;
    } else {
        serve_inspected(client, Upstream::plain(up), conn).await;
    }
}

async fn serve_inspected<C>(client: C, up: Upstream, conn: Arc<Conn>)
where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let up = Arc::new(tokio::sync::Mutex::new(up));
    let c = conn.clone();
    let svc = service_fn(move |req: Request<Incoming>| {
        let conn = c.clone();
        let up = up.clone();
        async move {
            let mut up = up.lock().await;
            Ok::<_, Infallible>(forward(req, &conn, &mut up).await)
        }
    });
    let serve = hyper::server::conn::http1::Builder::new()
        .preserve_header_case(true)
        .serve_connection(TokioIo::new(client), svc)
        .with_upgrades();
    tokio::select! {
        _ = serve => {}
        _ = conn.revoked() => {}
    }
}

/// The upstream side of an inspected connection, reconnected when the server closes it.
pub struct Upstream {
    pending: Option<TcpStream>,
    tls: Option<Option<ServerName<'static>>>,
    sender: Option<SendRequest<Incoming>>,
}

impl Upstream {
    pub fn plain(s: TcpStream) -> Upstream {
        Upstream {
            pending: Some(s),
            tls: None,
            sender: None,
        }
    }

    fn tls(s: TcpStream, name: Option<ServerName<'static>>) -> Upstream {
        Upstream {
            pending: Some(s),
            tls: Some(name),
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
            let sender = match &self.tls {
                None => handshake(tcp).await?,
                Some(name) => {
                    let name = name.clone().ok_or_else(|| {
                        format!("{} is not a valid TLS server name", conn.target.host)
                    })?;
                    let tls = tokio_rustls::TlsConnector::from(conn.shared.upstream_tls.clone())
                        .connect(name, tcp)
                        .await
                        .map_err(|e| format!("TLS with {} failed: {e}", conn.target.host))?;
                    handshake(tls).await?
                }
            };
            self.sender = Some(sender);
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

/// Decides one request and forwards it or answers the refusal.
pub async fn forward(
    req: Request<Incoming>,
    conn: &Conn,
    up: &mut Upstream,
) -> Response<ProxyBody> {
    let method = req.method().as_str().to_ascii_uppercase();
    let raw_path = req.uri().path().to_string();
    let query = request::parse_query(req.uri().query().unwrap_or(""));
    let active = conn.shared.current.get();
    let (decision, shown_path) = match request::normalize_path(&raw_path) {
        Ok(path) => {
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
        Err(why) => (
            Decision {
                action: Action::Deny,
                policy: None,
                reason: why.into(),
                layer: crate::engine::Layer::L7,
                inspect: true,
            },
            raw_path.clone(),
        ),
    };
    drop(active);
    let mut ev = conn
        .shared
        .network_event(&decision, &conn.target, &conn.caller);
    ev.method = method.clone();
    ev.path = shown_path.clone();
    conn.shared.events.emit(ev);
    if decision.is_denied() {
        let body = super::deny::Body::new(
            "policy_denied",
            format!("{method} {shown_path} not permitted by policy"),
        )
        .field("layer", "l7")
        .field("host", conn.target.host.clone())
        .field("port", conn.target.port)
        .field("binary", conn.caller.binary.to_string())
        .field("method", method.clone())
        .field("path", shown_path)
        .opt("policy", decision.policy.as_deref())
        .field("reason", decision.reason.to_string());
        return full(super::deny::response(StatusCode::FORBIDDEN, &body, false));
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
    if !headers.contains_key(header::HOST) {
        let host = if matches!(conn.target.port, 80 | 443) {
            conn.target.host.clone()
        } else {
            format!("{}:{}", conn.target.host, conn.target.port)
        };
        if let Ok(v) = HeaderValue::from_str(&host) {
            headers.insert(header::HOST, v);
        }
    }
    let wants_upgrade = req.headers().contains_key(header::UPGRADE);
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
    full(super::deny::response(
        StatusCode::BAD_GATEWAY,
        &super::deny::Body::new(
            "upstream_unreachable",
            format!(
                "cannot reach {}:{}: {why}",
                conn.target.host, conn.target.port
            ),
        ),
        false,
    ))
}
