//! `openshell term`: the k9s-style terminal UI.
//!
//! The shape: [`state`] is plain data with `update` functions (keys → named actions via the
//! [`keymap`], gateway results → messages), [`ui`] renders a frame from state alone with styles
//! from the [`theme`], and [`net`] runs all gateway I/O in background tasks that report back on
//! a channel. The event loop here ([`App::run`]) only wires them together; [`reload`] swaps in
//! edited theme and keymap files.

pub mod editor;
pub mod form;
pub mod highlight;
pub mod keymap;
pub mod logs;
pub mod net;
pub mod policy_actions;
pub mod policy_view;
pub mod popup;
pub mod reload;
pub mod state;
pub mod theme;
pub mod ui;

use anyhow::{Context, Result};
use crossterm::event::{
    DisableMouseCapture, EnableMouseCapture, Event, EventStream, KeyEventKind, MouseEventKind,
};
use futures::{FutureExt, Stream, StreamExt};
use keymap::{Action, Key, Keymap};
use ratatui::Terminal;
use ratatui::backend::Backend;
use state::{Effect, Msg, State};
use std::path::PathBuf;
use std::time::Duration;
use theme::Theme;
use tokio::sync::mpsc;
use tokio::time::Instant;

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
    state.theme = args.theme.clone();
    state.themes = theme::names(dir.as_deref());
    if !state.themes.contains(&state.theme) {
        state.themes.push(state.theme.clone());
    }
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

/// How often a frame may be drawn for gateway messages alone (a burst of log lines); keys,
/// mouse scrolls and resizes are drawn at once.
pub const FRAME: Duration = Duration::from_millis(16);

/// How long one turn of the loop may spend applying queued gateway messages before it looks
/// at input and the screen again.
pub const APPLY_BUDGET: Duration = Duration::from_millis(4);

/// Lines the mouse wheel moves per notch.
const WHEEL_LINES: usize = 3;

/// Runs the app until the user quits. The terminal is restored on return and on panic
/// (ratatui's init installs a panic hook that restores it before the default hook prints; ours
/// releases the mouse first).
pub fn run(args: TermArgs) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // Watching starts before the files are loaded, so no edit falls in between.
    let watch = config_dir().map(|d| reload::ConfigWatch::start(&d, &args.theme, &args.keymap));
    let (mut state, theme, keymap) = setup(&args);
    let config = match watch {
        Some(Ok(w)) => Some(w),
        // Not fatal (out of inotify watches, say): the app works, edits need a restart.
        Some(Err(e)) => {
            // After the files' own errors, if any.
            let before = state
                .status
                .take()
                .filter(|s| s.error)
                .map(|s| s.text + "; ")
                .unwrap_or_default();
            state.error(format!(
                "{before}theme and keymap files will not reload when edited: {e}"
            ));
            None
        }
        None => None,
    };
    let terminal = ratatui::try_init().context("cannot set up the terminal")?;
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let _ = crossterm::execute!(std::io::stdout(), DisableMouseCapture);
        hook(info);
    }));
    if let Err(e) = crossterm::execute!(std::io::stdout(), EnableMouseCapture) {
        ratatui::restore();
        return Err(e).context("cannot capture the mouse");
    }
    let mut app = App::new(terminal, state, theme, keymap);
    app.config = config;
    let res = rt.block_on(async {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let mut net = net::Net::start(tx);
        app.run(EventStream::new(), rx, |e| net.run(e)).await
    });
    let _ = crossterm::execute!(std::io::stdout(), DisableMouseCapture);
    ratatui::restore();
    rt.shutdown_timeout(Duration::from_millis(100));
    res
}

/// A frame just drawn: its number (from 1) and when its drawing started.
#[derive(Debug, Clone, Copy)]
pub struct FrameInfo {
    pub n: u64,
    pub started: std::time::Instant,
}

/// A watcher of frames: the state drawn and which frame it was.
pub type OnFrame = Box<dyn FnMut(&State, FrameInfo) + Send>;

/// The running app: the terminal it draws on (generic, so tests and benches use ratatui's
/// `TestBackend`), its state, theme and keymap.
pub struct App<B: Backend> {
    pub terminal: Terminal<B>,
    pub state: State,
    pub theme: Theme,
    pub keymap: Keymap,
    /// Live reload of the theme and keymap files, when watching works.
    pub config: Option<reload::ConfigWatch>,
    /// Frames drawn so far.
    pub frames: u64,
    /// Called after every frame with the state it showed (tests and benches watch it).
    pub on_frame: Option<OnFrame>,
    /// The theme name in use, to notice a choice made in `:themes`.
    theme_name: String,
}

/// What the screen needs: `dirty` when something changed, `urgent` when the user did it (so
/// it is drawn now rather than at the next frame slot).
#[derive(Debug, Default)]
struct Redraw {
    dirty: bool,
    urgent: bool,
}

impl Redraw {
    fn now(&mut self) {
        (self.dirty, self.urgent) = (true, true);
    }
}

