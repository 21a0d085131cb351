//! End-to-end tests of the sandbox network: a real network namespace, a real
//! tun, the catcher on a tokio runtime, and real sockets inside the namespace.
//! They need root (CAP_SYS_ADMIN and CAP_NET_ADMIN) and the tun driver; without
//! them they fail and say so, they never skip.

use std::fs::File;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sched::{CloneFlags, unshare};
use nix::sys::socket::{AddressFamily, SockFlag, SockProtocol, SockType, socket};
use openshell_sandbox::net::ifconfig::{TUN_IPV4, TUN_IPV6};
use openshell_sandbox::net::{DirectAttempt, Proto, catcher, in_netns, setup_sandbox_network};

/// Generous bound: a caught attempt fails in milliseconds; a missed one would
/// hang for the kernel's timeouts (seconds to minutes).
const FAST: Duration = Duration::from_secs(2);

/// A fresh network namespace, kept alive by the returned fd (no cleanup needed:
/// it goes away with the last fd, including the tun's).
fn new_netns() -> File {
    std::thread::spawn(|| {
        unshare(CloneFlags::CLONE_NEWNET).unwrap_or_else(|e| {
            panic!("unshare(CLONE_NEWNET) failed: {e}; these tests must run as root")
        });
        File::open("/proc/thread-self/ns/net")
            .unwrap_or_else(|e| panic!("cannot open /proc/thread-self/ns/net: {e}"))
    })
    .join()
    .unwrap_or_else(|_| panic!("the thread making a network namespace panicked"))
}

struct Sandbox {
    ns: File,
    reports: mpsc::Receiver<DirectAttempt>,
    task: tokio::task::JoinHandle<io::Result<()>>,
    _rt: tokio::runtime::Runtime,
}

impl Sandbox {
    fn start() -> Self {
        let ns = new_netns();
        let tun: OwnedFd = in_netns(&ns, setup_sandbox_network)
            .unwrap_or_else(|e| panic!("cannot enter the test network namespace: {e}"))
            .unwrap_or_else(|e| panic!("setup_sandbox_network failed: {e}"));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("cannot build a tokio runtime: {e}"));
        let (tx, reports) = mpsc::channel();
        let task = rt.spawn(catcher::run(tun, move |attempt| {
            // The receiver outlives the runtime in these tests; a failed send
            // only happens during teardown.
            let _ = tx.send(attempt);
        }));
        Sandbox {
            ns,
            reports,
            task,
            _rt: rt,
        }
    }

    /// Runs `f` on a thread inside the sandbox's network namespace.
    fn inside<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        in_netns(&self.ns, f)
            .unwrap_or_else(|e| panic!("cannot enter the test network namespace: {e}"))
    }

    /// Waits for the report of (proto, dst, port); other reports are kept for
    /// the failure message.
    fn expect_report(&self, proto: Proto, dst: IpAddr, dst_port: u16) -> DirectAttempt {
        let deadline = Instant::now() + FAST;
        let mut others = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.reports.recv_timeout(left) {
                Ok(a) if a.proto == proto && a.dst == dst && a.dst_port == dst_port => return a,
                Ok(a) => others.push(a),
                Err(_) => panic!(
                    "no report of {proto} to {dst} port {dst_port} within {FAST:?}; \
                     other reports: {others:?}; catcher finished: {}",
                    self.task.is_finished()
                ),
            }
        }
    }

    /// [`assert_refused`], saying also whether the catcher still runs.
    fn assert_refused(&self, what: &str, outcome: &Outcome) {
        let what = format!(
            "{what} (catcher task finished: {})",
            self.task.is_finished()
        );
        assert_refused(&what, outcome);
    }

    /// Every report that arrives within `wait`.
    fn reports_within(&self, wait: Duration) -> Vec<DirectAttempt> {
        let deadline = Instant::now() + wait;
        let mut seen = Vec::new();
        while let Ok(a) = self
            .reports
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            seen.push(a);
        }
        seen
    }
}

