//! Hot reload: a new policy file is checked (syntax, meaning, unchanged static sections),
//! compiled, then swapped in whole. Anything wrong leaves the running policy as it is.

use crate::policy_state::{Active, Current};
use openshell_proto::policy::{self, Policy, inherit_static, static_changes};
use tokio::sync::watch;

/// Loads `text` as the next revision of `current`. Returns the new revision number, or why
/// it was refused.
pub fn apply(
    text: &str,
    file: &str,
    current: &Current,
    revision: &watch::Sender<u64>,
) -> Result<u64, String> {
    let loaded = policy::load(text, file).map_err(|e| e.to_string())?;
    let running = current.get();
    let proposed: Policy = inherit_static(&running.policy, &loaded.policy);
    let changed = static_changes(&running.policy, &proposed);
    if !changed.is_empty() {
        return Err(format!(
            "static sections cannot change on a running sandbox: {}; restart the sandbox to apply them",
            changed.join(", ")
        ));
    }
    let next = running.revision + 1;
    let active = Active::compile(next, proposed).map_err(|e| e.to_string())?;
    current.swap(active);
    // Tunnels re-check themselves against the new revision.
    revision.send_replace(next);
    Ok(next)
}
