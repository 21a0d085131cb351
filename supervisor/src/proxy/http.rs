//! The proxy's HTTP face toward the sandbox: CONNECT tunnels and absolute-form requests.

use super::deny::{self, Body};
use super::inspect::{self, Conn, Upstream};
use super::{Caller, Shared, Target, upstream};
use crate::engine::{Decision, Layer, request};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::IpAddr;
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

/// Serves one client connection from the sandbox until it closes.
pub async fn serve_client(stream: TcpStream, shared: Arc<Shared>, caller: Caller) {
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
) -> Result<Target, Box<Response<ProxyBody>>> {
    let bad = |detail: String| {
        Box::new(full(deny::response(
            StatusCode::BAD_REQUEST,
            &Body::new("bad_request", detail),
            true,
        )))
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

fn bad_gateway(t: &Target, why: &str) -> Response<ProxyBody> {
    full(deny::response(
        StatusCode::BAD_GATEWAY,
        &Body::new(
            "upstream_unreachable",
            format!("cannot reach {}:{}: {why}", t.host, t.port),
        )
        .field("host", t.host.clone())
        .field("port", t.port),
        true,
    ))
}

/// Decides, resolves and connects: the common path of CONNECT and absolute-form requests.
/// On success, the allowed decision, addresses and the open upstream socket.
pub async fn open(
    shared: &Shared,
    t: &Target,
    caller: &Caller,
) -> Result<(Decision, Vec<IpAddr>, bool, TcpStream), Response<ProxyBody>> {
    let d = shared.decide(t, caller, None);
    if d.is_denied() {
        shared.events.emit(shared.network_event(&d, t, caller));
        return Err(full(refuse_network(&d, t, caller)));
    }
    let (ips, pinned) = match upstream::resolve(&t.host, t.port, &shared.pins).await {
        Ok(r) => r,
        Err(e) => {
            let mut ev = shared.network_event(&d, t, caller);
            ev.level = "warn".into();
            ev.action = "deny".into();
            ev.reason = e.clone();
            shared.events.emit(ev);
            return Err(bad_gateway(t, &e));
        }
    };
    let d = shared.decide(t, caller, Some((&ips, pinned)));
    if d.is_denied() {
        shared.events.emit(shared.network_event(&d, t, caller));
        return Err(full(refuse_network(&d, t, caller)));
    }
    let stream = match upstream::connect(&ips, t.port).await {
        Ok(s) => s,
        Err(e) => {
            let mut ev = shared.network_event(&d, t, caller);
            ev.level = "warn".into();
            ev.message = format!("upstream unreachable: {e}");
            shared.events.emit(ev);
            return Err(bad_gateway(t, &e));
        }
    };
    shared.events.emit(shared.network_event(&d, t, caller));
    Ok((d, ips, pinned, stream))
}

async fn connect(
    req: Request<Incoming>,
    shared: Arc<Shared>,
    caller: Caller,
) -> Response<ProxyBody> {
    let t = match target_of(req.uri().authority(), None) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    let (decision, ips, pinned, upstream) = match open(&shared, &t, &caller).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    tokio::spawn(async move {
        let upgraded = match hyper::upgrade::on(req).await {
            Ok(u) => u,
            Err(_) => return,
        };
        let conn = Conn {
            shared,
            caller,
            target: t,
            ips,
            pinned,
        };
        if decision.inspect {
            inspect::tunnel(TokioIo::new(upgraded), upstream, conn).await;
        } else {
            inspect::passthrough(upgraded, upstream, conn).await;
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
        Err(r) => return *r,
    };
    let (decision, ips, pinned, stream) = match open(&shared, &t, &caller).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let conn = Conn {
        shared,
        caller,
        target: t,
        ips,
        pinned,
    };
    let mut up = Upstream::plain(stream);
    if decision.inspect {
        inspect::forward(req, &conn, &mut up).await
    } else {
        inspect::send(req, &conn, &mut up).await
    }
}