/// What one attempt from inside the sandbox came to.
struct Outcome {
    result: io::Result<()>,
    elapsed: Duration,
    /// The namespace's packet counters, taken right after an unexpected result.
    diag: String,
}

impl Outcome {
    fn new(result: io::Result<()>, start: Instant) -> Self {
        let elapsed = start.elapsed();
        let refused = matches!(&result, Err(e) if e.kind() == io::ErrorKind::ConnectionRefused);
        let diag = if refused { String::new() } else { net_diag() };
        Outcome {
            result,
            elapsed,
            diag,
        }
    }
}

/// Counters of the calling thread's namespace that tell a packet that never
/// reached the tun from an answer the kernel dropped.
fn net_diag() -> String {
    let read = |file: &str| {
        std::fs::read_to_string(format!("/proc/thread-self/net/{file}")).unwrap_or_default()
    };
    let dev = read("dev");
    let tun = dev
        .lines()
        .find(|l| l.trim_start().starts_with("osdirect0:"))
        .unwrap_or("no osdirect0");
    let snmp6 = read("snmp6");
    let counters: Vec<&str> = snmp6
        .lines()
        .filter(|l| l.starts_with("Icmp6") || l.starts_with("Udp6") || l.starts_with("Ip6In"))
        .filter(|l| !l.ends_with(" 0"))
        .collect();
    format!(
        "tun counters (rx = answers, tx = caught): {tun}; snmp6: {counters:?}; snmp:\n{}",
        read("snmp")
    )
}

fn assert_refused(what: &str, outcome: &Outcome) {
    let Outcome {
        result,
        elapsed,
        diag,
    } = outcome;
    match result {
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
        Err(e) => panic!("{what}: expected ECONNREFUSED, got {e} after {elapsed:?}; {diag}"),
        Ok(()) => panic!("{what}: expected ECONNREFUSED, but it succeeded; {diag}"),
    }
    assert!(
        *elapsed < FAST,
        "{what}: refused only after {elapsed:?}, so it was not caught at once"
    );
}

fn tcp_connect(addr: SocketAddr) -> Outcome {
    let start = Instant::now();
    // The timeout only bounds a broken catcher; a caught connect returns at once.
    let result = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map(drop);
    Outcome::new(result, start)
}

fn udp_exchange(bind: &str, addr: SocketAddr) -> Outcome {
    let start = Instant::now();
    let result = (|| {
        let sock = UdpSocket::bind(bind)?;
        sock.connect(addr)?;
        sock.set_read_timeout(Some(Duration::from_secs(5)))?;
        sock.send(b"direct datagram")?;
        let mut buf = [0u8; 512];
        sock.recv(&mut buf).map(drop)
    })();
    Outcome::new(result, start)
}

#[test]
fn tcp_v4_is_refused_at_once_and_reported() {
    let sb = Sandbox::start();
    let dst: SocketAddr = "198.51.100.7:443".parse().expect("address");
    let outcome = sb.inside(move || tcp_connect(dst));
    sb.assert_refused("TCP connect to 198.51.100.7:443", &outcome);
    let report = sb.expect_report(Proto::Tcp, dst.ip(), 443);
    assert_eq!(report.src.ip(), IpAddr::V4(TUN_IPV4));
    assert_ne!(report.src.port(), 0, "the source port is reported");
}

#[test]
fn tcp_v6_is_refused_at_once_and_reported() {
    let sb = Sandbox::start();
    let dst: SocketAddr = "[2001:db8::7]:443".parse().expect("address");
    let outcome = sb.inside(move || tcp_connect(dst));
    sb.assert_refused("TCP connect to [2001:db8::7]:443", &outcome);
    let report = sb.expect_report(Proto::Tcp, dst.ip(), 443);
    assert_eq!(report.src.ip(), IpAddr::V6(TUN_IPV6));
    assert_ne!(report.src.port(), 0, "the source port is reported");
}

