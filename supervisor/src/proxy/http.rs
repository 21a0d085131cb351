//! The proxy's HTTP face toward the sandbox: CONNECT tunnels and absolute-form requests.

use super::deny::{self, Body};
use super::inspect::{self, Conn, Upstream};
use super::prefixed::Prefixed;
use super::{Caller, Shared, Target, upstream};
use crate::engine::{Decision, Layer, request};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use openshell_proto::pb::Event;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::net::TcpStream;

pub type ProxyBody = BoxBody<Bytes, hyper::Error>;

pub fn full(r: Response<Bytes>) -> Response<ProxyBody> {
    r.map(|b| {
        Full::new(b)
            .map_err(|never: Infallible| match never {})
            .boxed()
    })
}

/// The longest request head the CONNECT fast path reads itself; a longer one goes to the
/// full HTTP server.
const HEAD_LIMIT: usize = 8 * 1024;

/// What the first request head on a connection is.
enum Head {
    /// Not all there yet.
    Partial,
    /// A complete, plain `CONNECT` (no body): its length and request target.
    Connect(usize, String),
    /// Anything else: the full HTTP server deals with it.
    Other,
}

fn parse_head(buf: &[u8]) -> Head {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Partial) => Head::Partial,
        Ok(httparse::Status::Complete(n)) => {
            // A CONNECT carrying a body is unusual: leave its framing to hyper.
            let framed = req.headers.iter().any(|h| {
                h.name.eq_ignore_ascii_case("content-length")
                    || h.name.eq_ignore_ascii_case("transfer-encoding")
            });
            match (req.method, req.path) {
                (Some("CONNECT"), Some(path)) if !framed => Head::Connect(n, path.to_string()),
                _ => Head::Other,
            }
        }
        Err(_) => Head::Other,
    }
}

/// Serves one client connection from the sandbox until it closes.
///
/// A connection that opens with a plain `CONNECT` (nearly all of them) is answered here
/// without the HTTP server: the head is parsed, decided and answered in place, and the
/// socket itself goes on to the tunnel (kernel splice). Everything else, and any head this
/// does not understand, is served by hyper exactly as before, the bytes read so far put back.
pub async fn serve_client(mut stream: TcpStream, shared: Arc<Shared>, caller: Caller) {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::with_capacity(1024);
    // The request has most often arrived while the owner was looked up: read it at once,
    // not after the reactor's first report on a fresh socket.
    match read_now(&stream, &mut head) {
        Ok(0) => return,
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        Err(_) => return,
    }
    let (len, path) = loop {
        if !head.is_empty() {
            match parse_head(&head) {
                Head::Partial if head.len() < HEAD_LIMIT => {}
                Head::Connect(len, path) => break (len, path),
                Head::Partial | Head::Other => {
                    return serve_http(Prefixed::new(head, stream), shared, caller).await;
                }
            }
        }
        match stream.read_buf(&mut head).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    };
    // The request target as hyper reads it; one it would refuse, it refuses itself.
    let Ok(uri) = path.parse::<http::Uri>() else {
        return serve_http(Prefixed::new(head, stream), shared, caller).await;
    };
    let early = head.split_off(len);
    drop(head);
    let t = match target_of(uri.authority(), None) {
        Ok(t) => t,
        Err(r) => return answer_and_close(stream, &r).await,
    };
    let o = match open(shared, t, caller).await {
        Ok(o) => o,
        Err(r) => return answer_and_close(stream, &r).await,
    };
    let answered = write_now(&stream, b"HTTP/1.1 200 Connection established\r\n\r\n").await;
    o.conn.shared.events.emit(o.event);
    if answered.is_err() {
        return;
    }
    let Ok(up) = o.upstream.register() else {
        return;
    };
    upstream::restock();
    if o.inspect {
        inspect::tunnel(Prefixed::new(early, stream), up, o.conn).await;
    } else {
        inspect::passthrough_tcp(stream, &early, up, o.conn).await;
    }
}

/// One read straight from the socket, whatever the reactor knows of it yet.
fn read_now(stream: &TcpStream, into: &mut Vec<u8>) -> std::io::Result<usize> {
    use std::io::Read;
    let mut buf = [0u8; 2048];
    let n = (&*socket2::SockRef::from(stream)).read(&mut buf)?;
    into.extend_from_slice(&buf[..n]);
    Ok(n)
}

