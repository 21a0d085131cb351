//! The app's state (plain data), what can happen to it ([`Action`]s from keys, [`Msg`]s from
//! the gateway), and `update`, which applies them and returns the [`Effect`]s to run.
//! Nothing here does I/O.

use super::editor::{Mode, PolicyEditor};
use super::form::{CreateForm, Field, FormOutcome};
use super::keymap::{Action, Key, Keymap};
pub use super::logs::{LOG_HISTORY, LineKind, LogLine, LogView};
use openshell_proto::pb;
use std::collections::BTreeMap;

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
    /// The active policy revision of a sandbox.
    Policy {
        sandbox: String,
        result: Result<pb::PolicyRevision, String>,
    },
    Applied {
        sandbox: String,
        result: Result<pb::SetPolicyResponse, String>,
    },
    History {
        sandbox: String,
        result: Result<Vec<pb::PolicyRevision>, String>,
    },
    RolledBack {
        sandbox: String,
        revision: u64,
        result: Result<pb::SetPolicyResponse, String>,
    },
    Created {
        name: String,
        result: Result<pb::Sandbox, String>,
    },
    Deleted {
        sandbox: String,
        result: Result<(), String>,
    },
    Providers(Result<Vec<pb::Provider>, String>),
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
    LoadPolicy {
        sandbox: String,
    },
    /// Store a new revision and wait for the supervisor to enforce it.
    ApplyPolicy {
        sandbox: String,
        yaml: String,
    },
    LoadHistory {
        sandbox: String,
    },
    Rollback {
        sandbox: String,
        revision: u64,
    },
    Create(pb::CreateSandboxRequest),
    Delete {
        sandbox: String,
    },
    LoadProviders,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Overview,
    Policy,
    Logs,
    Denials,
}

impl Tab {
    pub const ALL: [Tab; 4] = [Tab::Overview, Tab::Policy, Tab::Logs, Tab::Denials];
    pub fn title(self) -> &'static str {
        match self {
            Tab::Overview => "overview",
            Tab::Policy => "policy",
            Tab::Logs => "logs",
            Tab::Denials => "denials",
        }
    }
}

/// The top-level list shown when no sandbox is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    Sandboxes,
    Providers,
    Themes,
}

/// The revision list of the policy tab.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub revisions: Vec<pb::PolicyRevision>,
    pub selected: usize,
    pub loading: bool,
    /// The selected revision's diff against the active one, when asked for.
    pub diff: Option<(u64, String)>,
}

/// The open sandbox.
#[derive(Debug, Clone)]
pub struct SandboxView {
    pub name: String,
    pub tab: Tab,
    pub logs: LogView,
    pub denials: Vec<pb::Denial>,
    pub denial_selected: usize,
    /// The denial whose proposed rule is shown, waiting for confirm or back.
    pub preview: Option<String>,
    /// The preview as a diff against the active policy (empty until the policy is known).
    pub preview_diff: String,
    pub history: Option<History>,
    /// A policy load is in flight.
    pub policy_loading: bool,
}

impl SandboxView {
    pub fn new(name: &str) -> SandboxView {
        SandboxView {
            name: name.to_string(),
            tab: Tab::Overview,
            logs: LogView::default(),
            denials: Vec::new(),
            denial_selected: 0,
            preview: None,
            preview_diff: String::new(),
            history: None,
            policy_loading: false,
        }
    }

