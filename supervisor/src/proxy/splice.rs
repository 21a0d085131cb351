//! Zero-copy tunnels: bytes move socket → pipe → socket inside the kernel (splice(2)), so a
//! bulk transfer through the proxy costs no copies through user space.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use tokio::io::Interest;
use tokio::net::TcpStream;

const CHUNK: usize = 1 << 20;

/// What a fresh pipe holds (16 pages).
const DEFAULT_PIPE: usize = 64 * 1024;

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)?;
    Ok((r, w))
}

/// A larger pipe moves more per call; only worth it (and only paid) once a direction carries
/// bulk data. The default is fine when this is refused.
fn grow(w: &OwnedFd) {
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, CHUNK as libc::c_int);
    }
}

fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: splice between descriptors we hold; no user memory is involved.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Moves bytes from `from` to `to` until `from` ends, then half-closes `to`.
async fn one_way(from: &TcpStream, to: &TcpStream) -> io::Result<u64> {
    let (pr, pw) = pipe()?;
    let mut total = 0u64;
    let mut grown = false;
    loop {
        let n = loop {
            from.readable().await?;
            match from.try_io(Interest::READABLE, || {
                splice(from.as_raw_fd(), pw.as_raw_fd(), CHUNK)
            }) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            // SAFETY: shutdown on a socket we hold; the peer sees end of stream.
            unsafe {
                libc::shutdown(to.as_raw_fd(), libc::SHUT_WR);
            }
            return Ok(total);
        }
        let mut left = n;
        while left > 0 {
            to.writable().await?;
            match to.try_io(Interest::WRITABLE, || {
                splice(pr.as_raw_fd(), to.as_raw_fd(), left)
            }) {
                Ok(m) => left -= m,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
        total += n as u64;
        if !grown && n >= DEFAULT_PIPE {
            grow(&pw);
            grown = true;
        }
    }
}

/// Splices both directions until both have ended (or one fails).
pub async fn bidirectional(a: &TcpStream, b: &TcpStream) -> io::Result<(u64, u64)> {
    tokio::try_join!(one_way(a, b), one_way(b, a))
}
