//! The proxy's cost, beside a direct connection and tinyproxy in the same run:
//! - added latency per CONNECT (connect + CONNECT + one byte each way), p50;
//! - bulk throughput of a 1 GiB transfer through a tunnel;
//! - L7-inspected HTTPS keep-alive requests per second (TLS terminated by the sandbox CA);
//! - the supervisor's RSS with 100 open tunnels.
//!
//! Run: `cargo bench -p openshell-sandbox --bench proxy` (root; `apt-get install tinyproxy`
//! for the comparison). The clients run as separate processes: ours inside the sandbox's
//! network namespace (via nsenter), the others on the host. Each figure is measured in
//! rounds that take turns with the comparisons, and the median round is shown.
//! `BENCH_ONLY=latency|bulk|l7|rss` runs one; `BENCH_VERBOSE=1` prints every round;
//! `BENCH_BULK_ROUNDS=N` sets the bulk figure's rounds (9), `BENCH_LATENCY_ROUNDS=N` the
//! latency figure's (6; more, shorter rounds pair an A/B more finely);
//! `BENCH_SUPERVISOR=PATH` measures another build of the supervisor;
//! `BENCH_SUPERVISOR_B=PATH` measures another build beside ours, in tinyproxy's column (an
//! A/B in one run).

use openshell_e2e::netns::NetNs;
use openshell_e2e::standin::StandIn;
use rustls_pki_types::pem::PemObject;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TCP_PORT: u16 = 9000;
const BULK: u64 = 1 << 30;
const LATENCY_RUNS: usize = 3000;
const L7_REQUESTS: usize = 30000;
/// Each figure beside its comparisons is measured in this many interleaved rounds.
const ROUNDS: usize = 6;
/// Rounds of the bulk figure (each moves 1 GiB three ways).
const BULK_ROUNDS: usize = 9;

fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list" || a == "--test") {
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--client") {
        client(&args[i + 1..]);
        return;
    }
    // The plain TCP server alone, for runs by hand (profiling one way at a time).
    if let Some(addr) = args
        .iter()
        .position(|a| a == "--serve")
        .and_then(|i| args.get(i + 1))
    {
        serve(std::net::TcpListener::bind(addr.as_str()).expect("bind bench server"));
        return;
    }
    orchestrate();
}

// ---------------------------------------------------------------------------------------
// The client: one process per mode, printing `key value` lines.

