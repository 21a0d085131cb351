//! Message heads as the inspecting relay reads and re-writes them (RFC 9112). Strict wherever
//! a lax reading could let the client, the proxy and the server disagree about where a
//! message ends: such a message is refused, never guessed at, because a request the proxy
//! did not see end is a request it did not decide.

/// The longest head read; a longer one is refused.
pub const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 128;

/// How a message's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    None,
    Length(u64),
    Chunked,
    /// Until the sender closes (responses only).
    UntilClose,
}

/// The outcome of reading a head from the front of a buffer.
#[derive(Debug)]
pub enum Parsed<T> {
    /// More bytes are needed.
    Partial,
    /// The head and its length in bytes.
    Complete(T, usize),
    /// Refused, and why (for the answer and the event).
    Invalid(String),
}

/// A request head, borrowing the buffer it was read from.
#[derive(Debug)]
pub struct Request<'a> {
    pub method: &'a str,
    pub target: &'a str,
    /// HTTP/1.`minor`.
    pub minor: u8,
    pub headers: Vec<(&'a str, &'a [u8])>,
    pub body: Body,
    /// The client ends the connection after this exchange.
    pub close: bool,
    /// The client asks to switch to WebSocket (the one switch allowed: another, such as h2c,
    /// would carry requests past inspection; its fields are not passed on).
    pub upgrade: bool,
    /// The client waits for `100 Continue` before sending its body.
    pub expect_continue: bool,
    /// The `Host` field's value (at most one is accepted).
    pub host: Option<&'a [u8]>,
}

/// A response head, borrowing the buffer it was read from.
#[derive(Debug)]
pub struct Response<'a> {
    pub status: u16,
    pub reason: &'a str,
    pub headers: Vec<(&'a str, &'a [u8])>,
    pub body: Body,
    /// The server ends the connection after this response.
    pub close: bool,
}

fn is(name: &str, want: &str) -> bool {
    name.eq_ignore_ascii_case(want)
}

/// Comma-separated tokens of a header value, trimmed (for `Connection` and the like).
fn tokens(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',').map(|t| t.trim_ascii())
}

fn has_token(headers: &[(&str, &[u8])], name: &str, token: &str) -> bool {
    headers
        .iter()
        .filter(|(n, _)| is(n, name))
        .flat_map(|(_, v)| tokens(v))
        .any(|t| t.eq_ignore_ascii_case(token.as_bytes()))
}

/// The framing `Content-Length` and `Transfer-Encoding` give. A request must be unambiguous;
/// a response is read as RFC 9112 §6.3 says (chunked wins over a length beside it; another
/// last coding runs until close), since servers are less careful and we forward it re-framed.
fn framing(headers: &[(&str, &[u8])], minor: u8, request: bool) -> Result<Option<Body>, String> {
    let mut length: Option<u64> = None;
    let mut codings: Vec<&[u8]> = Vec::new();
    for (n, v) in headers {
        if is(n, "content-length") {
            // `Content-Length: 5, 5` and repeated fields are one length, if they all agree.
            for t in tokens(v) {
                if t.is_empty() || t.len() > 19 || !t.iter().all(u8::is_ascii_digit) {
                    return Err(format!(
                        "Content-Length `{}` is not a length",
                        String::from_utf8_lossy(v).escape_debug()
                    ));
                }
                let n: u64 = std::str::from_utf8(t)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| "Content-Length is too large".to_string())?;
                if length.is_some_and(|l| l != n) {
                    return Err("Content-Length fields disagree".into());
                }
                length = Some(n);
            }
        } else if is(n, "transfer-encoding") {
            codings.extend(tokens(v).filter(|t| !t.is_empty()));
        }
    }
    if codings.is_empty() {
        return Ok(length.map(Body::Length));
    }
    let chunked = |c: &[u8]| c.eq_ignore_ascii_case(b"chunked");
    let last_chunked = codings.last().is_some_and(|c| chunked(c));
    let once = codings.iter().filter(|c| chunked(c)).count() == 1;
    if !request {
        return Ok(Some(if last_chunked && once {
            Body::Chunked
        } else {
            Body::UntilClose
        }));
    }
    if length.is_some() {
        return Err("both Content-Length and Transfer-Encoding are given".into());
    }
    if minor == 0 {
        return Err("Transfer-Encoding in an HTTP/1.0 message".into());
    }
    // Only a chunked body has an end both sides can find; it must be the last coding.
    if !(last_chunked && once) {
        return Err("Transfer-Encoding does not end with a single `chunked`".into());
    }
    Ok(Some(Body::Chunked))
}

