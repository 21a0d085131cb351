//! The store's errors, worded for the person who will read them in a CLI or the TUI.

use std::path::PathBuf;

/// Everything the store can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the state database {}: {source}", .path.display())]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("cannot open the state database {}: {source}", .path.display())]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },

    #[error(
        "the state database {} is from a newer OpenShell (schema {found}, this build knows \
         {known}); upgrade openshell",
        .path.display()
    )]
    NewerSchema {
        path: PathBuf,
        found: u32,
        known: u32,
    },

    #[error("a sandbox named \"{0}\" already exists; pick another name or delete it first")]
    SandboxExists(String),

    #[error("no sandbox named \"{name}\"; {}", known_list("sandboxes", .known))]
    UnknownSandbox { name: String, known: Vec<String> },

    #[error("sandbox \"{sandbox}\" has no policy revision {rev} (its revisions are 1 to {latest})")]
    UnknownRevision {
        sandbox: String,
        rev: u32,
        latest: u32,
    },

    #[error("sandbox \"{sandbox}\" has no denial with id {id}")]
    UnknownDenial { sandbox: String, id: u64 },

    #[error("no provider named \"{name}\"; {}", known_list("providers", .known))]
    UnknownProvider { name: String, known: Vec<String> },

    /// The caller passed something the store cannot keep (an empty name, a time out of range).
    #[error("{0}")]
    Invalid(String),

    #[error("the state database failed: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// The store's result type.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

fn known_list(what: &str, known: &[String]) -> String {
    if known.is_empty() {
        format!("there are no {what}")
    } else {
        format!("the known {what} are: {}", known.join(", "))
    }
}
