//! What the policy tab and the allow preview do with keys: edit, diff, apply, revert, history
//! and rollback, and the proposed rule of a denial as a diff against the active policy.

use super::editor::Mode;
use super::keymap::Action;
use super::state::{Effect, Pending, Prompt, State, Tab};
use openshell_proto::{pb, policy};

impl State {
    /// Shows the rule that would allow denial `id` as a diff against the active policy.
    pub(super) fn preview(&mut self, id: &str) {
        let Some(v) = self.open.as_mut() else { return };
        let Some(d) = v.denials.iter().find(|d| d.id == id) else {
            return;
        };
        if !(d.status == "pending" || d.status.is_empty()) {
            let msg = format!("denial {} is already {}", d.id, d.status);
            self.error(msg);
            return;
        }
        if d.proposal_yaml.trim().is_empty() {
            let msg = format!(
                "denial {} has no rule that could allow it ({})",
                d.id,
                if d.reason.is_empty() {
                    "a direct connection or an unidentified program"
                } else {
                    d.reason.as_str()
                }
            );
            self.error(msg);
            return;
        }
        let proposal = d.proposal_yaml.clone();
        v.preview = Some(id.to_string());
        // The change to the policy, both sides in the canonical rendering: the approval
        // stores the merged policy rendered that way, and comments or layout of the active
        // text would otherwise fill the preview with lines that do not change the policy.
        v.preview_diff = match self.editors.get(&v.name) {
            Some(e) => match (policy::parse(&e.base_text), merged(&e.base_text, &proposal)) {
                (Ok(base), Ok(text)) => policy::diff::unified(
                    &policy::to_yaml(&base),
                    &text,
                    &format!("revision {}", e.base_revision),
                    "with the rule",
                ),
                _ => String::new(),
            },
            None => String::new(),
        };
    }

    pub(super) fn preview_action(&mut self, action: Action) -> Vec<Effect> {
        use Action::*;
        let Some(v) = self.open.as_mut() else {
            return vec![];
        };
        match action {
            Back => v.preview = None,
            Confirm => {
                let Some(id) = v.preview.take() else {
                    return vec![];
                };
                let sandbox = v.name.clone();
                self.info(format!("applying the rule for denial {id}…"));
                return vec![Effect::Approve { sandbox, id }];
            }
            Edit => {
                let Some(id) = v.preview.take() else {
                    return vec![];
                };
                let name = v.name.clone();
                let proposal = v
                    .denials
                    .iter()
                    .find(|d| d.id == id)
                    .map(|d| d.proposal_yaml.clone())
                    .unwrap_or_default();
                let Some(e) = self.editors.get_mut(&name) else {
                    self.error("the active policy is still loading; try again in a moment");
                    return vec![];
                };
                match merged(&e.text(), &proposal) {
                    Ok(text) => {
                        e.set_buffer(&text);
                        e.mode = Mode::Edit;
                        e.jump_to_problem();
                        v.tab = Tab::Policy;
                        self.info(format!(
                            "denial {id}'s rule is in the editor: change it, then apply"
                        ));
                    }
                    Err(err) => self.error(format!(
                        "the policy buffer has errors, fix them before adding a rule: {err}"
                    )),
                }
            }
            Up | Down => {
                v.preview = None;
                return self.view_action(action);
            }
            _ => {}
        }
        vec![]
    }

