//! Interface setup from inside a sandbox network namespace.
//!
//! Everything here talks to the kernel directly (ioctl and rtnetlink through
//! libc/nix) so the supervisor needs no `ip` binary and no extra crates. The
//! calling thread must already be in the target network namespace: sockets and
//! the tun device are bound to the namespace of the thread that creates them.

use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sched::{CloneFlags, setns};
use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, send,
    socket,
};

use super::NetError;

/// Name of the tun interface that catches direct egress.
pub const TUN_NAME: &str = "osdirect0";
/// IPv4 address of the tun interface (the source of caught IPv4 packets).
pub const TUN_IPV4: Ipv4Addr = Ipv4Addr::new(10, 255, 255, 1);
/// IPv6 address of the tun interface (the source of caught IPv6 packets).
pub const TUN_IPV6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x6f73, 0x6873, 0, 0, 0, 0, 1);

const TUN_PATH: &str = "/dev/net/tun";

/// Runs `f` on a fresh thread that first joins the network namespace `ns`.
///
/// The thread is thrown away afterwards, so the caller's namespace never
/// changes. Sockets and fds made inside `f` stay bound to `ns`, which is how
/// the supervisor makes the tun and the proxy's listener for a sandbox.
/// A panic in `f` is propagated to the caller.
pub fn in_netns<T: Send>(ns: &File, f: impl FnOnce() -> T + Send) -> io::Result<T> {
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .name("netns".into())
            .spawn_scoped(scope, move || -> io::Result<T> {
                setns(ns, CloneFlags::CLONE_NEWNET).map_err(|errno| {
                    io::Error::new(
                        io::Error::from(errno).kind(),
                        format!("cannot enter the sandbox network namespace: {errno}"),
                    )
                })?;
                Ok(f())
            })?;
        match handle.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Configures the calling thread's network namespace (a fresh one: run it
/// through [`in_netns`]) so that all direct egress lands on a tun device, and
/// returns that tun's fd (non-blocking), for [`super::catcher::run`].
///
/// Brings `lo` up, creates the tun [`TUN_NAME`] (IFF_TUN | IFF_NO_PI), sets it
/// up, gives it [`TUN_IPV4`]/32 and [`TUN_IPV6`]/128 (without duplicate address
/// detection) and makes it the default route for IPv4 and IPv6. It returns
/// once the kernel has finished the IPv6 address, so the very first packet is
/// caught and answered. It fails rather than replace an existing default route.
///
/// Closing the returned fd removes the interface, its addresses and routes.
/// While the fd is open it also keeps the network namespace alive.
/// Brings only `lo` up: the network of a sandbox that cannot have the tun (an unprivileged
/// supervisor where /dev/net/tun is root's alone). Direct connections still fail at once
/// (no route), but are not seen.
pub fn loopback_only() -> Result<(), NetError> {
    let mut nl = Netlink::open().map_err(|source| NetError::Configure {
        action: "open a netlink socket to configure the sandbox network".into(),
        source,
    })?;
    let lo = ifindex("lo")?;
    nl.set_link_up(lo).map_err(|source| NetError::Configure {
        action: "bring the loopback interface lo up".into(),
        source,
    })
}

pub fn setup_sandbox_network() -> Result<OwnedFd, NetError> {
    let mut nl = Netlink::open().map_err(|source| NetError::Configure {
        action: "open a netlink socket to configure the sandbox network".into(),
        source,
    })?;

    let lo = ifindex("lo")?;
    nl.set_link_up(lo).map_err(|source| NetError::Configure {
        action: "bring the loopback interface lo up".into(),
        source,
    })?;

    let tun = open_tun(TUN_NAME)?;
    let index = ifindex(TUN_NAME)?;
    nl.set_link_up(index)
        .map_err(|source| NetError::Configure {
            action: format!("bring the tun interface {TUN_NAME} up"),
            source,
        })?;

    nl.add_address(index, IpAddr::V4(TUN_IPV4), 32)
        .map_err(|source| NetError::Configure {
            action: format!("add the address {TUN_IPV4}/32 to {TUN_NAME}"),
            source,
        })?;
    nl.add_default_route(index, IpAddr::V4(TUN_IPV4))
        .map_err(|source| route_error("0.0.0.0/0", source))?;

    // A kernel without IPv6 (ipv6.disable=1) has no IPv6 sockets either, so
    // there is nothing to catch; anything else is a real failure.
    match nl.add_address(index, IpAddr::V6(TUN_IPV6), 128) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EAFNOSUPPORT) => {
            tracing::warn!("the kernel has no IPv6; only IPv4 direct egress is caught");
            return Ok(tun);
        }
        Err(source) => {
            return Err(NetError::Configure {
                action: format!("add the address {TUN_IPV6}/128 to {TUN_NAME}"),
                source,
            });
        }
    }
    nl.add_default_route(index, IpAddr::V6(TUN_IPV6))
        .map_err(|source| route_error("::/0", source))?;
    wait_for_local_route(&mut nl, TUN_IPV6)?;

    Ok(tun)
}

