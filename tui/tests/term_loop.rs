//! `openshell term`'s event loop without a terminal or a gateway: input events and gateway
//! messages come from channels, frames go to ratatui's `TestBackend`, effects to a list.

use crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers, MouseEvent, MouseEventKind};
use openshell::term::keymap::Keymap;
use openshell::term::reload::ConfigWatch;
use openshell::term::state::{Effect, Msg, State};
use openshell::term::theme::Theme;
use openshell::term::{App, FrameInfo};
use openshell_proto::pb;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;

fn sandboxes(n: usize) -> Vec<pb::Sandbox> {
    (0..n)
        .map(|i| pb::Sandbox {
            name: format!("sb{i}"),
            phase: pb::Phase::Ready as i32,
            ..Default::default()
        })
        .collect()
}

fn key(c: char) -> std::io::Result<Event> {
    Ok(Event::Key(KeyEvent::new(
        KeyCode::Char(c),
        KeyModifiers::NONE,
    )))
}

fn wheel(kind: MouseEventKind) -> std::io::Result<Event> {
    Ok(Event::Mouse(MouseEvent {
        kind,
        column: 10,
        row: 5,
        modifiers: KeyModifiers::NONE,
    }))
}

/// Frames as the state they showed: (selected row, help shown, status text).
type Seen = Arc<Mutex<Vec<(usize, bool, String)>>>;

struct Harness {
    input: mpsc::UnboundedSender<std::io::Result<Event>>,
    msgs: mpsc::UnboundedSender<Msg>,
    seen: Seen,
    app: tokio::task::JoinHandle<(App<TestBackend>, Vec<Effect>)>,
}

fn start() -> Harness {
    start_with(Theme::default_theme(), None)
}

fn start_with(theme: Theme, config: Option<ConfigWatch>) -> Harness {
    let terminal = Terminal::new(TestBackend::new(100, 30)).expect("test terminal");
    let mut app = App::new(
        terminal,
        State::new("sock", "0.1.0"),
        theme,
        Keymap::default_keymap(),
    );
    app.config = config;
    let seen: Seen = Arc::default();
    let s = seen.clone();
    app.on_frame = Some(Box::new(move |st: &State, _: FrameInfo| {
        let status = st
            .status
            .as_ref()
            .map(|s| s.text.clone())
            .unwrap_or_default();
        s.lock().expect("lock").push((st.selected, st.help, status));
    }));
    let (input, input_rx) = mpsc::unbounded_channel();
    let (msgs, msgs_rx) = mpsc::unbounded_channel();
    let app = tokio::spawn(async move {
        let mut effects = vec![];
        app.run(UnboundedReceiverStream::new(input_rx), msgs_rx, |e| {
            effects.push(e)
        })
        .await
        .expect("the loop runs");
        (app, effects)
    });
    Harness {
        input,
        msgs,
        seen,
        app,
    }
}

impl Harness {
    /// Frames drawn so far.
    fn mark(&self) -> usize {
        self.seen.lock().expect("lock").len()
    }