fn collect<'a>(hs: &[httparse::Header<'a>]) -> Vec<(&'a str, &'a [u8])> {
    hs.iter().map(|h| (h.name, h.value)).collect()
}

fn too_long(buf: &[u8]) -> bool {
    buf.len() >= MAX_HEAD
}

/// Reads a request head from the front of `buf`.
pub fn request(buf: &[u8]) -> Parsed<Request<'_>> {
    let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut hs);
    let n = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if too_long(buf) => {
            return Parsed::Invalid(format!("request head longer than {MAX_HEAD} bytes"));
        }
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => {
            return Parsed::Invalid(format!("more than {MAX_HEADERS} header fields"));
        }
        Err(e) => return Parsed::Invalid(format!("malformed request: {e}")),
    };
    if n > MAX_HEAD {
        return Parsed::Invalid(format!("request head longer than {MAX_HEAD} bytes"));
    }
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Parsed::Invalid("malformed request line".into());
    };
    let headers = collect(req.headers);
    let body = match framing(&headers, minor, true) {
        Ok(b) => b.unwrap_or(Body::None),
        Err(e) => return Parsed::Invalid(e),
    };
    let mut hosts = headers
        .iter()
        .filter(|(n, _)| is(n, "host"))
        .map(|(_, v)| *v);
    let host = hosts.next();
    if hosts.next().is_some() {
        return Parsed::Invalid("more than one Host field".into());
    }
    if method == "CONNECT" {
        return Parsed::Invalid("CONNECT inside a tunnel".into());
    }
    if !(target.starts_with('/') || target == "*" || target.contains("://")) {
        return Parsed::Invalid(format!(
            "request target `{}` is neither a path nor a URL",
            target.escape_debug()
        ));
    }
    let close = if minor == 0 {
        !has_token(&headers, "connection", "keep-alive")
    } else {
        has_token(&headers, "connection", "close")
    };
    let upgrade = is_websocket(
        headers
            .iter()
            .filter(|(n, _)| is(n, "upgrade"))
            .map(|(_, v)| *v),
    ) && has_token(&headers, "connection", "upgrade");
    let expect_continue = headers
        .iter()
        .any(|(n, v)| is(n, "expect") && v.trim_ascii().eq_ignore_ascii_case(b"100-continue"));
    Parsed::Complete(
        Request {
            method,
            target,
            minor,
            headers,
            body,
            close,
            upgrade,
            expect_continue,
            host,
        },
        n,
    )
}

/// Reads a response head from the front of `buf`; `head` says the request was `HEAD` (whose
/// answer has no body, whatever its fields say).
pub fn response(buf: &[u8], head: bool) -> Parsed<Response<'_>> {
    let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut hs);
    let n = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if too_long(buf) => {
            return Parsed::Invalid(format!("response head longer than {MAX_HEAD} bytes"));
        }
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(e) => return Parsed::Invalid(format!("malformed response: {e}")),
    };
    let (Some(status), Some(minor)) = (resp.code, resp.version) else {
        return Parsed::Invalid("malformed status line".into());
    };
    let reason = resp.reason.unwrap_or("");
    let headers = collect(resp.headers);
    let framed = match framing(&headers, minor, false) {
        Ok(b) => b,
        Err(e) => return Parsed::Invalid(e),
    };
    let body = if head || (100..200).contains(&status) || status == 204 || status == 304 {
        Body::None
    } else {
        framed.unwrap_or(Body::UntilClose)
    };
    let close = body == Body::UntilClose
        || if minor == 0 {
            !has_token(&headers, "connection", "keep-alive")
        } else {
            has_token(&headers, "connection", "close")
        };
    Parsed::Complete(
        Response {
            status,
            reason,
            headers,
            body,
            close,
        },
        n,
    )
}

