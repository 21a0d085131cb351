//! The event model (DESIGN §5): one JSON object per event, the same fields everywhere.

use crate::pb::Event;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Now, as RFC 3339 UTC with millisecond precision.
pub fn now_rfc3339() -> String {
    format_time(OffsetDateTime::now_utc())
}

pub fn format_time(t: OffsetDateTime) -> String {
    let t = t
        .replace_nanosecond(t.nanosecond() / 1_000_000 * 1_000_000)
        .unwrap_or(t);
    t.format(&Rfc3339).unwrap_or_default()
}

pub fn parse_time(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

/// Levels in increasing severity; unknown levels sort as `info`.
pub fn level_rank(level: &str) -> u8 {
    match level {
        "trace" => 0,
        "debug" => 1,
        "info" => 2,
        "warn" | "warning" => 3,
        "error" => 4,
        _ => 2,
    }
}

/// The event as the JSON object of DESIGN §5. Network fields appear only when set.
pub fn to_json(e: &Event) -> Value {
    let mut m = Map::new();
    m.insert("time".into(), e.time.clone().into());
    m.insert("sandbox".into(), e.sandbox.clone().into());
    m.insert("source".into(), e.source.clone().into());
    m.insert("level".into(), e.level.clone().into());
    m.insert("kind".into(), e.kind.clone().into());
    m.insert("action".into(), e.action.clone().into());
    let mut opt = |k: &str, v: &str| {
        if !v.is_empty() {
            m.insert(k.into(), v.into());
        }
    };
    opt("host", &e.host);
    opt("binary", &e.binary);
    opt("method", &e.method);
    opt("path", &e.path);
    opt("policy", &e.policy);
    opt("reason", &e.reason);
    opt("layer", &e.layer);
    opt("message", &e.message);
    if e.port != 0 {
        m.insert("port".into(), e.port.into());
    }
    if e.pid != 0 {
        m.insert("pid".into(), e.pid.into());
    }
    if e.seq != 0 {
        m.insert("seq".into(), e.seq.into());
    }
    if !e.fields.is_empty() {
        let mut keys: Vec<_> = e.fields.keys().collect();
        keys.sort();
        let f: Map<String, Value> = keys
            .into_iter()
            .map(|k| (k.clone(), Value::from(e.fields[k].clone())))
            .collect();
        m.insert("fields".into(), Value::Object(f));
    }
    Value::Object(m)
}

/// Appends [`to_json`]'s object, serialised, to `out`: the same bytes, without building the
/// object (no allocation per field; this runs for every event a busy proxy logs).
pub fn write_json(e: &Event, out: &mut Vec<u8>) {
    fn key(out: &mut Vec<u8>, first: &mut bool, k: &str) {
        if !*first {
            out.push(b',');
        }
        *first = false;
        out.push(b'"');
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b"\":");
    }
    fn text(out: &mut Vec<u8>, v: &str) {
        // Writing a &str into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, v);
    }
    let mut first = true;
    // Keys in the order the object (a sorted map) serialises them.
    out.push(b'{');
    key(out, &mut first, "action");
    text(out, &e.action);
    let opt = |out: &mut Vec<u8>, first: &mut bool, k: &str, v: &str| {
        if !v.is_empty() {
            key(out, first, k);
            text(out, v);
        }
    };
    opt(out, &mut first, "binary", &e.binary);
    if !e.fields.is_empty() {
        key(out, &mut first, "fields");
        let mut keys: Vec<&String> = e.fields.keys().collect();
        keys.sort();
        out.push(b'{');
        for (i, k) in keys.into_iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            text(out, k);
            out.push(b':');
            text(out, &e.fields[k]);
        }
        out.push(b'}');
    }
    opt(out, &mut first, "host", &e.host);
    key(out, &mut first, "kind");
    text(out, &e.kind);
    opt(out, &mut first, "layer", &e.layer);
    key(out, &mut first, "level");
    text(out, &e.level);
    opt(out, &mut first, "message", &e.message);
    opt(out, &mut first, "method", &e.method);
    opt(out, &mut first, "path", &e.path);
    if e.pid != 0 {
        key(out, &mut first, "pid");
        out.extend_from_slice(e.pid.to_string().as_bytes());
    }
    opt(out, &mut first, "policy", &e.policy);
    if e.port != 0 {
        key(out, &mut first, "port");
        out.extend_from_slice(e.port.to_string().as_bytes());
    }
    opt(out, &mut first, "reason", &e.reason);
    key(out, &mut first, "sandbox");
    text(out, &e.sandbox);
    if e.seq != 0 {
        key(out, &mut first, "seq");
        out.extend_from_slice(e.seq.to_string().as_bytes());
    }
    key(out, &mut first, "source");
    text(out, &e.source);
    key(out, &mut first, "time");
    text(out, &e.time);
    out.push(b'}');
}