fn client(a: &[String]) {
    // direct | proxy (CONNECT by name, as the sandbox does) | byaddr (CONNECT by address:
    // tinyproxy resolves names itself and knows nothing of our pins)
    let mode = a[0].as_str();
    let target: SocketAddr = a[1].parse().expect("target");
    let proxy: Option<SocketAddr> = (mode != "direct").then(|| a[2].parse().expect("proxy"));
    let by_addr = mode == "byaddr";
    let https: SocketAddr = a[3].parse().expect("https target");
    let ca = std::fs::read(&a[4]).expect("ca file");
    let what = a[5].as_str();
    let open = |host: &str, addr: SocketAddr| -> TcpStream {
        match proxy {
            None => TcpStream::connect(addr).expect("direct connect"),
            Some(p) => {
                let shown = addr.ip().to_string();
                let host = if by_addr { shown.as_str() } else { host };
                let mut s = TcpStream::connect(p).expect("proxy connect");
                // One write, as curl sends it (`write!` on the socket would send each piece
                // of the format as its own segment, the later ones held back by Nagle).
                let request = format!(
                    "CONNECT {host}:{} HTTP/1.1\r\nHost: {host}:{}\r\n\r\n",
                    addr.port(),
                    addr.port()
                );
                s.write_all(request.as_bytes()).expect("send CONNECT");
                // Read the answer in chunks, as curl does (nothing follows it until the client
                // speaks, so no tunnel byte can be swallowed here).
                let mut head = Vec::new();
                let mut b = [0u8; 512];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = s.read(&mut b).expect("CONNECT answer");
                    assert!(n > 0, "the proxy closed before answering CONNECT");
                    head.extend_from_slice(&b[..n]);
                }
                assert!(
                    head.starts_with(b"HTTP/1.1 200") || head.starts_with(b"HTTP/1.0 200"),
                    "{}",
                    String::from_utf8_lossy(&head)
                );
                s
            }
        }
    };
    match what {
        "latency" => {
            let runs = env_usize("BENCH_LATENCY_RUNS", LATENCY_RUNS);
            let (mut v, mut opened, mut pinged) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..runs {
                let t = Instant::now();
                let mut s = open("bench.test", target);
                let o = t.elapsed();
                s.set_nodelay(true).ok();
                s.write_all(b"p").expect("ping");
                let mut b = [0u8; 1];
                s.read_exact(&mut b).expect("pong");
                let all = t.elapsed();
                v.push(all);
                opened.push(o);
                pinged.push(all - o);
            }
            let p50 = |v: &mut Vec<Duration>| {
                v.sort();
                v[v.len() / 2].as_secs_f64() * 1e6
            };
            println!("latency_p50_us {:.1}", p50(&mut v));
            println!("open_p50_us {:.1}", p50(&mut opened));
            println!("ping_p50_us {:.1}", p50(&mut pinged));
        }
        "bulk" => {
            let mut s = open("bench.test", target);
            let t = Instant::now();
            s.write_all(b"B").expect("bulk");
            let mut buf = vec![0u8; 256 * 1024];
            let mut n = 0u64;
            loop {
                match s.read(&mut buf) {
                    Ok(0) => break,
                    Ok(k) => n += k as u64,
                    Err(e) => panic!("bulk read: {e}"),
                }
            }
            assert_eq!(n, BULK, "short transfer");
            println!(
                "bulk_mib_s {:.0}",
                n as f64 / (1 << 20) as f64 / t.elapsed().as_secs_f64()
            );
        }
        "l7" => {
            let tcp = open("api.github.com", https);
            let mut roots = rustls::RootCertStore::empty();
            for c in rustls_pki_types::CertificateDer::pem_slice_iter(&ca) {
                roots.add(c.expect("pem")).expect("root");
            }
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
            let name = rustls_pki_types::ServerName::try_from("api.github.com").expect("name");
            let conn = rustls::ClientConnection::new(Arc::new(config), name).expect("tls");
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            let mut reader_buf = Vec::with_capacity(4096);
            let requests = env_usize("BENCH_L7_REQUESTS", L7_REQUESTS);
            let t = Instant::now();
            for _ in 0..requests {
                tls.write_all(b"GET /zen HTTP/1.1\r\nHost: api.github.com\r\n\r\n")
                    .expect("request");
                read_response(&mut tls, &mut reader_buf);
            }
            println!("l7_rps {:.0}", requests as f64 / t.elapsed().as_secs_f64());
        }
        "hold" => {
            let tunnels: Vec<TcpStream> = (0..100)
                .map(|_| {
                    let mut s = open("bench.test", target);
                    s.write_all(b"p").expect("ping");
                    let mut b = [0u8; 1];
                    s.read_exact(&mut b).expect("pong");
                    s
                })
                .collect();
            println!("holding {}", tunnels.len());
            std::io::stdout().flush().ok();
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).ok();
        }
        other => panic!("unknown measurement {other}"),
    }
}

/// Reads one HTTP/1.1 response with Content-Length (the stand-in's answers).
fn read_response(s: &mut impl Read, buf: &mut Vec<u8>) {
    let mut tmp = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap_or(0))
                })
                .unwrap_or(0);
            let total = end + 4 + len;
            if buf.len() >= total {
                assert!(head.starts_with("http/1.1 200"), "{head}");
                buf.drain(..total);
                return;
            }
        }
        let n = s.read(&mut tmp).expect("response");
        assert!(n > 0, "connection closed");
        buf.extend_from_slice(&tmp[..n]);
    }
}

// ---------------------------------------------------------------------------------------
// The orchestrator: servers, the sandbox, tinyproxy, and the clients.