#[test]
fn udp_v4_gets_port_unreachable_and_is_reported() {
    let sb = Sandbox::start();
    let dst: SocketAddr = "198.51.100.7:53".parse().expect("address");
    let outcome = sb.inside(move || udp_exchange("0.0.0.0:0", dst));
    sb.assert_refused("UDP to 198.51.100.7:53", &outcome);
    let report = sb.expect_report(Proto::Udp, dst.ip(), 53);
    assert_eq!(report.src.ip(), IpAddr::V4(TUN_IPV4));
}

#[test]
fn udp_v6_gets_port_unreachable_and_is_reported() {
    let sb = Sandbox::start();
    let dst: SocketAddr = "[2001:db8::7]:53".parse().expect("address");
    let outcome = sb.inside(move || udp_exchange("[::]:0", dst));
    sb.assert_refused("UDP to [2001:db8::7]:53", &outcome);
    let report = sb.expect_report(Proto::Udp, dst.ip(), 53);
    assert_eq!(report.src.ip(), IpAddr::V6(TUN_IPV6));
}

#[test]
fn loopback_is_not_caught() {
    let sb = Sandbox::start();
    sb.inside(|| {
        for host in ["127.0.0.1", "::1", "10.255.255.1", "fd00:6f73:6873::1"] {
            let ip: IpAddr = host.parse().expect("address");
            // A port nobody listens on: bind one, note it, close it.
            let port = TcpListener::bind(SocketAddr::new(ip, 0))
                .and_then(|l| l.local_addr())
                .unwrap_or_else(|e| panic!("cannot bind {host}:0 in the sandbox: {e}"))
                .port();
            let outcome = tcp_connect(SocketAddr::new(ip, port));
            assert_refused(&format!("TCP connect to {host}:{port}"), &outcome);
        }
        // And loopback works when something listens (the proxy's case).
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the loopback listener");
        let addr = listener.local_addr().expect("listener address");
        TcpStream::connect_timeout(&addr, FAST)
            .unwrap_or_else(|e| panic!("connect to the loopback listener {addr}: {e}"));
    });
    let seen = sb.reports_within(Duration::from_millis(500));
    assert!(
        seen.is_empty(),
        "local traffic must never reach the tun: {seen:?}"
    );
}

/// An ICMP echo socket inside the sandbox: an unprivileged ping socket when
/// net.ipv4.ping_group_range allows it, else a raw socket (we are root).
fn icmp_socket(v6: bool) -> (UdpSocket, bool) {
    let (family, proto) = if v6 {
        (AddressFamily::Inet6, SockProtocol::IcmpV6)
    } else {
        (AddressFamily::Inet, SockProtocol::Icmp)
    };
    let (fd, raw) = match socket(family, SockType::Datagram, SockFlag::SOCK_CLOEXEC, proto) {
        Ok(fd) => (fd, false),
        Err(dgram_err) => {
            let fd = socket(family, SockType::Raw, SockFlag::SOCK_CLOEXEC, proto).unwrap_or_else(
                |raw_err| {
                    panic!(
                        "no ICMP socket: SOCK_DGRAM failed ({dgram_err}) and SOCK_RAW failed \
                         ({raw_err}); the test must run as root"
                    )
                },
            );
            (fd, true)
        }
    };
    // std's UdpSocket is a thin wrapper over send/recv/connect; it serves for
    // any datagram-like socket.
    (UdpSocket::from(fd), raw)
}

/// Sends one echo request to `dst` and returns what the socket then reads:
/// an error (ping sockets report ICMP errors as errno) or the ICMP message.
fn ping(v6: bool, dst: IpAddr) -> (io::Result<Vec<u8>>, Duration) {
    let (sock, raw) = icmp_socket(v6);
    ping_with(&sock, raw, v6, dst)
}

