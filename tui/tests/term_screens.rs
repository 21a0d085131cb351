//! `openshell term` screens rendered from constructed state (no gateway), compared to
//! snapshots in `snapshots/` at 120×40 and 80×24 in the default and light themes; and a flow
//! driven by key events.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use openshell::term::keymap::{Key, Keymap};
use openshell::term::state::{Effect, Health, Msg, State, Tab};
use openshell::term::theme::Theme;
use openshell::term::ui;
use openshell_proto::pb;
use ratatui::Terminal;
use ratatui::backend::TestBackend;

/// 2026-01-01T01:00:00Z
const NOW: i64 = 1_767_229_200;

fn sandbox(name: &str, phase: pb::Phase, rev: u64, acked: u64, denials: u32) -> pb::Sandbox {
    pb::Sandbox {
        name: name.into(),
        phase: phase as i32,
        driver: "linux".into(),
        policy_revision: rev,
        acked_revision: acked,
        created: "2026-01-01T00:15:00Z".into(),
        command: vec!["claude".into(), "--yolo".into()],
        workdir: "/sandbox".into(),
        providers: vec!["anthropic".into()],
        recent_denials: denials,
        image: "openshell/base:latest".into(),
        ..Default::default()
    }
}

fn denial(id: &str, host: &str, status: &str) -> pb::Denial {
    pb::Denial {
        id: id.into(),
        sandbox: "agent".into(),
        host: host.into(),
        port: 443,
        binary: "/usr/bin/curl".into(),
        method: "POST".into(),
        path: "/repos/x/issues".into(),
        count: 3,
        status: status.into(),
        proposal_yaml: format!(
            "version: 1\nnetwork_policies:\n  allow_{id}:\n    endpoints:\n      - host: {host}\n        port: 443\n        protocol: rest\n        tls: terminate\n        rules:\n          - allow: {{ method: POST, path: /repos/x/issues }}\n    binaries:\n      - path: /usr/bin/curl\n"
        ),
        ..Default::default()
    }
}

fn event(seq: u64, action: &str, host: &str) -> pb::Event {
    pb::Event {
        seq,
        time: format!("2026-01-01T00:59:{:02}.000Z", seq % 60),
        sandbox: "agent".into(),
        source: "sandbox".into(),
        level: if action == "deny" { "warn" } else { "info" }.into(),
        kind: "network".into(),
        action: action.into(),
        host: host.into(),
        port: 443,
        binary: "/usr/bin/curl".into(),
        method: if action == "deny" { "POST" } else { "" }.into(),
        path: if action == "deny" {
            "/repos/x/issues"
        } else {
            ""
        }
        .into(),
        ..Default::default()
    }
}

/// The active policy of `agent` in the fixtures.
const POLICY: &str = "version: 1
filesystem_policy:
  include_workdir: true
  read_only: [/usr, /lib, /etc]
  read_write: [/tmp]
network_policies:
  pypi:
    endpoints:
      - { host: pypi.org, port: 443 }
    binaries:
      - { path: /usr/bin/pip }
";

fn revision(rev: u64, status: pb::RevisionStatus, yaml: &str, summary: &str) -> pb::PolicyRevision {
    pb::PolicyRevision {
        sandbox: "agent".into(),
        revision: rev,
        yaml: yaml.into(),
        author: "dev".into(),
        created: format!("2026-01-01T00:{:02}:00Z", 10 + rev),
        status: status as i32,
        summary: summary.into(),
        ..Default::default()
    }
}

fn home() -> State {
    let mut s = State::new("/run/openshell/gateway.sock", "0.1.0");
    s.now = NOW;
    s.msg(Msg::Health(Ok(pb::HealthResponse {
        version: "0.1.0".into(),
        ..Default::default()
    })));
    s.msg(Msg::Sandboxes(vec![
        sandbox("agent", pb::Phase::Ready, 3, 3, 2),
        sandbox("builder", pb::Phase::Provisioning, 1, 0, 0),
        sandbox("crashed", pb::Phase::Failed, 2, 2, 0),
    ]));
    s.info("connected");
    s
}

fn km() -> Keymap {
    Keymap::default_keymap()
}

fn press(s: &mut State, code: KeyCode) -> Vec<Effect> {
    s.key(
        Key::from_event(&KeyEvent::new(code, KeyModifiers::NONE)),
        &km(),
    )
}

fn typed(s: &mut State, text: &str) {
    for c in text.chars() {
        press(s, KeyCode::Char(c));
    }
}