/// The plain TCP server, inside `ns` or on the host end of its pair. Returns where it listens.
/// One thread serves every connection from one event loop, as a real server would: a thread
/// started per connection would make each connection's cost the server's, not the proxy's.
fn tcp_server(ns: &NetNs, inside: bool) -> SocketAddr {
    let listener = if inside {
        let addr = SocketAddr::from((ns.addr, TCP_PORT));
        ns.run(|| std::net::TcpListener::bind(addr).expect("bind bench server"))
    } else {
        std::net::TcpListener::bind(SocketAddr::from((ns.host_addr, TCP_PORT)))
            .expect("bind bench server")
    };
    let addr = listener.local_addr().expect("bench server address");
    std::thread::spawn(move || serve(listener));
    addr
}

/// Serves the plain TCP protocol on `listener` until the process ends.
fn serve(listener: std::net::TcpListener) {
    listener.set_nonblocking(true).expect("nonblocking");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("server runtime");
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
        loop {
            if let Ok((s, _)) = listener.accept().await {
                tokio::spawn(serve_tcp(s));
            }
        }
    });
}

async fn serve_tcp(mut s: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.set_nodelay(true).ok();
    let mut b = [0u8; 1];
    while s.read_exact(&mut b).await.is_ok() {
        match b[0] {
            b'p' => {
                if s.write_all(b"P").await.is_err() {
                    return;
                }
            }
            b'B' => {
                let chunk = vec![7u8; 1 << 20];
                for _ in 0..(BULK >> 20) {
                    if s.write_all(&chunk).await.is_err() {
                        return;
                    }
                }
                return;
            }
            _ => return,
        }
    }
}

/// One way of reaching the servers: the command prefix (ours runs inside the sandbox's
/// network namespace), the client's mode, the proxy and the CA to trust.
struct Way<'a> {
    prefix: &'a [&'a str],
    mode: &'a str,
    proxy: &'a str,
    ca: &'a str,
}

