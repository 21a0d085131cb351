//! The app's state (plain data), what can happen to it ([`Action`]s from keys, [`Msg`]s from
//! the gateway), and `update`, which applies them and returns the [`Effect`]s to run.
//! Nothing here does I/O.

use super::keymap::{Action, Key, Keymap};
use openshell_proto::pb;
use std::collections::VecDeque;

/// Log lines kept per open sandbox; older ones are dropped.
pub const LOG_HISTORY: usize = 100_000;

#[derive(Debug, Clone, PartialEq)]
pub enum Health {
    Connecting,
    Up,
    /// Lost, with the last error; the background task keeps reconnecting.
    Lost(String),
}

/// A message from the background tasks.
#[derive(Debug)]
pub enum Msg {
    Health(Result<pb::HealthResponse, String>),
    Sandboxes(Vec<pb::Sandbox>),
    Events {
        sandbox: String,
        events: Vec<pb::Event>,
    },
    Denials {
        sandbox: String,
        denials: Vec<pb::Denial>,
    },
    Approved {
        sandbox: String,
        id: String,
        result: Result<pb::SetPolicyResponse, String>,
    },
    Rejected {
        sandbox: String,
        id: String,
        result: Result<(), String>,
    },
    Error(String),
}

/// Work for the background tasks, returned by [`State::key`] and [`State::msg`].
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Follow this sandbox's events and poll its denials (None: stop).
    Watch(Option<String>),
    Approve {
        sandbox: String,
        id: String,
    },
    Reject {
        sandbox: String,
        id: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Overview,
    Logs,
    Denials,
}

impl Tab {
    pub const ALL: [Tab; 3] = [Tab::Overview, Tab::Logs, Tab::Denials];
    pub fn title(self) -> &'static str {
        match self {
            Tab::Overview => "overview",
            Tab::Logs => "logs",
            Tab::Denials => "denials",
        }
    }
}

/// How a log line is styled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    Deny,
    Allow,
    Warn,
    Error,
    Info,
}

#[derive(Debug, Clone)]
pub struct LogLine {
    pub kind: LineKind,
    pub text: String,
}

impl LogLine {
    pub fn from_event(e: &pb::Event) -> LogLine {
        let kind = match (e.action.as_str(), e.level.as_str()) {
            ("deny", _) => LineKind::Deny,
            ("allow", _) => LineKind::Allow,
            (_, "error") => LineKind::Error,
            (_, "warn") => LineKind::Warn,
            _ => LineKind::Info,
        };
        LogLine {
            kind,
            text: openshell_proto::event::to_line(e),
        }
    }
}

/// The open sandbox.
#[derive(Debug, Clone)]
pub struct SandboxView {
    pub name: String,
    pub tab: Tab,
    pub logs: VecDeque<LogLine>,
    /// Lines from the bottom; 0 follows new lines.
    pub log_scroll: usize,
    pub log_filter: String,
    pub last_seq: u64,
    pub denials: Vec<pb::Denial>,
    pub denial_selected: usize,
    /// The denial whose proposed rule is shown, waiting for confirm or back.
    pub preview: Option<String>,
}

impl SandboxView {
    pub fn new(name: &str) -> SandboxView {
        SandboxView {
            name: name.to_string(),
            tab: Tab::Overview,
            logs: VecDeque::new(),
            log_scroll: 0,
            log_filter: String::new(),
            last_seq: 0,
            denials: Vec::new(),
            denial_selected: 0,
            preview: None,
        }
    }

    pub fn push_events(&mut self, events: &[pb::Event]) {
        for e in events {
            // A reconnected stream replays what we already have.
            if e.seq != 0 && e.seq <= self.last_seq {
                continue;
            }
            self.last_seq = self.last_seq.max(e.seq);
            if self.logs.len() == LOG_HISTORY {
                self.logs.pop_front();
            }
            self.logs.push_back(LogLine::from_event(e));
            if self.log_scroll > 0 {
                // Keep the same lines on screen while scrolled back.
                self.log_scroll += 1;
            }
        }
    }