impl<B: Backend> App<B>
where
    B::Error: Send + Sync + 'static,
{
    pub fn new(terminal: Terminal<B>, state: State, theme: Theme, keymap: Keymap) -> App<B> {
        App {
            theme_name: state.theme.clone(),
            terminal,
            state,
            theme,
            keymap,
            config: None,
            frames: 0,
            on_frame: None,
        }
    }

    /// Loads the theme chosen in `:themes` (a bad user file falls back, with the reason in the
    /// status line) and has the file watcher follow it.
    fn switch_theme(&mut self) {
        let name = self.state.theme.clone();
        let (theme, err) = Theme::load(config_dir().as_deref(), &name);
        self.theme = theme;
        self.theme_name = name.clone();
        if let Some(c) = self.config.as_mut() {
            c.set_theme(&name);
        }
        if let Some(e) = err {
            self.state.error(e);
        }
    }

    fn draw(&mut self) -> Result<()> {
        let started = std::time::Instant::now();
        self.state.now = now();
        let (state, theme, keymap) = (&self.state, &self.theme, &self.keymap);
        self.terminal
            .draw(|f| ui::render(state, theme, keymap, f))?;
        self.frames += 1;
        if let Some(f) = self.on_frame.as_mut() {
            let info = FrameInfo {
                n: self.frames,
                started,
            };
            f(&self.state, info);
        }
        Ok(())
    }

    /// One terminal event (None: the input ended). False when the loop should stop.
    fn input(
        &mut self,
        ev: Option<std::io::Result<Event>>,
        effects: &mut Vec<Effect>,
        redraw: &mut Redraw,
    ) -> bool {
        match ev {
            Some(Ok(Event::Key(k))) if k.kind != KeyEventKind::Release => {
                effects.extend(self.state.key(Key::from_event(&k), &self.keymap));
                redraw.now();
            }
            Some(Ok(Event::Mouse(m))) => {
                let action = match m.kind {
                    MouseEventKind::ScrollUp => Some(Action::Up),
                    MouseEventKind::ScrollDown => Some(Action::Down),
                    _ => None,
                };
                // Only where the action means something here (not in a text input); other
                // mouse events (moves, clicks) change nothing and draw nothing.
                if let Some(a) = action
                    .filter(|a| self.state.input.is_none() && self.state.available().contains(a))
                {
                    for _ in 0..WHEEL_LINES {
                        effects.extend(self.state.action(a));
                    }
                    redraw.now();
                }
            }
            Some(Ok(Event::Resize(..))) => redraw.now(),
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                self.state.error(format!("terminal input: {e}"));
                redraw.now();
            }
            None => return false,
        }
        true
    }

    /// The event loop, until the user quits or `input` ends: terminal events from `input`
    /// (crossterm's `EventStream`, or a channel), gateway messages from `msgs`, and each
    /// resulting effect handed to `effect` (the background tasks, or a test's list).
    ///
    /// Input comes first whenever both are ready, and what arrived while a batch of messages
    /// was applied is taken before the frame is drawn, so a key shows in the next frame.
    /// Message bursts are applied for at most [`APPLY_BUDGET`] at a time and drawn at most every
    /// [`FRAME`].
    pub async fn run<E>(
        &mut self,
        mut input: E,
        mut msgs: mpsc::UnboundedReceiver<Msg>,
        mut effect: impl FnMut(Effect),
    ) -> Result<()>
    where
        E: Stream<Item = std::io::Result<Event>> + Unpin,
    {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut msgs_open = true;
        let mut redraw = Redraw::default();
        self.draw()?;
        let mut last = Instant::now();
        loop {
            let mut effects = vec![];
            let mut open = true;
            let config = self.config.as_mut();
            tokio::select! {
                biased;
                ev = input.next() => open = self.input(ev, &mut effects, &mut redraw),
                reloads = async {
                    match config {
                        Some(c) => c.next().await,
                        None => std::future::pending().await,
                    }
                } => {
                    reload::apply(reloads, &mut self.state, &mut self.theme, &mut self.keymap);
                    redraw.now();
                }
                msg = msgs.recv(), if msgs_open => match msg {
                    Some(m) => {
                        let started = Instant::now();
                        effects = self.state.msg(m);
                        // Drain a burst before the next frame, bounded in time (a message may
                        // carry one line or thousands) so keys and frames keep coming.
                        while started.elapsed() < APPLY_BUDGET {
                            match msgs.try_recv() {
                                Ok(m) => effects.extend(self.state.msg(m)),
                                Err(_) => break,
                            }
                        }
                        redraw.dirty = true;
                    }
                    None => msgs_open = false,
                },
                _ = tokio::time::sleep_until(last + FRAME), if redraw.dirty => {}
                // Ages in the tables move on.
                _ = tick.tick() => redraw.dirty = true,
            }
            // Keys typed meanwhile belong in this frame, not the one after.
            while open && let Some(ev) = input.next().now_or_never() {
                open = self.input(ev, &mut effects, &mut redraw);
            }
            for e in effects {
                effect(e);
            }
            if self.state.theme != self.theme_name {
                self.switch_theme();
                redraw.now();
            }
            if self.state.quit || !open {
                break;
            }
            if redraw.dirty && (redraw.urgent || last.elapsed() >= FRAME) {
                self.draw()?;
                redraw = Redraw::default();
                last = Instant::now();
            }
        }
        Ok(())
    }
}
