//! The relay against a scripted server over real loopback sockets: what the client gets,
//! what the server gets, and what was recorded.

use super::super::inspect::Conn;
use super::super::{Caller, Shared, Target, owner, tls, upstream};
use crate::events::Events;
use crate::policy_state::{Active, Current};
use openshell_proto::pb::Event;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const POLICY: &str = r#"
network_policies:
  api:
    endpoints:
      - host: api.test
        port: PORT
        protocol: rest
        rules:
          - allow: { method: GET, path: "/**" }
          - allow: { method: HEAD, path: "/**" }
          - allow: { method: POST, path: "/ok/**" }
          - allow: { method: PUT, path: "/ok/**" }
    binaries: [ { path: "**" } ]
"#;

/// What the server does with each request it reads: the bytes it answers with, and whether
/// it closes the connection afterwards.
type Script = Arc<dyn Fn(usize, &str) -> (Vec<u8>, bool) + Send + Sync>;

struct Server {
    addr: SocketAddr,
    /// Every request the server read, head and body, in order.
    seen: Arc<Mutex<Vec<String>>>,
    /// Connections accepted.
    conns: Arc<Mutex<usize>>,
}

/// Reads one request (head, then a `Content-Length` or chunked body) from `s`.
async fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end + 4]).to_string();
            let lower = head.to_ascii_lowercase();
            let body_len = if lower.contains("transfer-encoding: chunked") {
                // Up to and including the last chunk's empty line.
                let rest = &buf[end + 4..];
                rest.windows(5)
                    .position(|w| w == b"0\r\n\r\n")
                    .map(|p| p + 5)
            } else {
                Some(
                    lower
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0),
                )
                .filter(|n| buf.len() >= end + 4 + n)
            };
            if let Some(n) = body_len {
                let all = String::from_utf8_lossy(&buf[..end + 4 + n]).to_string();
                buf.drain(..end + 4 + n);
                return Some(all);
            }
        }
        let mut tmp = [0u8; 65536];
        match s.read(&mut tmp).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    }
}

async fn server(script: Script) -> Server {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let conns = Arc::new(Mutex::new(0));
    let (s2, c2) = (seen.clone(), conns.clone());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            *c2.lock().expect("lock") += 1;
            let (seen, script) = (s2.clone(), script.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                while let Some(req) = read_request(&mut s, &mut buf).await {
                    let n = {
                        let mut g = seen.lock().expect("lock");
                        g.push(req.clone());
                        g.len()
                    };
                    let (answer, close) = script(n, &req);
                    if s.write_all(&answer).await.is_err() || close {
                        break;
                    }
                }
            });
        }
    });
    Server { addr, seen, conns }
}

fn ok(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

struct Proxied {
    client: TcpStream,
    events: mpsc::Receiver<Event>,
    relay: tokio::task::JoinHandle<()>,
}

/// A relay for a client connection to `server`, as the proxy sets it up after CONNECT.
async fn relay_to(server: &Server) -> Proxied {
    let text = POLICY.replace("PORT", &server.addr.port().to_string());
    let policy = openshell_proto::policy::load(&text, "test")
        .expect("policy")
        .policy;
    let (events, rx) = Events::channel("test");
    let (rev_tx, rev_rx) = tokio::sync::watch::channel(1u64);
    // The sender lives as long as the test: no revision change, no revocation.
    std::mem::forget(rev_tx);
    let shared = Arc::new(Shared {
        current: Arc::new(Current::new(Active::compile(1, policy).expect("compile"))),
        events,
        ca: Arc::new(tls::SandboxCa::generate("test").expect("ca")),
        upstream_tls: tls::upstream_client_config(&[]).expect("tls"),
        pins: upstream::Pins::default(),
        owners: owner::OwnerLookup::new(std::process::id(), None).expect("owners"),
        revision: rev_rx,
    });
    let conn = Conn {
        shared,
        caller: Caller {
            pid: 7,
            binary: "/usr/bin/curl".into(),
        },
        target: Target {
            host: "api.test".into(),
            port: server.addr.port(),
        },
        ips: vec![server.addr.ip()],
        pinned: true,
    };
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let client = TcpStream::connect(l.local_addr().expect("addr"))
        .await
        .expect("connect");
    let (proxy_side, _) = l.accept().await.expect("accept");
    let first = TcpStream::connect(server.addr).await.expect("upstream");
    let relay = tokio::spawn(async move {
        super::serve(proxy_side, first, None, &conn).await;
    });
    Proxied {
        client,
        events: rx,
        relay,
    }
}

/// Everything the client gets until the relay closes the connection.
async fn read_to_close(c: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).to_string()
}

