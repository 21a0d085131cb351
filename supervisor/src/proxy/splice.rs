//! Tunnel bytes. A direction starts by copying through one buffer shared by every tunnel
//! (most tunnels carry a handshake and a few small messages, and a pipe would cost two
//! descriptors to make and close); once a read fills that buffer, bulk data is flowing and
//! the direction moves to splice(2): socket → pipe → socket inside the kernel, no copies
//! through user space.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Poll, ready};
use tokio::io::{AsyncRead, Interest, ReadBuf};
use tokio::net::TcpStream;
use tokio::net::tcp::ReadHalf;

/// The shared copy buffer; a read that fills it switches its direction to splice.
const COPY: usize = 16 * 1024;

const CHUNK: usize = 1 << 20;

/// What a fresh pipe holds (16 pages).
const DEFAULT_PIPE: usize = 64 * 1024;

thread_local! {
    // Only borrowed between two non-blocking calls, never across an await.
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; COPY].into_boxed_slice());
}

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

/// What one read-and-write through the shared buffer did.
enum Step {
    /// End of stream.
    End,
    /// `n` bytes read; `rest` of them could not be written yet.
    Moved { n: usize, rest: Vec<u8> },
}

/// Reads once from `from` and writes what it can of it to `to` at once. Reading through the
/// stream's own `poll_read` lets a short read tell the reactor the socket is drained, so the
/// next wait needs no read that only says "nothing yet".
async fn copy_once(from: &mut ReadHalf<'_>, to: &TcpStream) -> io::Result<Step> {
    poll_fn(|cx| {
        SCRATCH.with_borrow_mut(|buf| {
            let mut rb = ReadBuf::new(buf);
            ready!(Pin::new(&mut *from).poll_read(cx, &mut rb))?;
            let n = rb.filled().len();
            if n == 0 {
                return Poll::Ready(Ok(Step::End));
            }
            // Straight to the socket: the reactor may not have said yet that it has room.
            let w = match (&*socket2::SockRef::from(to)).write(&buf[..n]) {
                Ok(w) => w,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                Err(e) => return Poll::Ready(Err(e)),
            };
            // Empty (no allocation) unless `to` is slower than `from`.
            Poll::Ready(Ok(Step::Moved {
                n,
                rest: buf[w..n].to_vec(),
            }))
        })
    })
    .await
}

async fn write_all(to: &TcpStream, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        to.writable().await?;
        match to.try_write(data) {
            Ok(w) => data = &data[w..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The end of one direction: the peer is told (half-close), unless the other direction has
/// ended too, when closing both sockets (next) says it with one call less. Both receive
/// queues are drained by then, so the close sends FIN, not RST.
fn ended(to: &TcpStream, ends: &AtomicU8) {
    if ends.fetch_add(1, Ordering::Relaxed) == 0 {
        // SAFETY: shutdown on a socket we hold; the peer sees end of stream.
        unsafe {
            libc::shutdown(to.as_raw_fd(), libc::SHUT_WR);
        }
    }
}

/// Moves bytes from `from` to `to` until `from` ends.
async fn one_way(mut from_half: ReadHalf<'_>, to: &TcpStream, ends: &AtomicU8) -> io::Result<u64> {
    let mut total = 0u64;
    loop {
        match copy_once(&mut from_half, to).await? {
            Step::End => {
                ended(to, ends);
                return Ok(total);
            }
            Step::Moved { n, rest } => {
                super::busy_poll::moved();
                write_all(to, &rest).await?;
                total += n as u64;
                if n == COPY {
                    break;
                }
            }
        }
    }
    let from: &TcpStream = from_half.as_ref();
    let (pr, pw) = pipe()?;
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
            ended(to, ends);
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

/// Moves both directions until both have ended (or one fails).
pub async fn bidirectional(a: &mut TcpStream, b: &mut TcpStream) -> io::Result<(u64, u64)> {
    let ends = AtomicU8::new(0);
    let (ar, aw) = a.split();
    let (br, bw) = b.split();
    tokio::try_join!(
        one_way(ar, bw.as_ref(), &ends),
        one_way(br, aw.as_ref(), &ends)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn pair() -> (TcpStream, TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let a = TcpStream::connect(l.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (b, _) = l.accept().await.expect("accept");
        (a, b)
    }

    /// Small and bulk data both ways arrive whole and in order, and each end sees the other's
    /// end of stream (the half-close passes through).
    #[tokio::test(flavor = "current_thread")]
    async fn small_then_bulk_both_ways_with_half_close() {
        let (mut client, mut proxy_a) = pair().await;
        let (mut proxy_b, mut server) = pair().await;
        let tunnel = tokio::spawn(async move { bidirectional(&mut proxy_a, &mut proxy_b).await });
        let bulk: Vec<u8> = (0..3 * 1024 * 1024 + 17).map(|i| (i % 251) as u8).collect();
        let sent = bulk.clone();
        let up = tokio::spawn(async move {
            client.write_all(b"hello").await.expect("small");
            client.write_all(&sent).await.expect("bulk");
            client.shutdown().await.expect("half-close");
            let mut back = Vec::new();
            client.read_to_end(&mut back).await.expect("answer");
            back
        });
        let mut got = Vec::new();
        server
            .read_to_end(&mut got)
            .await
            .expect("server reads to the end");
        assert_eq!(&got[..5], b"hello");
        assert!(got[5..] == bulk[..], "bulk data arrives whole and in order");
        server.write_all(b"bye").await.expect("answer");
        server.write_all(&bulk).await.expect("bulk answer");
        drop(server);
        let back = up.await.expect("client");
        assert_eq!(&back[..3], b"bye");
        assert!(back[3..] == bulk[..]);
        let (a, b) = tunnel.await.expect("tunnel").expect("no error");
        assert_eq!(a, 5 + bulk.len() as u64);
        assert_eq!(b, 3 + bulk.len() as u64);
    }
}
