//! Which process opened a connection to the proxy, from the kernel: the socket's inode in the
//! sandbox's TCP table, the process holding it, and that process's executable. Nothing the
//! process says is trusted.

use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::MetadataExt;
use std::sync::Mutex;

/// The process behind a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub pid: u32,
    /// The executable's path as the sandbox sees it.
    pub exe: String,
}

/// Looks up connection owners inside one sandbox.
pub struct OwnerLookup {
    /// A process inside the sandbox (its PID 1), whose `/proc/<pid>/net` is the sandbox's.
    init_pid: u32,
    /// The sandbox's network namespace, to recognise its processes.
    netns: (u64, u64),
    /// The last owner found: the next connection most often comes from the same process.
    last: Mutex<Option<u32>>,
}

impl OwnerLookup {
    pub fn new(init_pid: u32) -> std::io::Result<OwnerLookup> {
        let m = std::fs::metadata(format!("/proc/{init_pid}/ns/net"))?;
        Ok(OwnerLookup {
            init_pid,
            netns: (m.dev(), m.ino()),
            last: Mutex::new(None),
        })
    }

    /// The owner of the client end `peer` of a connection accepted on `local`.
    pub fn find(&self, peer: SocketAddr, local: SocketAddr) -> Option<Owner> {
        let inode = self.socket_inode(peer, local)?;
        let target = format!("socket:[{inode}]");
        let last = self.last.lock().ok().and_then(|g| *g);
        if let Some(pid) = last
            && holds(pid, &target)
            && let Some(o) = owner(pid)
        {
            return Some(o);
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
            if Some(pid) == last || !self.in_sandbox(pid) {
                continue;
            }
            if holds(pid, &target) {
                if let Ok(mut g) = self.last.lock() {
                    *g = Some(pid);
                }
                return owner(pid);
            }
        }
        None
    }

    fn in_sandbox(&self, pid: u32) -> bool {
        std::fs::metadata(format!("/proc/{pid}/ns/net"))
            .is_ok_and(|m| (m.dev(), m.ino()) == self.netns)
    }

    fn socket_inode(&self, peer: SocketAddr, local: SocketAddr) -> Option<u64> {
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

fn holds(pid: u32, target: &str) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten()
        .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == target))
}

fn owner(pid: u32) -> Option<Owner> {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    Some(Owner {
        pid,
        exe: exe.to_string_lossy().into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_our_own_connection() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let local = listener.local_addr().expect("addr");
        let client = std::net::TcpStream::connect(local).expect("connect");
        let (_server, peer) = listener.accept().expect("accept");
        let me = std::process::id();
        let lookup = OwnerLookup::new(me).expect("lookup");
        let found = lookup.find(peer, local).expect("owner found");
        assert_eq!(found.pid, me);
        assert_eq!(
            std::path::PathBuf::from(&found.exe),
            std::env::current_exe().expect("exe")
        );
        drop(client);
    }
}