/// How long the kernel may take to finish an IPv6 address. It does that on a
/// workqueue that needs the rtnl lock, which other namespaces being torn down
/// can hold for a long while.
const ADDRESS_READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Waits until `addr` is routed as local. The kernel accepts an IPv6 address
/// (and lets sockets bind it) before it installs the address's local route:
/// that happens later, on a workqueue, even with IFA_F_NODAD. Until then
/// packets to the address follow the default route into the tun, and answers
/// sent to it from the tun are dropped as not ours (Ip6InAddrErrors), so the
/// first direct attempts would hang instead of failing.
fn wait_for_local_route(nl: &mut Netlink, addr: Ipv6Addr) -> Result<(), NetError> {
    let deadline = Instant::now() + ADDRESS_READY_TIMEOUT;
    let mut pause = Duration::from_micros(200);
    loop {
        let route = nl.route_type(addr).map_err(|source| NetError::Configure {
            action: format!("look up the route to {addr}"),
            source,
        })?;
        if route == libc::RTN_LOCAL {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(NetError::Configure {
                action: format!("make the address {addr} on {TUN_NAME} usable"),
                source: io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "the kernel did not install its local route within {ADDRESS_READY_TIMEOUT:?}"
                    ),
                ),
            });
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

fn route_error(dst: &str, source: io::Error) -> NetError {
    let mut action = format!("add the default route {dst} dev {TUN_NAME}");
    if source.raw_os_error() == Some(libc::EEXIST) {
        action.push_str(
            " (there already is one: the setup must run in the sandbox's own fresh network namespace)",
        );
    }
    NetError::Configure { action, source }
}

fn ifindex(name: &str) -> Result<u32, NetError> {
    nix::net::if_::if_nametoindex(name).map_err(|errno| NetError::NoInterface {
        name: name.into(),
        source: errno.into(),
    })
}

/// Opens the tun control device and attaches a new tun interface `name` to it.
fn open_tun(name: &str) -> Result<OwnedFd, NetError> {
    let fd = match open_rw_nonblock(Path::new(TUN_PATH)) {
        Ok(fd) => fd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => open_private_tun_node()?,
        Err(source) => {
            return Err(NetError::TunDevice {
                path: TUN_PATH.into(),
                source,
            });
        }
    };

    // SAFETY: ifreq is plain old data (a name and a union of integers, sockaddrs
    // and a pointer); all-zero is a valid value for every field.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    // The name must leave room for the trailing NUL the zeroed array provides.
    if name.len() >= req.ifr_name.len() {
        return Err(NetError::TunInterface {
            name: name.into(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "interface name too long"),
        });
    }
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    req.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;

    // SAFETY: fd is an open /dev/net/tun descriptor and req is a valid ifreq
    // that lives across the call; TUNSETIFF reads it and writes the name back.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut req) };
    if rc < 0 {
        return Err(NetError::TunInterface {
            name: name.into(),
            source: io::Error::last_os_error(),
        });
    }
    // Persistent: closing the fd then costs nothing, and the device goes with its namespace
    // (the kernel tears that down in the background). A non-persistent tun is unregistered
    // synchronously on close, which held every sandbox's exit up by tens of milliseconds.
    const TUNSETPERSIST: libc::c_ulong = 0x4004_54cb;
    // SAFETY: an integer argument on our tun descriptor.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETPERSIST, 1 as libc::c_int) };
    if rc < 0 {
        return Err(NetError::TunInterface {
            name: name.into(),
            source: io::Error::last_os_error(),
        });
    }
    Ok(fd)
}

fn open_rw_nonblock(path: &Path) -> io::Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    // std opens with O_CLOEXEC; the catcher needs O_NONBLOCK.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    Ok(OwnedFd::from(file))
}