/// Whether `Upgrade` values ask for WebSocket.
pub fn is_websocket<'a>(values: impl Iterator<Item = &'a [u8]>) -> bool {
    values
        .flat_map(tokens)
        .any(|t| t.eq_ignore_ascii_case(b"websocket"))
}

/// Fields the client meant for the proxy, not for the server.
fn for_the_proxy(name: &str) -> bool {
    is(name, "proxy-connection") || is(name, "proxy-authorization")
}

/// Fields asking for a protocol switch other than WebSocket.
fn other_upgrade(req: &Request, name: &str) -> bool {
    !req.upgrade && (is(name, "upgrade") || is(name, "http2-settings"))
}

fn push_field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Writes the head the server gets: origin-form target (`path_and_query`), the client's fields
/// but those meant for the proxy, and `Host` when the client sent none.
pub fn write_request(req: &Request, path_and_query: &str, host: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(req.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(path_and_query.as_bytes());
    out.extend_from_slice(if req.minor == 0 {
        b" HTTP/1.0\r\n"
    } else {
        b" HTTP/1.1\r\n"
    });
    if req.host.is_none() {
        push_field(out, "Host", host.as_bytes());
    }
    for (n, v) in &req.headers {
        if !for_the_proxy(n) && !other_upgrade(req, n) {
            push_field(out, n, v);
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes the head the client gets. A chunked answer loses any `Content-Length` beside it
/// (RFC 9112 §6.3), since the chunks are what delimit it.
pub fn write_response(resp: &Response, out: &mut Vec<u8>) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(resp.status.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(resp.reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    for (n, v) in &resp.headers {
        if resp.body == Body::Chunked && is(n, "content-length") {
            continue;
        }
        push_field(out, n, v);
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(text: &str) -> Result<(Request<'_>, usize), String> {
        match request(text.as_bytes()) {
            Parsed::Complete(r, n) => Ok((r, n)),
            Parsed::Partial => Err("partial".into()),
            Parsed::Invalid(e) => Err(e),
        }
    }

    fn resp(text: &str, head: bool) -> Result<Response<'_>, String> {
        match response(text.as_bytes(), head) {
            Parsed::Complete(r, _) => Ok(r),
            Parsed::Partial => Err("partial".into()),
            Parsed::Invalid(e) => Err(e),
        }
    }

    #[test]
    fn request_framing() {
        let (r, n) = req("GET /zen HTTP/1.1\r\nHost: a\r\n\r\nNEXT").expect("valid");
        assert_eq!(
            (r.method, r.target, r.body, r.close),
            ("GET", "/zen", Body::None, false)
        );
        assert_eq!(n, "GET /zen HTTP/1.1\r\nHost: a\r\n\r\n".len());
        let (r, _) = req("POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\n").expect("valid");
        assert_eq!(r.body, Body::Length(5));
        let (r, _) = req("POST /x HTTP/1.1\r\nContent-Length: 5, 5\r\ncontent-length: 5\r\n\r\n")
            .expect("agreeing lengths are one");
        assert_eq!(r.body, Body::Length(5));
        let (r, _) =
            req("POST /x HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n").expect("valid");
        assert_eq!(r.body, Body::Chunked);
        let (r, _) = req("GET / HTTP/1.0\r\n\r\n").expect("valid");
        assert!(r.close, "HTTP/1.0 closes unless asked to keep alive");
        let (r, _) = req("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").expect("valid");
        assert!(!r.close);
        let (r, _) = req("GET / HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n").expect("v");
        assert!(r.close);
        let (r, _) = req("GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
            .expect("v");
        assert!(r.upgrade);
        let h2c = "GET / HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n";
        let (r, _) = req(h2c).expect("valid");
        assert!(!r.upgrade, "only WebSocket may switch");
        let mut out = Vec::new();
        write_request(&r, "/", "a", &mut out);
        let out = String::from_utf8_lossy(&out).to_ascii_lowercase();
        assert!(
            !out.contains("upgrade: h2c") && !out.contains("http2-settings:"),
            "{out}"
        );
        let (r, _) = req("PUT /x HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n")
            .expect("valid");
        assert!(r.expect_continue);
        assert!(matches!(
            request(b"GET /x HTTP/1.1\r\nHost: a\r\n"),
            Parsed::Partial
        ));
    }

    /// Every message whose end the two sides could see differently is refused.
    #[test]
    fn ambiguous_requests_are_refused() {
        for (text, why) in [
            (
                "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
                "both",
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                "disagree",
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\n",
                "disagree",
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
                "not a length",
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: 0x5\r\n\r\n",
                "not a length",
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: \r\n\r\n",
                "not a length",
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
                "length",
            ),
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
                "chunked",
            ),
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
                "single",
            ),
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n",
                "chunked",
            ),
            (
                "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
                "HTTP/1.0",
            ),
            ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "Host"),
            ("CONNECT a:443 HTTP/1.1\r\n\r\n", "CONNECT"),
            ("GET x HTTP/1.1\r\n\r\n", "neither"),
            ("GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", "malformed"),
            ("GET / HTTP/1.1\r\nX : a\r\n\r\n", "malformed"),
            ("GET / HTTP/2.0\r\n\r\n", "malformed"),
            ("GET /\x00 HTTP/1.1\r\n\r\n", "malformed"),
        ] {
            let e = req(text).expect_err(text);
            assert!(e.contains(why), "{text:?}: {e}");
        }
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(MAX_HEAD));
        assert!(req(&big).expect_err("too long").contains("longer"));
    }

    #[test]
    fn response_framing() {
        let r = resp("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", false).expect("v");
        assert_eq!((r.status, r.body, r.close), (200, Body::Length(3), false));
        let r = resp("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", true).expect("v");
        assert_eq!(r.body, Body::None, "the answer to HEAD has no body");
        for s in ["100 Continue", "204 No Content", "304 Not Modified"] {
            let text = format!("HTTP/1.1 {s}\r\nContent-Length: 3\r\n\r\n");
            assert_eq!(resp(&text, false).expect("v").body, Body::None, "{s}");
        }
        let r = resp(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
        )
        .expect("v");
        assert_eq!(r.body, Body::Chunked);
        let r = resp("HTTP/1.1 200 OK\r\n\r\n", false).expect("v");
        assert_eq!((r.body, r.close), (Body::UntilClose, true));
        let r = resp("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false).expect("v");
        assert!(r.close);
        assert!(resp("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", false).is_err());
        let r = resp(
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
        )
        .expect("a server's chunked answer wins over its length");
        assert_eq!(r.body, Body::Chunked);
        let r = resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false).expect("v");
        assert_eq!(r.body, Body::UntilClose);
    }

    #[test]
    fn heads_are_written_for_the_other_side() {
        let text = "GET /a?b=1 HTTP/1.1\r\nProxy-Connection: keep-alive\r\nX-Y: z\r\nProxy-Authorization: Basic x\r\n\r\n";
        let (r, _) = req(text).expect("valid");
        let mut out = Vec::new();
        write_request(&r, "/a?b=1", "api.github.com", &mut out);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "GET /a?b=1 HTTP/1.1\r\nHost: api.github.com\r\nX-Y: z\r\n\r\n"
        );
        let r = resp(
            "HTTP/1.1 200 Fine\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\nX: 1\r\n\r\n",
            false,
        )
        .expect("v");
        let mut out = Vec::new();
        write_response(&r, &mut out);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "HTTP/1.1 200 Fine\r\nTransfer-Encoding: chunked\r\nX: 1\r\n\r\n"
        );
    }
}
