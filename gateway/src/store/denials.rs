//! Denials aggregated per sandbox and key (DESIGN §2, deny → allow), each with the narrowest
//! rule that would allow it, and the user's decision on it.

use super::error::{Result, StoreError};
use super::sandboxes::sandbox_id;
use super::{Store, now, opt_time_col, time_col, to_ms, u64_col, u64_to_sql};
use openshell_proto::event::format_time;
use openshell_proto::pb;
use rusqlite::types::Type;
use rusqlite::{OptionalExtension, params};
use time::OffsetDateTime;

/// What makes two denials the same: method and path only when the endpoint is inspected (L7).
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct DenialKey {
    pub host: String,
    pub port: u16,
    pub binary: String,
    pub method: Option<String>,
    pub path: Option<String>,
}

impl DenialKey {
    /// The key as stored: hosts compare case-insensitively (DESIGN §3), so they are lowercased;
    /// an empty method or path is the same as none.
    fn normalized(&self) -> (String, String, String) {
        let opt = |v: &Option<String>| v.clone().unwrap_or_default();
        (
            self.host.to_ascii_lowercase(),
            opt(&self.method),
            opt(&self.path),
        )
    }
}

/// One occurrence of a denial, for [`Store::record_denials`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DenialSighting {
    pub key: DenialKey,
    /// The narrowest rule that would allow it, as a `network_policies` YAML fragment.
    pub proposal_yaml: String,
    pub at: OffsetDateTime,
}

/// The user's decision on a denial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DenialStatus {
    /// Proposed, waiting for a decision.
    Pending,
    /// Merged into the policy as `approved_revision`.
    Approved,
    /// Not to be proposed again (until `unreject_denial`).
    Rejected,
}

impl DenialStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DenialStatus::Pending => "pending",
            DenialStatus::Approved => "approved",
            DenialStatus::Rejected => "rejected",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => DenialStatus::Pending,
            "approved" => DenialStatus::Approved,
            "rejected" => DenialStatus::Rejected,
            _ => return None,
        })
    }
}

/// One aggregated denial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DenialRow {
    /// Stable per sandbox and key: 1, 2, 3... in order of first occurrence.
    pub id: u64,
    pub sandbox: String,
    pub key: DenialKey,
    pub count: u64,
    pub first_seen: OffsetDateTime,
    pub last_seen: OffsetDateTime,
    /// The narrowest `network_policies` entry that would allow it, as YAML (the latest one
    /// proposed).
    pub proposal_yaml: String,
    pub status: DenialStatus,
    pub approved_revision: Option<u32>,
    pub decided_at: Option<OffsetDateTime>,
}

impl DenialRow {
    /// The gRPC message. Reason and layer are not aggregated; the caller may fill them.
    pub fn to_pb(&self) -> pb::Denial {
        pb::Denial {
            id: self.id.to_string(),
            sandbox: self.sandbox.clone(),
            host: self.key.host.clone(),
            port: self.key.port.into(),
            binary: self.key.binary.clone(),
            method: self.key.method.clone().unwrap_or_default(),
            path: self.key.path.clone().unwrap_or_default(),
            count: self.count,
            first_seen: format_time(self.first_seen),
            last_seen: format_time(self.last_seen),
            proposal_yaml: self.proposal_yaml.clone(),
            status: self.status.as_str().to_string(),
            ..Default::default()
        }
    }
}

const COLS: &str = "id, host, port, binary, method, path, count, first_ms, last_ms, proposal, \
                    status, approved_rev, decided_ms";

fn row_to_denial(sandbox: &str, r: &rusqlite::Row<'_>) -> rusqlite::Result<DenialRow> {
    let opt = |s: String| if s.is_empty() { None } else { Some(s) };
    let status: String = r.get(10)?;
    let status = DenialStatus::parse(&status).ok_or_else(|| {
        super::conversion_error(10, Type::Text, format!("denial status {status:?}"))
    })?;
    Ok(DenialRow {
        id: u64_col(r, 0)?,
        sandbox: sandbox.to_string(),
        key: DenialKey {
            host: r.get(1)?,
            port: r.get(2)?,
            binary: r.get(3)?,
            method: opt(r.get(4)?),
            path: opt(r.get(5)?),
        },
        count: u64_col(r, 6)?,
        first_seen: time_col(r, 7)?,
        last_seen: time_col(r, 8)?,
        proposal_yaml: r.get(9)?,
        status,
        approved_revision: r.get(11)?,
        decided_at: opt_time_col(r, 12)?,
    })
}

impl Store {
    /// Counts one occurrence of a denial: a new key gets the sandbox's next id and count 1; a
    /// known key keeps its id and first-seen time, its count grows and its last-seen time and
    /// proposal are updated. A rejected denial stays rejected. An approved one seen again once
    /// the sandbox enforces the approving revision (or a later one) goes back to pending: the
    /// approval evidently did not let it through, or was rolled back.
    pub fn record_denial(
        &mut self,
        sandbox: &str,
        key: &DenialKey,
        proposed_rule_yaml: &str,
        at: OffsetDateTime,
    ) -> Result<DenialRow> {
        let mut rows = self.record_denials(
            sandbox,
            &[DenialSighting {
                key: key.clone(),
                proposal_yaml: proposed_rule_yaml.to_string(),
                at,
            }],
        )?;
        rows.pop()
            .ok_or_else(|| StoreError::Invalid("no denial was recorded".into()))
    }