/// Reads an event back from its JSON object (the inverse of [`to_json`]).
pub fn from_json(v: &Value) -> Option<Event> {
    let o = v.as_object()?;
    let s = |k: &str| {
        o.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let n = |k: &str| o.get(k).and_then(Value::as_u64).unwrap_or_default();
    let fields = o
        .get("fields")
        .and_then(Value::as_object)
        .map(|f| {
            f.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    Some(Event {
        seq: n("seq"),
        time: s("time"),
        sandbox: s("sandbox"),
        source: s("source"),
        level: s("level"),
        kind: s("kind"),
        action: s("action"),
        host: s("host"),
        port: u32::try_from(n("port")).unwrap_or_default(),
        binary: s("binary"),
        pid: u32::try_from(n("pid")).unwrap_or_default(),
        method: s("method"),
        path: s("path"),
        policy: s("policy"),
        reason: s("reason"),
        message: s("message"),
        layer: s("layer"),
        fields,
    })
}

/// One human line: `12:00:01.123 sandbox deny network curl -> api.github.com:443 (reason)`.
pub fn to_line(e: &Event) -> String {
    let time = e.time.get(11..23).unwrap_or(&e.time);
    let mut s = format!("{time} {:<7} {:<5}", e.source, e.level.to_uppercase());
    if !e.action.is_empty() {
        s.push_str(&format!(" {}", e.action.to_uppercase()));
    }
    if e.kind == "network" {
        if !e.binary.is_empty() {
            s.push_str(&format!(" {}", e.binary));
        }
        s.push_str(&format!(" -> {}:{}", e.host, e.port));
        if !e.method.is_empty() {
            s.push_str(&format!(" {} {}", e.method, e.path));
        }
        if !e.policy.is_empty() {
            s.push_str(&format!(" [policy:{}]", e.policy));
        }
        if !e.reason.is_empty() {
            s.push_str(&format!(" ({})", e.reason));
        }
    } else {
        s.push_str(&format!(" [{}] {}", e.kind, e.message));
        if !e.reason.is_empty() {
            s.push_str(&format!(" ({})", e.reason));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fast writer and the object agree byte for byte, whatever the fields hold.
    #[test]
    fn write_json_is_to_json_serialised() {
        let full = Event {
            seq: 42,
            time: now_rfc3339(),
            sandbox: "demo".into(),
            source: "sandbox".into(),
            level: "warn".into(),
            kind: "network".into(),
            action: "deny".into(),
            host: "api.github.com".into(),
            port: 443,
            binary: "/usr/bin/curl".into(),
            pid: 1234,
            method: "POST".into(),
            path: "/repos/\"x\"/issues".into(),
            policy: "github".into(),
            reason: "tab\there, newline\nthere, \u{1} control, é, \u{2028}".into(),
            message: "back\\slash </script>".into(),
            layer: "l7".into(),
            fields: [
                ("b".to_string(), "2".to_string()),
                ("a".into(), "\"1\"".into()),
            ]
            .into_iter()
            .collect(),
        };
        let sparse = Event {
            kind: "lifecycle".into(),
            message: "started".into(),
            ..Event::default()
        };
        for e in [full, sparse, Event::default()] {
            let mut fast = Vec::new();
            write_json(&e, &mut fast);
            let slow = serde_json::to_vec(&to_json(&e)).expect("serialise");
            assert_eq!(
                String::from_utf8_lossy(&fast),
                String::from_utf8_lossy(&slow)
            );
        }
    }
}
