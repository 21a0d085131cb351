//! Policy revisions: every document a sandbox was given, in full, numbered 1, 2, 3... per
//! sandbox. Validation and merging are the caller's job; the store keeps what it is given.

use super::error::{Result, StoreError};
use super::sandboxes::sandbox_id;
use super::{Store, now, opt_time_col, time_col, to_ms};
use openshell_proto::event::format_time;
use openshell_proto::pb;
use rusqlite::{Connection, OptionalExtension, params};
use time::OffsetDateTime;

/// One stored revision with its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision {
    pub sandbox: String,
    pub rev: u32,
    pub text: String,
    pub author: String,
    pub note: String,
    pub created_at: OffsetDateTime,
    /// When the supervisor acknowledged enforcing it.
    pub acked_at: Option<OffsetDateTime>,
    /// Why the supervisor refused it.
    pub error: Option<String>,
}

/// A revision without its text, for history listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevisionMeta {
    pub rev: u32,
    pub author: String,
    pub created_at: OffsetDateTime,
    pub note: String,
    /// Length of the text in bytes.
    pub size: u64,
    pub acked_at: Option<OffsetDateTime>,
    pub error: Option<String>,
}

/// Where a revision stands given the revision the supervisor enforces.
fn status(rev: u32, enforced: u32, error: Option<&str>) -> pb::RevisionStatus {
    if rev == enforced {
        pb::RevisionStatus::Loaded
    } else if error.is_some() {
        pb::RevisionStatus::Failed
    } else if rev < enforced {
        pb::RevisionStatus::Superseded
    } else {
        pb::RevisionStatus::Pending
    }
}

impl Revision {
    /// The gRPC message; `enforced` is the sandbox's enforced revision (for the status).
    pub fn to_pb(&self, enforced: u32) -> pb::PolicyRevision {
        pb::PolicyRevision {
            sandbox: self.sandbox.clone(),
            revision: self.rev.into(),
            yaml: self.text.clone(),
            author: self.author.clone(),
            created: format_time(self.created_at),
            status: status(self.rev, enforced, self.error.as_deref()).into(),
            acked_at: self.acked_at.map(format_time).unwrap_or_default(),
            error: self.error.clone().unwrap_or_default(),
            summary: self.note.clone(),
        }
    }
}

impl RevisionMeta {
    /// The gRPC message without the text.
    pub fn to_pb(&self, sandbox: &str, enforced: u32) -> pb::PolicyRevision {
        pb::PolicyRevision {
            sandbox: sandbox.to_string(),
            revision: self.rev.into(),
            author: self.author.clone(),
            created: format_time(self.created_at),
            status: status(self.rev, enforced, self.error.as_deref()).into(),
            acked_at: self.acked_at.map(format_time).unwrap_or_default(),
            error: self.error.clone().unwrap_or_default(),
            summary: self.note.clone(),
            ..Default::default()
        }
    }
}

fn latest(conn: &Connection, id: i64) -> Result<u32> {
    Ok(conn.query_row(
        "SELECT COALESCE(MAX(rev), 0) FROM revisions WHERE sandbox_id = ?1",
        [id],
        |r| r.get(0),
    )?)
}

/// Fails with `UnknownRevision` unless the sandbox has revision `rev`.
pub(super) fn check_rev(conn: &Connection, id: i64, name: &str, rev: u32) -> Result<()> {
    let exists: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM revisions WHERE sandbox_id = ?1 AND rev = ?2)",
        params![id, rev],
        |r| r.get(0),
    )?;
    if exists {
        Ok(())
    } else {
        Err(StoreError::UnknownRevision {
            sandbox: name.to_string(),
            rev,
            latest: latest(conn, id)?,
        })
    }
}

impl Store {
    /// Stores `text` as the sandbox's next revision and returns its number.
    pub fn add_revision(
        &mut self,
        name: &str,
        text: &str,
        author: &str,
        note: &str,
    ) -> Result<u32> {
        let now = to_ms(now());
        let tx = self.write_tx()?;
        let id = sandbox_id(&tx, name)?;
        // MAX + 1 is race-free inside the write transaction, and revisions are never deleted
        // one by one, so numbers only grow.
        let rev = latest(&tx, id)? + 1;
        tx.execute(
            "INSERT INTO revisions (sandbox_id, rev, text, author, note, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![id, rev, text, author, note, now],
        )?;
        tx.execute(
            "UPDATE sandboxes SET updated_ms = ?2 WHERE id = ?1",
            params![id, now],
        )?;
        tx.commit()?;
        Ok(rev)
    }

    /// Revision `rev` of the sandbox's policy, or the latest when `None`.
    pub fn get_revision(&self, name: &str, rev: Option<u32>) -> Result<Revision> {
        let id = sandbox_id(&self.conn, name)?;
        let rev = match rev {
            Some(rev) => rev,
            None => latest(&self.conn, id)?,
        };
        let found = self
            .conn
            .query_row(
                "SELECT rev, text, author, note, created_ms, acked_ms, error
                 FROM revisions WHERE sandbox_id = ?1 AND rev = ?2",
                params![id, rev],
                |r| {
                    Ok(Revision {
                        sandbox: name.to_string(),
                        rev: r.get(0)?,
                        text: r.get(1)?,
                        author: r.get(2)?,
                        note: r.get(3)?,
                        created_at: time_col(r, 4)?,
                        acked_at: opt_time_col(r, 5)?,
                        error: r.get(6)?,
                    })
                },
            )
            .optional()?;
        match found {
            Some(r) => Ok(r),
            None => Err(StoreError::UnknownRevision {
                sandbox: name.to_string(),
                rev,
                latest: latest(&self.conn, id)?,
            }),
        }
    }

    /// Every revision of the sandbox, oldest first, without the texts.
    pub fn history(&self, name: &str) -> Result<Vec<RevisionMeta>> {
        let id = sandbox_id(&self.conn, name)?;
        let mut stmt = self.conn.prepare(
            // length() of a BLOB counts bytes; of TEXT it would count characters.
            "SELECT rev, author, created_ms, note, length(CAST(text AS BLOB)), acked_ms, error
             FROM revisions WHERE sandbox_id = ?1 ORDER BY rev",
        )?;
        let rows = stmt
            .query_map([id], |r| {
                Ok(RevisionMeta {
                    rev: r.get(0)?,
                    author: r.get(1)?,
                    created_at: time_col(r, 2)?,
                    note: r.get(3)?,
                    size: super::u64_col(r, 4)?,
                    acked_at: opt_time_col(r, 5)?,
                    error: r.get(6)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Records that the supervisor refused revision `rev`, and why. The enforced revision does
    /// not change: the supervisor keeps the one it had.
    pub fn set_revision_failed(&mut self, name: &str, rev: u32, error: &str) -> Result<()> {
        let tx = self.write_tx()?;
        let id = sandbox_id(&tx, name)?;
        check_rev(&tx, id, name, rev)?;
        tx.execute(
            "UPDATE revisions SET error = ?3 WHERE sandbox_id = ?1 AND rev = ?2",
            params![id, rev, error],
        )?;
        tx.commit()?;
        Ok(())
    }
}