    /// Waits (bounded) until a frame drawn after `mark` satisfies `f`.
    async fn frame(&self, mark: usize, what: &str, f: impl Fn(&(usize, bool, String)) -> bool) {
        for _ in 0..500 {
            if self.seen.lock().expect("lock")[mark..].iter().any(&f) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no frame showed {what}");
    }
}

#[tokio::test]
async fn wheel_scrolls_three_rows_where_up_and_down_apply() {
    let h = start();
    h.msgs.send(Msg::Sandboxes(sandboxes(10))).expect("send");
    h.frame(0, "the sandboxes", |_| true).await;
    let m = h.mark();
    h.input
        .send(wheel(MouseEventKind::ScrollDown))
        .expect("send");
    h.frame(m, "row 3", |f| f.0 == 3).await;
    let m = h.mark();
    h.input
        .send(wheel(MouseEventKind::ScrollDown))
        .expect("send");
    h.frame(m, "row 6", |f| f.0 == 6).await;
    let m = h.mark();
    h.input.send(wheel(MouseEventKind::ScrollUp)).expect("send");
    h.input.send(wheel(MouseEventKind::Moved)).expect("send");
    h.frame(m, "row 3 again", |f| f.0 == 3).await;
    // In help, up and down do nothing: the wheel neither.
    let m = h.mark();
    h.input.send(key('?')).expect("send");
    h.frame(m, "help", |f| f.1).await;
    let m = h.mark();
    h.input
        .send(wheel(MouseEventKind::ScrollDown))
        .expect("send");
    h.input.send(key('?')).expect("send");
    h.frame(m, "help closed", |f| !f.1).await;
    h.input.send(key('q')).expect("send");
    let (app, effects) = tokio::time::timeout(Duration::from_secs(10), h.app)
        .await
        .expect("q quits")
        .expect("the loop task");
    assert!(app.state.quit);
    assert_eq!(app.state.selected, 3);
    assert!(effects.is_empty(), "{effects:?}");
}

#[tokio::test]
async fn keys_come_before_a_message_flood_and_effects_are_handed_out() {
    let h = start();
    h.msgs.send(Msg::Sandboxes(sandboxes(3))).expect("send");
    h.frame(0, "the sandboxes", |_| true).await;
    // Far more messages than one batch, then Enter: it is applied before the flood ends.
    for i in 0..50_000 {
        h.msgs.send(Msg::Error(format!("burst {i}"))).expect("send");
    }
    h.input
        .send(Ok(Event::Key(KeyEvent::new(
            KeyCode::Enter,
            KeyModifiers::NONE,
        ))))
        .expect("send");
    drop(h.input);
    let (app, effects) = tokio::time::timeout(Duration::from_secs(20), h.app)
        .await
        .expect("the closed input ends the loop")
        .expect("the loop task");
    assert_eq!(
        effects,
        vec![
            Effect::Watch(Some("sb0".into())),
            Effect::LoadPolicy {
                sandbox: "sb0".into()
            }
        ]
    );
    assert_eq!(
        app.state.open.as_ref().map(|v| v.name.as_str()),
        Some("sb0")
    );
    // The loop ended with the input, long before the flood was through.
    assert!(
        app.state.status.is_none_or(|s| s.text != "burst 49999"),
        "the flood was applied before the key"
    );
}

#[tokio::test]
async fn an_edited_theme_is_swapped_in_and_drawn() {
    use ratatui::style::{Color, Style};
    let dir = tempfile::tempdir().expect("test fixture");
    let themes = dir.path().join("themes");
    std::fs::create_dir_all(&themes).expect("test fixture");
    let file = themes.join("default.yaml");
    std::fs::write(&file, "styles:\n  deny: { fg: magenta }\n").expect("test fixture");
    let watch = ConfigWatch::start(dir.path(), "default", "default").expect("watch");
    let (theme, err) = Theme::load(Some(dir.path()), "default");
    assert_eq!(err, None);
    let h = start_with(theme, Some(watch));
    h.frame(0, "the first frame", |_| true).await;
    let m = h.mark();
    // Saved as most editors do: a new file renamed over the old.
    let tmp = themes.join("default.yaml.tmp");
    std::fs::write(&tmp, "styles:\n  deny: { fg: cyan }\n").expect("test fixture");
    std::fs::rename(&tmp, &file).expect("test fixture");
    h.frame(m, "the reload in the status line", |f| {
        f.2.contains("theme default reloaded")
    })
    .await;
    drop(h.input);
    let (app, _) = tokio::time::timeout(Duration::from_secs(10), h.app)
        .await
        .expect("the closed input ends the loop")
        .expect("the loop task");
    assert_eq!(app.theme.style("deny"), Style::default().fg(Color::Cyan));
}

#[tokio::test]
async fn a_theme_chosen_in_the_themes_view_is_drawn() {
    let h = start();
    h.frame(0, "the first frame", |_| true).await;
    for c in ":themes".chars() {
        h.input.send(key(c)).expect("send");
    }
    let enter = || {
        Ok(Event::Key(KeyEvent::new(
            KeyCode::Enter,
            KeyModifiers::NONE,
        )))
    };
    h.input.send(enter()).expect("send");
    h.input.send(key('j')).expect("send");
    h.input.send(enter()).expect("send");
    drop(h.input);
    let (app, _) = tokio::time::timeout(Duration::from_secs(10), h.app)
        .await
        .expect("the closed input ends the loop")
        .expect("the loop task");
    assert_eq!(app.state.theme, "light");
    assert_eq!(app.theme.name, "light", "the loop loaded the chosen theme");
}
