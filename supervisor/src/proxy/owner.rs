//! Which process opened a connection to the proxy, from the kernel: the socket's inode in the
//! sandbox's TCP table, the process holding it, and that process's executable. Nothing the
//! process says is trusted.

use nix::fcntl::{OFlag, open, readlinkat};
use nix::sys::stat::Mode;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::sync::Mutex;

/// The process behind a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub pid: u32,
    /// The executable's path as the sandbox sees it.
    pub exe: String,
}

/// The last owner, with its `/proc` directory held open: looking a name up relative to
/// it skips resolving `/proc/<pid>` every time, and once that process has exited they
/// answer nothing, so a later process given the same pid is never taken for it.
struct Last {
    pid: u32,
    fd: i32,
    /// The descriptor's link, relative to `proc_dir` (`fd/<fd>`).
    fd_link: String,
    proc_dir: OwnedFd,
    /// To take a copy of the descriptor (`pidfd_getfd`), when the kernel allows it.
    pidfd: Option<OwnedFd>,
}

impl Last {
    fn open(pid: u32, fd: u32) -> Option<Last> {
        let proc_dir = open(
            format!("/proc/{pid}").as_str(),
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .ok()?;
        let pidfd = pidfd_open(pid);
        Some(Last {
            pid,
            fd: i32::try_from(fd).ok()?,
            fd_link: format!("fd/{fd}"),
            proc_dir,
            pidfd,
        })
    }

    /// The owner, when its descriptor `fd` is still the client end of the connection from
    /// `peer` to `local`: a copy of the descriptor is asked for its addresses, which in the
    /// sandbox's network namespace name one TCP connection and no other. This spares the
    /// sock_diag round trip and the descriptor's link; without a copy, `None`.
    fn holds_connection(&self, peer: SocketAddr, local: SocketAddr) -> Option<Owner> {
        let pidfd = self.pidfd.as_ref()?;
        let copy = pidfd_getfd(pidfd, self.fd)?;
        let sock = socket2::SockRef::from(&copy);
        // Sandbox processes cannot make network namespaces or be handed sockets from outside,
        // so the pair of addresses is unique; UDP has the same addresses in another space.
        let tcp = sock.protocol().ok().flatten() == Some(socket2::Protocol::TCP);
        let same = |a: std::io::Result<socket2::SockAddr>, want: SocketAddr| {
            a.ok().and_then(|a| a.as_socket()) == Some(want)
        };
        if !(tcp && same(sock.local_addr(), peer) && same(sock.peer_addr(), local)) {
            return None;
        }
        self.exe()
    }

    fn exe(&self) -> Option<Owner> {
        let exe = readlinkat(&self.proc_dir, "exe").ok()?;
        Some(Owner {
            pid: self.pid,
            exe: exe.to_string_lossy().into_owned(),
        })
    }

    /// The owner, when its descriptor `fd` still holds `target`.
    fn holds(&self, target: &str) -> Option<Owner> {
        let link = readlinkat(&self.proc_dir, self.fd_link.as_str()).ok()?;
        if link.as_os_str() != target {
            return None;
        }
        self.exe()
    }
}

/// Looks up connection owners inside one sandbox.
pub struct OwnerLookup {
    /// A process inside the sandbox (its PID 1), whose `/proc/<pid>/net` is the sandbox's.
    init_pid: u32,
    /// The sandbox's network namespace, to recognise its processes.
    netns: (u64, u64),
    /// The last owner found and the descriptor it held the socket on: the next connection
    /// most often comes from the same process, on the same (lowest free) descriptor.
    last: Mutex<Option<Last>>,
    /// A sock_diag netlink socket made inside the sandbox's network namespace: it finds one
    /// socket by its addresses directly, where `/proc/net/tcp` walks the whole hash table.
    diag: Option<Mutex<OwnedFd>>,
}

impl OwnerLookup {
    /// `diag` is a socket from [`sock_diag_socket`] made in the sandbox's network namespace;
    /// without one, lookups read `/proc/<init_pid>/net/tcp` (slow on large machines).
    pub fn new(init_pid: u32, diag: Option<OwnedFd>) -> std::io::Result<OwnerLookup> {
        let m = std::fs::metadata(format!("/proc/{init_pid}/ns/net"))?;
        Ok(OwnerLookup {
            init_pid,
            netns: (m.dev(), m.ino()),
            last: Mutex::new(None),
            diag: diag.map(Mutex::new),
        })
    }

