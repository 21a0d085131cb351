//! The inspected connection. Inside a terminated tunnel every request is read, decided on its
//! own, and forwarded or answered with the refusal; answers go back in request order.
//!
//! One future drives both directions with its own buffers: a request is read, decided and
//! written on in the same turn it arrives, and so is its answer, with no task or channel
//! between the two sides. Framing is read strictly ([`super::h1`]) and written again, so the
//! server never sees a request the proxy did not see end.

use super::h1::chunked::Chunked;
use super::h1::head::{self, Body, Parsed};
use super::inspect::Conn;
use super::upstream;
use rustls::pki_types::ServerName;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// Read buffer to start with, per side; a head that does not fit grows it up to the head limit.
const INBUF: usize = 16 * 1024;
/// Past this much waiting to be written to a side, the other side is not read.
const HIGH_WATER: usize = 256 * 1024;
/// Requests a client may have in flight before its next ones wait to be read.
const MAX_IN_FLIGHT: usize = 16;
/// How long closing a side may take.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// The server's side of the relay.
pub enum Up {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Up {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Up::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Up::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Up {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Up::Plain(s) => Pin::new(s).poll_write(cx, b),
            Up::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, b),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Up::Plain(s) => Pin::new(s).poll_flush(cx),
            Up::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Up::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Up::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Bytes read from one side and not yet taken: an initialised buffer reused for every read.
struct Inbuf {
    data: Vec<u8>,
    start: usize,
    end: usize,
}

impl Inbuf {
    fn new() -> Inbuf {
        Inbuf {
            data: Vec::new(),
            start: 0,
            end: 0,
        }
    }

