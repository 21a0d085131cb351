//! The built-in policies: the baseline every new sandbox gets and the presets users merge in.

use crate::policy::{Policy, PolicyErrors, load};

include!(concat!(env!("OUT_DIR"), "/catalog.rs"));

/// A built-in preset.
#[derive(Debug, Clone, Copy)]
pub struct Preset {
    pub name: &'static str,
    pub text: &'static str,
}

impl Preset {
    /// The one-line description: the preset's first comment line.
    pub fn description(&self) -> &'static str {
        self.text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix('#'))
            .map(str::trim)
            .unwrap_or("")
    }

    pub fn policy(&self) -> Result<Policy, PolicyErrors> {
        load(self.text, &format!("preset:{}", self.name)).map(|l| l.policy)
    }
}

/// Every built-in preset, sorted by name.
pub fn presets() -> impl Iterator<Item = Preset> {
    PRESETS.iter().map(|(name, text)| Preset { name, text })
}

/// The preset called `name`.
pub fn preset(name: &str) -> Option<Preset> {
    presets().find(|p| p.name == name)
}

/// The baseline policy as shipped, comments included.
pub fn baseline_text() -> &'static str {
    BASELINE
}

/// The baseline policy.
pub fn baseline() -> Policy {
    // The baseline is checked by this crate's tests; a broken build would fail them.
    load(BASELINE, "policies/baseline.yaml")
        .map(|l| l.policy)
        .unwrap_or_default()
}