/// Writes `data`, first straight to the socket (a fresh one has room, though the reactor
/// has not said so yet), then whatever is left when the reactor says it can go.
pub async fn write_now(stream: &TcpStream, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut left = match (&*socket2::SockRef::from(stream)).write(data) {
        Ok(n) => &data[n..],
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => data,
        Err(e) => return Err(e),
    };
    while !left.is_empty() {
        stream.writable().await?;
        match stream.try_write(left) {
            Ok(n) => left = &left[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes a refusal, then closes the connection.
async fn answer_and_close(mut stream: TcpStream, r: &Response<Bytes>) {
    use tokio::io::AsyncWriteExt;
    if stream.write_all(&deny::to_bytes(r)).await.is_ok() {
        let _ = stream.shutdown().await;
    }
}

/// Serves a connection with the full HTTP/1 server: absolute-form requests, and anything the
/// fast path left alone.
async fn serve_http<S>(stream: S, shared: Arc<Shared>, caller: Caller)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req: Request<Incoming>| {
        let shared = shared.clone();
        let caller = caller.clone();
        async move { Ok::<_, Infallible>(route(req, shared, caller).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .preserve_header_case(true)
        .serve_connection(TokioIo::new(stream), svc)
        .with_upgrades()
        .await;
}

async fn route(req: Request<Incoming>, shared: Arc<Shared>, caller: Caller) -> Response<ProxyBody> {
    if req.method() == Method::CONNECT {
        return connect(req, shared, caller).await;
    }
    if req.uri().scheme().is_some() && req.uri().authority().is_some() {
        return absolute(req, shared, caller).await;
    }
    full(deny::response(
        StatusCode::BAD_REQUEST,
        &Body::new(
            "bad_request",
            "this is the OpenShell egress proxy: send CONNECT host:port or an absolute-form request",
        ),
        true,
    ))
}

/// The target of a request: its authority, normalised; the error is a ready answer.
fn target_of(
    authority: Option<&http::uri::Authority>,
    default_port: Option<u16>,
) -> Result<Target, Box<Response<Bytes>>> {
    let bad = |detail: String| {
        Box::new(deny::response(
            StatusCode::BAD_REQUEST,
            &Body::new("bad_request", detail),
            true,
        ))
    };
    let Some(a) = authority else {
        return Err(bad("the request names no host".into()));
    };
    let port = match a.port_u16().or(default_port) {
        Some(p) => p,
        None => return Err(bad(format!("CONNECT {a} names no port"))),
    };
    let host = request::normalize_host(a.host()).map_err(bad)?;
    Ok(Target { host, port })
}

/// Refusal for a network decision: SSRF refusals say so.
pub fn refuse_network(d: &Decision, t: &Target, caller: &Caller) -> Response<Bytes> {
    let error = if d.layer == Layer::Ssrf {
        "ssrf_denied"
    } else {
        "policy_denied"
    };
    let body = Body::new(
        error,
        format!("{}:{} not permitted by policy", t.host, t.port),
    )
    .field("reason", d.reason.to_string())
    .field("layer", d.layer.as_str())
    .field("host", t.host.clone())
    .field("port", t.port)
    .field("binary", caller.binary.to_string())
    .opt("policy", d.policy.as_deref());
    deny::response(StatusCode::FORBIDDEN, &body, true)
}

fn bad_gateway(t: &Target, why: &str) -> Response<Bytes> {
    deny::response(
        StatusCode::BAD_GATEWAY,
        &Body::new(
            "upstream_unreachable",
            format!("cannot reach {}:{}: {why}", t.host, t.port),
        )
        .field("host", t.host.clone())
        .field("port", t.port),
        true,
    )
}

/// An allowed, connected destination.
pub struct Opened {
    pub conn: Conn,
    /// Registered with the reactor by the caller, once its client has its answer.
    pub upstream: upstream::Connected,
    /// Whether its requests are inspected one by one.
    pub inspect: bool,
    /// The allow event, for the caller to emit once the client has its answer: building and
    /// queueing it is not the client's wait.
    pub event: Event,
}

/// Decides, resolves and connects: the common path of CONNECT and absolute-form requests.
/// Refusals and failures are emitted here; the allow event is left to the caller.
pub async fn open(
    shared: Arc<Shared>,
    t: Target,
    caller: Caller,
) -> Result<Opened, Response<Bytes>> {
    let d = shared.decide(&t, &caller, None);
    if d.is_denied() {
        shared.events.emit(shared.network_event(&d, &t, &caller));
        return Err(refuse_network(&d, &t, &caller));
    }
    let (ips, pinned) = match upstream::resolve(&t.host, t.port, &shared.pins).await {
        Ok(r) => r,
        Err(e) => {
            let mut ev = shared.network_event(&d, &t, &caller);
            ev.level = "warn".into();
            ev.action = "deny".into();
            ev.reason = e.clone();
            shared.events.emit(ev);
            return Err(bad_gateway(&t, &e));
        }
    };
    let d = shared.decide(&t, &caller, Some((&ips, pinned)));
    if d.is_denied() {
        shared.events.emit(shared.network_event(&d, &t, &caller));
        return Err(refuse_network(&d, &t, &caller));
    }
    let stream = match upstream::open(&ips, t.port).await {
        Ok(s) => s,
        Err(e) => {
            let mut ev = shared.network_event(&d, &t, &caller);
            ev.level = "warn".into();
            ev.message = format!("upstream unreachable: {e}");
            shared.events.emit(ev);
            return Err(bad_gateway(&t, &e));
        }
    };
    let event = shared.network_event(&d, &t, &caller);
    Ok(Opened {
        inspect: d.inspect,
        conn: Conn {
            shared,
            caller,
            target: t,
            ips,
            pinned,
        },
        upstream: stream,
        event,
    })
}

async fn connect(
    req: Request<Incoming>,
    shared: Arc<Shared>,
    caller: Caller,
) -> Response<ProxyBody> {
    let t = match target_of(req.uri().authority(), None) {
        Ok(t) => t,
        Err(r) => return full(*r),
    };
    let o = match open(shared, t, caller).await {
        Ok(o) => o,
        Err(r) => return full(r),
    };
    o.conn.shared.events.emit(o.event);
    tokio::spawn(async move {
        let upgraded = match hyper::upgrade::on(req).await {
            Ok(u) => u,
            Err(_) => return,
        };
        let Ok(up) = o.upstream.register() else {
            return;
        };
        if o.inspect {
            inspect::tunnel(TokioIo::new(upgraded), up, o.conn).await;
        } else {
            inspect::passthrough(upgraded, up, o.conn).await;
        }
    });
    Response::new(
        Full::new(Bytes::new())
            .map_err(|never: Infallible| match never {})
            .boxed(),
    )
}

/// `GET http://host/path`: decided like a tunnel, then (when inspected) like a request, and
/// forwarded on a fresh upstream connection.
async fn absolute(
    req: Request<Incoming>,
    shared: Arc<Shared>,
    caller: Caller,
) -> Response<ProxyBody> {
    if req.uri().scheme_str() != Some("http") {
        return full(deny::response(
            StatusCode::BAD_REQUEST,
            &Body::new(
                "bad_request",
                "only http:// URLs can be proxied directly; use CONNECT for https",
            ),
            true,
        ));
    }
    let t = match target_of(req.uri().authority(), Some(80)) {
        Ok(t) => t,
        Err(r) => return full(*r),
    };
    let o = match open(shared, t, caller).await {
        Ok(o) => o,
        Err(r) => return full(r),
    };
    o.conn.shared.events.emit(o.event);
    let up = match o.upstream.register() {
        Ok(up) => up,
        Err(e) => return full(bad_gateway(&o.conn.target, &e.to_string())),
    };
    let (conn, mut up) = (o.conn, Upstream::plain(up));
    if o.inspect {
        inspect::forward(req, &conn, &mut up).await
    } else {
        inspect::send(req, &conn, &mut up).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_path_takes_only_complete_plain_connects() {
        let head = b"CONNECT api.github.com:443 HTTP/1.1\r\nHost: api.github.com:443\r\n\r\n";
        let mut with_early = head.to_vec();
        with_early.extend_from_slice(b"\x16\x03\x01");
        match parse_head(&with_early) {
            Head::Connect(n, path) => {
                assert_eq!(n, head.len(), "bytes after the head stay for the tunnel");
                assert_eq!(path, "api.github.com:443");
            }
            _ => panic!("a plain CONNECT takes the fast path"),
        }
        assert!(matches!(parse_head(&head[..20]), Head::Partial));
        for other in [
            &b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n"[..],
            b"connect a:1 HTTP/1.1\r\n\r\n",
            b"CONNECT a:1 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
            b"CONNECT a:1 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"\x16\x03\x01\x00\x01garbage\r\n\r\n",
        ] {
            assert!(
                matches!(parse_head(other), Head::Other),
                "{}",
                String::from_utf8_lossy(other)
            );
        }
    }
}