    pub fn selected_denial(&self) -> Option<&pb::Denial> {
        self.denials.get(self.denial_selected)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    Filter,
    Command,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    pub kind: InputKind,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub text: String,
    pub error: bool,
}

/// Everything the screen shows.
#[derive(Debug, Clone)]
pub struct State {
    pub socket: String,
    pub version: String,
    pub health: Health,
    pub gateway_version: String,
    /// Now, as Unix seconds: ages are computed from it, so a render is a pure function.
    pub now: i64,
    pub sandboxes: Vec<pb::Sandbox>,
    pub selected: usize,
    pub filter: String,
    pub open: Option<SandboxView>,
    pub input: Option<Input>,
    pub help: bool,
    pub status: Option<Status>,
    pub quit: bool,
}

/// The commands of `:` mode.
pub const COMMANDS: &[&str] = &["sandboxes", "quit"];

impl State {
    pub fn new(socket: &str, version: &str) -> State {
        State {
            socket: socket.to_string(),
            version: version.to_string(),
            health: Health::Connecting,
            gateway_version: String::new(),
            now: 0,
            sandboxes: Vec::new(),
            selected: 0,
            filter: String::new(),
            open: None,
            input: None,
            help: false,
            status: None,
            quit: false,
        }
    }

    pub fn info(&mut self, text: impl Into<String>) {
        self.status = Some(Status {
            text: text.into(),
            error: false,
        });
    }

    pub fn error(&mut self, text: impl Into<String>) {
        self.status = Some(Status {
            text: text.into(),
            error: true,
        });
    }

    /// The sandboxes the home table shows, after the filter.
    pub fn visible_sandboxes(&self) -> Vec<&pb::Sandbox> {
        let f = self.filter.to_lowercase();
        self.sandboxes
            .iter()
            .filter(|s| {
                f.is_empty()
                    || s.name.to_lowercase().contains(&f)
                    || s.driver.to_lowercase().contains(&f)
                    || phase_name(s.phase).contains(&f)
            })
            .collect()
    }

    /// The actions that do something in the current view, in the order the footer lists them.
    pub fn available(&self) -> Vec<Action> {
        use Action::*;
        if self.help {
            return vec![Back, Help, Quit];
        }
        match &self.open {
            None => vec![Open, Filter, Command, Help, Up, Down, Quit],
            Some(v) if v.preview.is_some() => vec![Confirm, Back, Up, Down, Help],
            Some(v) => {
                let mut a = match v.tab {
                    Tab::Overview => vec![],
                    Tab::Logs => vec![Filter, Top, Bottom, Up, Down, PageUp, PageDown],
                    Tab::Denials => vec![Allow, Reject, Up, Down],
                };
                a.extend([NextTab, PrevTab, Logs, Denials, Back, Command, Help]);
                a
            }
        }
    }

    /// A key press: typed text in filter/command mode, otherwise the first action bound to the
    /// key that applies here.
    pub fn key(&mut self, key: Key, keymap: &Keymap) -> Vec<Effect> {
        if keymap.actions(key).contains(&Action::ForceQuit) {
            self.quit = true;
            return vec![];
        }
        if self.input.is_some() {
            return self.input_key(key, keymap);
        }
        let available = self.available();
        let Some(action) = keymap
            .actions(key)
            .into_iter()
            .find(|a| available.contains(a))
        else {
            return vec![];
        };
        self.action(action)
    }

    fn input_key(&mut self, key: Key, keymap: &Keymap) -> Vec<Effect> {
        use crossterm::event::{KeyCode, KeyModifiers};
        let actions = keymap.actions(key);
        let Some(input) = self.input.as_mut() else {
            return vec![];
        };
        if actions.contains(&Action::Back) {
            if input.kind == InputKind::Filter {
                *self.filter_mut() = String::new();
            }
            self.input = None;
            return vec![];
        }
        if actions.contains(&Action::Confirm) || actions.contains(&Action::Open) {
            let input = self.input.take().expect("input mode");
            return match input.kind {
                InputKind::Filter => vec![],
                InputKind::Command => self.command(input.text.trim()),
            };
        }
        // Text editing keys are the terminal's, not the keymap's.
        match key.code {
            KeyCode::Backspace => {
                input.text.pop();
            }
            KeyCode::Tab if input.kind == InputKind::Command => {
                let matches: Vec<_> = COMMANDS
                    .iter()
                    .filter(|c| c.starts_with(input.text.as_str()))
                    .collect();
                if let [only] = matches.as_slice() {
                    input.text = only.to_string();
                }
            }
            KeyCode::Char(c) if !key.mods.intersects(KeyModifiers::CONTROL) => {
                input.text.push(c);
            }
            _ => return vec![],
        }
        if input.kind == InputKind::Filter {
            let text = input.text.clone();
            *self.filter_mut() = text;
        }
        vec![]
    }