    pub(super) fn policy_action(&mut self, action: Action) -> Vec<Effect> {
        use Action::*;
        let Some(v) = self.open.as_mut() else {
            return vec![];
        };
        let name = v.name.clone();
        if let Some(h) = v.history.as_mut() {
            match action {
                Up => {
                    h.selected = h.selected.saturating_sub(1);
                    h.diff = None;
                }
                Down => {
                    h.selected = (h.selected + 1).min(h.revisions.len().saturating_sub(1));
                    h.diff = None;
                }
                Open => {
                    let Some(r) = h.revisions.get(h.selected) else {
                        return vec![];
                    };
                    let active = h
                        .revisions
                        .iter()
                        .find(|r| r.status == pb::RevisionStatus::Loaded as i32);
                    let (from_rev, from_text) = match active {
                        Some(a) => (a.revision, a.yaml.as_str()),
                        None => (0, ""),
                    };
                    let d = policy::diff::unified(
                        from_text,
                        &r.yaml,
                        &format!("revision {from_rev} (enforced)"),
                        &format!("revision {}", r.revision),
                    );
                    h.diff = Some((r.revision, d));
                }
                Rollback => {
                    if let Some(r) = h.revisions.get(h.selected) {
                        let revision = r.revision;
                        self.prompt = Some(Prompt {
                            question: format!(
                                "Roll {name} back to revision {revision}? It becomes a new revision and is hot-reloaded."
                            ),
                            yes: Pending::Rollback {
                                sandbox: name,
                                revision,
                            },
                        });
                    }
                }
                History | Back => v.history = None,
                _ => {}
            }
            return vec![];
        }
        if action == History {
            v.history = Some(super::state::History {
                loading: true,
                ..Default::default()
            });
            return vec![Effect::LoadHistory { sandbox: name }];
        }
        let Some(e) = self.editors.get_mut(&name) else {
            if action == Back {
                return self.go_home();
            }
            return vec![];
        };
        match (action, e.mode) {
            (Edit, _) => {
                e.mode = Mode::Edit;
                if e.has_errors() {
                    e.jump_to_problem();
                }
            }
            (Diff, Mode::Diff) | (Back, Mode::Diff) => e.mode = Mode::View,
            (Diff, _) => {
                if e.dirty() {
                    e.mode = Mode::Diff;
                } else {
                    let msg = format!("no edits: the buffer equals revision {}", e.base_revision);
                    self.info(msg);
                }
            }
            (Apply, _) => return self.apply(),
            (Revert, _) => {
                if e.dirty() {
                    self.prompt = Some(Prompt {
                        question: format!(
                            "Discard your edits to {name}'s policy and show revision {}?",
                            e.base_revision
                        ),
                        yes: Pending::Revert(name),
                    });
                } else {
                    self.info("nothing to discard");
                }
            }
            (Up, Mode::Diff) => e.diff_scroll = e.diff_scroll.saturating_sub(1),
            (Down, Mode::Diff) => {
                e.diff_scroll = (e.diff_scroll + 1).min(e.diff.lines().count().saturating_sub(1))
            }
            (PageUp, Mode::Diff) => e.diff_scroll = e.diff_scroll.saturating_sub(20),
            (PageDown, Mode::Diff) => {
                e.diff_scroll = (e.diff_scroll + 20).min(e.diff.lines().count().saturating_sub(1))
            }
            (Up, _) => e.move_lines(-1),
            (Down, _) => e.move_lines(1),
            (PageUp, _) => e.move_lines(-20),
            (PageDown, _) => e.move_lines(20),
            (Top, _) => e.move_top(),
            (Bottom, _) => e.move_bottom(),
            (Back, _) => return self.go_home(),
            _ => {}
        }
        vec![]
    }

    /// Sends the open sandbox's buffer as a new revision, unless it is known to be refused.
    pub(super) fn apply(&mut self) -> Vec<Effect> {
        let Some(v) = self.open.as_ref() else {
            return vec![];
        };
        let running = self
            .sandboxes
            .iter()
            .find(|s| s.name == v.name)
            .is_some_and(|s| {
                matches!(
                    pb::Phase::try_from(s.phase),
                    Ok(pb::Phase::Ready | pb::Phase::Provisioning)
                )
            });
        let name = v.name.clone();
        let Some(e) = self.editors.get_mut(&name) else {
            self.error("the policy is still loading");
            return vec![];
        };
        if let Some(p) = e.problems.iter().find(|p| p.error) {
            let msg = format!(
                "not applied: line {}, column {}: {}",
                p.line, p.column, p.message
            );
            e.jump_to_problem();
            self.error(msg);
            return vec![];
        }
        if !e.dirty() {
            let msg = format!(
                "nothing to apply: the buffer equals revision {}",
                e.base_revision
            );
            self.info(msg);
            return vec![];
        }
        if running && !e.static_changes.is_empty() {
            let msg = format!(
                "not applied: {} cannot change while {name} runs (static); undo that change, or \
                 recreate the sandbox with the new policy",
                e.static_changes.join(", ")
            );
            self.error(msg);
            return vec![];
        }
        if e.applying {
            self.info("an apply is already in flight");
            return vec![];
        }
        e.applying = true;
        let yaml = e.text();
        self.info(format!("{name}: applying… (waiting for the supervisor)"));
        vec![Effect::ApplyPolicy {
            sandbox: name,
            yaml,
        }]
    }
}

/// `base` with a proposed fragment merged in, as the gateway renders an approval.
pub fn merged(base: &str, proposal: &str) -> Result<String, String> {
    let base = policy::parse(base).map_err(|e| e.to_string())?;
    let add = policy::parse(proposal).map_err(|e| e.to_string())?;
    Ok(policy::to_yaml(&policy::merge(&base, &add)))
}