/// Some minimal containers have no /dev/net/tun even though the kernel has
/// tun: make the char device 10:200 in a fresh 0700 directory, open it, and
/// remove it again (the open fd keeps working).
fn open_private_tun_node() -> Result<OwnedFd, NetError> {
    use nix::sys::stat::{Mode, SFlag, makedev, mknod};

    use std::sync::atomic::{AtomicU32, Ordering};
    // Unique per process and call; create() below refuses an existing path.
    static CALLS: AtomicU32 = AtomicU32::new(0);
    let call = CALLS.fetch_add(1, Ordering::Relaxed);
    let dir: PathBuf =
        std::env::temp_dir().join(format!("openshell-tun-{}-{call}", std::process::id()));
    let fail = |source: io::Error| NetError::NoTunDevice {
        dir: dir.clone(),
        source,
    };
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(fail)?;
    let node = dir.join("tun");
    let opened = mknod(
        &node,
        SFlag::S_IFCHR,
        Mode::S_IRUSR | Mode::S_IWUSR,
        makedev(10, 200),
    )
    .map_err(io::Error::from)
    .and_then(|()| open_rw_nonblock(&node));
    // Best effort: the node and its directory are not needed once opened.
    let _ = std::fs::remove_file(&node);
    let _ = std::fs::remove_dir(&dir);
    opened.map_err(fail)
}

/// A NETLINK_ROUTE socket that sends one request at a time and waits for its ack.
struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

const NLMSG_HDRLEN: usize = 16;

impl Netlink {
    fn open() -> io::Result<Self> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkRoute,
        )?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0))?;
        Ok(Self { fd, seq: 0 })
    }

    /// `ip link set dev <index> up`
    fn set_link_up(&mut self, index: u32) -> io::Result<()> {
        let mut body = Vec::with_capacity(16);
        body.push(libc::AF_UNSPEC as u8); // ifi_family
        body.push(0); // padding
        body.extend_from_slice(&0u16.to_ne_bytes()); // ifi_type
        body.extend_from_slice(&index.to_ne_bytes()); // ifi_index
        body.extend_from_slice(&(libc::IFF_UP as u32).to_ne_bytes()); // ifi_flags
        body.extend_from_slice(&(libc::IFF_UP as u32).to_ne_bytes()); // ifi_change
        self.request(libc::RTM_NEWLINK, 0, &body)
    }

    /// `ip addr add <addr>/<prefix> dev <index> nodad`
    fn add_address(&mut self, index: u32, addr: IpAddr, prefix: u8) -> io::Result<()> {
        let (family, octets) = family_and_octets(addr);
        let mut body = Vec::with_capacity(64);
        body.push(family); // ifa_family
        body.push(prefix); // ifa_prefixlen
        // No duplicate address detection for IPv6: otherwise the address stays
        // tentative for a while and cannot be used as a source. The u8 field is
        // for old kernels, the u32 IFA_FLAGS attribute for current ones.
        let flags = if addr.is_ipv6() { libc::IFA_F_NODAD } else { 0 };
        body.push(flags as u8); // ifa_flags
        body.push(libc::RT_SCOPE_UNIVERSE); // ifa_scope
        body.extend_from_slice(&index.to_ne_bytes()); // ifa_index
        push_attr(&mut body, libc::IFA_LOCAL, &octets);
        push_attr(&mut body, libc::IFA_ADDRESS, &octets);
        if flags != 0 {
            push_attr(&mut body, libc::IFA_FLAGS, &flags.to_ne_bytes());
        }
        let flags = (libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16;
        self.request(libc::RTM_NEWADDR, flags, &body)
    }

    /// `ip route add default dev <index> src <src>`
    fn add_default_route(&mut self, index: u32, src: IpAddr) -> io::Result<()> {
        let (family, octets) = family_and_octets(src);
        let mut body = Vec::with_capacity(32);
        body.push(family); // rtm_family
        body.push(0); // rtm_dst_len: the default route
        body.push(0); // rtm_src_len
        body.push(0); // rtm_tos
        body.push(libc::RT_TABLE_MAIN); // rtm_table
        body.push(libc::RTPROT_STATIC); // rtm_protocol
        // A route without a gateway is link scoped (as `ip route` makes it).
        body.push(if src.is_ipv4() {
            libc::RT_SCOPE_LINK
        } else {
            libc::RT_SCOPE_UNIVERSE
        }); // rtm_scope
        body.push(libc::RTN_UNICAST); // rtm_type
        body.extend_from_slice(&0u32.to_ne_bytes()); // rtm_flags
        push_attr(&mut body, libc::RTA_OIF, &index.to_ne_bytes());
        push_attr(&mut body, libc::RTA_PREFSRC, &octets);
        // EXCL, not REPLACE: run by mistake in a namespace that already has
        // a default route (the host's), this fails instead of hijacking it.
        let flags = (libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16;
        self.request(libc::RTM_NEWROUTE, flags, &body)
    }

    /// `ip -6 route get <dst>`: the type (RTN_*) of the route the kernel
    /// would use for `dst`.
    fn route_type(&mut self, dst: Ipv6Addr) -> io::Result<u8> {
        let mut body = Vec::with_capacity(32);
        body.push(libc::AF_INET6 as u8); // rtm_family
        body.push(128); // rtm_dst_len
        body.extend_from_slice(&[0; 6]); // src_len, tos, table, protocol, scope, type
        body.extend_from_slice(&0u32.to_ne_bytes()); // rtm_flags
        push_attr(&mut body, libc::RTA_DST, &dst.octets());
        match self.transact(libc::RTM_GETROUTE, 0, &body)? {
            // rtm_type is the 8th byte of the rtmsg that starts the reply.
            Some(reply) if reply.len() >= 8 => Ok(reply[7]),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "no route in the kernel's answer to a route lookup",
            )),
        }
    }

    /// Sends a request that the kernel acks and waits for the ack.
    fn request(&mut self, msg_type: u16, flags: u16, body: &[u8]) -> io::Result<()> {
        let flags = flags | libc::NLM_F_ACK as u16;
        self.transact(msg_type, flags, body).map(drop)
    }

    /// Sends one request and returns the payload of the kernel's answer to it
    /// (None for a bare ack).
    fn transact(&mut self, msg_type: u16, flags: u16, body: &[u8]) -> io::Result<Option<Vec<u8>>> {
        self.seq = self.seq.wrapping_add(1);
        let len = u32::try_from(NLMSG_HDRLEN + body.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "netlink message too big"))?;
        let mut msg = Vec::with_capacity(NLMSG_HDRLEN + body.len());
        msg.extend_from_slice(&len.to_ne_bytes());
        msg.extend_from_slice(&msg_type.to_ne_bytes());
        let flags = flags | libc::NLM_F_REQUEST as u16;
        msg.extend_from_slice(&flags.to_ne_bytes());
        msg.extend_from_slice(&self.seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid: let the kernel fill it
        msg.extend_from_slice(body);

        retry_eintr(|| send(self.fd.as_raw_fd(), &msg, MsgFlags::empty()))?;

        let mut buf = vec![0u8; 8192];
        loop {
            let n = retry_eintr(|| recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty()))?;
            if let Some(result) = find_reply(&buf[..n], self.seq) {
                return result;
            }
        }
    }
}

