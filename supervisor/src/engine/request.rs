//! Turning what a client sent into what policy matches: hosts, paths, queries.
//!
//! A path is matched after decoding percent-escaped unreserved characters. Anything the
//! upstream might read differently from us (dot segments, `//`, encoded `/` or `\`, control
//! bytes) is refused instead of guessed at.

/// A host as policy compares it: lower-case, no trailing dot, IPv6 without brackets.
pub fn normalize_host(raw: &str) -> Result<String, String> {
    let h = raw.trim_end_matches('.');
    let h = h
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(h);
    if h.is_empty() {
        return Err("empty host".into());
    }
    if let Ok(ip) = h.parse::<std::net::IpAddr>() {
        return Ok(ip.to_string());
    }
    if h.len() > 253
        || h.split('.').any(|l| l.is_empty() || l.len() > 63)
        || !h
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    {
        return Err(format!("`{}` is not a valid host name", raw.escape_debug()));
    }
    Ok(h.to_ascii_lowercase())
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// The value of one hexadecimal digit.
pub fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The path policy matches, or why the request is refused.
pub fn normalize_path(raw: &str) -> Result<String, String> {
    if !raw.starts_with('/') {
        return Err(format!("path `{}` is not absolute", raw.escape_debug()));
    }
    let b = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let (Some(h), Some(l)) = (
                    b.get(i + 1).copied().and_then(hex),
                    b.get(i + 2).copied().and_then(hex),
                ) else {
                    return Err("path has a malformed percent-escape".into());
                };
                let byte = h * 16 + l;
                if unreserved(byte) {
                    out.push(char::from(byte));
                } else if byte == b'/' || byte == b'\\' {
                    return Err(
                        "path has an encoded `/` or `\\`, which servers decode differently".into(),
                    );
                } else {
                    out.push('%');
                    out.push(char::from(b"0123456789ABCDEF"[usize::from(h)]));
                    out.push(char::from(b"0123456789ABCDEF"[usize::from(l)]));
                }
                i += 3;
            }
            b'\\' => return Err("path contains `\\`, which some servers read as `/`".into()),
            c if !(0x21..0x7f).contains(&c) => {
                return Err("path contains a control, space or non-ASCII byte".into());
            }
            c => {
                out.push(char::from(c));
                i += 1;
            }
        }
    }
    let segments: Vec<&str> = out[1..].split('/').collect();
    let last = segments.len().saturating_sub(1);
    for (n, seg) in segments.iter().enumerate() {
        if *seg == "." || *seg == ".." {
            return Err("path contains a `.` or `..` segment".into());
        }
        if seg.is_empty() && n != last {
            return Err("path contains `//`".into());
        }
    }
    Ok(out)
}

/// Decoded `key=value` pairs, in order (`+` is a space, as in forms).
pub fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode_component(k), decode_component(v))
        })
        .collect()
}

fn decode_component(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => match (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            ) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits a request target into path and query.
pub fn split_target(target: &str) -> (&str, &str) {
    match target.split_once('?') {
        Some((p, q)) => (p, q),
        None => (target, ""),
    }
}
