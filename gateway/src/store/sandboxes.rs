//! Sandboxes: what was asked for, where the sandbox is in its life, and what runs it.

use super::error::{Result, StoreError};
use super::{
    Store, conversion_error, json_col, non_empty, now, opt_time_col, time_col, to_json_text, to_ms,
    u64_col, u64_to_sql,
};
use openshell_proto::event::format_time;
use openshell_proto::pb;
use rusqlite::types::Type;
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::BTreeMap;
use time::OffsetDateTime;

/// Where a sandbox is in its life: `provisioning → ready → (stopped | failed)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Provisioning,
    Ready,
    Stopped,
    Failed,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Provisioning => "provisioning",
            Phase::Ready => "ready",
            Phase::Stopped => "stopped",
            Phase::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Phase> {
        Some(match s {
            "provisioning" => Phase::Provisioning,
            "ready" => Phase::Ready,
            "stopped" => Phase::Stopped,
            "failed" => Phase::Failed,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Phase> for pb::Phase {
    fn from(p: Phase) -> pb::Phase {
        match p {
            Phase::Provisioning => pb::Phase::Provisioning,
            Phase::Ready => pb::Phase::Ready,
            Phase::Stopped => pb::Phase::Stopped,
            Phase::Failed => pb::Phase::Failed,
        }
    }
}

/// A sandbox to create. `Default` gives the process driver and `keep: true`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSandbox {
    pub name: String,
    pub driver: String,
    pub workdir: String,
    pub command: Vec<String>,
    /// Revision 1 of its policy, stored as given (validation is the caller's job).
    pub policy_text: String,
    pub author: String,
    pub env: BTreeMap<String, String>,
    pub providers: Vec<String>,
    /// Container image or build source (docker/kubernetes drivers).
    pub image: String,
    /// Keep the sandbox once its command exits.
    pub keep: bool,
}

impl Default for NewSandbox {
    fn default() -> Self {
        NewSandbox {
            name: String::new(),
            driver: "process".into(),
            workdir: String::new(),
            command: Vec::new(),
            policy_text: String::new(),
            author: String::new(),
            env: BTreeMap::new(),
            providers: Vec::new(),
            image: String::new(),
            keep: true,
        }
    }
}

/// What the driver knows about the running sandbox; what a restarted gateway needs to
/// re-attach.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Runtime {
    /// The sandboxed command's pid, as seen from the host.
    pub pid: Option<u32>,
    pub supervisor_pid: Option<u32>,
    /// How to reach the supervisor or driver-specific handle (container id, socket path...).
    pub endpoint: Option<String>,
    pub started_at: Option<OffsetDateTime>,
}

/// A stored sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxRow {
    /// Never reused, even after the sandbox is deleted.
    pub id: u64,
    pub name: String,
    pub driver: String,
    pub workdir: String,
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub providers: Vec<String>,
    pub image: String,
    pub keep: bool,
    pub phase: Phase,
    /// Why it is in its phase; empty when there is nothing to say.
    pub reason: String,
    pub exit_code: Option<i32>,
    pub runtime: Runtime,
    /// The latest stored revision.
    pub policy_revision: u32,
    /// The revision the supervisor acknowledged enforcing; 0 before the first ack.
    pub enforced_revision: u32,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

impl SandboxRow {
    /// The gRPC message. Resource use and recent denials are not stored; the caller fills them.
    pub fn to_pb(&self) -> pb::Sandbox {
        pb::Sandbox {
            id: self.id.to_string(),
            name: self.name.clone(),
            phase: pb::Phase::from(self.phase).into(),
            reason: self.reason.clone(),
            driver: self.driver.clone(),
            policy_revision: self.policy_revision.into(),
            acked_revision: self.enforced_revision.into(),
            created: format_time(self.created_at),
            command: self.command.clone(),
            workdir: self.workdir.clone(),
            providers: self.providers.clone(),
            pid: self.runtime.pid.unwrap_or_default(),
            keep: self.keep,
            exit_code: self.exit_code.unwrap_or_default(),
            image: self.image.clone(),
            ..Default::default()
        }
    }
}

const COLS: &str = "s.id, s.name, s.driver, s.workdir, s.command, s.env, s.providers, s.image, \
     s.keep, s.phase, s.reason, s.exit_code, s.pid, s.supervisor_pid, s.endpoint, s.started_ms, \
     s.enforced_rev, s.created_ms, s.updated_ms, \
     (SELECT COALESCE(MAX(r.rev), 0) FROM revisions r WHERE r.sandbox_id = s.id)";

fn row_to_sandbox(row: &rusqlite::Row<'_>) -> rusqlite::Result<SandboxRow> {
    let phase: String = row.get(9)?;
    let phase = Phase::parse(&phase)
        .ok_or_else(|| conversion_error(9, Type::Text, format!("phase {phase:?}")))?;
    Ok(SandboxRow {
        id: u64_col(row, 0)?,
        name: row.get(1)?,
        driver: row.get(2)?,
        workdir: row.get(3)?,
        command: json_col(row, 4)?,
        env: json_col(row, 5)?,
        providers: json_col(row, 6)?,
        image: row.get(7)?,
        keep: row.get(8)?,
        phase,
        reason: row.get(10)?,
        exit_code: row.get(11)?,
        runtime: Runtime {
            pid: row.get(12)?,
            supervisor_pid: row.get(13)?,
            endpoint: row.get(14)?,
            started_at: opt_time_col(row, 15)?,
        },
        enforced_revision: row.get(16)?,
        created_at: time_col(row, 17)?,
        updated_at: time_col(row, 18)?,
        policy_revision: row.get(19)?,
    })
}

/// Every sandbox name, sorted: what an "unknown sandbox" error lists.
pub(super) fn names(conn: &Connection) -> Result<Vec<String>> {
    let mut stmt = conn.prepare("SELECT name FROM sandboxes ORDER BY name")?;
    let names = stmt
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(names)
}

pub(super) fn unknown(conn: &Connection, name: &str) -> StoreError {
    match names(conn) {
        Ok(known) => StoreError::UnknownSandbox {
            name: name.to_string(),
            known,
        },
        Err(e) => e,
    }
}

/// The internal key of the sandbox `name`.
pub(super) fn sandbox_id(conn: &Connection, name: &str) -> Result<i64> {
    conn.query_row("SELECT id FROM sandboxes WHERE name = ?1", [name], |r| {
        r.get(0)
    })
    .optional()?
    .ok_or_else(|| unknown(conn, name))
}

fn get(conn: &Connection, name: &str) -> Result<SandboxRow> {
    conn.query_row(
        &format!("SELECT {COLS} FROM sandboxes s WHERE s.name = ?1"),
        [name],
        row_to_sandbox,
    )
    .optional()?
    .ok_or_else(|| unknown(conn, name))
}

impl Store {
    /// Stores a new sandbox in phase `provisioning` with revision 1 of its policy, in one
    /// transaction.
    pub fn create_sandbox(&mut self, new: NewSandbox) -> Result<SandboxRow> {
        non_empty("sandbox name", &new.name)?;
        let command = to_json_text(&new.command)?;
        let env = to_json_text(&new.env)?;
        let providers = to_json_text(&new.providers)?;
        let now = to_ms(now());
        let tx = self.write_tx()?;
        // Checked inside the write transaction, so no other writer can slip in between.
        let exists: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM sandboxes WHERE name = ?1)",
            [&new.name],
            |r| r.get(0),
        )?;
        if exists {
            return Err(StoreError::SandboxExists(new.name));
        }
        tx.execute(
            "INSERT INTO sandboxes (name, driver, workdir, command, env, providers, image, keep,
                                    phase, created_ms, updated_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'provisioning', ?9, ?9)",
            params![
                new.name,
                new.driver,
                new.workdir,
                command,
                env,
                providers,
                new.image,
                new.keep,
                now
            ],
        )?;
        let id = tx.last_insert_rowid();
        tx.execute(
            "INSERT INTO revisions (sandbox_id, rev, text, author, note, created_ms)
             VALUES (?1, 1, ?2, ?3, 'created', ?4)",
            params![id, new.policy_text, new.author, now],
        )?;
        let row = get(&tx, &new.name)?;
        tx.commit()?;
        Ok(row)
    }

    pub fn get_sandbox(&self, name: &str) -> Result<SandboxRow> {
        get(&self.conn, name)
    }

    /// The sandbox with the given id (what a supervisor presents when it registers).
    pub fn get_sandbox_by_id(&self, id: u64) -> Result<Option<SandboxRow>> {
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {COLS} FROM sandboxes s WHERE s.id = ?1"),
                [u64_to_sql(id)?],
                row_to_sandbox,
            )
            .optional()?)
    }

    /// Every sandbox, by name.
    pub fn list_sandboxes(&self) -> Result<Vec<SandboxRow>> {
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT {COLS} FROM sandboxes s ORDER BY s.name"))?;
        let rows = stmt
            .query_map([], row_to_sandbox)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Sets the phase and its reason (`None` clears the reason: it belonged to the old phase).
    /// The store does not police transitions; the caller knows what happened.
    pub fn set_phase(&mut self, name: &str, phase: Phase, reason: Option<&str>) -> Result<()> {
        self.update_one(
            name,
            "UPDATE sandboxes SET phase = ?2, reason = ?3, updated_ms = ?4 WHERE name = ?1",
            params![name, phase.as_str(), reason.unwrap_or(""), to_ms(now())],
        )
    }

    /// Records how the sandboxed command exited (`None` while it runs).
    pub fn set_exit_code(&mut self, name: &str, code: Option<i32>) -> Result<()> {
        self.update_one(
            name,
            "UPDATE sandboxes SET exit_code = ?2, updated_ms = ?3 WHERE name = ?1",
            params![name, code, to_ms(now())],
        )
    }

    /// Replaces the runtime facts (pids, endpoint, start time).
    pub fn set_runtime(&mut self, name: &str, runtime: &Runtime) -> Result<()> {
        self.update_one(
            name,
            "UPDATE sandboxes SET pid = ?2, supervisor_pid = ?3, endpoint = ?4, started_ms = ?5,
                                  updated_ms = ?6
             WHERE name = ?1",
            params![
                name,
                runtime.pid,
                runtime.supervisor_pid,
                runtime.endpoint,
                runtime.started_at.map(to_ms),
                to_ms(now())
            ],
        )
    }

    /// Records that the supervisor enforces revision `rev` (it acknowledged it). The revision
    /// must exist.
    pub fn set_enforced_revision(&mut self, name: &str, rev: u32) -> Result<()> {
        let now = to_ms(now());
        let tx = self.write_tx()?;
        let id = sandbox_id(&tx, name)?;
        super::revisions::check_rev(&tx, id, name, rev)?;
        tx.execute(
            "UPDATE sandboxes SET enforced_rev = ?2, updated_ms = ?3 WHERE id = ?1",
            params![id, rev, now],
        )?;
        tx.execute(
            "UPDATE revisions SET acked_ms = ?3, error = NULL WHERE sandbox_id = ?1 AND rev = ?2",
            params![id, rev, now],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Deletes the sandbox with its revisions and denials. Its events stay until retention
    /// drops them: they are the record of what happened.
    pub fn delete_sandbox(&mut self, name: &str) -> Result<()> {
        let n = self
            .conn
            .execute("DELETE FROM sandboxes WHERE name = ?1", [name])?;
        if n == 0 {
            return Err(unknown(&self.conn, name));
        }
        Ok(())
    }

    /// One UPDATE of the sandbox `name` (the first parameter); unknown name if no row matched.
    fn update_one(&mut self, name: &str, sql: &str, params: impl rusqlite::Params) -> Result<()> {
        if self.conn.execute(sql, params)? == 0 {
            return Err(unknown(&self.conn, name));
        }
        Ok(())
    }
}