    /// The owner of the client end `peer` of a connection accepted on `local`.
    ///
    /// Most connections come from the last owner on the same descriptor: a copy of it that
    /// has the connection's addresses settles it. Otherwise the socket's inode comes from the
    /// kernel (sock_diag by exact addresses); its holder is looked for first where the last
    /// one was, then among the sandbox's own processes (the descendants of its PID 1), and
    /// only then in every process of the sandbox's network namespace. The executable is read
    /// afresh every time (a process may have exec'd).
    pub fn find(&self, peer: SocketAddr, local: SocketAddr) -> Option<Owner> {
        let mut last = self.last.lock().ok()?;
        if let Some(o) = last.as_ref().and_then(|l| l.holds_connection(peer, local)) {
            return Some(o);
        }
        let inode = self.socket_inode(peer, local)?;
        let target = format!("socket:[{inode}]");
        let last_pid = last.as_ref().map(|l| l.pid);
        if let Some(pid) = last_pid {
            if let Some(o) = last.as_ref().and_then(|l| l.holds(&target)) {
                return Some(o);
            }
            // The same process, on another descriptor.
            if let Some(fd) = held_on(pid, &target)
                && let Some(o) = found(&mut last, pid, fd)
            {
                return Some(o);
            }
        }
        let mut seen = Vec::new();
        for pid in self.descendants() {
            if Some(pid) != last_pid
                && let Some(fd) = held_on(pid, &target)
                && let Some(o) = found(&mut last, pid, fd)
            {
                return Some(o);
            }
            seen.push(pid);
        }
        let dir = std::fs::read_dir("/proc").ok()?;
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if Some(pid) == last_pid || seen.contains(&pid) || !self.in_sandbox(pid) {
                continue;
            }
            if let Some(fd) = held_on(pid, &target)
                && let Some(o) = found(&mut last, pid, fd)
            {
                return Some(o);
            }
        }
        None
    }

    /// The sandbox's PID 1 and its descendants (every thread's children), as the host numbers
    /// them. Processes that entered the namespace from outside are not among them.
    fn descendants(&self) -> Vec<u32> {
        let mut out = vec![self.init_pid];
        let mut i = 0;
        while i < out.len() && out.len() < 4096 {
            let pid = out[i];
            i += 1;
            let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
                continue;
            };
            for t in tasks.flatten() {
                let path = t.path().join("children");
                let Ok(text) = std::fs::read_to_string(path) else {
                    continue;
                };
                for c in text.split_ascii_whitespace().filter_map(|c| c.parse().ok()) {
                    if !out.contains(&c) {
                        out.push(c);
                    }
                }
            }
        }
        out
    }

    fn in_sandbox(&self, pid: u32) -> bool {
        std::fs::metadata(format!("/proc/{pid}/ns/net"))
            .is_ok_and(|m| (m.dev(), m.ino()) == self.netns)
    }

    fn socket_inode(&self, peer: SocketAddr, local: SocketAddr) -> Option<u64> {
        if let Some(diag) = &self.diag {
            let fd = diag.lock().ok()?;
            return diag_inode(&fd, peer, local);
        }
        let table = match peer.ip() {
            IpAddr::V4(_) => "tcp",
            IpAddr::V6(_) => "tcp6",
        };
        let text = std::fs::read_to_string(format!("/proc/{}/net/{table}", self.init_pid)).ok()?;
        let want_local = hex_addr(peer);
        let want_remote = hex_addr(local);
        text.lines().skip(1).find_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 9
                && f[1].eq_ignore_ascii_case(&want_local)
                && f[2].eq_ignore_ascii_case(&want_remote)
            {
                f[9].parse().ok()
            } else {
                None
            }
        })
    }
}