fn retry_eintr<T>(mut f: impl FnMut() -> nix::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(Errno::EINTR) => continue,
            other => return other.map_err(io::Error::from),
        }
    }
}

/// Looks for the answer to request `seq` in one datagram from the kernel: an
/// NLMSG_ERROR with code 0 is an ack (None), another code a negated errno,
/// any other message the reply (its payload).
fn find_reply(mut data: &[u8], seq: u32) -> Option<io::Result<Option<Vec<u8>>>> {
    while data.len() >= NLMSG_HDRLEN {
        let len = u32::from_ne_bytes(data[0..4].try_into().ok()?) as usize;
        let msg_type = u16::from_ne_bytes(data[4..6].try_into().ok()?);
        let msg_seq = u32::from_ne_bytes(data[8..12].try_into().ok()?);
        if len < NLMSG_HDRLEN || len > data.len() {
            return Some(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "malformed netlink answer",
            )));
        }
        if msg_seq == seq {
            let payload = &data[NLMSG_HDRLEN..len];
            if msg_type != libc::NLMSG_ERROR as u16 {
                return Some(Ok(Some(payload.to_vec())));
            }
            let code = i32::from_ne_bytes(payload.get(..4)?.try_into().ok()?);
            return Some(if code == 0 {
                Ok(None)
            } else {
                Err(io::Error::from_raw_os_error(code.saturating_neg()))
            });
        }
        let aligned = (len + 3) & !3;
        data = data.get(aligned..).unwrap_or(&[]);
    }
    None
}

fn family_and_octets(addr: IpAddr) -> (u8, Vec<u8>) {
    match addr {
        IpAddr::V4(a) => (libc::AF_INET as u8, a.octets().to_vec()),
        IpAddr::V6(a) => (libc::AF_INET6 as u8, a.octets().to_vec()),
    }
}

/// Appends one rtattr (length, type, payload, padding to 4 bytes).
fn push_attr(buf: &mut Vec<u8>, attr_type: u16, payload: &[u8]) {
    let len = (4 + payload.len()) as u16;
    buf.extend_from_slice(&len.to_ne_bytes());
    buf.extend_from_slice(&attr_type.to_ne_bytes());
    buf.extend_from_slice(payload);
    buf.resize(buf.len().next_multiple_of(4), 0);
}