fn ping_with(
    sock: &UdpSocket,
    raw: bool,
    v6: bool,
    dst: IpAddr,
) -> (io::Result<Vec<u8>>, Duration) {
    let start = Instant::now();
    let result = (|| {
        sock.connect(SocketAddr::new(dst, 0))?;
        sock.set_read_timeout(Some(Duration::from_secs(5)))?;
        let echo_type = if v6 { 128 } else { 8 };
        let mut echo = vec![echo_type, 0, 0, 0, 0x12, 0x34, 0, 1];
        echo.extend_from_slice(b"openshell ping");
        if !v6 {
            // ICMPv6 checksums are the kernel's job; ICMPv4 ones on a raw socket are ours.
            let sum = icmpv4_checksum(&echo);
            echo[2..4].copy_from_slice(&sum.to_be_bytes());
        }
        sock.send(&echo)?;
        let mut buf = vec![0u8; 2048];
        let n = sock.recv(&mut buf)?;
        buf.truncate(n);
        // A raw IPv4 socket hands out the IP header too; strip it.
        if raw && !v6 {
            let ihl = usize::from(buf.first().copied().unwrap_or(0x45) & 0x0f) * 4;
            buf.drain(..ihl.min(buf.len()));
        }
        Ok(buf)
    })();
    (result, start.elapsed())
}

fn icmpv4_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The echo must fail with EHOSTUNREACH/EACCES (ping socket) or be answered
/// by a destination unreachable, administratively prohibited (raw socket).
fn assert_prohibited(what: &str, v6: bool, result: io::Result<Vec<u8>>, elapsed: Duration) {
    let (unreach_type, prohibited_code, errno) = if v6 {
        (1u8, 1u8, libc::EACCES)
    } else {
        (3u8, 13u8, libc::EHOSTUNREACH)
    };
    match result {
        Err(e) if e.raw_os_error() == Some(errno) => {}
        Ok(msg) if msg.len() >= 2 && msg[0] == unreach_type && msg[1] == prohibited_code => {}
        other => panic!(
            "{what}: expected a destination unreachable (administratively prohibited), got \
             {other:?} after {elapsed:?}"
        ),
    }
    assert!(elapsed < FAST, "{what}: answered only after {elapsed:?}");
}

#[test]
fn icmp_echo_v4_is_prohibited_and_reported() {
    let sb = Sandbox::start();
    let dst: IpAddr = "198.51.100.7".parse().expect("address");
    let (result, elapsed) = sb.inside(move || ping(false, dst));
    assert_prohibited("ping 198.51.100.7", false, result, elapsed);
    let report = sb.expect_report(Proto::Icmp, dst, 0);
    assert_eq!(report.src.ip(), IpAddr::V4(TUN_IPV4));
}

#[test]
fn icmp_echo_v6_is_prohibited_and_reported() {
    let sb = Sandbox::start();
    let dst: IpAddr = "2001:db8::7".parse().expect("address");
    let (result, elapsed) = sb.inside(move || ping(true, dst));
    assert_prohibited("ping 2001:db8::7", true, result, elapsed);
    let report = sb.expect_report(Proto::Icmp, dst, 0);
    assert_eq!(report.src.ip(), IpAddr::V6(TUN_IPV6));
}

/// What an unprivileged program in the sandbox uses: ping sockets
/// (SOCK_DGRAM, IPPROTO_ICMP{,V6}), allowed here by the namespace's own
/// net.ipv4.ping_group_range. They see the answer as an errno.
#[test]
fn ping_sockets_get_an_error_at_once_and_are_reported() {
    let host_range = || std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range");
    let host_before = host_range().unwrap_or_else(|e| panic!("cannot read ping_group_range: {e}"));
    let sb = Sandbox::start();
    let v4: IpAddr = "198.51.100.7".parse().expect("address");
    let v6: IpAddr = "2001:db8::7".parse().expect("address");
    let results = sb.inside(move || {
        // /proc/sys/net belongs to the namespace of the thread that opens it.
        std::fs::write("/proc/sys/net/ipv4/ping_group_range", "0 0")
            .unwrap_or_else(|e| panic!("cannot allow ping sockets in the sandbox: {e}"));
        [(false, v4), (true, v6)].map(|(is_v6, dst)| {
            let (sock, raw) = icmp_socket(is_v6);
            assert!(
                !raw,
                "ping_group_range allows ping sockets, yet none was made"
            );
            (is_v6, dst, ping_with(&sock, false, is_v6, dst))
        })
    });
    for (is_v6, dst, (result, elapsed)) in results {
        let errno = if is_v6 {
            libc::EACCES
        } else {
            libc::EHOSTUNREACH
        };
        match &result {
            Err(e) if e.raw_os_error() == Some(errno) => {}
            other => panic!("ping socket to {dst}: expected errno {errno}, got {other:?}"),
        }
        assert_prohibited(&format!("ping socket to {dst}"), is_v6, result, elapsed);
        sb.expect_report(Proto::Icmp, dst, 0);
    }
    // The host's setting is untouched.
    assert_eq!(
        host_range().ok().as_deref(),
        Some(host_before.as_str()),
        "the host's ping_group_range changed"
    );
}

