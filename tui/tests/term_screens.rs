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
            "allow_{id}:\n  endpoints:\n    - host: {host}\n      port: 443\n      rules:\n        - allow: {{ method: POST, path: /repos/x/issues }}\n  binaries:\n    - path: /usr/bin/curl\n"
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

fn opened() -> State {
    let mut s = home();
    press(&mut s, KeyCode::Enter);
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
    assert_eq!(fx, vec![Effect::Watch(Some("agent".into()))]);
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
        s.open.as_ref().expect("test fixture").logs.len(),
        1,
        "replays are dropped"
    );
    press(&mut s, KeyCode::Char('/'));
    typed(&mut s, "github");
    press(&mut s, KeyCode::Enter);
    assert_eq!(s.open.as_ref().expect("test fixture").log_filter, "github");

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
    assert!(screen.contains("+     - host: pypi.org"), "{screen}");

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