    fn filter_mut(&mut self) -> &mut String {
        match &mut self.open {
            Some(v) => {
                v.log_scroll = 0;
                &mut v.log_filter
            }
            None => {
                self.selected = 0;
                &mut self.filter
            }
        }
    }

    fn command(&mut self, cmd: &str) -> Vec<Effect> {
        match cmd {
            "q" | "q!" | "quit" => {
                self.quit = true;
                vec![]
            }
            "sandboxes" | "sb" | "home" => self.go_home(),
            "" => vec![],
            other => {
                self.error(format!(
                    "unknown command :{other} (known: {})",
                    COMMANDS.join(", ")
                ));
                vec![]
            }
        }
    }

    fn go_home(&mut self) -> Vec<Effect> {
        if self.open.take().is_some() {
            vec![Effect::Watch(None)]
        } else {
            vec![]
        }
    }

    /// Applies one named action.
    pub fn action(&mut self, action: Action) -> Vec<Effect> {
        use Action::*;
        match action {
            Help => self.help = !self.help,
            // `q` quits from home only; `:quit` quits from anywhere.
            Quit => self.quit = self.open.is_none(),
            ForceQuit => self.quit = true,
            Filter => {
                let text = self
                    .open
                    .as_ref()
                    .map_or(self.filter.clone(), |v| v.log_filter.clone());
                self.input = Some(Input {
                    kind: InputKind::Filter,
                    text,
                });
            }
            Command => {
                self.input = Some(Input {
                    kind: InputKind::Command,
                    text: String::new(),
                })
            }
            Back if self.help => self.help = false,
            _ if self.help => {}
            _ => return self.view_action(action),
        }
        vec![]
    }

    fn view_action(&mut self, action: Action) -> Vec<Effect> {
        use Action::*;
        let Some(v) = self.open.as_mut() else {
            let n = self.visible_sandboxes().len();
            match action {
                Up => self.selected = self.selected.saturating_sub(1),
                Down => self.selected = (self.selected + 1).min(n.saturating_sub(1)),
                Back if !self.filter.is_empty() => self.filter.clear(),
                Open => {
                    if let Some(s) = self.visible_sandboxes().get(self.selected) {
                        let name = s.name.clone();
                        self.open = Some(SandboxView::new(&name));
                        return vec![Effect::Watch(Some(name))];
                    }
                }
                _ => {}
            }
            return vec![];
        };
        if v.preview.is_some() {
            match action {
                Back => v.preview = None,
                Confirm => {
                    let id = v.preview.take().expect("preview");
                    let sandbox = v.name.clone();
                    self.info(format!("applying the rule for denial {id}…"));
                    return vec![Effect::Approve { sandbox, id }];
                }
                Up | Down => {
                    v.preview = None;
                    return self.view_action(action);
                }
                _ => {}
            }
            return vec![];
        }
        let tab_index = Tab::ALL.iter().position(|t| *t == v.tab).unwrap_or(0);
        match (action, v.tab) {
            (NextTab, _) => v.tab = Tab::ALL[(tab_index + 1) % Tab::ALL.len()],
            (PrevTab, _) => v.tab = Tab::ALL[(tab_index + Tab::ALL.len() - 1) % Tab::ALL.len()],
            (Logs, _) => v.tab = Tab::Logs,
            (Denials, _) => v.tab = Tab::Denials,
            (Back, Tab::Logs) if !v.log_filter.is_empty() => v.log_filter.clear(),
            (Back, _) => return self.go_home(),
            (Up, Tab::Logs) => v.log_scroll = (v.log_scroll + 1).min(v.logs.len()),
            (Down, Tab::Logs) => v.log_scroll = v.log_scroll.saturating_sub(1),
            (PageUp, Tab::Logs) => v.log_scroll = (v.log_scroll + 20).min(v.logs.len()),
            (PageDown, Tab::Logs) => v.log_scroll = v.log_scroll.saturating_sub(20),
            (Top, Tab::Logs) => v.log_scroll = v.logs.len(),
            (Bottom, Tab::Logs) => v.log_scroll = 0,
            (Up, Tab::Denials) => v.denial_selected = v.denial_selected.saturating_sub(1),
            (Down, Tab::Denials) => {
                v.denial_selected = (v.denial_selected + 1).min(v.denials.len().saturating_sub(1))
            }
            (Allow, Tab::Denials) => match v.selected_denial() {
                Some(d) if d.status == "pending" || d.status.is_empty() => {
                    v.preview = Some(d.id.clone())
                }
                Some(d) => {
                    let msg = format!("denial {} is already {}", d.id, d.status);
                    self.error(msg);
                }
                None => self.error("no denial selected"),
            },
            (Reject, Tab::Denials) => {
                if let Some(d) = v.selected_denial() {
                    let (sandbox, id) = (v.name.clone(), d.id.clone());
                    self.info(format!("rejecting denial {id}…"));
                    return vec![Effect::Reject { sandbox, id }];
                }
            }
            _ => {}
        }
        vec![]
    }

