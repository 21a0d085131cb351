//! Reaching the destination: names resolved on the host (or pinned with `--resolve`), then a
//! TCP connection to the first address that answers.

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::net::TcpStream;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

thread_local! {
    /// A socket made ahead of need for each family (IPv4, IPv6), once that family has been
    /// used: making one costs several microseconds a connection's client would wait for.
    /// Restocked by [`restock`] once that client has its answer. The proxy's runtime is one
    /// thread.
    static SPARE: RefCell<[Spare; 2]> = const { RefCell::new([Spare::Unused, Spare::Unused]) };
}

enum Spare {
    /// The family has not been used: nothing is made for it.
    Unused,
    Taken,
    Ready(Socket),
}

fn slot(domain: Domain) -> usize {
    usize::from(domain == Domain::IPV6)
}

/// A fresh TCP socket of `domain`, without Nagle's delay and not blocking.
fn make(domain: Domain) -> std::io::Result<Socket> {
    let socket = Socket::new(domain, Type::STREAM.nonblocking(), Some(Protocol::TCP))?;
    socket.set_tcp_nodelay(true)?;
    Ok(socket)
}

/// The spare socket for `domain`, or a new one.
fn take(domain: Domain) -> std::io::Result<Socket> {
    let spare = SPARE.with_borrow_mut(|s| std::mem::replace(&mut s[slot(domain)], Spare::Taken));
    match spare {
        Spare::Ready(socket) => Ok(socket),
        Spare::Unused | Spare::Taken => make(domain),
    }
}

/// Makes the spare sockets that connections have taken; call it off a client's wait.
pub fn restock() {
    for domain in [Domain::IPV4, Domain::IPV6] {
        let taken = SPARE.with_borrow(|s| matches!(s[slot(domain)], Spare::Taken));
        if taken && let Ok(socket) = make(domain) {
            SPARE.with_borrow_mut(|s| s[slot(domain)] = Spare::Ready(socket));
        }
    }
}

/// Names pinned to addresses, like curl's `--resolve`.
#[derive(Debug, Clone, Default)]
pub struct Pins(HashMap<String, Vec<IpAddr>>);

impl Pins {
    /// Parses `host=ip` items (also `host=ip1,ip2` when given one at a time).
    pub fn parse<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<Pins, String> {
        let mut map: HashMap<String, Vec<IpAddr>> = HashMap::new();
        for item in items {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            let (host, ip) = item.split_once('=').ok_or_else(|| {
                format!("`{item}` is not HOST=IP (for example api.github.com=10.0.0.5)")
            })?;
            let ip: IpAddr = ip
                .trim_matches(|c| c == '[' || c == ']')
                .parse()
                .map_err(|_| format!("`{ip}` in `{item}` is not an IP address"))?;
            map.entry(host.trim().to_ascii_lowercase())
                .or_default()
                .push(ip);
        }
        Ok(Pins(map))
    }

    /// `OPENSHELL_RESOLVE=host=ip,host2=ip2`.
    pub fn parse_env(value: &str) -> Result<Pins, String> {
        Pins::parse(value.split(','))
    }

    pub fn merge(&mut self, other: Pins) {
        for (k, v) in other.0 {
            self.0.entry(k).or_default().extend(v);
        }
    }

    pub fn get(&self, host: &str) -> Option<&[IpAddr]> {
        self.0.get(host).map(Vec::as_slice)
    }
}

/// The addresses for `host`, and whether they come from a pin.
pub async fn resolve(host: &str, port: u16, pins: &Pins) -> Result<(Vec<IpAddr>, bool), String> {
    if let Some(ips) = pins.get(host) {
        return Ok((ips.to_vec(), true));
    }
    if let Ok(ip) = host
        .trim_matches(|c| c == '[' || c == ']')
        .parse::<IpAddr>()
    {
        return Ok((vec![ip], false));
    }
    let addrs = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?;
    let mut ips: Vec<IpAddr> = Vec::new();
    for a in addrs {
        if !ips.contains(&a.ip()) {
            ips.push(a.ip());
        }
    }
    if ips.is_empty() {
        return Err(format!("{host} has no addresses"));
    }
    Ok((ips, false))
}

/// A connection to the destination. One that was made before `connect` returned is not yet
/// handed to the reactor: the proxy answers its client first and registers it after, off
/// the client's wait.
pub enum Connected {
    Ready(std::net::TcpStream),
    Registered(TcpStream),
}

