//! Durable gateway state in SQLite (DESIGN §6): sandboxes, policy revisions with their full
//! text, the event log with bounded retention, denials, providers and settings.
//!
//! One [`Store`] owns one connection and is synchronous: the async gateway calls it from
//! `spawn_blocking` or a dedicated thread. The database runs in WAL mode with
//! `synchronous=FULL`, and every write that touches more than one row is one transaction, so a
//! write that returned `Ok` survives `kill -9` and power loss, and a write cut short leaves no
//! trace.

mod denials;
mod error;
mod events;
mod providers;
mod revisions;
mod sandboxes;
mod schema;

pub use denials::{DenialKey, DenialRow, DenialSighting, DenialStatus};
pub use error::{Result, StoreError};
pub use events::EventQuery;
pub use providers::Provider;
pub use revisions::{Revision, RevisionMeta};
pub use sandboxes::{NewSandbox, Phase, Runtime, SandboxRow};
pub use schema::SCHEMA_VERSION;

use rusqlite::types::Type;
use rusqlite::{Connection, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::time::Duration;
use time::OffsetDateTime;

/// How long a write waits for another connection's lock before failing. Only one gateway
/// writes, but an operator may be reading with the `sqlite3` shell.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The gateway's state database.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    /// The parent directory must exist.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        create_private(&path)?;
        let open_err = |source| StoreError::Open {
            path: path.clone(),
            source,
        };
        let mut conn = Connection::open(&path).map_err(open_err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        // The first statement that reads the file: a file that is not a database fails here.
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .map_err(open_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            // Still durable (FULL below), only slower and readers block writers.
            tracing::warn!(path = %path.display(), mode, "the state database cannot use WAL mode");
        }
        // FULL: WAL with NORMAL survives a process crash but may lose the last commits on power
        // loss; the gateway acknowledges writes to supervisors and users, so they must stay.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(open_err)?;
        // Off by default in SQLite; the cascades from sandboxes rely on it.
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(open_err)?;
        schema::migrate(&mut conn, &path)?;
        Ok(Store { conn, path })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version of the open database (equal to [`SCHEMA_VERSION`] after `open`).
    pub fn schema_version(&self) -> Result<u32> {
        Ok(self
            .conn
            .query_row("SELECT MAX(version) FROM schema_version", [], |r| r.get(0))?)
    }

    /// `PRAGMA integrity_check`: `"ok"` or SQLite's description of the damage.
    pub fn integrity_check(&self) -> Result<String> {
        let mut stmt = self.conn.prepare("PRAGMA integrity_check")?;
        let lines = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(lines.join("\n"))
    }

    /// A write transaction. IMMEDIATE takes the write lock up front, so a transaction never
    /// fails half-way with SQLITE_BUSY when upgrading from a read lock.
    fn write_tx(&mut self) -> Result<rusqlite::Transaction<'_>> {
        Ok(self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?)
    }
}

/// Creates the database file readable by its owner only before SQLite does (SQLite would use
/// 0644): it holds provider credentials. SQLite gives the `-wal` and `-shm` files the same mode.
fn create_private(path: &Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(StoreError::Create {
            path: path.to_path_buf(),
            source,
        }),
    }
}

// --- conversions shared by the submodules ---

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// Milliseconds since the epoch; saturates far outside any real clock.
fn to_ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn from_ms(ms: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}

fn conversion_error(idx: usize, ty: Type, msg: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(idx, ty, msg.into())
}

/// Column `idx` as a time.
fn time_col(row: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<OffsetDateTime> {
    let ms: i64 = row.get(idx)?;
    from_ms(ms).ok_or_else(|| conversion_error(idx, Type::Integer, format!("time {ms} ms")))
}

fn opt_time_col(row: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<Option<OffsetDateTime>> {
    match row.get::<_, Option<i64>>(idx)? {
        None => Ok(None),
        Some(ms) => from_ms(ms)
            .map(Some)
            .ok_or_else(|| conversion_error(idx, Type::Integer, format!("time {ms} ms"))),
    }
}

/// Column `idx` as a u64 (rusqlite reads only i64 without its `fallible_uint` feature).
fn u64_col(row: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<u64> {
    let v: i64 = row.get(idx)?;
    u64::try_from(v).map_err(|_| conversion_error(idx, Type::Integer, format!("negative {v}")))
}

/// Column `idx` as JSON text decoded into `T`.
fn json_col<T: serde::de::DeserializeOwned>(
    row: &rusqlite::Row<'_>,
    idx: usize,
) -> rusqlite::Result<T> {
    let text: String = row.get(idx)?;
    serde_json::from_str(&text).map_err(|e| conversion_error(idx, Type::Text, e.to_string()))
}

fn to_json_text<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Invalid(format!("cannot encode: {e}")))
}

fn u64_to_sql(v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| StoreError::Invalid(format!("{v} is out of range")))
}

fn non_empty(what: &str, v: &str) -> Result<()> {
    if v.trim().is_empty() {
        Err(StoreError::Invalid(format!("the {what} must not be empty")))
    } else {
        Ok(())
    }
}
