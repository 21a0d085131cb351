//! A network namespace made by the test, joined to the host by a veth pair: a stand-in for
//! "the internet" that the proxy reaches by address, and that nothing else can.

use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A named namespace with `10.<a>.<b>.2` inside and `.1` on the host; deleted on drop.
pub struct NetNs {
    pub name: String,
    host_if: String,
    pub host_addr: std::net::Ipv4Addr,
    pub addr: std::net::Ipv4Addr,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("run ip (iproute2 must be installed)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether the host has `a` (or another address of its /30) on an interface already.
fn address_in_use(a: std::net::Ipv4Addr) -> bool {
    let out = Command::new("ip")
        .args(["-4", "-o", "addr", "show", "to", &format!("{a}/30")])
        .output()
        .expect("run ip (iproute2 must be installed)");
    !String::from_utf8_lossy(&out.stdout).trim().is_empty()
}

impl NetNs {
    pub fn create() -> NetNs {
        crate::require_root();
        let pid = std::process::id();
        // A /30 per namespace, from the pid and a counter, so parallel tests never collide;
        // one already on the host (left by a run that was killed) is passed over.
        let (n, host_addr, addr) = loop {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let a = 64 + (pid % 64) as u8;
            let b = (n * 4 % 256) as u8;
            let c = (n / 64 % 256) as u8;
            let host_addr = std::net::Ipv4Addr::new(10, a, c, b + 1);
            if !address_in_use(host_addr) {
                break (n, host_addr, std::net::Ipv4Addr::new(10, a, c, b + 2));
            }
        };
        let tag = format!("{:x}{:x}", pid % 0xffff, n);
        let name = format!("oste{tag}");
        let host_if = format!("osh{tag}");
        let ns_if = format!("osn{tag}");
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        ip(&["netns", "add", &name]);
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
        ]);
        ip(&["link", "set", &ns_if, "netns", &name]);
        ip(&["addr", "add", &format!("{host_addr}/30"), "dev", &host_if]);
        ip(&["link", "set", &host_if, "up"]);
        ip(&[
            "-n",
            &name,
            "addr",
            "add",
            &format!("{addr}/30"),
            "dev",
            &ns_if,
        ]);
        ip(&["-n", &name, "link", "set", &ns_if, "up"]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        NetNs {
            name,
            host_if,
            host_addr,
            addr,
        }
    }

    /// Runs `f` on a thread inside the namespace: sockets it makes stay there.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let file = std::fs::File::open(format!("/run/netns/{}", self.name)).expect("open netns");
        std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: setns on this thread only; the fd is valid for the call.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .expect("thread in netns")
        })
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}
