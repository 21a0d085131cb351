//! A small HTTP(S) server standing in for an outside service (api.github.com and the like)
//! inside a test's network namespace, with its own CA that the sandbox is told to trust.

use crate::netns::NetNs;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// What the GitHub stand-in answers to `GET /zen`.
pub const ZEN: &str = "Anything added dilutes everything else.";

pub struct StandIn {
    pub addr: SocketAddr,
    /// PEM of the CA that signed the server's certificate (None for plain HTTP).
    pub ca_file: Option<PathBuf>,
    /// `METHOD PATH` of every request served, in order.
    pub hits: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
    _runtime: tokio::runtime::Runtime,
}

impl StandIn {
    /// HTTPS on `port` inside `ns`, with a certificate for `hosts`.
    pub fn https(ns: &NetNs, hosts: &[&str], port: u16) -> StandIn {
        StandIn::start(ns, Some(hosts), port)
    }

    /// Plain HTTP on `port` inside `ns`.
    pub fn http(ns: &NetNs, port: u16) -> StandIn {
        StandIn::start(ns, None, port)
    }

    /// HTTPS on `addr` in the caller's own network namespace (an address of the host's, for
    /// the benches), with a certificate for `hosts`.
    pub fn https_at(addr: SocketAddr, hosts: &[&str]) -> StandIn {
        let listener = std::net::TcpListener::bind(addr).expect("bind stand-in");
        StandIn::serve(listener, Some(hosts))
    }

    fn start(ns: &NetNs, hosts: Option<&[&str]>, port: u16) -> StandIn {
        let addr = SocketAddr::from((ns.addr, port));
        let listener = ns.run(|| std::net::TcpListener::bind(addr).expect("bind stand-in"));
        StandIn::serve(listener, hosts)
    }

    fn serve(listener: std::net::TcpListener, hosts: Option<&[&str]>) -> StandIn {
        let dir = tempfile::tempdir().expect("tempdir");
        let addr = listener.local_addr().expect("stand-in address");
        listener.set_nonblocking(true).expect("nonblocking");
        let (acceptor, ca_file) = match hosts {
            Some(hosts) => {
                let (config, ca_pem) = server_config(hosts);
                let ca_file = dir.path().join("standin-ca.pem");
                std::fs::write(&ca_file, ca_pem).expect("write CA");
                (Some(tokio_rustls::TlsAcceptor::from(config)), Some(ca_file))
            }
            None => (None, None),
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let hits: Arc<Mutex<Vec<String>>> = Arc::default();
        let h = hits.clone();
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let hits = h.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let hits = hits.clone();
                        async move { Ok::<_, Infallible>(answer(req, &hits).await) }
                    });
                    match acceptor {
                        Some(a) => {
                            if let Ok(tls) = a.accept(stream).await {
                                let _ = hyper::server::conn::http1::Builder::new()
                                    .serve_connection(TokioIo::new(tls), svc)
                                    .with_upgrades()
                                    .await;
                            }
                        }
                        None => {
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), svc)
                                .with_upgrades()
                                .await;
                        }
                    }
                });
            }
        });
        StandIn {
            addr,
            ca_file,
            hits,
            _dir: dir,
            _runtime: runtime,
        }
    }

    pub fn hits(&self) -> Vec<String> {
        self.hits.lock().map(|h| h.clone()).unwrap_or_default()
    }
}

async fn answer(mut req: Request<Incoming>, hits: &Mutex<Vec<String>>) -> Response<Full<Bytes>> {
    let line = format!("{} {}", req.method(), req.uri());
    if let Ok(mut h) = hits.lock() {
        h.push(line.clone());
    }
    // A protocol upgrade (WebSocket): accept it and echo whatever arrives afterwards.
    if req.headers().contains_key(http::header::UPGRADE) {
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(up) = on.await {
                let mut io = TokioIo::new(up);
                let mut buf = [0u8; 4096];
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                while let Ok(n) = io.read(&mut buf).await {
                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        });
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        r.headers_mut().insert(
            http::header::UPGRADE,
            http::HeaderValue::from_static("websocket"),
        );
        r.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("upgrade"),
        );
        return r;
    }
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let _ = req.into_body().collect().await;
    let (status, body) = match (method.as_str(), path.as_str()) {
        ("GET", "/zen") => (StatusCode::OK, format!("{ZEN}\n")),
        ("POST", _) => (StatusCode::CREATED, format!("{{\"created\":\"{path}\"}}\n")),
        _ => (StatusCode::OK, format!("{line}\n")),
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r
}

fn server_config(hosts: &[&str]) -> (Arc<rustls::ServerConfig>, String) {
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "OpenShell test stand-in CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().expect("key");
    let params =
        rcgen::CertificateParams::new(hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>())
            .expect("params");
    let cert = params.signed_by(&key, &issuer).expect("leaf");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .expect("server config");
    (Arc::new(config), ca_cert.pem())
}