/// A NETLINK_SOCK_DIAG socket; create it inside the sandbox's network namespace.
pub fn sock_diag_socket() -> std::io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the result is checked and owned at once.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let tv = libc::timeval {
        tv_sec: 1,
        tv_usec: 0,
    };
    // SAFETY: valid fd and a correctly sized timeval.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
    }
    Ok(fd)
}

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const INET_DIAG_NOCOOKIE: u32 = !0;

/// The inode of the TCP socket whose local end is `peer` and remote end `local`, asked of the
/// kernel by exact address (no table walk).
fn diag_inode(fd: &OwnedFd, peer: SocketAddr, local: SocketAddr) -> Option<u64> {
    // nlmsghdr (16) + inet_diag_req_v2 (56)
    let mut req = [0u8; 72];
    req[0..4].copy_from_slice(&72u32.to_ne_bytes());
    req[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req[6..8].copy_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
    let family = match peer {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    req[16] = family as u8;
    req[17] = libc::IPPROTO_TCP as u8;
    req[20..24].copy_from_slice(&u32::MAX.to_ne_bytes()); // every state
    let id = 24;
    req[id..id + 2].copy_from_slice(&peer.port().to_be_bytes());
    req[id + 2..id + 4].copy_from_slice(&local.port().to_be_bytes());
    let put = |buf: &mut [u8], ip: IpAddr| match ip {
        IpAddr::V4(v4) => buf[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => buf[..16].copy_from_slice(&v6.octets()),
    };
    put(&mut req[id + 4..id + 20], peer.ip());
    put(&mut req[id + 20..id + 36], local.ip());
    req[id + 40..id + 44].copy_from_slice(&INET_DIAG_NOCOOKIE.to_ne_bytes());
    req[id + 44..id + 48].copy_from_slice(&INET_DIAG_NOCOOKIE.to_ne_bytes());
    // SAFETY: sending our buffer on a valid fd; the kernel address is the zeroed default.
    let sent = unsafe {
        let mut addr: libc::sockaddr_nl = std::mem::zeroed();
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        libc::sendto(
            fd.as_raw_fd(),
            req.as_ptr().cast(),
            req.len(),
            0,
            (&addr as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return None;
    }
    let mut buf = [0u8; 8192];
    // SAFETY: receiving into our buffer on a valid fd.
    let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 16 + 72 {
        return None;
    }
    let kind = u16::from_ne_bytes([buf[4], buf[5]]);
    if kind != SOCK_DIAG_BY_FAMILY {
        return None;
    }
    // inet_diag_msg.idiag_inode is at offset 68 of the message body.
    let at = 16 + 68;
    Some(u64::from(u32::from_ne_bytes([
        buf[at],
        buf[at + 1],
        buf[at + 2],
        buf[at + 3],
    ])))
}

/// An address as `/proc/net/tcp` prints it: the address in memory order as 32-bit words in
/// host order, then the port.
fn hex_addr(a: SocketAddr) -> String {
    let ip = match a.ip() {
        IpAddr::V4(v4) => format!("{:08X}", u32::from_ne_bytes(v4.octets())),
        IpAddr::V6(v6) => v6
            .octets()
            .chunks(4)
            .map(|c| format!("{:08X}", u32::from_ne_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
    };
    format!("{ip}:{:04X}", a.port())
}

/// A pidfd for `pid`, or `None` where the kernel has none.
fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    let pid = libc::pid_t::try_from(pid).ok()?;
    // SAFETY: plain pidfd_open(2); the result is checked and owned at once.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = i32::try_from(fd).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    Some(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

/// A copy of descriptor `fd` of the process behind `pidfd` (pidfd_getfd(2)).
fn pidfd_getfd(pidfd: &OwnedFd, fd: i32) -> Option<OwnedFd> {
    // SAFETY: plain pidfd_getfd(2) on a pidfd we own; the result is checked and owned.
    let copy = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
    let copy = i32::try_from(copy).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: `copy` is a fresh descriptor nobody else owns (the kernel sets CLOEXEC on it).
    Some(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(copy) })
}

/// The owner `pid`, remembered (with the descriptor `fd` it held the socket on) for the next
/// lookup.
fn found(last: &mut Option<Last>, pid: u32, fd: u32) -> Option<Owner> {
    let l = Last::open(pid, fd)?;
    let o = l.exe()?;
    *last = Some(l);
    Some(o)
}

/// The descriptor on which `pid` holds `target` (`socket:[inode]`), if it does.
fn held_on(pid: u32, target: &str) -> Option<u32> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    fds.flatten().find_map(|fd| {
        std::fs::read_link(fd.path())
            .is_ok_and(|l| l.as_os_str() == target)
            .then(|| fd.file_name().to_str()?.parse().ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A loopback listener at `local`.
    fn listener() -> (std::net::TcpListener, SocketAddr) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let local = listener.local_addr().expect("addr");
        (listener, local)
    }

    /// A connection to `listener`: the client end, the accepted end, and the client's address.
    fn connection(
        listener: &std::net::TcpListener,
    ) -> (std::net::TcpStream, std::net::TcpStream, SocketAddr) {
        let local = listener.local_addr().expect("addr");
        let client = std::net::TcpStream::connect(local).expect("connect");
        let (server, peer) = listener.accept().expect("accept");
        (client, server, peer)
    }

    #[test]
    fn finds_our_own_connection() {
        let (listener, local) = listener();
        let (client, _server, peer) = connection(&listener);
        let me = std::process::id();
        for diag in [None, Some(sock_diag_socket().expect("sock_diag"))] {
            let lookup = OwnerLookup::new(me, diag).expect("lookup");
            let found = lookup.find(peer, local).expect("owner found");
            assert_eq!(found.pid, me);
            // Again: now from the remembered owner's descriptor.
            assert_eq!(lookup.find(peer, local), Some(found));
        }
        let lookup = OwnerLookup::new(me, None).expect("lookup");
        let found = lookup.find(peer, local).expect("owner found");
        assert_eq!(
            std::path::PathBuf::from(&found.exe),
            std::env::current_exe().expect("exe")
        );
        drop(client);
    }

    /// The remembered descriptor settles a lookup only for its own connection: another
    /// connection's addresses, or a descriptor that is no longer a TCP socket, do not.
    #[test]
    fn a_remembered_descriptor_answers_only_for_its_connection() {
        let (listener, local) = listener();
        let (client, _server, peer) = connection(&listener);
        let (other, _server2, other_peer) = connection(&listener);
        let fd = u32::try_from(client.as_raw_fd()).expect("fd");
        let last = Last::open(std::process::id(), fd).expect("open /proc");
        assert!(last.pidfd.is_some(), "pidfd_open (Linux 5.3) is available");
        let me = last
            .holds_connection(peer, local)
            .expect("its own connection");
        assert_eq!(me.pid, std::process::id());
        assert_eq!(last.holds_connection(other_peer, local), None);
        // The same descriptor number, now a UDP socket with the same addresses.
        let udp = std::net::UdpSocket::bind(peer).expect("udp bind");
        udp.connect(local).expect("udp connect");
        // The TCP socket's number is taken over in one step (dup2 closes it), so no other
        // test's descriptor can land on it meanwhile.
        let raw = std::os::fd::IntoRawFd::into_raw_fd(client);
        // SAFETY: dup2 onto a descriptor this test owns; the result is owned at once.
        let moved = unsafe { libc::dup2(udp.as_raw_fd(), raw) };
        assert_eq!(moved, raw, "dup2");
        // SAFETY: `raw` is the descriptor dup2 just made.
        let _udp_at_raw = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
        assert_eq!(last.holds_connection(peer, local), None);
        drop(other);
    }
}
