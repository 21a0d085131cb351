//! The event log (DESIGN §5): each event stored as its JSON object plus the columns the
//! filters need, numbered by a gateway-wide `seq` that only grows.

use super::error::{Result, StoreError};
use super::{Store, now, to_ms, u64_to_sql};
use openshell_proto::event::{format_time, from_json, level_rank, parse_time, write_json};
use openshell_proto::pb::Event;
use rusqlite::types::Value;
use rusqlite::{OptionalExtension, params};
use std::time::Duration;
use time::OffsetDateTime;

/// Which events to read. Every `None` matches everything; results are in `seq` order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventQuery {
    pub sandbox: Option<String>,
    pub source: Option<String>,
    /// Events at this level or more severe (`openshell_proto::event::level_rank` order).
    pub min_level: Option<String>,
    pub kind: Option<String>,
    pub action: Option<String>,
    /// Events whose time is at or after this.
    pub since: Option<OffsetDateTime>,
    /// Events with a larger seq (to page, or to resume a stream).
    pub after_seq: Option<u64>,
    /// At most this many: the oldest matches, or the newest when `tail` is set.
    pub limit: Option<usize>,
    /// With `limit`, return the newest matches (still oldest first), as `logs --tail` wants.
    pub tail: bool,
}

const INSERT: &str = "INSERT INTO events (ts_ms, sandbox, source, level_rank, kind, action, json)
                      VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

impl Store {
    /// Appends the events in one transaction and returns the seq given to each, in order.
    /// Seqs strictly increase across calls, even after retention deleted everything. An event
    /// whose `time` is missing or not RFC 3339 is stored with the time it arrived; the `seq` an
    /// event carries is ignored.
    pub fn append_events(&mut self, events: &[Event]) -> Result<Vec<u64>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let arrived = now();
        let mut seqs = Vec::with_capacity(events.len());
        let tx = self.write_tx()?;
        {
            // One prepared statement for the batch: parsing the SQL per row would cost more
            // than the insert itself.
            let mut stmt = tx.prepare(INSERT)?;
            let mut json = Vec::with_capacity(512);
            for e in events {
                // seq lives in its column; a stale one in the JSON would contradict it (an
                // event without one is written as it is, with no copy).
                let ts = parse_time(&e.time);
                let fixed = (ts.is_none() || e.seq != 0).then(|| {
                    let mut f = e.clone();
                    f.seq = 0;
                    if ts.is_none() {
                        f.time = format_time(arrived);
                    }
                    f
                });
                let ts = ts.unwrap_or(arrived);
                json.clear();
                write_json(fixed.as_ref().unwrap_or(e), &mut json);
                let json = std::str::from_utf8(&json)
                    .map_err(|e| StoreError::Invalid(format!("cannot encode an event: {e}")))?;
                let seq = stmt.insert(params![
                    to_ms(ts),
                    e.sandbox,
                    e.source,
                    level_rank(&e.level),
                    e.kind,
                    e.action,
                    json
                ])?;
                seqs.push(u64::try_from(seq).unwrap_or_default());
            }
        }
        tx.commit()?;
        Ok(seqs)
    }

    /// The events that match `q`, oldest first, each with its `seq` set.
    pub fn query_events(&self, q: &EventQuery) -> Result<Vec<Event>> {
        let mut sql = String::from("SELECT seq, json FROM events WHERE 1");
        let mut args: Vec<Value> = Vec::new();
        let mut eq = |col: &str, v: &Option<String>, sql: &mut String| {
            if let Some(v) = v {
                args.push(Value::Text(v.clone()));
                sql.push_str(&format!(" AND {col} = ?{}", args.len()));
            }
        };
        eq("sandbox", &q.sandbox, &mut sql);
        eq("source", &q.source, &mut sql);
        eq("kind", &q.kind, &mut sql);
        eq("action", &q.action, &mut sql);
        if let Some(level) = &q.min_level {
            args.push(Value::Integer(level_rank(level).into()));
            sql.push_str(&format!(" AND level_rank >= ?{}", args.len()));
        }
        if let Some(since) = q.since {
            args.push(Value::Integer(to_ms(since)));
            sql.push_str(&format!(" AND ts_ms >= ?{}", args.len()));
        }
        if let Some(after) = q.after_seq {
            // Past i64::MAX there is nothing to return; clamp rather than fail.
            args.push(Value::Integer(i64::try_from(after).unwrap_or(i64::MAX)));
            sql.push_str(&format!(" AND seq > ?{}", args.len()));
        }
        let limit = q.limit.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
        let sql = match (limit, q.tail) {
            (Some(n), true) => {
                format!("SELECT * FROM ({sql} ORDER BY seq DESC LIMIT {n}) ORDER BY seq")
            }
            (Some(n), false) => format!("{sql} ORDER BY seq LIMIT {n}"),
            (None, _) => format!("{sql} ORDER BY seq"),
        };
        let mut stmt = self.conn.prepare(&sql)?;
        let mut rows = stmt.query(rusqlite::params_from_iter(args))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let seq = super::u64_col(row, 0)?;
            let json: String = row.get(1)?;
            let event = serde_json::from_str(&json)
                .ok()
                .and_then(|v| from_json(&v))
                .ok_or_else(|| {
                    StoreError::Sqlite(super::conversion_error(
                        1,
                        rusqlite::types::Type::Text,
                        format!("event {seq} is not a JSON event object"),
                    ))
                })?;
            out.push(Event { seq, ..event });
        }
        Ok(out)
    }

    /// The largest seq given so far (0 before the first event), deleted or not.
    pub fn last_seq(&self) -> Result<u64> {
        // sqlite_sequence has no row for `events` until the first insert.
        let seq: Option<i64> = self
            .conn
            .query_row(
                "SELECT seq FROM sqlite_sequence WHERE name = 'events'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        Ok(seq.and_then(|s| u64::try_from(s).ok()).unwrap_or(0))
    }

    /// How many events are stored.
    pub fn event_count(&self) -> Result<u64> {
        let n: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Deletes the events beyond the newest `max_events` and those older than `max_age`
    /// (by event time), in one transaction, and returns how many went.
    pub fn enforce_retention(&mut self, max_events: u64, max_age: Duration) -> Result<u64> {
        let age_ms = i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX);
        let cutoff = to_ms(now()).saturating_sub(age_ms);
        let keep = u64_to_sql(max_events).unwrap_or(i64::MAX);
        let tx = self.write_tx()?;
        let by_age = tx.execute("DELETE FROM events WHERE ts_ms < ?1", [cutoff])?;
        // The seq of the newest event past the count: it and everything older go. NULL (fewer
        // events than the limit) deletes nothing.
        let by_count = tx.execute(
            "DELETE FROM events WHERE seq <= (SELECT seq FROM events ORDER BY seq DESC
                                              LIMIT 1 OFFSET ?1)",
            [keep],
        )?;
        tx.commit()?;
        let deleted = (by_age + by_count) as u64;
        if deleted > 0 {
            tracing::debug!(deleted, "event retention");
        }
        Ok(deleted)
    }
}
