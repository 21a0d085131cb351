//! Reading a policy file to send to the gateway: refused here when it is too large (before
//! reading it) or invalid, with every error as FILE:LINE:COL, so a mistake costs no round trip
//! and reads the same as `openshell policy validate`.

use anyhow::{Context, Result, bail};
use openshell_proto::policy::{self, load::MAX_POLICY_BYTES};
use std::path::Path;

/// The text of the policy file at `path`, checked.
pub fn read_checked(path: &Path) -> Result<String> {
    let shown = path.display();
    let len = std::fs::metadata(path)
        .with_context(|| format!("cannot read {shown}"))?
        .len();
    if len > MAX_POLICY_BYTES as u64 {
        bail!(
            "{shown}:1:1: the file is {len} bytes; a policy is at most 1 MiB (the limit is {MAX_POLICY_BYTES} bytes)"
        );
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {shown}"))?;
    if let Err(errors) = policy::load(&text, &shown.to_string()) {
        let n = errors.0.len();
        bail!(
            "{errors}\n{shown}: invalid policy ({n} error{}); nothing was sent",
            if n == 1 { "" } else { "s" }
        );
    }
    Ok(text)
}