#[test]
fn raw_ip_protocol_is_reported_as_other() {
    let sb = Sandbox::start();
    let dst: IpAddr = "198.51.100.7".parse().expect("address");
    // 253 is reserved for experiments (RFC 3692): nothing else speaks it.
    let (result, elapsed) = sb.inside(move || {
        // SAFETY: plain socket(2) call; the result is checked before use.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 253) };
        if fd < 0 {
            let e = io::Error::last_os_error();
            panic!("raw socket for IP protocol 253: {e}; the test must run as root");
        }
        // SAFETY: socket(2) just returned this fd and nothing else owns it.
        let sock = UdpSocket::from(unsafe { OwnedFd::from_raw_fd(fd) });
        let start = Instant::now();
        let result = (|| {
            sock.connect(SocketAddr::new(dst, 0))?;
            sock.set_read_timeout(Some(Duration::from_secs(5)))?;
            sock.send(b"experimental")?;
            let mut buf = [0u8; 256];
            sock.recv(&mut buf).map(drop)
        })();
        (result, start.elapsed())
    });
    match result {
        Err(e) if e.raw_os_error() == Some(libc::EHOSTUNREACH) => {}
        other => panic!("raw IP 253 to {dst}: expected EHOSTUNREACH, got {other:?}"),
    }
    assert!(elapsed < FAST, "raw IP 253 answered only after {elapsed:?}");
    sb.expect_report(Proto::Other(253), dst, 0);
}

#[test]
fn repeated_attempts_are_all_refused_but_reported_once_per_interval() {
    let sb = Sandbox::start();
    let dst: SocketAddr = "198.51.100.7:8443".parse().expect("address");
    const ATTEMPTS: u32 = 5;
    let spent = sb.inside(move || {
        let start = Instant::now();
        for i in 0..ATTEMPTS {
            let outcome = tcp_connect(dst);
            assert_refused(&format!("attempt {i} to {dst}"), &outcome);
        }
        start.elapsed()
    });
    let seen = sb.reports_within(Duration::from_millis(500));
    let same_flow = seen
        .iter()
        .filter(|a| a.proto == Proto::Tcp && a.dst == dst.ip() && a.dst_port == 8443)
        .count();
    // One report per started interval at most (normally exactly one).
    let windows = spent.as_millis() / catcher::REPORT_INTERVAL.as_millis() + 1;
    assert!(
        same_flow >= 1 && same_flow as u128 <= windows,
        "{ATTEMPTS} attempts in {spent:?} gave {same_flow} reports (at most {windows} allowed): {seen:?}"
    );
    // Another port is another flow, reported on its own.
    let other: SocketAddr = "198.51.100.7:8444".parse().expect("address");
    let outcome = sb.inside(move || tcp_connect(other));
    sb.assert_refused("connect to port 8444", &outcome);
    sb.expect_report(Proto::Tcp, other.ip(), 8444);
}