/// Reads until `want` answers have arrived (counted by status lines).
async fn read_answers(c: &mut TcpStream, want: usize) -> String {
    let mut out = Vec::new();
    let mut tmp = [0u8; 65536];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while String::from_utf8_lossy(&out).matches("HTTP/1.1 ").count() < want {
        match tokio::time::timeout_at(deadline, c.read(&mut tmp)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => out.extend_from_slice(&tmp[..n]),
        }
    }
    // Whatever body follows the last head in the same read is in `out` too.
    String::from_utf8_lossy(&out).to_string()
}

/// A fresh server running `script`, one client connection through the relay sending
/// `request`, and all the client got back until the connection closed.
async fn exchange(script: Script, request: &[u8]) -> (String, Server, Proxied) {
    let srv = server(script).await;
    let mut p = relay_to(&srv).await;
    p.client.write_all(request).await.expect("send");
    let got = read_to_close(&mut p.client).await;
    (got, srv, p)
}

fn drain(rx: &mut mpsc::Receiver<Event>) -> Vec<Event> {
    let mut v = Vec::new();
    while let Ok(e) = rx.try_recv() {
        v.push(e);
    }
    v
}

#[tokio::test(flavor = "current_thread")]
async fn keep_alive_requests_are_each_decided_and_answered_in_order() {
    let srv = server(Arc::new(|n, _| (ok(&format!("answer {n}")), false))).await;
    let mut p = relay_to(&srv).await;
    // Pipelined: the refused one in the middle is answered in its place.
    p.client
        .write_all(
            b"GET /one HTTP/1.1\r\nHost: api.test\r\nProxy-Authorization: Basic eA==\r\n\r\n\
              DELETE /two HTTP/1.1\r\nHost: api.test\r\n\r\n\
              GET /three HTTP/1.1\r\nHost: api.test\r\n\r\n",
        )
        .await
        .expect("send");
    let got = read_answers(&mut p.client, 3).await;
    let first = got.find("answer 1").expect("first answer");
    let refused = got.find("403 Forbidden").expect("refusal");
    let third = got
        .find("answer 2")
        .expect("third request, second at the server");
    assert!(first < refused && refused < third, "{got}");
    assert!(got.contains(r#""error":"policy_denied""#), "{got}");
    assert!(got.contains("DELETE /two not permitted by policy"), "{got}");
    let seen = srv.seen.lock().expect("lock").clone();
    assert_eq!(
        seen.len(),
        2,
        "the refused request never reaches the server"
    );
    assert!(seen[0].starts_with("GET /one HTTP/1.1\r\n"));
    assert!(
        !seen[0].to_ascii_lowercase().contains("proxy-authorization"),
        "fields meant for the proxy are not passed on: {}",
        seen[0]
    );
    assert!(seen[1].starts_with("GET /three "));
    let ev = drain(&mut p.events);
    let decided: Vec<(String, String, String)> = ev
        .iter()
        .filter(|e| !e.method.is_empty())
        .map(|e| (e.action.clone(), e.method.clone(), e.path.clone()))
        .collect();
    assert_eq!(
        decided,
        vec![
            ("allow".into(), "GET".into(), "/one".into()),
            ("deny".into(), "DELETE".into(), "/two".into()),
            ("allow".into(), "GET".into(), "/three".into()),
        ]
    );
    drop(p.client);
    tokio::time::timeout(Duration::from_secs(5), p.relay)
        .await
        .expect("the relay ends with its client")
        .expect("no panic");
}

#[tokio::test(flavor = "current_thread")]
async fn a_refused_body_is_skipped_and_the_connection_goes_on() {
    let srv = server(Arc::new(|_, _| (ok("fine"), false))).await;
    let mut p = relay_to(&srv).await;
    p.client
        .write_all(
            b"POST /secret HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello worldPOST /ok/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-Trailer: y\r\n\r\n",
        )
        .await
        .expect("send");
    let got = read_answers(&mut p.client, 2).await;
    assert!(got.starts_with("HTTP/1.1 403"), "{got}");
    assert!(got.contains("fine"), "{got}");
    let seen = srv.seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(
        !seen[0].contains("hello world"),
        "a refused body never leaves"
    );
    // The chunked body arrives re-encoded: no extension, no trailer.
    assert!(
        seen[0].ends_with("\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        "{:?}",
        seen[0]
    );
    assert!(seen[0].starts_with("POST /ok/x HTTP/1.1\r\nHost: api.test:"));
}

#[tokio::test(flavor = "current_thread")]
async fn answers_are_framed_for_the_client() {
    let srv = server(Arc::new(|n, req| {
        let answer: &[u8] = match n {
            // Chunked, with an extension and a trailer, and a stray length beside it.
            1 => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 99\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\n",
            // HEAD: a length, no body.
            2 => {
                assert!(req.starts_with("HEAD "));
                b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
            }
            // Interim answers pass, then the final one.
            3 => b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
            // Close-delimited.
            _ => b"HTTP/1.1 200 OK\r\n\r\nuntil the end",
        };
        (answer.to_vec(), n >= 4)
    }))
    .await;
    let mut p = relay_to(&srv).await;
    p.client
        .write_all(
            b"GET /a HTTP/1.1\r\n\r\nHEAD /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\n\r\nGET /d HTTP/1.1\r\n\r\n",
        )
        .await
        .expect("send");
    let got = read_to_close(&mut p.client).await;
    let want = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n\
                HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n\
                HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n\
                HTTP/1.1 200 OK\r\n\r\nuntil the end";
    assert_eq!(got, want);
}

#[tokio::test(flavor = "current_thread")]
async fn ambiguous_requests_are_refused_unread_and_end_the_connection() {
    let (got, srv, mut p) = exchange(
        Arc::new(|_, _| (ok("x"), false)),
        b"POST /ok/a HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n",
    )
    .await;
    assert!(got.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{got}");
    assert!(
        got.contains("both Content-Length and Transfer-Encoding"),
        "{got}"
    );
    assert_eq!(got.matches("HTTP/1.1").count(), 1, "nothing after: {got}");
    assert!(
        srv.seen.lock().expect("lock").is_empty(),
        "nothing reaches the server"
    );
    let ev = drain(&mut p.events);
    assert!(
        ev.iter()
            .any(|e| e.action == "deny" && e.reason.contains("refused unread")),
        "{ev:?}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn expect_continue_waits_for_the_server() {
    // The server says 100 only after the head, then reads the body and answers.
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.expect("accept");
        let mut buf = vec![0u8; 4096];
        let mut got = Vec::new();
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).await.expect("head");
            got.extend_from_slice(&buf[..n]);
        }
        s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .expect("100");
        let mut body = [0u8; 4];
        s.read_exact(&mut body).await.expect("body after 100");
        assert_eq!(&body, b"data");
        s.write_all(&ok("stored")).await.expect("answer");
    });
    let srv = Server {
        addr,
        seen: Arc::default(),
        conns: Arc::default(),
    };
    let mut p = relay_to(&srv).await;
    p.client
        .write_all(b"PUT /ok/f HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
        .await
        .expect("head");
    let interim = read_answers(&mut p.client, 1).await;
    assert_eq!(interim, "HTTP/1.1 100 Continue\r\n\r\n");
    p.client.write_all(b"data").await.expect("body");
    let fin = read_answers(&mut p.client, 1).await;
    assert!(fin.ends_with("stored"), "{fin}");
}

#[tokio::test(flavor = "current_thread")]
async fn a_server_that_closes_between_answers_is_dialled_again() {
    let srv = server(Arc::new(|n, _| (ok(&format!("n{n}")), true))).await;
    let mut p = relay_to(&srv).await;
    for n in 1..=3 {
        p.client
            .write_all(b"GET /again HTTP/1.1\r\n\r\n")
            .await
            .expect("send");
        let got = read_answers(&mut p.client, 1).await;
        assert!(got.ends_with(&format!("n{n}")), "{got}");
        // Let the server's close arrive before the next request.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(*srv.conns.lock().expect("lock"), 3);
}

#[tokio::test(flavor = "current_thread")]
async fn a_server_that_fails_mid_way_is_said_or_seen() {
    const GET: &[u8] = b"GET /x HTTP/1.1\r\n\r\n";
    // No answer at all: the client is told why, in JSON.
    let (got, _, _) = exchange(Arc::new(|_, _| (Vec::new(), true)), GET).await;
    assert!(got.starts_with("HTTP/1.1 502 Bad Gateway\r\n"), "{got}");
    assert!(got.contains(r#""error":"upstream_unreachable""#), "{got}");
    assert!(
        got.contains("closed the connection without answering"),
        "{got}"
    );
    // Cut short after the head: the client sees the connection end.
    let half = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf";
    let (got, _, _) = exchange(Arc::new(|_, _| (half.to_vec(), true)), GET).await;
    assert_eq!(got.as_bytes(), half);
    // A malformed answer.
    let spdy = b"SPDY/3 200 OK\r\n\r\n";
    let (got, _, _) = exchange(Arc::new(|_, _| (spdy.to_vec(), false)), GET).await;
    assert!(got.starts_with("HTTP/1.1 502"), "{got}");
    assert!(got.contains("malformed"), "{got}");
}

#[tokio::test(flavor = "current_thread")]
async fn http_1_0_and_connection_close_end_after_the_answer() {
    let srv = server(Arc::new(|_, _| (ok("once"), false))).await;
    for request in [
        &b"GET /a HTTP/1.0\r\n\r\nGET /never HTTP/1.0\r\n\r\n"[..],
        b"GET /a HTTP/1.1\r\nConnection: close\r\n\r\nGET /never HTTP/1.1\r\n\r\n",
    ] {
        let mut p = relay_to(&srv).await;
        p.client.write_all(request).await.expect("send");
        let got = read_to_close(&mut p.client).await;
        assert!(got.ends_with("once"), "{got}");
        assert_eq!(got.matches("HTTP/1.1").count(), 1);
    }
    assert!(
        srv.seen
            .lock()
            .expect("lock")
            .iter()
            .all(|r| !r.contains("/never"))
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_switch_of_protocols_passes_bytes_both_ways() {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.expect("accept");
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut b).await.expect("head");
            head.push(b[0]);
        }
        s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nhi")
            .await
            .expect("101");
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).await.expect("frame");
        s.write_all(&buf).await.expect("echo");
    });
    let srv = Server {
        addr,
        seen: Arc::default(),
        conns: Arc::default(),
    };
    let mut p = relay_to(&srv).await;
    p.client
        .write_all(b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
        .await
        .expect("upgrade");
    let mut got = Vec::new();
    let mut tmp = [0u8; 256];
    while !got.ends_with(b"hi") {
        let n = p.client.read(&mut tmp).await.expect("101");
        assert!(n > 0);
        got.extend_from_slice(&tmp[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
    p.client.write_all(b"\x81\x03abc").await.expect("frame");
    let mut echo = [0u8; 5];
    p.client.read_exact(&mut echo).await.expect("echo");
    assert_eq!(&echo, b"\x81\x03abc");
}

#[tokio::test(flavor = "current_thread")]
async fn large_bodies_pass_whole_both_ways() {
    let big: Arc<Vec<u8>> = Arc::new((0..3_000_000u32).map(|i| (i % 251) as u8).collect());
    let answer = big.clone();
    let srv = server(Arc::new(move |_, req| {
        assert!(req.len() > 3_000_000, "the whole upload arrived");
        let mut a = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for part in answer.chunks(70_000) {
            a.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
            a.extend_from_slice(part);
            a.extend_from_slice(b"\r\n");
        }
        a.extend_from_slice(b"0\r\n\r\n");
        (a, false)
    }))
    .await;
    let mut p = relay_to(&srv).await;
    let mut req = format!(
        "POST /ok/upload HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
        big.len()
    )
    .into_bytes();
    req.extend_from_slice(&big);
    let (mut rd, mut wr) = p.client.split();
    let send = async {
        wr.write_all(&req).await.expect("upload");
    };
    let recv = async {
        // Decode the chunked answer as a client would.
        let mut all = Vec::new();
        let mut tmp = vec![0u8; 65536];
        while !all.ends_with(b"\r\n0\r\n\r\n") {
            let n = rd.read(&mut tmp).await.expect("download");
            assert!(n > 0, "ended early");
            all.extend_from_slice(&tmp[..n]);
        }
        all
    };
    let ((), all) = tokio::join!(send, recv);
    let start = all.windows(4).position(|w| w == b"\r\n\r\n").expect("head") + 4;
    let mut body = Vec::new();
    let mut rest = &all[start..];
    loop {
        let end = rest.windows(2).position(|w| w == b"\r\n").expect("size");
        let size = usize::from_str_radix(std::str::from_utf8(&rest[..end]).expect("ascii"), 16)
            .expect("hex");
        rest = &rest[end + 2..];
        if size == 0 {
            break;
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
    assert!(body == *big, "the download arrived whole and in order");
}

#[tokio::test(flavor = "current_thread")]
async fn a_refused_request_awaiting_continue_ends_the_connection() {
    let (got, srv, _p) = exchange(
        Arc::new(|_, _| (ok("x"), false)),
        b"PUT /secret HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
    )
    .await;
    assert!(got.starts_with("HTTP/1.1 403"), "{got}");
    assert!(got.contains("connection: close"), "{got}");
    assert!(srv.seen.lock().expect("lock").is_empty());
}

/// Requests in dribbles (heads and bodies split anywhere) and heads larger than the first
/// buffer read the same as when they arrive whole.
#[tokio::test(flavor = "current_thread")]
async fn requests_split_anywhere_and_long_heads_read_the_same() {
    let srv = server(Arc::new(|n, _| (ok(&format!("r{n}")), false))).await;
    let mut p = relay_to(&srv).await;
    let long = "v".repeat(40_000);
    let stream = format!(
        "GET /a HTTP/1.1\r\nX-Long: {long}\r\n\r\nPOST /ok/b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nPOST /ok/c HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi"
    );
    let bytes = stream.as_bytes();
    let mut at = 0;
    let mut step = 1;
    while at < bytes.len() {
        let end = (at + step).min(bytes.len());
        p.client.write_all(&bytes[at..end]).await.expect("send");
        at = end;
        step = step % 7 + 1;
        if at < 2000 || at > bytes.len() - 200 {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }
    let got = read_answers(&mut p.client, 3).await;
    assert!(
        got.contains("r1") && got.contains("r2") && got.ends_with("r3"),
        "{got}"
    );
    let seen = srv.seen.lock().expect("lock").clone();
    assert!(seen[0].contains(&long));
    assert!(
        seen[1].ends_with("\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
        "{:?}",
        seen[1]
    );
    assert!(seen[2].ends_with("\r\n\r\nhi"));
}

/// A request naming another host than the tunnel's (domain fronting) is refused, whether by
/// its Host field or an absolute-form URL; the connection goes on.
#[tokio::test(flavor = "current_thread")]
async fn requests_for_another_host_are_refused() {
    let srv = server(Arc::new(|_, _| (ok("right host"), false))).await;
    let mut p = relay_to(&srv).await;
    let port = srv.addr.port();
    let wrong_port = port.wrapping_add(1);
    p.client
        .write_all(
            format!(
                "GET /a HTTP/1.1\r\nHost: elsewhere.example\r\n\r\n\
                 GET https://elsewhere.example/b HTTP/1.1\r\nHost: api.test\r\n\r\n\
                 GET /c HTTP/1.1\r\nHost: api.test:{wrong_port}\r\n\r\n\
                 GET https://API.test:{port}/d?x=1 HTTP/1.1\r\nHost: api.test:{port}\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .expect("send");
    let got = read_answers(&mut p.client, 4).await;
    assert_eq!(got.matches("HTTP/1.1 403").count(), 3, "{got}");
    assert!(got.contains("the request names elsewhere.example"), "{got}");
    assert!(got.ends_with("right host"), "{got}");
    let seen = srv.seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 1);
    assert!(
        seen[0].starts_with("GET /d?x=1 HTTP/1.1\r\n"),
        "absolute-form goes on in origin-form: {}",
        seen[0]
    );
}

/// Only WebSocket may switch protocols: an h2c upgrade is passed on as a plain request, and a
/// server switching anyway is refused.
#[tokio::test(flavor = "current_thread")]
async fn no_switch_but_websocket() {
    let (got, srv, _p) = exchange(
        Arc::new(|_, _| (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n".to_vec(), false)),
        b"GET / HTTP/1.1\r\nHost: api.test\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n",
    )
    .await;
    let seen = srv.seen.lock().expect("lock").clone();
    assert!(
        !seen[0].to_ascii_lowercase().contains("upgrade: h2c"),
        "{}",
        seen[0]
    );
    assert!(got.starts_with("HTTP/1.1 502"), "{got}");
    assert!(got.contains("switched protocols unasked"), "{got}");
}
