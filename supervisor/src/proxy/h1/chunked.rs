//! Chunked bodies, read strictly and written again in canonical form: the other side gets
//! exactly the data the proxy saw, with no extension, odd spacing or trailer it might read
//! differently.

use crate::engine::request::hex;

/// Longest chunk-size line (digits and any extension) accepted.
const MAX_SIZE_LINE: usize = 4096;
/// Longest trailer section accepted (the trailers themselves are dropped).
const MAX_TRAILERS: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Hex digits of the size.
    Size,
    /// `;ext` after the size, up to CR.
    Extension,
    /// The LF after the size line's CR.
    SizeLf,
    /// Chunk data.
    Data,
    /// CR after the data.
    DataCr,
    /// LF after the data.
    DataLf,
    /// Start of a trailer line (or the final empty line).
    TrailerStart,
    /// Inside a trailer line.
    Trailer,
    /// LF ending a trailer line.
    TrailerLf,
    /// LF of the final empty line.
    EndLf,
    Done,
}

/// A streaming decoder that re-encodes as it goes.
#[derive(Debug)]
pub struct Chunked {
    state: State,
    /// Size being read, then data left in the chunk.
    n: u64,
    digits: usize,
    line: usize,
    trailers: usize,
}

impl Default for Chunked {
    fn default() -> Chunked {
        Chunked::new()
    }
}

