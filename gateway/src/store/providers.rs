//! Providers (named credential bundles) and gateway settings.

use super::error::{Result, StoreError};
use super::{Store, json_col, non_empty, now, time_col, to_json_text, to_ms};
use openshell_proto::event::format_time;
use openshell_proto::pb;
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::BTreeMap;
use time::OffsetDateTime;

/// A named credential bundle. Its `Debug` output is redacted, so logging one leaks nothing.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Provider {
    pub name: String,
    /// What it is for (`github`, `openai`, ...).
    pub kind: String,
    /// Secrets, in clear: never log or return these; use [`Provider::redacted`].
    pub credentials: BTreeMap<String, String>,
    pub config: BTreeMap<String, String>,
    /// Set by the store when the provider was first put; ignored on input.
    pub created_at: Option<OffsetDateTime>,
}

/// Shows at most the last 4 characters, and only of secrets of 12 or more, so that at most a
/// third of a secret shows; the mask has a fixed width so it does not give away the length.
fn mask(secret: &str) -> String {
    let n = secret.chars().count();
    if n < 12 {
        "****".to_string()
    } else {
        let tail: String = secret.chars().skip(n - 4).collect();
        format!("****{tail}")
    }
}

impl Provider {
    /// A copy with every credential value masked (all but the last 4 characters).
    pub fn redacted(&self) -> Provider {
        Provider {
            credentials: self
                .credentials
                .iter()
                .map(|(k, v)| (k.clone(), mask(v)))
                .collect(),
            ..self.clone()
        }
    }

    /// The gRPC message, redacted: the API never returns secrets in full (DESIGN §6).
    pub fn to_pb_redacted(&self) -> pb::Provider {
        let r = self.redacted();
        pb::Provider {
            name: r.name,
            r#type: r.kind,
            credentials: r.credentials.into_iter().collect(),
            config: r.config.into_iter().collect(),
            created: r.created_at.map(format_time).unwrap_or_default(),
        }
    }
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = self.redacted();
        f.debug_struct("Provider")
            .field("name", &r.name)
            .field("kind", &r.kind)
            .field("credentials", &r.credentials)
            .field("config", &r.config)
            .field("created_at", &r.created_at)
            .finish()
    }
}

const COLS: &str = "name, kind, credentials, config, created_ms";

fn row_to_provider(r: &rusqlite::Row<'_>) -> rusqlite::Result<Provider> {
    Ok(Provider {
        name: r.get(0)?,
        kind: r.get(1)?,
        credentials: json_col(r, 2)?,
        config: json_col(r, 3)?,
        created_at: Some(time_col(r, 4)?),
    })
}

fn unknown(conn: &Connection, name: &str) -> StoreError {
    let known = conn
        .prepare("SELECT name FROM providers ORDER BY name")
        .and_then(|mut s| {
            s.query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()
        });
    match known {
        Ok(known) => StoreError::UnknownProvider {
            name: name.to_string(),
            known,
        },
        Err(e) => e.into(),
    }
}

impl Store {
    /// Creates or replaces the provider `p.name` (keeping its creation time) and returns it as
    /// stored.
    pub fn put_provider(&mut self, p: &Provider) -> Result<Provider> {
        non_empty("provider name", &p.name)?;
        let now = to_ms(now());
        let row = self.conn.query_row(
            &format!(
                "INSERT INTO providers (name, kind, credentials, config, created_ms, updated_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5)
                 ON CONFLICT (name) DO UPDATE SET kind = excluded.kind,
                     credentials = excluded.credentials, config = excluded.config,
                     updated_ms = excluded.updated_ms
                 RETURNING {COLS}"
            ),
            params![
                p.name,
                p.kind,
                to_json_text(&p.credentials)?,
                to_json_text(&p.config)?,
                now
            ],
            row_to_provider,
        )?;
        Ok(row)
    }

    /// The provider with its credentials in clear (for injecting into a sandbox).
    pub fn get_provider(&self, name: &str) -> Result<Provider> {
        self.conn
            .query_row(
                &format!("SELECT {COLS} FROM providers WHERE name = ?1"),
                [name],
                row_to_provider,
            )
            .optional()?
            .ok_or_else(|| unknown(&self.conn, name))
    }

    /// Every provider by name, credentials in clear.
    pub fn list_providers(&self) -> Result<Vec<Provider>> {
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT {COLS} FROM providers ORDER BY name"))?;
        let rows = stmt
            .query_map([], row_to_provider)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    pub fn delete_provider(&mut self, name: &str) -> Result<()> {
        if self
            .conn
            .execute("DELETE FROM providers WHERE name = ?1", [name])?
            == 0
        {
            return Err(unknown(&self.conn, name));
        }
        Ok(())
    }

    /// Sets a gateway setting (replacing any value it had).
    pub fn put_setting(&mut self, key: &str, value: &str) -> Result<()> {
        non_empty("setting name", key)?;
        self.conn.execute(
            "INSERT INTO settings (key, value, updated_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_ms = excluded.updated_ms",
            params![key, value, to_ms(now())],
        )?;
        Ok(())
    }

    pub fn get_setting(&self, key: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()?)
    }

    /// Removes a setting; false if it was not set.
    pub fn delete_setting(&mut self, key: &str) -> Result<bool> {
        Ok(self
            .conn
            .execute("DELETE FROM settings WHERE key = ?1", [key])?
            > 0)
    }

    /// Every setting, by key.
    pub fn list_settings(&self) -> Result<BTreeMap<String, String>> {
        let mut stmt = self
            .conn
            .prepare("SELECT key, value FROM settings ORDER BY key")?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<BTreeMap<_, _>>>()?;
        Ok(rows)
    }
}