fn ctrl(s: &mut State, c: char) -> Vec<Effect> {
    s.key(
        Key::from_event(&KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL)),
        &km(),
    )
}

fn status(s: &State) -> String {
    s.status
        .as_ref()
        .map(|st| st.text.clone())
        .unwrap_or_default()
}

fn opened() -> State {
    let mut s = home();
    press(&mut s, KeyCode::Enter);
    s.msg(Msg::Policy {
        sandbox: "agent".into(),
        result: Ok(revision(3, pb::RevisionStatus::Loaded, POLICY, "pypi")),
    });
    s.msg(Msg::Events {
        sandbox: "agent".into(),
        events: (1..=30)
            .map(|i: u64| {
                if i.is_multiple_of(4) {
                    event(i, "deny", "api.github.com")
                } else {
                    event(i, "allow", "pypi.org")
                }
            })
            .collect(),
    });
    s.msg(Msg::Denials {
        sandbox: "agent".into(),
        denials: vec![
            denial("1", "api.github.com", "pending"),
            denial("2", "evil.example", "rejected"),
        ],
    });
    s
}

/// Snapshots `state` at both sizes in both themes.
fn snap(name: &str, state: &State) {
    for theme in ["default", "light"] {
        let t = Theme::builtin(theme).expect("test fixture");
        for (w, h) in [(120, 40), (80, 24)] {
            let mut term = Terminal::new(TestBackend::new(w, h)).expect("test fixture");
            term.draw(|f| ui::render(state, &t, &km(), f))
                .expect("test fixture");
            insta::with_settings!({
                snapshot_path => "../../snapshots",
                prepend_module_to_snapshot => false,
                omit_expression => true,
            }, {
                insta::assert_debug_snapshot!(
                    format!("term_{name}_{theme}_{w}x{h}"),
                    term.backend().buffer()
                );
            });
        }
    }
}

#[test]
fn screen_home() {
    snap("home", &home());
}

#[test]
fn screen_home_filtered() {
    let mut s = home();
    press(&mut s, KeyCode::Char('/'));
    typed(&mut s, "bui");
    snap("home_filter_input", &s);
    press(&mut s, KeyCode::Enter);
    assert_eq!(s.visible_sandboxes().len(), 1);
}

#[test]
fn screen_gateway_lost() {
    let mut s = home();
    s.msg(Msg::Health(Err("the gateway is not answering".into())));
    s.error("the gateway is not answering");
    snap("gateway_lost", &s);
}

#[test]
fn screen_sandbox_tabs() {
    let mut s = opened();
    snap("sandbox_overview", &s);
    press(&mut s, KeyCode::Tab);
    snap("sandbox_policy", &s);
    press(&mut s, KeyCode::Tab);
    snap("sandbox_logs", &s);
    press(&mut s, KeyCode::Tab);
    snap("sandbox_denials", &s);
    press(&mut s, KeyCode::Char('a'));
    snap("sandbox_denial_preview", &s);
}

#[test]
fn screen_help_and_command() {
    let mut s = home();
    press(&mut s, KeyCode::Char('?'));
    snap("help", &s);
    // A short screen scrolls the list: the end shows, and up moves back one line.
    press(&mut s, KeyCode::End);
    press(&mut s, KeyCode::Up);
    snap("help_scrolled", &s);
    press(&mut s, KeyCode::Esc);
    press(&mut s, KeyCode::Char(':'));
    typed(&mut s, "sandb");
    snap("command_input", &s);
}