impl Chunked {
    pub fn new() -> Chunked {
        Chunked {
            state: State::Size,
            n: 0,
            digits: 0,
            line: 0,
            trailers: 0,
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Reads what it can of `input`, appending the body re-encoded to `out` (when given; a
    /// refused request's body is only read past). Returns how many bytes it consumed; stops
    /// at the end of the body. The error says what is wrong with the framing.
    pub fn feed(&mut self, input: &[u8], mut out: Option<&mut Vec<u8>>) -> Result<usize, String> {
        let mut i = 0;
        while i < input.len() && self.state != State::Done {
            let b = input[i];
            match self.state {
                State::Size => match hex(b) {
                    Some(d) => {
                        self.digits += 1;
                        if self.digits > 15 {
                            return Err("chunk size too large".into());
                        }
                        self.n = self.n * 16 + u64::from(d);
                        i += 1;
                    }
                    None if self.digits == 0 => return Err("chunk size missing".into()),
                    None if b == b';' => {
                        self.state = State::Extension;
                        self.line = self.digits;
                        i += 1;
                    }
                    None if b == b'\r' => {
                        self.state = State::SizeLf;
                        i += 1;
                    }
                    None => return Err(format!("unexpected byte {b:#04x} in a chunk size")),
                },
                State::Extension => {
                    self.line += 1;
                    if self.line > MAX_SIZE_LINE {
                        return Err("chunk extension too long".into());
                    }
                    match b {
                        b'\r' => self.state = State::SizeLf,
                        b'\n' => return Err("bare LF in a chunk size line".into()),
                        0..=0x08 | 0x0a..=0x1f | 0x7f => {
                            return Err("control byte in a chunk extension".into());
                        }
                        _ => {}
                    }
                    i += 1;
                }
                State::SizeLf => {
                    if b != b'\n' {
                        return Err("chunk size line not ended by CRLF".into());
                    }
                    i += 1;
                    self.digits = 0;
                    if self.n == 0 {
                        self.state = State::TrailerStart;
                    } else {
                        self.state = State::Data;
                    }
                }
                State::Data => {
                    let take = (input.len() - i).min(usize::try_from(self.n).unwrap_or(usize::MAX));
                    if let Some(out) = out.as_deref_mut() {
                        out.extend_from_slice(format!("{take:x}\r\n").as_bytes());
                        out.extend_from_slice(&input[i..i + take]);
                        out.extend_from_slice(b"\r\n");
                    }
                    i += take;
                    self.n -= take as u64;
                    if self.n == 0 {
                        self.state = State::DataCr;
                    }
                }
                State::DataCr | State::DataLf => {
                    let want = if self.state == State::DataCr {
                        b'\r'
                    } else {
                        b'\n'
                    };
                    if b != want {
                        return Err("chunk data not followed by CRLF".into());
                    }
                    i += 1;
                    self.state = if self.state == State::DataCr {
                        State::DataLf
                    } else {
                        State::Size
                    };
                }
                State::TrailerStart => {
                    if b == b'\r' {
                        self.state = State::EndLf;
                    } else {
                        self.state = State::Trailer;
                        self.trailers += 1;
                    }
                    i += 1;
                }
                State::Trailer => {
                    self.trailers += 1;
                    if self.trailers > MAX_TRAILERS {
                        return Err("chunked trailers too long".into());
                    }
                    match b {
                        b'\r' => self.state = State::TrailerLf,
                        b'\n' => return Err("bare LF in a chunked trailer".into()),
                        _ => {}
                    }
                    i += 1;
                }
                State::TrailerLf | State::EndLf => {
                    if b != b'\n' {
                        return Err("chunked trailer not ended by CRLF".into());
                    }
                    i += 1;
                    if self.state == State::EndLf {
                        self.state = State::Done;
                        if let Some(out) = out.as_deref_mut() {
                            out.extend_from_slice(b"0\r\n\r\n");
                        }
                    } else {
                        self.state = State::TrailerStart;
                    }
                }
                State::Done => break,
            }
        }
        Ok(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `wire` fed in pieces of `step` bytes; the output and what was left over.
    fn run(wire: &[u8], step: usize) -> Result<(Vec<u8>, usize), String> {
        let mut d = Chunked::new();
        let mut out = Vec::new();
        let mut at = 0;
        while at < wire.len() && !d.is_done() {
            let end = (at + step).min(wire.len());
            let n = d.feed(&wire[at..end], Some(&mut out))?;
            at += n;
            if n == 0 {
                break;
            }
        }
        assert!(d.is_done(), "the body ends");
        Ok((out, wire.len() - at))
    }

    /// The data in our own canonical output, read by a plain reader.
    fn data(encoded: &[u8]) -> Vec<u8> {
        let mut got = Vec::new();
        let mut s = encoded;
        loop {
            let line_end = s.windows(2).position(|w| w == b"\r\n").expect("size line");
            let size =
                usize::from_str_radix(std::str::from_utf8(&s[..line_end]).expect("utf8"), 16)
                    .expect("hex");
            s = &s[line_end + 2..];
            if size == 0 {
                assert_eq!(s, b"\r\n", "nothing after the last chunk but its CRLF");
                break;
            }
            got.extend_from_slice(&s[..size]);
            assert_eq!(&s[size..size + 2], b"\r\n");
            s = &s[size + 2..];
        }
        got
    }

    #[test]
    fn decodes_in_any_pieces_and_stops_at_the_end() {
        let wire = b"5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        for step in [1, 2, 3, 7, 100] {
            let (out, left) = run(wire, step).expect("valid");
            assert_eq!(left, 4, "the next message stays: step {step}");
            assert_eq!(data(&out), b"hello world", "step {step}");
            assert!(out.ends_with(b"0\r\n\r\n"));
            assert!(
                !out.windows(4).any(|w| w == b"name"),
                "extensions are dropped"
            );
            assert!(
                !out.windows(7).any(|w| w == b"Trailer"),
                "trailers are dropped"
            );
        }
        let (out, _) = run(b"0\r\n\r\n", 1).expect("empty body");
        assert_eq!(out, b"0\r\n\r\n");
    }

    #[test]
    fn refuses_framing_others_might_read_differently() {
        for wire in [
            &b"5\nhello\r\n0\r\n\r\n"[..],
            b"5 \r\nhello\r\n0\r\n\r\n",
            b"-5\r\nhello\r\n0\r\n\r\n",
            b"\r\n",
            b"5\r\nhelloX\r\n0\r\n\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"fffffffffffffffff\r\n",
            b"0x5\r\nhello\r\n0\r\n\r\n",
            b"5;a\nb\r\nhello\r\n0\r\n\r\n",
            b"0\r\nX: y\n\r\n",
        ] {
            let mut d = Chunked::new();
            let mut out = Vec::new();
            assert!(
                d.feed(wire, Some(&mut out)).is_err(),
                "{}",
                String::from_utf8_lossy(wire)
            );
        }
    }

    #[test]
    fn a_refused_body_is_read_past_without_output() {
        let mut d = Chunked::new();
        let n = d.feed(b"3\r\nabc\r\n0\r\n\r\nGET", None).expect("valid");
        assert_eq!(
            n, 13,
            "up to the end of the body, not into the next request"
        );
        assert!(d.is_done());
    }
}
