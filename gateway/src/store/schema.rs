//! The schema and its migrations. Version N of the schema is the result of applying the first N
//! entries of [`MIGRATIONS`]; the version reached is kept in the `schema_version` table.

use super::error::{Result, StoreError};
use rusqlite::{Connection, TransactionBehavior};
use std::path::Path;

/// Each entry takes the schema from version `index` to `index + 1`. Append only: a released
/// migration never changes, because databases in the field already ran it.
const MIGRATIONS: &[&str] = &[V1];

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

// Times are INTEGER milliseconds since the Unix epoch (UTC): they compare and index correctly,
// which RFC 3339 text with optional fractional seconds does not.
const V1: &str = r#"
CREATE TABLE sandboxes (
    -- AUTOINCREMENT: an id is never reused, so a supervisor of a deleted sandbox can never
    -- attach to a new sandbox that took the same name.
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    name           TEXT    NOT NULL UNIQUE,
    driver         TEXT    NOT NULL,
    workdir        TEXT    NOT NULL,
    command        TEXT    NOT NULL,              -- JSON array of strings
    env            TEXT    NOT NULL DEFAULT '{}', -- JSON object
    providers      TEXT    NOT NULL DEFAULT '[]', -- JSON array of provider names
    image          TEXT    NOT NULL DEFAULT '',
    keep           INTEGER NOT NULL DEFAULT 1,
    phase          TEXT    NOT NULL
                   CHECK (phase IN ('provisioning', 'ready', 'stopped', 'failed')),
    reason         TEXT    NOT NULL DEFAULT '',
    exit_code      INTEGER,
    pid            INTEGER,
    supervisor_pid INTEGER,
    endpoint       TEXT,
    started_ms     INTEGER,
    enforced_rev   INTEGER NOT NULL DEFAULT 0,    -- the revision the supervisor acknowledged
    created_ms     INTEGER NOT NULL,
    updated_ms     INTEGER NOT NULL
);

CREATE TABLE revisions (
    sandbox_id INTEGER NOT NULL REFERENCES sandboxes(id) ON DELETE CASCADE,
    rev        INTEGER NOT NULL CHECK (rev >= 1),
    text       TEXT    NOT NULL,
    author     TEXT    NOT NULL,
    note       TEXT    NOT NULL DEFAULT '',
    created_ms INTEGER NOT NULL,
    acked_ms   INTEGER,
    error      TEXT,
    PRIMARY KEY (sandbox_id, rev)
);

CREATE TABLE events (
    -- AUTOINCREMENT: seq never goes back, even after retention empties the table.
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_ms      INTEGER NOT NULL,
    sandbox    TEXT    NOT NULL,  -- a name, not a key: events outlive their sandbox
    source     TEXT    NOT NULL,
    level_rank INTEGER NOT NULL,
    kind       TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    json       TEXT    NOT NULL   -- the DESIGN §5 object, without seq (that is the column)
);
-- Only two indexes: each one costs ingest speed. Per-sandbox reads are the common query; the
-- time index serves `since` and age retention. The other filters scan these ranges.
CREATE INDEX events_by_sandbox ON events (sandbox, seq);
CREATE INDEX events_by_time ON events (ts_ms);

CREATE TABLE denials (
    sandbox_id   INTEGER NOT NULL REFERENCES sandboxes(id) ON DELETE CASCADE,
    id           INTEGER NOT NULL,              -- numbered per sandbox, never reused
    host         TEXT    NOT NULL,
    port         INTEGER NOT NULL,
    binary       TEXT    NOT NULL,
    -- '' rather than NULL when absent: UNIQUE treats NULLs as distinct, which would let one
    -- key get many rows.
    method       TEXT    NOT NULL DEFAULT '',
    path         TEXT    NOT NULL DEFAULT '',
    count        INTEGER NOT NULL,
    first_ms     INTEGER NOT NULL,
    last_ms      INTEGER NOT NULL,
    proposal     TEXT    NOT NULL,
    status       TEXT    NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'approved', 'rejected')),
    approved_rev INTEGER,
    decided_ms   INTEGER,
    PRIMARY KEY (sandbox_id, id),
    UNIQUE (sandbox_id, host, port, binary, method, path)
);

CREATE TABLE providers (
    name        TEXT    PRIMARY KEY,
    kind        TEXT    NOT NULL,
    credentials TEXT    NOT NULL,  -- JSON object; the file is created 0600 for this reason
    config      TEXT    NOT NULL,  -- JSON object
    created_ms  INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL
);

CREATE TABLE settings (
    key        TEXT    PRIMARY KEY,
    value      TEXT    NOT NULL,
    updated_ms INTEGER NOT NULL
);
"#;

/// Brings the schema up to [`SCHEMA_VERSION`] in one transaction, so a crash mid-migration
/// leaves the old schema intact. Refuses a database written by a newer build: its schema may
/// mean things this build would misread or destroy.
pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")?;
    let found: i64 = tx.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_version",
        [],
        |r| r.get(0),
    )?;
    let found = u32::try_from(found).unwrap_or(u32::MAX);
    if found > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            path: path.to_path_buf(),
            found,
            known: SCHEMA_VERSION,
        });
    }
    if found == SCHEMA_VERSION {
        return Ok(());
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tracing::info!(
            path = %path.display(),
            to = i + 1,
            "migrating the state database schema"
        );
        tx.execute_batch(sql)?;
    }
    tx.execute("DELETE FROM schema_version", [])?;
    tx.execute(
        "INSERT INTO schema_version (version) VALUES (?1)",
        [SCHEMA_VERSION],
    )?;
    tx.commit()?;
    Ok(())
}
