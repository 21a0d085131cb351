//! `openshell term`: the k9s-style terminal UI.
//!
//! The shape: [`state`] is plain data with `update` functions (keys → named actions via the
//! [`keymap`], gateway results → messages), [`ui`] renders a frame from state alone with styles
//! from the [`theme`], and [`net`] runs all gateway I/O in background tasks that report back on
//! a channel. The event loop here only wires them together.

pub mod editor;
pub mod form;
pub mod highlight;
pub mod keymap;
pub mod logs;
pub mod net;
pub mod policy_actions;
pub mod policy_view;
pub mod popup;
pub mod state;
pub mod theme;
pub mod ui;

use anyhow::{Context, Result};
use crossterm::event::{Event, EventStream, KeyEventKind};
use futures::StreamExt;
use keymap::{Key, Keymap};
use state::State;
use std::path::PathBuf;
use std::time::Duration;
use theme::Theme;

/// Options of `openshell term`.
#[derive(Debug, Clone, clap::Args)]
pub struct TermArgs {
    /// Colour theme: a built-in (default, light, high-contrast) or
    /// `$XDG_CONFIG_HOME/openshell/themes/NAME.yaml`.
    #[arg(long, default_value = "default")]
    pub theme: String,
    /// Key bindings: a built-in (default, vim) or `$XDG_CONFIG_HOME/openshell/keymaps/NAME.yaml`.
    #[arg(long, default_value = "default")]
    pub keymap: String,
}

/// `$XDG_CONFIG_HOME/openshell`, else `~/.config/openshell`.
pub fn config_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .map(|d| d.join("openshell"))
}

/// The initial state, theme and keymap; problems with the user's files land in the status line.
pub fn setup(args: &TermArgs) -> (State, Theme, Keymap) {
    let dir = config_dir();
    let (theme, theme_err) = Theme::load(dir.as_deref(), &args.theme);
    let (keymap, keymap_err) = Keymap::load(dir.as_deref(), &args.keymap);
    let mut state = State::new(
        &openshell_proto::paths::socket_path().display().to_string(),
        env!("CARGO_PKG_VERSION"),
    );
    state.now = now();
    let errors: Vec<String> = [theme_err, keymap_err].into_iter().flatten().collect();
    if !errors.is_empty() {
        state.error(errors.join("; "));
    } else {
        state.info(format!(
            "connecting to the gateway… ({} for help)",
            keymap.hint(keymap::Action::Help)
        ));
    }
    (state, theme, keymap)
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Runs the app until the user quits. The terminal is restored on return and on panic
/// (ratatui's init installs a panic hook that restores it before the default hook prints).
pub fn run(args: TermArgs) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (state, theme, keymap) = setup(&args);
    let mut terminal = ratatui::try_init().context("cannot set up the terminal")?;
    let res = rt.block_on(event_loop(&mut terminal, state, theme, keymap));
    ratatui::restore();
    rt.shutdown_timeout(Duration::from_millis(100));
    res
}

async fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    mut state: State,
    theme: Theme,
    keymap: Keymap,
) -> Result<()> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut net = net::Net::start(tx);
    let mut events = EventStream::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        state.now = now();
        terminal.draw(|f| ui::render(&state, &theme, &keymap, f))?;
        let mut effects = vec![];
        tokio::select! {
            ev = events.next() => match ev {
                Some(Ok(Event::Key(k))) if k.kind != KeyEventKind::Release => {
                    effects = state.key(Key::from_event(&k), &keymap);
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => state.error(format!("terminal input: {e}")),
                None => break,
            },
            msg = rx.recv() => {
                if let Some(m) = msg {
                    effects = state.msg(m);
                    // Drain a burst before the next frame, bounded so keys stay responsive.
                    for _ in 0..1024 {
                        match rx.try_recv() {
                            Ok(m) => effects.extend(state.msg(m)),
                            Err(_) => break,
                        }
                    }
                }
            }
            _ = tick.tick() => {}
        }
        for e in effects {
            net.run(e);
        }
        if state.quit {
            break;
        }
    }
    Ok(())
}
