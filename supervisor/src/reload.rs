//! Hot reload: a new policy file is checked (syntax, meaning, unchanged static sections),
//! compiled, then swapped in whole. Anything wrong leaves the running policy as it is.

use crate::events::Events;
use crate::policy_state::{Active, Current};
use openshell_proto::policy::{self, Policy, inherit_static, static_changes};
use std::path::Path;
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

/// Reads and applies `path`, reporting the outcome as a policy event. `last` is the text last
/// seen, so an editor's several writes of the same content make one revision.
pub fn from_file(
    path: &Path,
    last: &mut String,
    current: &Current,
    revision: &watch::Sender<u64>,
    events: &Events,
) {
    let shown = path.display().to_string();
    let outcome = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {shown}: {e}"))
        .and_then(|text| {
            if text == *last {
                return Err(String::new());
            }
            last.clone_from(&text);
            apply(&text, &shown, current, revision)
        });
    match outcome {
        Ok(rev) => events.say(
            "info",
            "policy",
            format!("policy revision {rev} from {shown} is now enforced"),
        ),
        Err(e) if e.is_empty() => {}
        Err(e) => events.say(
            "error",
            "policy",
            format!("policy reload refused, the previous policy stays in force: {e}"),
        ),
    }
}
