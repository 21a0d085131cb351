//! The answers the proxy gives when it refuses (DESIGN §4): `403` with a JSON body whose first
//! keys are `error` and `detail`, and `Connection: close` on refused tunnels.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

/// Ordered JSON object: the first fields a person reads come first.
pub struct Body(Vec<(&'static str, serde_json::Value)>);

impl Body {
    pub fn new(error: &str, detail: impl Into<String>) -> Body {
        Body(vec![
            ("error", error.into()),
            ("detail", detail.into().into()),
        ])
    }

    pub fn field(mut self, k: &'static str, v: impl Into<serde_json::Value>) -> Body {
        self.0.push((k, v.into()));
        self
    }

    pub fn opt(self, k: &'static str, v: Option<&str>) -> Body {
        match v {
            Some(v) if !v.is_empty() => self.field(k, v),
            _ => self,
        }
    }

    pub fn to_json(&self) -> String {
        let mut out = String::from("{");
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&serde_json::Value::from(*k).to_string());
            out.push(':');
            out.push_str(&v.to_string());
        }
        out.push('}');
        out
    }
}

/// A refusal: `status` with the JSON body; `close` adds `Connection: close`.
pub fn response(status: StatusCode, body: &Body, close: bool) -> Response<Bytes> {
    let mut r = Response::new(Bytes::from(body.to_json()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if close {
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    r
}

/// A refusal as it goes on the wire, framed by its length.
pub fn to_bytes(r: &Response<Bytes>) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + r.body().len());
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(r.status().as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(r.status().canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (k, v) in r.headers() {
        out.extend_from_slice(k.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("content-length: {}\r\n\r\n", r.body().len()).as_bytes());
    out.extend_from_slice(r.body());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_and_detail_come_first() {
        let b = Body::new("policy_denied", "POST /x not permitted by policy")
            .field("layer", "l7")
            .field("port", 443)
            .opt("policy", None);
        assert_eq!(
            b.to_json(),
            r#"{"error":"policy_denied","detail":"POST /x not permitted by policy","layer":"l7","port":443}"#
        );
    }
}