#[test]
fn flow_open_switch_tabs_allow_apply() {
    let mut s = home();
    press(&mut s, KeyCode::Down);
    press(&mut s, KeyCode::Up);
    let fx = press(&mut s, KeyCode::Enter);
    assert_eq!(
        fx,
        vec![
            Effect::Watch(Some("agent".into())),
            Effect::LoadPolicy {
                sandbox: "agent".into()
            }
        ]
    );
    assert_eq!(s.open.as_ref().expect("test fixture").tab, Tab::Overview);

    // Keys that mean nothing here do nothing; `q` does not quit from a sandbox.
    press(&mut s, KeyCode::Char('q'));
    assert!(!s.quit);

    press(&mut s, KeyCode::Char('l'));
    assert_eq!(s.open.as_ref().expect("test fixture").tab, Tab::Logs);
    s.msg(Msg::Events {
        sandbox: "agent".into(),
        events: vec![event(1, "deny", "api.github.com"), event(1, "deny", "dup")],
    });
    assert_eq!(
        s.open.as_ref().expect("test fixture").logs.lines.len(),
        1,
        "replays are dropped"
    );
    press(&mut s, KeyCode::Char('/'));
    typed(&mut s, "github");
    press(&mut s, KeyCode::Enter);
    assert_eq!(s.open.as_ref().expect("test fixture").logs.filter, "github");

    press(&mut s, KeyCode::Tab);
    assert_eq!(s.open.as_ref().expect("test fixture").tab, Tab::Denials);
    s.msg(Msg::Denials {
        sandbox: "agent".into(),
        denials: vec![
            denial("1", "api.github.com", "pending"),
            denial("7", "pypi.org", "pending"),
        ],
    });
    press(&mut s, KeyCode::Down);
    press(&mut s, KeyCode::Char('a'));
    let v = s.open.as_ref().expect("test fixture");
    assert_eq!(v.preview.as_deref(), Some("7"));

    let mut term = Terminal::new(TestBackend::new(100, 30)).expect("test fixture");
    term.draw(|f| ui::render(&s, &Theme::default_theme(), &km(), f))
        .expect("test fixture");
    let screen = format!("{:?}", term.backend().buffer());
    assert!(screen.contains("allow denial 7"), "{screen}");
    assert!(screen.contains("+       - host: pypi.org"), "{screen}");

    let fx = press(&mut s, KeyCode::Enter);
    assert_eq!(
        fx,
        vec![Effect::Approve {
            sandbox: "agent".into(),
            id: "7".into()
        }]
    );
    s.msg(Msg::Approved {
        sandbox: "agent".into(),
        id: "7".into(),
        result: Ok(pb::SetPolicyResponse {
            revision: 4,
            acknowledged: true,
            ..Default::default()
        }),
    });
    assert!(
        s.status
            .as_ref()
            .expect("test fixture")
            .text
            .contains("revision 4 enforced")
    );

    let fx = press(&mut s, KeyCode::Char('x'));
    assert_eq!(
        fx,
        vec![Effect::Reject {
            sandbox: "agent".into(),
            id: "7".into()
        }]
    );

    let fx = press(&mut s, KeyCode::Esc);
    assert_eq!(fx, vec![Effect::Watch(None)]);
    assert!(s.open.is_none());
    press(&mut s, KeyCode::Char(':'));
    typed(&mut s, "nope");
    press(&mut s, KeyCode::Enter);
    assert!(s.status.as_ref().expect("test fixture").error);
    press(&mut s, KeyCode::Char('q'));
    assert!(s.quit);
    assert!(matches!(s.health, Health::Up));

    // ctrl-c quits from anywhere, even while typing a filter.
    let mut s = opened();
    press(&mut s, KeyCode::Tab);
    press(&mut s, KeyCode::Char('/'));
    s.key(
        Key::from_event(&KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
        &km(),
    );
    assert!(s.quit);
}

/// Opens the policy tab of `agent` and types `text` into the editor at row/col.
fn edit_at(s: &mut State, row: u16, col: u16, text: &str) {
    press(s, KeyCode::Char('p'));
    press(s, KeyCode::Char('e'));
    let name = s.open.as_ref().expect("open").name.clone();
    let e = s.editors.get_mut(&name).expect("editor");
    e.textarea
        .move_cursor(ratatui_textarea::CursorMove::Jump(row, col));
    typed(s, text);
}

#[test]
fn screen_policy_editor_states() {
    let mut s = opened();
    // A typo in the port of line 9: an error on that line, in the gutter and status.
    edit_at(&mut s, 8, 32, "x");
    snap("policy_edit_error", &s);
    let e = s.editor().expect("editor");
    assert_eq!(e.first_problem().expect("problem").line, 9);

    // Fixed: valid, edited; the diff against the active revision.
    press(&mut s, KeyCode::Backspace);
    typed(&mut s, "8");
    press(&mut s, KeyCode::Esc);
    press(&mut s, KeyCode::Char('D'));
    snap("policy_diff", &s);

    // A static change is flagged before apply.
    press(&mut s, KeyCode::Char('D'));
    edit_at(&mut s, 4, 19, ", /var");
    press(&mut s, KeyCode::Esc);
    snap("policy_static_change", &s);

    // Revert asks first.
    press(&mut s, KeyCode::Char('R'));
    snap("policy_revert_prompt", &s);
}

#[test]
fn screen_policy_history() {
    let mut s = opened();
    press(&mut s, KeyCode::Char('p'));
    let fx = press(&mut s, KeyCode::Char('H'));
    assert_eq!(
        fx,
        vec![Effect::LoadHistory {
            sandbox: "agent".into()
        }]
    );
    let older = POLICY.replace("port: 443", "port: 8443");
    s.msg(Msg::History {
        sandbox: "agent".into(),
        result: Ok(vec![
            revision(
                1,
                pb::RevisionStatus::Superseded,
                "version: 1\n",
                "baseline",
            ),
            revision(2, pb::RevisionStatus::Superseded, &older, "pypi on 8443"),
            revision(3, pb::RevisionStatus::Loaded, POLICY, "pypi"),
        ]),
    });
    press(&mut s, KeyCode::Down);
    press(&mut s, KeyCode::Enter);
    snap("policy_history_diff", &s);
    press(&mut s, KeyCode::Char('r'));
    let fx = press(&mut s, KeyCode::Enter);
    assert_eq!(
        fx,
        vec![Effect::Rollback {
            sandbox: "agent".into(),
            revision: 2
        }]
    );
    let fx = s.msg(Msg::RolledBack {
        sandbox: "agent".into(),
        revision: 2,
        result: Ok(pb::SetPolicyResponse {
            revision: 4,
            acknowledged: true,
            ..Default::default()
        }),
    });
    assert!(status(&s).contains("rolled back to revision 2 as revision 4 (enforced)"));
    assert!(fx.contains(&Effect::LoadHistory {
        sandbox: "agent".into()
    }));
}

#[test]
fn flow_edit_typo_fix_apply_acknowledged() {
    let mut s = opened();
    edit_at(&mut s, 8, 32, "x");
    // Apply refuses a buffer with an error, naming the line.
    let fx = ctrl(&mut s, 's');
    assert!(fx.is_empty());
    assert!(status(&s).contains("line 9"), "{}", status(&s));

    // Edits survive leaving the tab and the sandbox.
    press(&mut s, KeyCode::Esc);
    press(&mut s, KeyCode::Char('l'));
    press(&mut s, KeyCode::Esc);
    assert!(s.open.is_none());
    assert_eq!(s.unsaved(), vec!["agent"]);
    press(&mut s, KeyCode::Enter);
    s.msg(Msg::Policy {
        sandbox: "agent".into(),
        result: Ok(revision(3, pb::RevisionStatus::Loaded, POLICY, "pypi")),
    });
    press(&mut s, KeyCode::Char('p'));
    assert!(
        s.editor().expect("editor").has_errors(),
        "the typo is still there"
    );

    // `e` puts the cursor on the error; fix it and apply: the effect carries the buffer, and
    // the acknowledgement lands in the status line.
    press(&mut s, KeyCode::Char('e'));
    press(&mut s, KeyCode::Delete);
    typed(&mut s, "8");
    let fx = ctrl(&mut s, 's');
    let want = POLICY.replace("port: 443", "port: 8443");
    assert_eq!(
        fx,
        vec![Effect::ApplyPolicy {
            sandbox: "agent".into(),
            yaml: want.clone()
        }]
    );
    let fx = s.msg(Msg::Applied {
        sandbox: "agent".into(),
        result: Ok(pb::SetPolicyResponse {
            revision: 4,
            acknowledged: true,
            ..Default::default()
        }),
    });
    assert!(
        status(&s).contains("revision 4 applied and enforced"),
        "{}",
        status(&s)
    );
    assert_eq!(
        fx,
        vec![Effect::LoadPolicy {
            sandbox: "agent".into()
        }]
    );
    let e = s.editor().expect("editor");
    assert!(!e.dirty());
    assert_eq!(e.base_revision, 4);
    assert!(s.unsaved().is_empty());
}

#[test]
fn flow_static_changes_and_quit_with_unsaved_edits_ask_first() {
    let mut s = opened();
    edit_at(&mut s, 4, 19, ", /var");
    let fx = ctrl(&mut s, 's');
    assert!(
        fx.is_empty(),
        "a static change is not sent to a running sandbox"
    );
    assert!(
        status(&s).contains("filesystem_policy.read_write"),
        "{}",
        status(&s)
    );
    press(&mut s, KeyCode::Esc);
    press(&mut s, KeyCode::Esc);
    press(&mut s, KeyCode::Char('q'));
    assert!(!s.quit, "unsaved edits ask first");
    assert!(s.prompt.is_some());
    press(&mut s, KeyCode::Esc);
    assert!(!s.quit);
    assert!(s.prompt.is_none());
    press(&mut s, KeyCode::Char('q'));
    press(&mut s, KeyCode::Enter);
    assert!(s.quit);
}

#[test]
fn flow_allow_from_a_deny_line_then_edit_first() {
    let mut s = opened();
    press(&mut s, KeyCode::Char('l'));
    // The newest deny line in view is event 28 (api.github.com), denial 1.
    press(&mut s, KeyCode::Char('a'));
    let v = s.open.as_ref().expect("open");
    assert_eq!(v.tab, Tab::Denials);
    assert_eq!(v.preview.as_deref(), Some("1"));
    assert!(v.preview_diff.contains("+"), "{}", v.preview_diff);
    assert!(
        v.preview_diff.contains("api.github.com"),
        "{}",
        v.preview_diff
    );
    // `e` puts the merged policy in the editor instead of applying it.
    press(&mut s, KeyCode::Char('e'));
    let v = s.open.as_ref().expect("open");
    assert_eq!(v.tab, Tab::Policy);
    let e = s.editor().expect("editor");
    assert!(e.dirty());
    assert!(!e.has_errors(), "{:?}", e.problems);
    assert!(e.text().contains("api.github.com"));
    assert!(e.text().contains("pypi.org"));
    snap("policy_edit_proposal", &s);
}

#[test]
fn screen_logs_toggles() {
    let mut s = opened();
    press(&mut s, KeyCode::Char('l'));
    press(&mut s, KeyCode::Char('f'));
    press(&mut s, KeyCode::Char('t'));
    press(&mut s, KeyCode::Char(' '));
    s.msg(Msg::Events {
        sandbox: "agent".into(),
        events: vec![event(31, "deny", "late.example")],
    });
    snap("logs_deny_only_paused", &s);
    let v = s.open.as_ref().expect("open");
    assert_eq!(v.logs.held.len(), 1);
    assert!(v.logs.window(100).iter().all(|l| l.deny.is_some()));
    press(&mut s, KeyCode::Char(' '));
    let v = s.open.as_ref().expect("open");
    assert!(
        v.logs
            .window(100)
            .iter()
            .any(|l| l.text.contains("late.example"))
    );
}

#[test]
fn flow_create_and_delete() {
    let mut s = home();
    press(&mut s, KeyCode::Char('c'));
    typed(&mut s, "demo");
    press(&mut s, KeyCode::Tab);
    press(&mut s, KeyCode::Char(' '));
    press(&mut s, KeyCode::Tab);
    typed(&mut s, "sleep 60");
    snap("create_form", &s);
    let fx = press(&mut s, KeyCode::Enter);
    let [Effect::Create(req)] = fx.as_slice() else {
        panic!("{fx:?}")
    };
    assert_eq!(req.name, "demo");
    assert_eq!(req.presets.len(), 1);
    assert_eq!(req.command, vec!["sleep", "60"]);
    assert!(s.form.is_none());

    press(&mut s, KeyCode::Char('d'));
    snap("delete_prompt", &s);
    let fx = press(&mut s, KeyCode::Enter);
    assert_eq!(
        fx,
        vec![Effect::Delete {
            sandbox: "agent".into()
        }]
    );
}

#[test]
fn screen_providers_and_themes_commands() {
    let mut s = home();
    press(&mut s, KeyCode::Char(':'));
    typed(&mut s, "pro");
    press(&mut s, KeyCode::Tab);
    let fx = press(&mut s, KeyCode::Enter);
    assert_eq!(fx, vec![Effect::LoadProviders]);
    s.msg(Msg::Providers(Ok(vec![pb::Provider {
        name: "anthropic".into(),
        r#type: "claude".into(),
        credentials: [("ANTHROPIC_API_KEY".to_string(), "[redacted]".to_string())].into(),
        created: "2026-01-01T00:20:00Z".into(),
        ..Default::default()
    }])));
    snap("providers", &s);
    press(&mut s, KeyCode::Char(':'));
    typed(&mut s, "themes");
    press(&mut s, KeyCode::Enter);
    press(&mut s, KeyCode::Down);
    press(&mut s, KeyCode::Enter);
    assert_eq!(s.theme, "light");
    snap("themes", &s);
    // `:policy` from home opens the selected sandbox on its policy tab.
    press(&mut s, KeyCode::Char(':'));
    typed(&mut s, "sandboxes");
    press(&mut s, KeyCode::Enter);
    press(&mut s, KeyCode::Char(':'));
    typed(&mut s, "policy");
    let fx = press(&mut s, KeyCode::Enter);
    assert!(fx.contains(&Effect::LoadPolicy {
        sandbox: "agent".into()
    }));
    assert_eq!(s.open.as_ref().expect("open").tab, Tab::Policy);
}