impl Connected {
    /// The connection on the reactor.
    pub fn register(self) -> std::io::Result<TcpStream> {
        match self {
            Connected::Ready(s) => TcpStream::from_std(s),
            Connected::Registered(s) => Ok(s),
        }
    }
}

/// Connects to the first address that accepts.
pub async fn connect(ips: &[IpAddr], port: u16) -> Result<TcpStream, String> {
    open(ips, port)
        .await?
        .register()
        .map_err(|e| format!("cannot watch the connection: {e}"))
}

/// Connects to the first address that accepts, leaving a connection made at once off the
/// reactor (see [`Connected`]).
pub async fn open(ips: &[IpAddr], port: u16) -> Result<Connected, String> {
    let mut last = String::from("no address to try");
    for ip in ips {
        let addr = SocketAddr::new(*ip, port);
        match connect_one(addr).await {
            Ok(s) => return Ok(s),
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    Err(last)
}

/// One connection attempt, without Nagle's delay. A near destination (loopback, a local
/// bridge) has often answered before `connect` returns: then the socket is used at once,
/// with no wait for the reactor and no timer.
async fn connect_one(addr: SocketAddr) -> std::io::Result<Connected> {
    let socket = take(Domain::for_address(addr))?;
    match socket.connect(&SockAddr::from(addr)) {
        Ok(()) => return Ok(Connected::Ready(socket.into())),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    // Connected already when it has a peer (one call answers both "done?" and "failed?":
    // a failed attempt has no peer and takes the slow path, which reports why).
    if socket.peer_addr().is_ok() {
        return Ok(Connected::Ready(socket.into()));
    }
    let stream = TcpStream::from_std(socket.into())?;
    match tokio::time::timeout(CONNECT_TIMEOUT, stream.writable()).await {
        Ok(ready) => ready?,
        Err(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("timed out after {}s", CONNECT_TIMEOUT.as_secs()),
            ));
        }
    }
    if let Some(e) = stream.take_error()? {
        return Err(e);
    }
    Ok(Connected::Registered(stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn connects_to_a_listener_and_says_why_it_cannot() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let ip: IpAddr = "127.0.0.1".parse().expect("ip");
        let s = connect(&[ip], port).await.expect("connects");
        assert!(s.nodelay().expect("nodelay"), "no Nagle delay upstream");
        assert_eq!(s.peer_addr().expect("peer").port(), port);
        drop(listener);
        let e = connect(&[ip], port).await.expect_err("nobody listens");
        assert!(e.contains("refused"), "{e}");
        assert!(e.starts_with(&format!("127.0.0.1:{port}")), "{e}");
    }

    /// A family is stocked only once used, and a restocked spare is what the next connection
    /// gets: made ahead, without Nagle's delay.
    #[test]
    fn spare_sockets_are_made_ahead_once_a_family_is_used() {
        use std::os::fd::AsRawFd;
        // A thread of its own: the spares are per thread.
        std::thread::spawn(|| {
            restock();
            let unused = SPARE.with_borrow(|s| matches!(s[0], Spare::Unused));
            assert!(unused, "nothing is made for a family never used");
            drop(take(Domain::IPV4).expect("socket"));
            restock();
            let ready = SPARE.with_borrow(|s| match &s[0] {
                Spare::Ready(socket) => Some(socket.as_raw_fd()),
                _ => None,
            });
            let ready = ready.expect("a spare once IPv4 was used");
            let next = take(Domain::IPV4).expect("socket");
            assert_eq!(next.as_raw_fd(), ready, "the spare is handed out");
            assert!(next.tcp_nodelay().expect("nodelay"));
            assert!(SPARE.with_borrow(|s| matches!(s[1], Spare::Unused)));
        })
        .join()
        .expect("test thread");
    }

    #[test]
    fn pins_parse_and_explain_mistakes() {
        let p = Pins::parse_env("API.github.com=127.0.0.1,x.test=[::1]").expect("valid");
        assert_eq!(
            p.get("api.github.com"),
            Some(&["127.0.0.1".parse().expect("ip")][..])
        );
        assert_eq!(p.get("x.test"), Some(&["::1".parse().expect("ip")][..]));
        assert!(
            Pins::parse(["nohost"])
                .expect_err("no =")
                .contains("HOST=IP")
        );
        assert!(
            Pins::parse(["a=b"])
                .expect_err("bad ip")
                .contains("not an IP")
        );
    }
}