    fn unread(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    fn len(&self) -> usize {
        self.end - self.start
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start >= self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Room to read into, or `None` when the unread bytes fill the largest buffer allowed.
    fn space(&mut self) -> Option<&mut [u8]> {
        if self.data.is_empty() {
            self.data = vec![0; INBUF];
        }
        if self.end == self.data.len() && self.start > 0 {
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.data.len() {
            let limit = head::MAX_HEAD + INBUF;
            if self.data.len() >= limit {
                return None;
            }
            self.data.resize((self.data.len() * 2).min(limit), 0);
        }
        Some(&mut self.data[self.end..])
    }
}

/// Bytes waiting to be written to one side.
#[derive(Default)]
struct Outbuf {
    data: Vec<u8>,
    at: usize,
    /// Written bytes may still sit in the TLS layer.
    flush: bool,
}

impl Outbuf {
    fn pending(&self) -> usize {
        self.data.len() - self.at
    }

    /// Writes what is pending; `Ready(Err)` when the side is gone.
    fn poll_drain<S: AsyncWrite + Unpin>(
        &mut self,
        s: &mut S,
        cx: &mut Context<'_>,
        moved: &mut bool,
    ) -> Poll<io::Result<()>> {
        while self.at < self.data.len() {
            let n = ready!(Pin::new(&mut *s).poll_write(cx, &self.data[self.at..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.at += n;
            self.flush = true;
            *moved = true;
        }
        self.data.clear();
        self.at = 0;
        if self.flush {
            ready!(Pin::new(&mut *s).poll_flush(cx))?;
            self.flush = false;
        }
        Poll::Ready(Ok(()))
    }
}

/// How the rest of a body is delimited.
enum Framing {
    Length(u64),
    Chunked(Chunked),
    UntilClose,
}

impl Framing {
    fn of(b: Body) -> Option<Framing> {
        match b {
            Body::None | Body::Length(0) => None,
            Body::Length(n) => Some(Framing::Length(n)),
            Body::Chunked => Some(Framing::Chunked(Chunked::new())),
            Body::UntilClose => Some(Framing::UntilClose),
        }
    }

    /// Moves body bytes from `input` to `out` (or past them, without `out`); how many were
    /// taken and whether the body ended.
    fn take(&mut self, input: &[u8], out: Option<&mut Vec<u8>>) -> Result<(usize, bool), String> {
        match self {
            Framing::Length(left) => {
                let n = input
                    .len()
                    .min(usize::try_from(*left).unwrap_or(usize::MAX));
                if let Some(out) = out {
                    out.extend_from_slice(&input[..n]);
                }
                *left -= n as u64;
                Ok((n, *left == 0))
            }
            Framing::Chunked(c) => {
                let n = c.feed(input, out)?;
                Ok((n, c.is_done()))
            }
            Framing::UntilClose => {
                if let Some(out) = out {
                    out.extend_from_slice(input);
                }
                Ok((input.len(), false))
            }
        }
    }
}

/// What the request side does next.
enum Req {
    Head,
    /// A body, forwarded (or, for a refused request, read past), then `after`.
    Body {
        framing: Framing,
        after: After,
        forward: bool,
    },
    /// An upgrade was asked for: nothing more is read until the server answers it.
    AwaitUpgrade,
    /// Switched protocols: bytes pass as they are.
    Raw,
    /// No more requests are read on this connection.
    Stopped,
}

#[derive(Clone, Copy)]
enum After {
    Head,
    AwaitUpgrade,
    Stop,
}

/// What the answer side does next.
enum Resp {
    /// Between answers.
    Idle,
    /// Reading the head answering the request at the front of the queue.
    Head,
    /// Passing the answer's body; `close` ends the connection after it.
    Body(Framing, bool),
    Raw,
}

/// A request awaiting its answer, in order.
enum Exchange {
    /// Sent to the server.
    Sent {
        head: bool,
        upgrade: bool,
        close: bool,
        /// Some of the answer has gone to the client already.
        answered: bool,
    },
    /// Answered by the proxy itself (a refusal).
    Answer { bytes: Vec<u8>, close: bool },
}

/// Why the relay stopped polling.
enum Step {
    Done,
    /// A request is ready to go but there is no server connection.
    NeedUpstream,
}

struct Relay<'a, C> {
    conn: &'a Conn,
    client: C,
    up: Option<Up>,
    cin: Inbuf,
    uin: Inbuf,
    cout: Outbuf,
    uout: Outbuf,
    req: Req,
    resp: Resp,
    queue: VecDeque<Exchange>,
    /// The client has sent all it will.
    client_eof: bool,
    /// The server closed (or failed) on this connection.
    up_eof: bool,
    /// Once the client has everything pending, the connection ends.
    closing: bool,
}

/// Serves an inspected connection until it ends. `first` is the server connection opened for
/// the tunnel; `tls` the name to verify the server by when the client spoke TLS.
pub async fn serve<C>(client: C, first: TcpStream, tls: Option<ServerName<'static>>, conn: &Conn)
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let mut r = Relay {
        conn,
        client,
        up: None,
        cin: Inbuf::new(),
        uin: Inbuf::new(),
        cout: Outbuf::default(),
        uout: Outbuf::default(),
        req: Req::Head,
        resp: Resp::Idle,
        queue: VecDeque::new(),
        client_eof: false,
        up_eof: false,
        closing: false,
    };
    let mut first = Some(first);
    loop {
        match poll_fn(|cx| r.poll_step(cx)).await {
            Step::Done => break,
            Step::NeedUpstream => {
                let tcp = match first.take() {
                    Some(s) => Ok(s),
                    None => upstream::connect(&conn.ips, conn.target.port).await,
                };
                let up = match (tcp, &tls) {
                    (Err(e), _) => Err(e),
                    (Ok(s), None) => Ok(Up::Plain(s)),
                    (Ok(s), Some(name)) => {
                        tokio_rustls::TlsConnector::from(conn.shared.upstream_tls.clone())
                            .connect(name.clone(), s)
                            .await
                            .map(|t| Up::Tls(Box::new(t)))
                            .map_err(|e| format!("TLS with {} failed: {e}", conn.target.host))
                    }
                };
                match up {
                    Ok(up) => {
                        r.up = Some(up);
                        r.up_eof = false;
                    }
                    Err(e) => r.unreachable(&e),
                }
            }
        }
    }
    // Orderly ends where they can still be had (TLS close_notify, FIN), briefly: a peer that
    // stopped reading must not keep the connection open.
    let _ = tokio::time::timeout(CLOSE_GRACE, r.client.shutdown()).await;
    if let Some(mut up) = r.up.take() {
        let _ = tokio::time::timeout(CLOSE_GRACE, up.shutdown()).await;
    }
}

impl<C: AsyncRead + AsyncWrite + Unpin> Relay<'_, C> {
    fn poll_step(&mut self, cx: &mut Context<'_>) -> Poll<Step> {
        loop {
            let mut moved = false;
            if self.read_client(cx, &mut moved).is_err() {
                return Poll::Ready(Step::Done);
            }
            self.read_up(cx, &mut moved);
            // Answers first: a server that closed between answers is let go before the next
            // request is read, so that request gets a new connection instead of an error.
            self.responses(&mut moved);
            if self.requests(&mut moved).is_err() {
                return Poll::Ready(Step::Done);
            }
            if self.uout.pending() > 0 && self.up.is_none() {
                return Poll::Ready(Step::NeedUpstream);
            }
            if let Some(up) = self.up.as_mut()
                && let Poll::Ready(Err(_)) = self.uout.poll_drain(up, cx, &mut moved)
            {
                // The server is gone; what it answered before still goes to the client.
                self.server_gone();
                moved = true;
            }
            match self.cout.poll_drain(&mut self.client, cx, &mut moved) {
                Poll::Ready(Err(_)) => return Poll::Ready(Step::Done),
                Poll::Ready(Ok(())) if self.finished() => return Poll::Ready(Step::Done),
                _ => {}
            }
            if !moved {
                return Poll::Pending;
            }
            super::busy_poll::moved();
        }
    }

    /// Everything owed to the client is written and nothing more will come.
    fn finished(&self) -> bool {
        let server_written = self.uout.pending() == 0 || self.up.is_none() || self.up_eof;
        self.cout.pending() == 0
            && !self.cout.flush
            && self.queue.is_empty()
            && server_written
            && (self.closing || (self.client_eof && !matches!(self.resp, Resp::Raw)))
    }

    fn read_client(&mut self, cx: &mut Context<'_>, moved: &mut bool) -> Result<(), ()> {
        if self.client_eof
            || matches!(self.req, Req::Stopped)
            || self.uout.pending() > HIGH_WATER
            || self.cout.pending() > HIGH_WATER
            || self.queue.len() >= MAX_IN_FLIGHT
        {
            return Ok(());
        }
        let Some(space) = self.cin.space() else {
            return Ok(());
        };
        let mut rb = ReadBuf::new(space);
        match Pin::new(&mut self.client).poll_read(cx, &mut rb) {
            Poll::Pending => Ok(()),
            Poll::Ready(Err(_)) => Err(()),
            Poll::Ready(Ok(())) => {
                let n = rb.filled().len();
                *moved = true;
                if n == 0 {
                    self.client_eof = true;
                } else {
                    self.cin.end += n;
                }
                Ok(())
            }
        }
    }

    fn read_up(&mut self, cx: &mut Context<'_>, moved: &mut bool) {
        if self.up_eof || self.cout.pending() > HIGH_WATER {
            return;
        }
        let Some(up) = self.up.as_mut() else {
            return;
        };
        let Some(space) = self.uin.space() else {
            return;
        };
        let mut rb = ReadBuf::new(space);
        match Pin::new(up).poll_read(cx, &mut rb) {
            Poll::Pending => {}
            Poll::Ready(Err(_)) => {
                *moved = true;
                self.server_gone();
            }
            Poll::Ready(Ok(())) => {
                let n = rb.filled().len();
                *moved = true;
                if n == 0 {
                    self.server_gone();
                } else {
                    self.uin.end += n;
                }
            }
        }
    }

    /// The server connection ended. Between answers that only means the next request needs a
    /// new one; in the middle of one the rest of the connection cannot be answered.
    fn server_gone(&mut self) {
        self.up_eof = true;
        self.uout.data.clear();
        self.uout.at = 0;
        self.uout.flush = false;
    }

    /// Reads, decides and forwards the requests in `cin`.
    fn requests(&mut self, moved: &mut bool) -> Result<(), ()> {
        loop {
            match &mut self.req {
                Req::Head => {
                    if self.cin.len() == 0 {
                        if self.client_eof {
                            self.req = Req::Stopped;
                        }
                        return Ok(());
                    }
                    if self.queue.len() >= MAX_IN_FLIGHT || self.uout.pending() > HIGH_WATER {
                        return Ok(());
                    }
                    if !self.one_request()? {
                        return Ok(());
                    }
                    *moved = true;
                }
                Req::Body {
                    framing,
                    after,
                    forward,
                } => {
                    if self.cin.len() == 0 {
                        if self.client_eof {
                            // The client stopped inside a body: nothing after it can be read.
                            return Err(());
                        }
                        return Ok(());
                    }
                    let after = *after;
                    let out = forward.then_some(&mut self.uout.data);
                    let (n, done) = framing.take(self.cin.unread(), out).map_err(|_| ())?;
                    self.cin.consume(n);
                    *moved = true;
                    if done {
                        self.req = match after {
                            After::Head => Req::Head,
                            After::AwaitUpgrade => Req::AwaitUpgrade,
                            After::Stop => Req::Stopped,
                        };
                    } else {
                        return Ok(());
                    }
                }
                Req::Raw => {
                    if self.cin.len() > 0 && !self.up_eof {
                        self.uout.data.extend_from_slice(self.cin.unread());
                        let n = self.cin.len();
                        self.cin.consume(n);
                        *moved = true;
                    }
                    return Ok(());
                }
                Req::AwaitUpgrade | Req::Stopped => return Ok(()),
            }
        }
    }

    /// Takes one request head from `cin`; false when it is not all there yet.
    fn one_request(&mut self) -> Result<bool, ()> {
        let conn = self.conn;
        let (n, exchange, next) = match head::request(self.cin.unread()) {
            Parsed::Partial => return Ok(false),
            Parsed::Invalid(why) => {
                let bytes = super::inspect::bad_request(conn, &why);
                self.queue
                    .push_back(Exchange::Answer { bytes, close: true });
                self.req = Req::Stopped;
                return Ok(true);
            }
            Parsed::Complete(r, n) => {
                let (path_and_query, path, query, authority) = match target_parts(r.target) {
                    Some(t) => t,
                    None => (
                        r.target.to_string(),
                        r.target.to_string(),
                        String::new(),
                        None,
                    ),
                };
                let host = r.host.map(String::from_utf8_lossy);
                let named: Vec<&str> = host
                    .as_deref()
                    .into_iter()
                    .chain(authority.as_deref())
                    .collect();
                let (decision, shown) =
                    super::inspect::decide(conn, r.method, &path, &query, &named);
                let framing = Framing::of(r.body);
                if decision.is_denied() {
                    // A client waiting for `100 Continue` may or may not send its body after
                    // a refusal: where the next request starts is unknowable, so end there.
                    let close = r.close || (r.expect_continue && framing.is_some());
                    let bytes = super::inspect::refusal(conn, &decision, r.method, &shown, close);
                    let after = if close { After::Stop } else { After::Head };
                    let next = match framing {
                        Some(framing) if !close => Req::Body {
                            framing,
                            after,
                            forward: false,
                        },
                        _ if close => Req::Stopped,
                        _ => Req::Head,
                    };
                    (n, Exchange::Answer { bytes, close }, next)
                } else {
                    head::write_request(
                        &r,
                        &path_and_query,
                        &conn.host_field(),
                        &mut self.uout.data,
                    );
                    let after = if r.upgrade {
                        After::AwaitUpgrade
                    } else if r.close {
                        After::Stop
                    } else {
                        After::Head
                    };
                    let next = match framing {
                        Some(framing) => Req::Body {
                            framing,
                            after,
                            forward: true,
                        },
                        None => match after {
                            After::Head => Req::Head,
                            After::AwaitUpgrade => Req::AwaitUpgrade,
                            After::Stop => Req::Stopped,
                        },
                    };
                    let exchange = Exchange::Sent {
                        head: r.method == "HEAD",
                        upgrade: r.upgrade,
                        close: r.close,
                        answered: false,
                    };
                    (n, exchange, next)
                }
            }
        };
        self.cin.consume(n);
        self.queue.push_back(exchange);
        self.req = next;
        Ok(true)
    }

    /// Passes the server's answers (and the proxy's own) to the client, in request order.
    fn responses(&mut self, moved: &mut bool) {
        loop {
            if self.cout.pending() > HIGH_WATER {
                return;
            }
            match &mut self.resp {
                Resp::Idle => match self.queue.front_mut() {
                    None => {
                        if self.uin.len() > 0 {
                            // Bytes nobody asked for: the server is not speaking HTTP/1.1
                            // as we understand it; stop using it.
                            self.uin.consume(self.uin.len());
                            self.drop_server();
                        } else if self.up_eof {
                            self.drop_server();
                        }
                        return;
                    }
                    Some(Exchange::Answer { bytes, close }) => {
                        let close = *close;
                        self.cout.data.append(bytes);
                        self.queue.pop_front();
                        *moved = true;
                        if close {
                            self.stop();
                        }
                    }
                    Some(Exchange::Sent { .. }) => self.resp = Resp::Head,
                },
                Resp::Head => {
                    if !self.answer_head(moved) {
                        return;
                    }
                }
                Resp::Body(f, close) => {
                    let close = *close;
                    if self.uin.len() == 0 {
                        if self.up_eof {
                            let ended = matches!(f, Framing::UntilClose);
                            if !ended {
                                // Cut short: the client must see the connection end.
                                self.stop();
                            }
                            self.end_exchange(true);
                            *moved = true;
                        }
                        return;
                    }
                    match f.take(self.uin.unread(), Some(&mut self.cout.data)) {
                        Ok((n, done)) => {
                            self.uin.consume(n);
                            *moved = true;
                            if done {
                                self.end_exchange(close);
                            }
                        }
                        Err(_) => {
                            self.stop();
                            self.end_exchange(true);
                            *moved = true;
                            return;
                        }
                    }
                }
                Resp::Raw => {
                    if self.uin.len() > 0 {
                        self.cout.data.extend_from_slice(self.uin.unread());
                        let n = self.uin.len();
                        self.uin.consume(n);
                        *moved = true;
                    }
                    if self.up_eof || self.client_eof {
                        // Either end closing ends the switched connection.
                        self.closing = true;
                    }
                    return;
                }
            }
        }
    }

    /// Reads the head answering the front request; false when it cannot yet.
    fn answer_head(&mut self, moved: &mut bool) -> bool {
        let Some(&Exchange::Sent {
            head: is_head,
            upgrade,
            close: req_close,
            answered,
        }) = self.queue.front()
        else {
            self.resp = Resp::Idle;
            return true;
        };
        let (n, close, framing, interim, switched) =
            match head::response(self.uin.unread(), is_head) {
                Parsed::Partial => {
                    if self.up_eof {
                        let why = "the server closed the connection without answering";
                        self.fail_front((!answered).then_some(why));
                        *moved = true;
                    }
                    return false;
                }
                Parsed::Invalid(why) => {
                    let why = format!("the server's answer is malformed: {why}");
                    self.fail_front((!answered).then_some(why.as_str()));
                    *moved = true;
                    return false;
                }
                Parsed::Complete(r, _) if r.status == 101 && !upgrade => {
                    let why = "the server switched protocols unasked";
                    self.fail_front((!answered).then_some(why));
                    *moved = true;
                    return false;
                }
                Parsed::Complete(r, n) => {
                    head::write_response(&r, &mut self.cout.data);
                    (
                        n,
                        r.close || req_close,
                        Framing::of(r.body),
                        (100..200).contains(&r.status) && r.status != 101,
                        r.status == 101,
                    )
                }
            };
        self.uin.consume(n);
        *moved = true;
        if let Some(Exchange::Sent { answered, .. }) = self.queue.front_mut() {
            *answered = true;
        }
        if switched {
            self.queue.pop_front();
            self.resp = Resp::Raw;
            self.req = Req::Raw;
            return true;
        }
        if interim {
            // `100 Continue` and the like: the final answer follows.
            return true;
        }
        if upgrade && matches!(self.req, Req::AwaitUpgrade) {
            // The switch was refused: the connection goes on as HTTP.
            self.req = Req::Head;
        }
        match framing {
            Some(f) => self.resp = Resp::Body(f, close),
            None => self.end_exchange(close),
        }
        true
    }

    /// The front exchange is answered in full.
    fn end_exchange(&mut self, close: bool) {
        self.queue.pop_front();
        self.resp = Resp::Idle;
        if close {
            self.stop();
        }
    }

    /// The front request gets no (more) answer from the server: with nothing sent yet the
    /// client is told why; then the connection ends, since what follows cannot be answered.
    fn fail_front(&mut self, why: Option<&str>) {
        if let Some(why) = why {
            let bytes = super::inspect::bad_gateway(self.conn, why);
            self.cout.data.extend_from_slice(&bytes);
        }
        self.queue.clear();
        self.stop();
        self.resp = Resp::Idle;
    }

    /// No more requests are read; the connection ends once the client has its answers.
    fn stop(&mut self) {
        self.req = Req::Stopped;
        self.closing = true;
        self.queue.retain(|e| matches!(e, Exchange::Answer { .. }));
    }

    /// Between answers the server closed or misbehaved: the next request gets a new server
    /// connection.
    fn drop_server(&mut self) {
        self.up = None;
        self.up_eof = false;
        self.uin.consume(self.uin.len());
    }

    /// Connecting to the server failed: the waiting request is answered with why, and the
    /// connection ends.
    fn unreachable(&mut self, why: &str) {
        self.uout.data.clear();
        self.uout.at = 0;
        let bytes = super::inspect::bad_gateway(self.conn, why);
        // Answers owed before the unsendable request still go first.
        while let Some(Exchange::Answer { .. }) = self.queue.front() {
            if let Some(Exchange::Answer { mut bytes, .. }) = self.queue.pop_front() {
                self.cout.data.append(&mut bytes);
            }
        }
        self.cout.data.extend_from_slice(&bytes);
        self.queue.clear();
        self.stop();
        self.up_eof = true;
    }
}

/// From a request target: what the server is sent (origin-form), the path decided on, the
/// query, and the authority an absolute-form target names. `None` for a target with no path
/// (`*`), decided as it is.
fn target_parts(target: &str) -> Option<(String, String, String, Option<String>)> {
    if target.starts_with('/') {
        let (p, q) = crate::engine::request::split_target(target);
        return Some((target.to_string(), p.to_string(), q.to_string(), None));
    }
    // Absolute-form inside the tunnel: the server gets the path and query.
    let uri: http::Uri = target.parse().ok()?;
    let pq = uri
        .path_and_query()
        .map(|pq| pq.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    Some((
        pq,
        uri.path().to_string(),
        uri.query().unwrap_or("").to_string(),
        uri.authority().map(|a| a.as_str().to_string()),
    ))
}

#[cfg(test)]
#[path = "relay_tests.rs"]
mod tests;