/// Runs iproute2's `ip` with `args` in the calling thread's namespace.
fn ip(args: &[&str]) {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `ip` (iproute2): {e}"));
    assert!(
        out.status.success(),
        "ip {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn catcher_runs_until_the_tun_interface_is_gone() {
    let sb = Sandbox::start();
    std::thread::sleep(Duration::from_millis(100));
    assert!(!sb.task.is_finished(), "the catcher ended on its own");
    // Only root in the namespace can do this; the catcher must then end
    // with an error rather than hang on a dead fd.
    sb.inside(|| ip(&["link", "del", "osdirect0"]));
    let deadline = Instant::now() + FAST;
    while !sb.task.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        sb.task.is_finished(),
        "the catcher still runs {FAST:?} after its tun interface was deleted"
    );
    let Sandbox { task, _rt: rt, .. } = sb;
    match rt.block_on(task) {
        Ok(Err(e)) => assert_eq!(e.raw_os_error(), Some(libc::EBADFD), "{e}"),
        other => panic!("expected the catcher to fail with EBADFD, got {other:?}"),
    }
}

#[test]
fn setup_refuses_a_namespace_that_already_has_a_default_route() {
    // As if called by mistake in the host's namespace: it must not hijack
    // the existing default route.
    let ns = new_netns();
    let err = in_netns(&ns, || {
        ip(&["link", "set", "lo", "up"]);
        ip(&["route", "add", "default", "dev", "lo"]);
        match setup_sandbox_network() {
            Ok(_) => panic!("setup must refuse to replace an existing default route"),
            Err(e) => e.to_string(),
        }
    })
    .unwrap_or_else(|e| panic!("cannot enter the test network namespace: {e}"));
    assert!(
        err.contains("default route 0.0.0.0/0") && err.contains("already"),
        "unclear error: {err}"
    );
}

/// Reads a /proc/net file of the calling thread's namespace. (/proc/net is
/// /proc/self/net, which follows the main thread, not this one.)
fn proc_net(file: &str) -> String {
    let path = format!("/proc/thread-self/net/{file}");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

#[test]
fn setup_configures_only_the_sandbox_namespace() {
    let sb = Sandbox::start();
    let (dev, route, addr6, route6) = sb.inside(|| {
        (
            proc_net("dev"),
            proc_net("route"),
            proc_net("if_inet6"),
            proc_net("ipv6_route"),
        )
    });
    let ifaces: Vec<&str> = dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .collect();
    assert_eq!(ifaces.len(), 2, "only lo and the tun: {ifaces:?}");
    assert!(ifaces.contains(&"lo") && ifaces.contains(&"osdirect0"));
    // IPv4 default route: destination 0, mask 0, on the tun.
    assert!(
        route.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.first() == Some(&"osdirect0")
                && f.get(1) == Some(&"00000000")
                && f.get(7) == Some(&"00000000")
        }),
        "no IPv4 default route on osdirect0:\n{route}"
    );
    // The IPv6 address is there, /128, and not tentative (no DAD).
    let line = addr6
        .lines()
        .find(|l| l.starts_with("fd006f73687300000000000000000001"))
        .unwrap_or_else(|| panic!("no fd00:6f73:6873::1 in:\n{addr6}"));
    let f: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(f.get(2), Some(&"80"), "prefix length must be 128: {line}");
    let flags = u32::from_str_radix(f.get(4).copied().unwrap_or("ff"), 16).unwrap_or(0xff);
    assert_eq!(flags & 0x40, 0, "address is still tentative: {line}");
    // IPv6 default route: ::/0 on the tun.
    assert!(
        route6
            .lines()
            .any(|l| l.starts_with(&format!("{:032x} 00 ", 0)) && l.ends_with("osdirect0")),
        "no IPv6 default route on osdirect0:\n{route6}"
    );
    // The test's own namespace is untouched.
    assert!(
        !proc_net("dev").contains("osdirect0"),
        "the tun leaked into the caller's namespace"
    );
}