    /// [`Store::record_denial`] for many sightings in one transaction (one fsync), as a batch
    /// of events from a supervisor brings them. Returns the rows after each sighting, in order.
    pub fn record_denials(
        &mut self,
        sandbox: &str,
        sightings: &[DenialSighting],
    ) -> Result<Vec<DenialRow>> {
        let tx = self.write_tx()?;
        let id = sandbox_id(&tx, sandbox)?;
        let enforced: u32 = tx.query_row(
            "SELECT enforced_rev FROM sandboxes WHERE id = ?1",
            [id],
            |r| r.get(0),
        )?;
        let mut out = Vec::with_capacity(sightings.len());
        {
            let mut stmt = tx.prepare(&format!(
                "INSERT INTO denials (sandbox_id, id, host, port, binary, method, path, count,
                                      first_ms, last_ms, proposal)
                 VALUES (?1, (SELECT COALESCE(MAX(id), 0) + 1 FROM denials WHERE sandbox_id = ?1),
                         ?2, ?3, ?4, ?5, ?6, 1, ?7, ?7, ?8)
                 ON CONFLICT (sandbox_id, host, port, binary, method, path) DO UPDATE SET
                     count = count + 1,
                     -- MIN/MAX: events may arrive out of order.
                     first_ms = MIN(first_ms, excluded.first_ms),
                     last_ms = MAX(last_ms, excluded.last_ms),
                     proposal = excluded.proposal,
                     status = CASE WHEN status = 'approved' AND approved_rev <= ?9
                                   THEN 'pending' ELSE status END,
                     decided_ms = CASE WHEN status = 'approved' AND approved_rev <= ?9
                                       THEN NULL ELSE decided_ms END,
                     approved_rev = CASE WHEN status = 'approved' AND approved_rev <= ?9
                                         THEN NULL ELSE approved_rev END
                 RETURNING {COLS}"
            ))?;
            for s in sightings {
                let (host, method, path) = s.key.normalized();
                let row = stmt.query_row(
                    params![
                        id,
                        host,
                        s.key.port,
                        s.key.binary,
                        method,
                        path,
                        to_ms(s.at),
                        s.proposal_yaml,
                        enforced
                    ],
                    |r| row_to_denial(sandbox, r),
                )?;
                out.push(row);
            }
        }
        tx.commit()?;
        Ok(out)
    }

    /// The sandbox's denials by id: pending ones only, or all with `include_decided`
    /// (approved and rejected too).
    pub fn list_denials(&self, sandbox: &str, include_decided: bool) -> Result<Vec<DenialRow>> {
        let id = sandbox_id(&self.conn, sandbox)?;
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {COLS} FROM denials WHERE sandbox_id = ?1 AND (?2 OR status = 'pending')
             ORDER BY id"
        ))?;
        let rows = stmt
            .query_map(params![id, include_decided], |r| row_to_denial(sandbox, r))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// One denial, whatever its status.
    pub fn get_denial(&self, sandbox: &str, id: u64) -> Result<DenialRow> {
        let sid = sandbox_id(&self.conn, sandbox)?;
        self.conn
            .query_row(
                &format!("SELECT {COLS} FROM denials WHERE sandbox_id = ?1 AND id = ?2"),
                params![sid, u64_to_sql(id)?],
                |r| row_to_denial(sandbox, r),
            )
            .optional()?
            .ok_or_else(|| StoreError::UnknownDenial {
                sandbox: sandbox.to_string(),
                id,
            })
    }

    /// Rejects a denial: it is counted on but no longer proposed.
    pub fn reject_denial(&mut self, sandbox: &str, id: u64) -> Result<DenialRow> {
        self.decide(sandbox, id, DenialStatus::Rejected, None)
    }

    /// Puts a decided denial back to pending, so it is proposed again.
    pub fn unreject_denial(&mut self, sandbox: &str, id: u64) -> Result<DenialRow> {
        self.decide(sandbox, id, DenialStatus::Pending, None)
    }

    /// Records that the denial's proposal was merged into revision `rev` (which must exist).
    pub fn mark_approved(&mut self, sandbox: &str, id: u64, rev: u32) -> Result<DenialRow> {
        self.decide(sandbox, id, DenialStatus::Approved, Some(rev))
    }

    fn decide(
        &mut self,
        sandbox: &str,
        id: u64,
        status: DenialStatus,
        rev: Option<u32>,
    ) -> Result<DenialRow> {
        let did = u64_to_sql(id)?;
        let decided = (status != DenialStatus::Pending).then(|| to_ms(now()));
        let tx = self.write_tx()?;
        let sid = sandbox_id(&tx, sandbox)?;
        if let Some(rev) = rev {
            super::revisions::check_rev(&tx, sid, sandbox, rev)?;
        }
        let row = tx
            .query_row(
                &format!(
                    "UPDATE denials SET status = ?3, approved_rev = ?4, decided_ms = ?5
                     WHERE sandbox_id = ?1 AND id = ?2 RETURNING {COLS}"
                ),
                params![sid, did, status.as_str(), rev, decided],
                |r| row_to_denial(sandbox, r),
            )
            .optional()?
            .ok_or_else(|| StoreError::UnknownDenial {
                sandbox: sandbox.to_string(),
                id,
            })?;
        tx.commit()?;
        Ok(row)
    }
}