/// CPU time the process `pid` has used, all threads, in nanoseconds (the scheduler's own
/// account, finer than the tick counts of `/proc/PID/stat`).
fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Runs `what` for every way, `ROUNDS` times over, one way after another in each round, so
/// that a machine whose speed drifts (shared cores) drifts for all of them alike. Returns,
/// per way, each round's output, and the CPU the supervisor `sup` used during our rounds.
fn interleaved(
    ways: &[Way],
    target: SocketAddr,
    https: SocketAddr,
    what: &str,
    env: (&str, usize),
    sup: u32,
    rounds: usize,
) -> (Vec<Vec<String>>, u64) {
    let mut out: Vec<Vec<String>> = vec![Vec::new(); ways.len()];
    let mut sup_ns = 0;
    for _ in 0..rounds {
        for (i, w) in ways.iter().enumerate() {
            let before = cpu_ns(sup);
            out[i].push(run_client(
                w.prefix,
                w.mode,
                w.proxy,
                target,
                https,
                w.ca,
                what,
                Some((env.0, &env.1.div_ceil(rounds).to_string())),
            ));
            // Ours is the second way; only its own rounds count toward its CPU.
            if i == 1 {
                sup_ns += cpu_ns(sup).saturating_sub(before);
            }
        }
    }
    if std::env::var_os("BENCH_VERBOSE").is_some() {
        for (w, rounds) in ways.iter().zip(&out) {
            let firsts: Vec<String> = rounds.iter().map(|o| format!("{:.0}", value(o))).collect();
            eprintln!("{:>8} {what}: {}", w.mode, firsts.join(" "));
        }
    }
    (out, sup_ns)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[allow(clippy::too_many_arguments)]
fn run_client(
    prefix: &[&str],
    mode: &str,
    proxy: &str,
    target: SocketAddr,
    https: SocketAddr,
    ca: &str,
    what: &str,
    env: Option<(&str, &str)>,
) -> String {
    let exe = std::env::current_exe().expect("exe");
    let mut argv: Vec<String> = prefix.iter().map(|s| s.to_string()).collect();
    argv.push(exe.display().to_string());
    argv.extend(
        [
            "--client",
            mode,
            &target.to_string(),
            proxy,
            &https.to_string(),
            ca,
            what,
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]);
    if let Some((k, v)) = env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("client");
    assert!(
        out.status.success(),
        "client {mode} {what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The first figure a client printed.
fn value(out: &str) -> f64 {
    out.split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

/// The figure a client printed as `key value`.
fn field(out: &str, key: &str) -> f64 {
    out.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(f64::NAN)
}

fn orchestrate() {
    // The servers sit in a network namespace of their own, behind a veth pair: a peer that is
    // not the proxy's own host, reached by address. `BENCH_SERVER=host` puts them on the host
    // instead (on an address of the host's own, the host end of the pair, so every connection
    // crosses the loopback device; not on 127.0.0.1, which a sandbox may never reach).
    let ns = NetNs::create();
    let in_ns = std::env::var("BENCH_SERVER").as_deref() != Ok("host");
    let target = tcp_server(&ns, in_ns);
    let gh = if in_ns {
        StandIn::https(&ns, &["api.github.com"], 443)
    } else {
        StandIn::https_at(SocketAddr::from((ns.host_addr, 0)), &["api.github.com"])
    };
    let gh_ca = gh.ca_file.clone().expect("ca").display().to_string();
    let https = gh.addr;
    println!(
        "servers: {}",
        if in_ns {
            "in a network namespace, behind a veth pair (BENCH_SERVER=host: on the host)"
        } else {
            "on the host, over the loopback device"
        }
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        format!(
            "network_policies:\n  bench_tcp:\n    endpoints: [ {{ host: bench.test, port: {} }} ]\n    binaries: [ {{ path: \"**\" }} ]\n  bench_l7:\n    endpoints: [ {{ host: api.github.com, port: {}, protocol: rest, access: read-only }} ]\n    binaries: [ {{ path: \"**\" }} ]\n",
            target.port(),
            https.port()
        ),
    )
    .expect("policy");
    // Another build can be measured in its place, or beside it in tinyproxy's column (an A/B
    // in one run: paired rounds see the same machine, where runs apart can differ by a third).
    let sup_bin = std::env::var("BENCH_SUPERVISOR")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_openshell-sandbox").to_string());
    // A sandbox from `bin`: the supervisor, the nsenter argument into its network namespace,
    // and the path of its CA.
    let start = |bin: &str, dir: &std::path::Path| -> (Reaped, String, String) {
        let sup = Command::new(bin)
            .arg("run")
            .arg("--policy")
            .arg(&policy)
            .arg("--workdir")
            .arg(dir)
            .arg("--log")
            .arg(dir.join("events.log"))
            .arg("--upstream-ca")
            .arg(&gh_ca)
            .arg("--resolve")
            .arg(format!("bench.test={}", target.ip()))
            .arg("--resolve")
            .arg(format!("api.github.com={}", https.ip()))
            .args(["--", "sleep", "3600"])
            .spawn()
            .map(Reaped)
            .expect("start the sandbox");
        let init = wait_for_child(sup.0.id());
        (
            sup,
            format!("--net=/proc/{init}/ns/net"),
            format!("/proc/{init}/root/run/openshell/ca.pem"),
        )
    };
    let (sup, netns, sandbox_ca) = start(&sup_bin, dir.path());
    let sup_pid = sup.0.id();
    let ours = ["nsenter", netns.as_str()];

    let dir_b = tempfile::tempdir().expect("tempdir");
    let other = std::env::var("BENCH_SUPERVISOR_B")
        .ok()
        .filter(|p| !p.is_empty())
        .map(|bin| start(&bin, dir_b.path()));
    let ours_b = other
        .as_ref()
        .map(|(_, netns, _)| ["nsenter", netns.as_str()]);

    let (tiny, third) = match other {
        Some(_) => (None, "B build"),
        None => (start_tinyproxy(dir.path()), "tinyproxy"),
    };
    println!("{:<22}{:>14}{:>14}{:>14}", "", "direct", "openshell", third);

    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let want = |what: &str| only.is_empty() || only == what;
    let ways = {
        let mut w = vec![
            Way {
                prefix: &[],
                mode: "direct",
                proxy: "-",
                ca: &gh_ca,
            },
            Way {
                prefix: &ours,
                mode: "proxy",
                proxy: "127.0.0.1:3128",
                ca: &sandbox_ca,
            },
        ];
        if let (Some((_, _, ca)), Some(prefix)) = (&other, &ours_b) {
            w.push(Way {
                prefix,
                mode: "proxy",
                proxy: "127.0.0.1:3128",
                ca,
            });
        } else if tiny.is_some() {
            w.push(Way {
                prefix: &[],
                mode: "byaddr",
                proxy: "127.0.0.1:18888",
                ca: &gh_ca,
            });
        }
        w
    };
    let shown = |v: Option<f64>, digits: usize| {
        v.map(|v| format!("{v:.digits$}"))
            .unwrap_or_else(|| "-".into())
    };
    if want("latency") {
        let runs = env_usize("BENCH_LATENCY_RUNS", LATENCY_RUNS);
        let rounds = env_usize("BENCH_LATENCY_ROUNDS", ROUNDS).max(1);
        let (outs, sup_ns) = interleaved(
            &ways,
            target,
            https,
            "latency",
            ("BENCH_LATENCY_RUNS", runs),
            sup_pid,
            rounds,
        );
        // Per way: the median over rounds of each round's p50.
        let figure = |i: usize, key: &str| -> Option<f64> {
            outs.get(i)
                .map(|rounds| median(rounds.iter().map(|o| field(o, key)).collect()))
        };
        // Added latency per round (each proxied round beside the direct round just before
        // it), then the median.
        let added = |i: usize| -> Option<f64> {
            outs.get(i).map(|rounds| {
                median(
                    rounds
                        .iter()
                        .zip(&outs[0])
                        .map(|(o, d)| field(o, "latency_p50_us") - field(d, "latency_p50_us"))
                        .collect(),
                )
            })
        };
        for (label, key) in [
            ("CONNECT p50 (µs)", "latency_p50_us"),
            // Where the time goes: opening (connect, plus CONNECT and its answer through a
            // proxy), then the first byte there and back.
            ("  open", "open_p50_us"),
            ("  first byte", "ping_p50_us"),
        ] {
            println!(
                "{:<22}{:>14}{:>14}{:>14}",
                label,
                shown(figure(0, key), 1),
                shown(figure(1, key), 1),
                shown(figure(2, key), 1)
            );
        }
        println!(
            "{:<22}{:>14}{:>14}{:>14}   (target ≤ 150 µs; median of {rounds} interleaved rounds of {} connections)",
            "  added by the proxy",
            "",
            shown(added(1), 1),
            shown(added(2), 1),
            runs.div_ceil(rounds)
        );
        if other.is_some() {
            let key = "latency_p50_us";
            let pairs: Vec<(f64, f64)> = outs[1]
                .iter()
                .zip(&outs[2])
                .map(|(a, b)| (field(a, key), field(b, key)))
                .collect();
            let wins = pairs.iter().filter(|(a, b)| a < b).count();
            println!(
                "{:<22}{:>14}{:>14}{:>14}   (rounds where ours is faster than the B build)",
                "  A/B paired",
                "",
                format!("{wins} of {}", pairs.len()),
                ""
            );
        }
        println!(
            "{:<22}{:>14}{:>14.1}{:>14}   (supervisor, all threads)",
            "  CPU per tunnel (µs)",
            "",
            sup_ns as f64 / 1e3 / (runs.div_ceil(rounds) * rounds) as f64,
            ""
        );
    }
    if want("bulk") {
        // Each round moves the whole GiB. A single transfer's rate swings by half on a small
        // VM (where the three processes land on two CPUs), so the share is the median of
        // enough paired rounds to settle.
        let rounds = env_usize("BENCH_BULK_ROUNDS", BULK_ROUNDS);
        let (outs, _) = interleaved(
            &ways,
            target,
            https,
            "bulk",
            ("BENCH_BULK", 1),
            sup_pid,
            rounds,
        );
        let rate = |i: usize| -> Option<f64> {
            outs.get(i)
                .map(|rounds| median(rounds.iter().map(|o| value(o)).collect()))
        };
        let share = median(
            outs[1]
                .iter()
                .zip(&outs[0])
                .map(|(o, d)| value(o) / value(d) * 100.0)
                .collect(),
        );
        println!(
            "{:<22}{:>14}{:>14}{:>14}   ({share:.0}% of direct, median of {rounds} paired rounds; target ≥ 80%)",
            "1 GiB bulk (MiB/s)",
            shown(rate(0), 0),
            shown(rate(1), 0),
            shown(rate(2), 0),
        );
    }
    if want("l7") {
        let requests = env_usize("BENCH_L7_REQUESTS", L7_REQUESTS);
        let (outs, sup_ns) = interleaved(
            &ways,
            target,
            https,
            "l7",
            ("BENCH_L7_REQUESTS", requests),
            sup_pid,
            ROUNDS,
        );
        let rps = |i: usize| -> Option<f64> {
            outs.get(i)
                .map(|rounds| median(rounds.iter().map(|o| value(o)).collect()))
        };
        // The share of direct per round (beside the direct round just before it), then the
        // median.
        let share = median(
            outs[1]
                .iter()
                .zip(&outs[0])
                .map(|(o, d)| value(o) / value(d) * 100.0)
                .collect(),
        );
        println!(
            "{:<22}{:>14}{:>14}{:>14}   ({share:.0}% of direct, inspected; target ≥ 50%)",
            "HTTPS keep-alive req/s",
            shown(rps(0), 0),
            shown(rps(1), 0),
            // Tinyproxy only tunnels: it inspects nothing.
            rps(2)
                .map(|v| format!("{v:.0}{}", if other.is_some() { "" } else { " tunnel" }))
                .unwrap_or_else(|| "-".into()),
        );
        println!(
            "{:<22}{:>14}{:>14.1}{:>14}   (supervisor, all threads)",
            "  CPU per request (µs)",
            "",
            sup_ns as f64 / 1e3 / (requests.div_ceil(ROUNDS) * ROUNDS) as f64,
            ""
        );
    }
    if want("rss") {
        // Memory with 100 open tunnels.
        let exe = std::env::current_exe().expect("exe");
        let mut holder = Command::new("nsenter")
            .arg(&netns)
            .arg(&exe)
            .args([
                "--client",
                "proxy",
                &target.to_string(),
                "127.0.0.1:3128",
                &https.to_string(),
                &sandbox_ca,
                "hold",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("holder");
        let mut line = String::new();
        BufReader::new(holder.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("holding");
        std::thread::sleep(Duration::from_millis(200));
        let rss = rss_kib(sup_pid);
        println!(
            "{:<22}{:>14}{:>14.1}{:>14}   (target ≤ 20 MB)",
            "RSS, 100 tunnels (MB)",
            "",
            rss as f64 / 1024.0,
            ""
        );
        drop(holder.stdin.take());
        let _ = holder.wait();
    }

    drop(sup);
    drop(other);
    drop(tiny);
}

/// A child killed and waited for when dropped, also when a measurement panics: nothing is
/// left running (holding a pipe open) after the bench.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for_child(pid: u32) -> u32 {
    let start = Instant::now();
    loop {
        let ours = std::fs::read_link("/proc/self/ns/net").ok();
        // The sandbox's PID 1 is the child in another network namespace (the supervisor may
        // briefly have other children, e.g. for the id-mapped workdir).
        let init = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|c| c.parse::<u32>().ok())
            .find(|c| {
                let ns = std::fs::read_link(format!("/proc/{c}/ns/net")).ok();
                ns.is_some() && ns != ours
            });
        if let Some(c) = init {
            // Give PID 1 time to build the root and start the command.
            std::thread::sleep(Duration::from_millis(300));
            return c;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the sandbox did not start"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmRSS:")
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn start_tinyproxy(dir: &std::path::Path) -> Option<Reaped> {
    let conf = dir.join("tinyproxy.conf");
    std::fs::write(
        &conf,
        "Port 18888\nListen 127.0.0.1\nTimeout 600\nMaxClients 200\nAllow 127.0.0.1\nLogLevel Critical\n",
    )
    .ok()?;
    let child = Command::new("tinyproxy")
        .arg("-d")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(Reaped)
        .ok()?;
    for _ in 0..100 {
        if TcpStream::connect("127.0.0.1:18888").is_ok() {
            return Some(child);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}