#[test]
fn a_second_setup_in_the_same_namespace_fails_clearly() {
    let sb = Sandbox::start();
    let err = match sb.inside(setup_sandbox_network) {
        Ok(_) => panic!("a second tun named osdirect0 in the same namespace must fail"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("osdirect0") && err.contains("CAP_NET_ADMIN"),
        "unclear error: {err}"
    );
}

/// Runs `f` on a thread with its own mount and network namespaces in which
/// /dev/net is an empty tmpfs (as in containers without the tun node) and the
/// temp dir a fresh tmpfs (mounted nodev if `nodev_tmp`), so what the setup
/// leaves there is seen by this test alone. Mounts are made private first so
/// nothing leaks to the host.
fn without_dev_net_tun<T: Send>(nodev_tmp: bool, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(move || {
            unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWNET)
                .unwrap_or_else(|e| panic!("unshare(CLONE_NEWNS|CLONE_NEWNET): {e}; run as root"));
            mount(None, "/", None, libc::MS_REC | libc::MS_PRIVATE, None);
            mount(Some("tmpfs"), "/dev/net", Some("tmpfs"), 0, None);
            let tmp = std::env::temp_dir();
            let tmp = tmp.to_str().expect("temp dir is UTF-8");
            let flags = if nodev_tmp { libc::MS_NODEV } else { 0 };
            mount(Some("tmpfs"), tmp, Some("tmpfs"), flags, None);
            assert!(!std::path::Path::new("/dev/net/tun").exists());
            f()
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

fn mount(
    src: Option<&str>,
    target: &str,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) {
    use std::ffi::CString;
    let c = |s: &str| CString::new(s).expect("no NUL in mount arguments");
    let (src, target, fstype, data) = (src.map(c), c(target), fstype.map(c), data.map(c));
    let ptr = |s: &Option<CString>| s.as_ref().map_or(std::ptr::null(), |s| s.as_ptr());
    // SAFETY: every pointer is null or a NUL-terminated string alive across the call.
    let rc = unsafe {
        libc::mount(
            ptr(&src),
            target.as_ptr(),
            ptr(&fstype),
            flags,
            ptr(&data).cast(),
        )
    };
    if rc != 0 {
        panic!("mount on {target:?} failed: {}", io::Error::last_os_error());
    }
}

#[test]
fn a_missing_dev_net_tun_is_replaced_by_a_private_node() {
    let caught = without_dev_net_tun(false, || {
        let tun = setup_sandbox_network()
            .unwrap_or_else(|e| panic!("setup without /dev/net/tun failed: {e}"));
        // The private node is gone again (the temp dir is this test's own
        // tmpfs, so it must be empty); only the fd remains.
        let leftovers: Vec<_> = std::fs::read_dir(std::env::temp_dir())
            .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(
            leftovers.is_empty(),
            "private tun nodes left behind: {leftovers:?}"
        );
        let dev = proc_net("dev");
        assert!(dev.contains("osdirect0"), "no tun after setup:\n{dev}");
        drop(tun);
        true
    });
    assert!(caught);
}

#[test]
fn a_missing_dev_net_tun_without_a_place_for_a_node_fails_clearly() {
    let err = without_dev_net_tun(true, || match setup_sandbox_network() {
        Ok(_) => panic!("setup must fail when no tun node can be opened"),
        Err(e) => e.to_string(),
    });
    assert!(
        err.contains("/dev/net/tun does not exist") && err.contains("10:200"),
        "unclear error: {err}"
    );
}

/// Sandboxes being made and torn down side by side (as on a busy supervisor)
/// keep the kernel's rtnl lock busy, which delays the local route of a new
/// IPv6 address. Every sandbox must still work from its first packet.
#[test]
fn sandboxes_made_side_by_side_work_from_the_first_packet() {
    const THREADS: usize = 4;
    const ROUNDS: usize = 6;
    let dst: SocketAddr = "[2001:db8::7]:53".parse().expect("address");
    std::thread::scope(|s| {
        for t in 0..THREADS {
            s.spawn(move || {
                for round in 0..ROUNDS {
                    let sb = Sandbox::start();
                    let outcome = sb.inside(move || udp_exchange("[::]:0", dst));
                    sb.assert_refused(&format!("thread {t} round {round}: UDP to {dst}"), &outcome);
                }
            });
        }
    });
}