    /// A message from the background tasks.
    pub fn msg(&mut self, msg: Msg) -> Vec<Effect> {
        match msg {
            Msg::Health(Ok(h)) => {
                self.health = Health::Up;
                self.gateway_version = h.version;
            }
            Msg::Health(Err(e)) => self.health = Health::Lost(e),
            Msg::Sandboxes(list) => {
                self.sandboxes = list;
                let n = self.visible_sandboxes().len();
                self.selected = self.selected.min(n.saturating_sub(1));
            }
            Msg::Events { sandbox, events } => {
                if let Some(v) = self.open.as_mut().filter(|v| v.name == sandbox) {
                    v.push_events(&events);
                }
            }
            Msg::Denials { sandbox, denials } => {
                if let Some(v) = self.open.as_mut().filter(|v| v.name == sandbox) {
                    v.denials = denials;
                    v.denial_selected = v.denial_selected.min(v.denials.len().saturating_sub(1));
                    if let Some(id) = &v.preview
                        && !v.denials.iter().any(|d| &d.id == id)
                    {
                        v.preview = None;
                    }
                }
            }
            Msg::Approved {
                sandbox,
                id,
                result,
            } => match result {
                Ok(r) if r.acknowledged => self.info(format!(
                    "{sandbox}: denial {id} allowed; revision {} enforced",
                    r.revision
                )),
                Ok(r) => self.error(format!(
                    "{sandbox}: denial {id} allowed as revision {}, but the supervisor has not \
                     acknowledged it yet",
                    r.revision
                )),
                Err(e) => self.error(format!("{sandbox}: cannot allow denial {id}: {e}")),
            },
            Msg::Rejected {
                sandbox,
                id,
                result,
            } => match result {
                Ok(()) => self.info(format!("{sandbox}: denial {id} rejected")),
                Err(e) => self.error(format!("{sandbox}: cannot reject denial {id}: {e}")),
            },
            Msg::Error(e) => self.error(e),
        }
        vec![]
    }
}

pub fn phase_name(p: i32) -> &'static str {
    match pb::Phase::try_from(p) {
        Ok(pb::Phase::Provisioning) => "provisioning",
        Ok(pb::Phase::Ready) => "ready",
        Ok(pb::Phase::Stopped) => "stopped",
        Ok(pb::Phase::Failed) => "failed",
        _ => "unknown",
    }
}

/// A short age: `42s`, `5m`, `3h`, `2d`.
pub fn age(now: i64, created: &str) -> String {
    let Some(t) = openshell_proto::event::parse_time(created) else {
        return "-".into();
    };
    let s = (now - t.unix_timestamp()).max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}