    pub fn push_events(&mut self, events: &[pb::Event]) {
        self.logs.push_events(events);
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

/// What a confirmed prompt does.
#[derive(Debug, Clone, PartialEq)]
pub enum Pending {
    Quit,
    Revert(String),
    Rollback { sandbox: String, revision: u64 },
    Delete(String),
}

/// A yes/no question in a popup.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    pub question: String,
    pub yes: Pending,
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
    pub page: Page,
    pub sandboxes: Vec<pb::Sandbox>,
    pub selected: usize,
    pub filter: String,
    pub open: Option<SandboxView>,
    /// Policy buffers by sandbox; they outlive the sandbox view, so edits survive leaving it.
    pub editors: BTreeMap<String, PolicyEditor>,
    pub providers: Vec<pb::Provider>,
    pub provider_selected: usize,
    /// Theme names offered by `:themes`, and the one in use.
    pub themes: Vec<String>,
    pub theme: String,
    pub theme_selected: usize,
    pub form: Option<CreateForm>,
    pub prompt: Option<Prompt>,
    pub input: Option<Input>,
    pub help: bool,
    /// The first line of the help popup that shows (it scrolls where the screen is short).
    pub help_scroll: usize,
    /// The furthest the help can scroll, as the last frame found it (it depends on the
    /// screen's height, which only the renderer knows); it keeps presses past the end live.
    pub help_end: std::cell::Cell<usize>,
    pub status: Option<Status>,
    pub quit: bool,
}

/// The commands of `:` mode.
pub const COMMANDS: &[&str] = &[
    "sandboxes",
    "policy",
    "logs",
    "denials",
    "providers",
    "themes",
    "quit",
];

impl State {
    pub fn new(socket: &str, version: &str) -> State {
        State {
            socket: socket.to_string(),
            version: version.to_string(),
            health: Health::Connecting,
            gateway_version: String::new(),
            now: 0,
            page: Page::Sandboxes,
            sandboxes: Vec::new(),
            selected: 0,
            filter: String::new(),
            open: None,
            editors: BTreeMap::new(),
            providers: Vec::new(),
            provider_selected: 0,
            themes: super::theme::BUILTIN
                .iter()
                .map(|(n, _)| n.to_string())
                .collect(),
            theme: "default".into(),
            theme_selected: 0,
            form: None,
            prompt: None,
            input: None,
            help: false,
            help_scroll: 0,
            help_end: std::cell::Cell::new(Action::ALL.len().saturating_sub(1)),
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

    /// The open sandbox's policy editor.
    pub fn editor(&self) -> Option<&PolicyEditor> {
        self.open.as_ref().and_then(|v| self.editors.get(&v.name))
    }

    fn editing(&self) -> bool {
        self.open
            .as_ref()
            .is_some_and(|v| v.tab == Tab::Policy && v.history.is_none())
            && self.editor().is_some_and(|e| e.mode == Mode::Edit)
    }

    /// Sandboxes whose policy buffer holds unsaved edits.
    pub fn unsaved(&self) -> Vec<&str> {
        self.editors
            .values()
            .filter(|e| e.dirty())
            .map(|e| e.sandbox.as_str())
            .collect()
    }

    /// The actions that do something in the current view, in the order the footer lists them.
    pub fn available(&self) -> Vec<Action> {
        use Action::*;
        if self.help {
            return vec![Back, Help, Up, Down, PageUp, PageDown, Top, Bottom, Quit];
        }
        if self.prompt.is_some() {
            return vec![Confirm, Back];
        }
        if self.form.is_some() {
            return vec![Confirm, Back, NextTab, Toggle];
        }
        let Some(v) = &self.open else {
            return match self.page {
                Page::Sandboxes => {
                    vec![Open, Create, Delete, Filter, Command, Help, Up, Down, Quit]
                }
                Page::Providers => vec![Back, Command, Help, Up, Down, Quit],
                Page::Themes => vec![Open, Back, Command, Help, Up, Down, Quit],
            };
        };
        if v.preview.is_some() {
            return vec![Confirm, Edit, Back, Up, Down, Help];
        }
        if self.editing() {
            // In the editor every other key is text.
            return vec![Apply, Back];
        }
        let mut a = match v.tab {
            Tab::Overview => vec![],
            Tab::Policy => match (&v.history, self.editor().map(|e| e.mode)) {
                (Some(_), _) => vec![Open, Rollback, History, Up, Down],
                (None, None) => vec![],
                (None, Some(Mode::Edit)) => vec![Apply],
                (None, Some(Mode::Diff)) => {
                    vec![
                        Diff, Edit, Apply, Revert, History, Up, Down, PageUp, PageDown,
                    ]
                }
                (None, Some(Mode::View)) => vec![
                    Edit, Diff, Apply, Revert, History, Up, Down, PageUp, PageDown, Top, Bottom,
                ],
            },
            Tab::Logs => vec![
                Allow, Filter, Pause, DenyOnly, Source, Level, Wrap, Timestamps, Top, Bottom, Up,
                Down, PageUp, PageDown,
            ],
            Tab::Denials => vec![Allow, Reject, Up, Down],
        };
        a.extend([NextTab, PrevTab, Policy, Logs, Denials, Back, Command, Help]);
        a
    }

    /// A key press: typed text in the editor, a form or filter/command mode, otherwise the
    /// first action bound to the key that applies here.
    pub fn key(&mut self, key: Key, keymap: &Keymap) -> Vec<Effect> {
        let actions = keymap.actions(key);
        if actions.contains(&Action::ForceQuit) {
            self.quit_or_ask(true);
            return vec![];
        }
        if self.prompt.is_some() {
            return self.prompt_key(key, &actions);
        }
        if let Some(form) = self.form.as_mut() {
            use crossterm::event::KeyCode;
            // Field navigation follows the keymap's tab keys; the rest is typing.
            let code = if actions.contains(&Action::NextTab)
                && !matches!(key.code, KeyCode::Char(_))
            {
                KeyCode::Tab
            } else if actions.contains(&Action::PrevTab) && !matches!(key.code, KeyCode::Char(_)) {
                KeyCode::BackTab
            } else if actions.contains(&Action::Back) {
                KeyCode::Esc
            } else if actions.contains(&Action::Confirm) {
                KeyCode::Enter
            } else if actions.contains(&Action::Toggle) && form.field == Field::Presets {
                KeyCode::Char(' ')
            } else {
                key.code
            };
            return match form.key(code, key.mods) {
                FormOutcome::Editing => vec![],
                FormOutcome::Cancel => {
                    self.form = None;
                    vec![]
                }
                FormOutcome::Submit(req) => {
                    self.form = None;
                    let label = if req.name.is_empty() {
                        "a sandbox".to_string()
                    } else {
                        req.name.clone()
                    };
                    self.info(format!("creating {label}…"));
                    vec![Effect::Create(*req)]
                }
            };
        }
        if self.input.is_some() {
            return self.input_key(key, &actions);
        }
        if self.editing() && !self.help {
            if actions.contains(&Action::Back) {
                if let Some(e) = self.open_editor_mut() {
                    e.mode = Mode::View;
                }
                return vec![];
            }
            if actions.contains(&Action::Apply) {
                return self.apply();
            }
            if let Some(e) = self.open_editor_mut() {
                e.type_key(key.code, key.mods);
            }
            return vec![];
        }
        let available = self.available();
        let Some(action) = actions.into_iter().find(|a| available.contains(a)) else {
            return vec![];
        };
        self.action(action)
    }

    pub(super) fn open_editor_mut(&mut self) -> Option<&mut PolicyEditor> {
        let name = self.open.as_ref()?.name.clone();
        self.editors.get_mut(&name)
    }

    fn quit_or_ask(&mut self, force: bool) {
        let unsaved = self.unsaved();
        if unsaved.is_empty()
            || (force
                && matches!(
                    self.prompt,
                    Some(Prompt {
                        yes: Pending::Quit,
                        ..
                    })
                ))
        {
            self.quit = true;
            return;
        }
        self.prompt = Some(Prompt {
            question: format!(
                "Unsaved policy edits for {}. Quit and lose them?",
                unsaved.join(", ")
            ),
            yes: Pending::Quit,
        });
    }

    fn prompt_key(&mut self, key: Key, actions: &[Action]) -> Vec<Effect> {
        use crossterm::event::KeyCode;
        let yes = actions.contains(&Action::Confirm) || key.code == KeyCode::Char('y');
        let no = actions.contains(&Action::Back) || key.code == KeyCode::Char('n');
        if no {
            self.prompt = None;
            return vec![];
        }
        if !yes {
            return vec![];
        }
        let Some(p) = self.prompt.take() else {
            return vec![];
        };
        match p.yes {
            Pending::Quit => {
                self.quit = true;
                vec![]
            }
            Pending::Revert(sandbox) => {
                if let Some(e) = self.editors.get_mut(&sandbox) {
                    e.revert();
                }
                self.info(format!("{sandbox}: edits discarded"));
                vec![]
            }
            Pending::Rollback { sandbox, revision } => {
                self.info(format!("{sandbox}: rolling back to revision {revision}…"));
                vec![Effect::Rollback { sandbox, revision }]
            }
            Pending::Delete(sandbox) => {
                self.info(format!("deleting {sandbox}…"));
                vec![Effect::Delete { sandbox }]
            }
        }
    }

    fn input_key(&mut self, key: Key, actions: &[Action]) -> Vec<Effect> {
        use crossterm::event::{KeyCode, KeyModifiers};
        let Some(input) = self.input.as_mut() else {
            return vec![];
        };
        if actions.contains(&Action::Back) {
            if input.kind == InputKind::Filter {
                self.set_filter("");
            }
            self.input = None;
            return vec![];
        }
        if actions.contains(&Action::Confirm) || actions.contains(&Action::Open) {
            let Some(input) = self.input.take() else {
                return vec![];
            };
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
                let matches: Vec<&str> = COMMANDS
                    .iter()
                    .copied()
                    .filter(|c| c.starts_with(input.text.as_str()))
                    .collect();
                match matches.as_slice() {
                    [] => {}
                    [only] => input.text = only.to_string(),
                    many => {
                        input.text = common_prefix(many);
                        let list = many.join(" ");
                        self.info(format!("matches: {list}"));
                    }
                }
            }
            KeyCode::Char(c) if !key.mods.intersects(KeyModifiers::CONTROL) => {
                input.text.push(c);
            }
            _ => return vec![],
        }
        if let Some(input) = &self.input
            && input.kind == InputKind::Filter
        {
            let text = input.text.clone();
            self.set_filter(&text);
        }
        vec![]
    }

    /// The filter of the view in front: the open sandbox's logs, else the sandboxes table.
    fn set_filter(&mut self, text: &str) {
        match &mut self.open {
            Some(v) => v.logs.set_filter(text),
            None => {
                self.selected = 0;
                self.filter = text.to_string();
            }
        }
    }

    fn command(&mut self, cmd: &str) -> Vec<Effect> {
        let tab = match cmd {
            "q" | "q!" | "quit" => {
                if cmd == "q!" {
                    self.quit = true;
                } else {
                    self.quit_or_ask(false);
                }
                return vec![];
            }
            "sandboxes" | "sb" | "home" => {
                self.page = Page::Sandboxes;
                return self.go_home();
            }
            "providers" | "pr" => {
                let mut fx = self.go_home();
                self.page = Page::Providers;
                self.provider_selected = 0;
                fx.push(Effect::LoadProviders);
                return fx;
            }
            "themes" | "th" => {
                let fx = self.go_home();
                self.page = Page::Themes;
                self.theme_selected = self
                    .themes
                    .iter()
                    .position(|t| *t == self.theme)
                    .unwrap_or(0);
                return fx;
            }
            "policy" | "po" => Tab::Policy,
            "logs" | "lo" => Tab::Logs,
            "denials" | "de" => Tab::Denials,
            "" => return vec![],
            other => {
                self.error(format!(
                    "unknown command :{other} (known: {})",
                    COMMANDS.join(", ")
                ));
                return vec![];
            }
        };
        // A sandbox tab: of the open sandbox, else of the one selected at home.
        let mut fx = vec![];
        if self.open.is_none() {
            self.page = Page::Sandboxes;
            fx = self.open_selected();
            if self.open.is_none() {
                self.error(format!(":{cmd} needs a sandbox: select one first"));
                return fx;
            }
        }
        fx.extend(self.switch_tab(tab));
        fx
    }

    pub(super) fn go_home(&mut self) -> Vec<Effect> {
        if self.open.take().is_some() {
            vec![Effect::Watch(None)]
        } else {
            vec![]
        }
    }

    fn open_selected(&mut self) -> Vec<Effect> {
        let Some(name) = self
            .visible_sandboxes()
            .get(self.selected)
            .map(|s| s.name.clone())
        else {
            return vec![];
        };
        let mut v = SandboxView::new(&name);
        v.policy_loading = true;
        self.open = Some(v);
        vec![
            Effect::Watch(Some(name.clone())),
            Effect::LoadPolicy { sandbox: name },
        ]
    }

    fn switch_tab(&mut self, tab: Tab) -> Vec<Effect> {
        if let Some(v) = self.open.as_mut() {
            v.tab = tab;
        }
        vec![]
    }

    /// Applies one named action.
    pub fn action(&mut self, action: Action) -> Vec<Effect> {
        use Action::*;
        match action {
            Help => {
                self.help = !self.help;
                self.help_scroll = 0;
            }
            // `q` quits from home only; `:quit` quits from anywhere.
            Quit if self.open.is_none() => self.quit_or_ask(false),
            Quit => {}
            ForceQuit => self.quit_or_ask(true),
            Filter => {
                let text = self
                    .open
                    .as_ref()
                    .map_or(self.filter.clone(), |v| v.logs.filter.clone());
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
            _ if self.help => self.scroll_help(action),
            _ => return self.view_action(action),
        }
        vec![]
    }

    /// Moves the help popup's first line; the renderer stops it where the last line shows.
    fn scroll_help(&mut self, action: Action) {
        use Action::*;
        const PAGE: usize = 10;
        let last = self.help_end.get();
        self.help_scroll = match action {
            Up => self.help_scroll.saturating_sub(1),
            Down => self.help_scroll + 1,
            PageUp => self.help_scroll.saturating_sub(PAGE),
            PageDown => self.help_scroll + PAGE,
            Top => 0,
            Bottom => last,
            _ => self.help_scroll,
        }
        .min(last);
    }

    fn page_action(&mut self, action: Action) -> Vec<Effect> {
        use Action::*;
        match (self.page, action) {
            (Page::Sandboxes, Up) => self.selected = self.selected.saturating_sub(1),
            (Page::Sandboxes, Down) => {
                let n = self.visible_sandboxes().len();
                self.selected = (self.selected + 1).min(n.saturating_sub(1))
            }
            (Page::Sandboxes, Back) if !self.filter.is_empty() => self.filter.clear(),
            (Page::Sandboxes, Open) => return self.open_selected(),
            (Page::Sandboxes, Create) => self.form = Some(CreateForm::new()),
            (Page::Sandboxes, Delete) => {
                if let Some(s) = self.visible_sandboxes().get(self.selected) {
                    let name = s.name.clone();
                    self.prompt = Some(Prompt {
                        question: format!(
                            "Delete sandbox {name}? Its processes are stopped and its state removed."
                        ),
                        yes: Pending::Delete(name),
                    });
                } else {
                    self.error("no sandbox selected");
                }
            }
            (Page::Providers, Up) => {
                self.provider_selected = self.provider_selected.saturating_sub(1)
            }
            (Page::Providers, Down) => {
                self.provider_selected =
                    (self.provider_selected + 1).min(self.providers.len().saturating_sub(1))
            }
            (Page::Themes, Up) => self.theme_selected = self.theme_selected.saturating_sub(1),
            (Page::Themes, Down) => {
                self.theme_selected =
                    (self.theme_selected + 1).min(self.themes.len().saturating_sub(1))
            }
            (Page::Themes, Open) => {
                if let Some(t) = self.themes.get(self.theme_selected) {
                    self.theme = t.clone();
                    self.info(format!("theme {t}"));
                }
            }
            (Page::Providers | Page::Themes, Back) => self.page = Page::Sandboxes,
            _ => {}
        }
        vec![]
    }

    pub(super) fn view_action(&mut self, action: Action) -> Vec<Effect> {
        use Action::*;
        let Some(v) = self.open.as_mut() else {
            return self.page_action(action);
        };
        if v.preview.is_some() {
            return self.preview_action(action);
        }
        let tab_index = Tab::ALL.iter().position(|t| *t == v.tab).unwrap_or(0);
        match (action, v.tab) {
            (NextTab, _) => v.tab = Tab::ALL[(tab_index + 1) % Tab::ALL.len()],
            (PrevTab, _) => v.tab = Tab::ALL[(tab_index + Tab::ALL.len() - 1) % Tab::ALL.len()],
            (Policy, _) => v.tab = Tab::Policy,
            (Logs, _) => v.tab = Tab::Logs,
            (Denials, _) => v.tab = Tab::Denials,
            (_, Tab::Policy) => return self.policy_action(action),
            (_, Tab::Logs) => return self.logs_action(action),
            (Up, Tab::Denials) => v.denial_selected = v.denial_selected.saturating_sub(1),
            (Down, Tab::Denials) => {
                v.denial_selected = (v.denial_selected + 1).min(v.denials.len().saturating_sub(1))
            }
            (Allow, Tab::Denials) => {
                if let Some(id) = v.selected_denial().map(|d| d.id.clone()) {
                    self.preview(&id);
                } else {
                    self.error("no denial selected");
                }
            }
            (Reject, Tab::Denials) => {
                if let Some(d) = v.selected_denial() {
                    let (sandbox, id) = (v.name.clone(), d.id.clone());
                    self.info(format!("rejecting denial {id}…"));
                    return vec![Effect::Reject { sandbox, id }];
                }
            }
            (Back, _) => return self.go_home(),
            _ => {}
        }
        vec![]
    }

    fn logs_action(&mut self, action: Action) -> Vec<Effect> {
        use Action::*;
        let Some(v) = self.open.as_mut() else {
            return vec![];
        };
        let l = &mut v.logs;
        match action {
            Back if !l.filter.is_empty() => l.set_filter(""),
            Back => return self.go_home(),
            Up => l.scroll_by(1),
            Down => l.scroll_by(-1),
            PageUp => l.scroll_by(20),
            PageDown => l.scroll_by(-20),
            Top => l.scroll = l.max_scroll(),
            Bottom => l.scroll = 0,
            Pause => l.toggle_pause(),
            Wrap => l.wrap = !l.wrap,
            Timestamps => l.timestamps = !l.timestamps,
            DenyOnly => {
                l.deny_only = !l.deny_only;
                l.scroll = 0;
                l.refilter();
            }
            Source => {
                l.source = l.source.next();
                l.scroll = 0;
                l.refilter();
            }
            Level => {
                l.min_level = (l.min_level + 1) % super::logs::LEVELS.len() as u8;
                l.scroll = 0;
                l.refilter();
            }
            Allow => {
                let Some(key) = l.deny_in_view().cloned() else {
                    self.error("no denied request in view");
                    return vec![];
                };
                let found = v.denials.iter().position(|d| key.matches(d));
                match found {
                    Some(i) => {
                        v.denial_selected = i;
                        v.tab = Tab::Denials;
                        let id = v.denials[i].id.clone();
                        self.preview(&id);
                    }
                    None => self.error(format!(
                        "the denial of {}:{} is not aggregated yet; try again in a moment",
                        key.host, key.port
                    )),
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
                if self.health != Health::Up
                    && self
                        .status
                        .as_ref()
                        .is_none_or(|s| s.text.starts_with("connecting"))
                {
                    self.info(format!("connected to the gateway (v{})", h.version));
                }
                self.health = Health::Up;
                self.gateway_version = h.version;
            }
            Msg::Health(Err(e)) => self.health = Health::Lost(e),
            Msg::Sandboxes(list) => {
                self.sandboxes = list;
                let n = self.visible_sandboxes().len();
                self.selected = self.selected.min(n.saturating_sub(1));
                return self.follow_revision();
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
            } => {
                match result {
                    Ok(r) if r.acknowledged => self.info(format!(
                        "{sandbox}: denial {id} allowed; revision {} enforced",
                        r.revision
                    )),
                    Ok(r) => self.error(format!(
                        "{sandbox}: denial {id} allowed as revision {}, but the supervisor has \
                         not acknowledged it yet",
                        r.revision
                    )),
                    Err(e) => self.error(format!("{sandbox}: cannot allow denial {id}: {e}")),
                }
                return vec![Effect::LoadPolicy { sandbox }];
            }
            Msg::Rejected {
                sandbox,
                id,
                result,
            } => match result {
                Ok(()) => self.info(format!("{sandbox}: denial {id} rejected")),
                Err(e) => self.error(format!("{sandbox}: cannot reject denial {id}: {e}")),
            },
            Msg::Policy { sandbox, result } => {
                if let Some(v) = self.open.as_mut().filter(|v| v.name == sandbox) {
                    v.policy_loading = false;
                }
                match result {
                    Ok(rev) => match self.editors.get_mut(&sandbox) {
                        Some(e) => e.rebase(rev.revision, &rev.yaml),
                        None => {
                            self.editors.insert(
                                sandbox.clone(),
                                PolicyEditor::new(&sandbox, rev.revision, &rev.yaml),
                            );
                        }
                    },
                    Err(e) => self.error(format!("{sandbox}: cannot load the policy: {e}")),
                }
            }
            Msg::Applied { sandbox, result } => {
                if let Some(e) = self.editors.get_mut(&sandbox) {
                    e.applying = false;
                }
                match result {
                    Ok(r) if r.unchanged => self.info(format!(
                        "{sandbox}: unchanged (equal to the active revision)"
                    )),
                    Ok(r) => {
                        if let Some(e) = self.editors.get_mut(&sandbox) {
                            // The buffer is now the active revision.
                            let text = e.text();
                            e.set_base(r.revision, &text);
                            e.base_moved = None;
                            e.mode = Mode::View;
                            e.refresh();
                        }
                        if r.acknowledged {
                            self.info(format!(
                                "{sandbox}: revision {} applied and enforced by the supervisor",
                                r.revision
                            ));
                        } else {
                            self.error(format!(
                                "{sandbox}: revision {} stored, but the supervisor has not \
                                 acknowledged it yet",
                                r.revision
                            ));
                        }
                        return vec![Effect::LoadPolicy { sandbox }];
                    }
                    Err(e) => self.error(format!("{sandbox}: not applied: {e}")),
                }
            }
            Msg::History { sandbox, result } => {
                let Some(v) = self.open.as_mut().filter(|v| v.name == sandbox) else {
                    return vec![];
                };
                match result {
                    Ok(mut revs) => {
                        revs.sort_by_key(|r| std::cmp::Reverse(r.revision));
                        if let Some(h) = v.history.as_mut() {
                            h.selected = h.selected.min(revs.len().saturating_sub(1));
                            h.revisions = revs;
                            h.loading = false;
                        }
                    }
                    Err(e) => {
                        v.history = None;
                        self.error(format!("{sandbox}: cannot load the history: {e}"));
                    }
                }
            }
            Msg::RolledBack {
                sandbox,
                revision,
                result,
            } => match result {
                Ok(r) => {
                    let ack = if r.acknowledged {
                        "enforced"
                    } else {
                        "not yet acknowledged by the supervisor"
                    };
                    self.info(format!(
                        "{sandbox}: rolled back to revision {revision} as revision {} ({ack})",
                        r.revision
                    ));
                    if let Some(v) = self.open.as_mut().filter(|v| v.name == sandbox)
                        && let Some(h) = v.history.as_mut()
                    {
                        h.loading = true;
                        h.diff = None;
                    }
                    return vec![
                        Effect::LoadPolicy {
                            sandbox: sandbox.clone(),
                        },
                        Effect::LoadHistory { sandbox },
                    ];
                }
                Err(e) => self.error(format!("{sandbox}: cannot roll back: {e}")),
            },
            Msg::Created { name, result } => match result {
                Ok(s) => {
                    let phase = phase_name(s.phase);
                    self.info(format!("sandbox {} created ({phase})", s.name));
                    if let Some(i) = self
                        .visible_sandboxes()
                        .iter()
                        .position(|x| x.name == s.name)
                    {
                        self.selected = i;
                    }
                }
                Err(e) => {
                    let what = if name.is_empty() {
                        "the sandbox"
                    } else {
                        name.as_str()
                    };
                    self.error(format!("cannot create {what}: {e}"))
                }
            },
            Msg::Deleted { sandbox, result } => match result {
                Ok(()) => {
                    self.info(format!("sandbox {sandbox} deleted"));
                    self.editors.remove(&sandbox);
                }
                Err(e) => self.error(format!("cannot delete {sandbox}: {e}")),
            },
            Msg::Providers(Ok(list)) => {
                self.providers = list;
                self.provider_selected = self
                    .provider_selected
                    .min(self.providers.len().saturating_sub(1));
            }
            Msg::Providers(Err(e)) => self.error(format!("cannot list providers: {e}")),
            Msg::Error(e) => self.error(e),
        }
        vec![]
    }

    /// Reloads the open sandbox's policy when the gateway reports a revision the editor has not
    /// seen (an approval from the CLI, a rollback elsewhere).
    fn follow_revision(&mut self) -> Vec<Effect> {
        let Some(v) = self.open.as_mut() else {
            return vec![];
        };
        let Some(s) = self.sandboxes.iter().find(|s| s.name == v.name) else {
            return vec![];
        };
        let known = self.editors.get(&v.name).map(|e| e.base_revision);
        if v.policy_loading || known == Some(s.policy_revision) || s.policy_revision == 0 {
            return vec![];
        }
        v.policy_loading = true;
        vec![Effect::LoadPolicy {
            sandbox: v.name.clone(),
        }]
    }
}

fn common_prefix(words: &[&str]) -> String {
    let Some(first) = words.first() else {
        return String::new();
    };
    let mut n = first.len();
    for w in &words[1..] {
        n = n.min(
            first
                .bytes()
                .zip(w.bytes())
                .take_while(|(a, b)| a == b)
                .count(),
        );
    }
    first[..n].to_string()
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
