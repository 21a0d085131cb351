//! The seam between the two modes. Standalone: the policy comes from a file (reloaded on
//! SIGHUP or when it changes) and events go to a log. Managed: both go through the gateway.
//! Everything else (namespaces, proxy, confinement) is the same code.

mod managed;

pub use managed::Managed;

use crate::events::{Events, LogSink, Sink};
use crate::policy_state::Current;
use futures::future::BoxFuture;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::watch;

/// Where a sandbox's policy comes from and where its events go.
pub trait Control: Send {
    /// The first policy's text, and a label for messages (a path, a revision).
    fn initial_policy(&mut self) -> anyhow::Result<(String, String)>;
    /// Where events are written.
    fn event_sink(&mut self) -> Box<dyn Sink>;
    /// Where the command's state goes (taken before `follow`).
    fn status_sink(&mut self) -> Arc<dyn StatusSink>;
    /// Delivers later revisions to `reloader` until the sandbox ends.
    fn follow(self: Box<Self>, reloader: Reloader) -> BoxFuture<'static, ()>;
}

/// How the sandbox's command is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandState {
    /// It was executed: the sandbox is ready.
    Running,
    /// It exited with this status (128 + the signal when killed).
    Exited(i32),
    /// It never ran, and why.
    Failed(String),
}

/// Told of every change of [`CommandState`]; `report` resolves once the state was delivered
/// (the caller bounds how long it waits).
pub trait StatusSink: Send + Sync {
    fn report(&self, state: CommandState) -> BoxFuture<'static, ()>;
}

/// Standalone mode has nobody to tell: the lifecycle events say it.
struct NoStatus;

impl StatusSink for NoStatus {
    fn report(&self, _: CommandState) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }
}

/// Applies new revisions to the running sandbox.
#[derive(Clone)]
pub struct Reloader {
    pub current: Arc<Current>,
    pub revision: Arc<watch::Sender<u64>>,
    pub events: Events,
    /// Runs more commands in the sandbox (managed mode's `exec`).
    pub execs: Option<Arc<crate::sandbox::exec::Execs>>,
}

impl Reloader {
    /// Applies `text` (labelled `label` in messages); the enforced revision, or why not. Either
    /// way it is a policy event.
    pub fn apply(&self, text: &str, label: &str) -> Result<u64, String> {
        let outcome = crate::reload::apply(text, label, &self.current, &self.revision);
        match &outcome {
            Ok(rev) => self.events.say(
                "info",
                "policy",
                format!("policy revision {rev} from {label} is now enforced"),
            ),
            Err(e) => self.events.say(
                "error",
                "policy",
                format!("policy reload refused, the previous policy stays in force: {e}"),
            ),
        }
        outcome
    }
}

/// Standalone mode: a policy file and a log file.
pub struct Standalone {
    pub policy: PathBuf,
    pub log: PathBuf,
    last_text: String,
}

impl Standalone {
    pub fn new(policy: PathBuf, log: PathBuf) -> Standalone {
        Standalone {
            policy,
            log,
            last_text: String::new(),
        }
    }
}

impl Control for Standalone {
    fn initial_policy(&mut self) -> anyhow::Result<(String, String)> {
        let text = std::fs::read_to_string(&self.policy)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", self.policy.display()))?;
        self.last_text.clone_from(&text);
        Ok((text, self.policy.display().to_string()))
    }

    fn event_sink(&mut self) -> Box<dyn Sink> {
        Box::new(LogSink::open(&self.log))
    }

    fn status_sink(&mut self) -> Arc<dyn StatusSink> {
        Arc::new(NoStatus)
    }

    fn follow(self: Box<Self>, reloader: Reloader) -> BoxFuture<'static, ()> {
        Box::pin(follow_file(self.policy, self.last_text, reloader))
    }
}

/// Reloads on SIGHUP and whenever the file changes (editors replace files, so the directory
/// is watched and events are filtered by name).
async fn follow_file(path: PathBuf, mut last: String, reloader: Reloader) {
    use notify::Watcher;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(8);
    let hup_tx = tx.clone();
    if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        tokio::spawn(async move {
            while s.recv().await.is_some() {
                let _ = hup_tx.send(()).await;
            }
        });
    }
    let file_name = path.file_name().map(|f| f.to_os_string());
    let watch_tx = tx.clone();
    let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res
            && ev
                .paths
                .iter()
                .any(|p| p.file_name().map(|f| f.to_os_string()) == file_name)
            && (ev.kind.is_modify() || ev.kind.is_create())
        {
            let _ = watch_tx.try_send(());
        }
    });
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let _watcher = match watcher.and_then(|mut w| {
        w.watch(&dir, notify::RecursiveMode::NonRecursive)
            .map(|()| w)
    }) {
        Ok(w) => Some(w),
        Err(e) => {
            reloader.events.say(
                "warn",
                "policy",
                format!(
                    "cannot watch {} for changes ({e}); SIGHUP still reloads",
                    path.display()
                ),
            );
            None
        }
    };
    while rx.recv().await.is_some() {
        // Editors write in several steps: let them finish.
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        while rx.try_recv().is_ok() {}
        reload_file(&path, &mut last, &reloader);
    }
}

fn reload_file(path: &Path, last: &mut String, reloader: &Reloader) {
    let shown = path.display().to_string();
    match std::fs::read_to_string(path) {
        // The same text again (an editor's second write, a SIGHUP without a change).
        Ok(text) if text == *last => {}
        Ok(text) => {
            last.clone_from(&text);
            let _ = reloader.apply(&text, &shown);
        }
        Err(e) => reloader.events.say(
            "error",
            "policy",
            format!("policy reload refused, the previous policy stays in force: cannot read {shown}: {e}"),
        ),
    }
}

/// Managed mode's entry: the gateway starts supervisors with these set.
pub fn managed_from_env() -> Option<(String, String)> {
    match (
        std::env::var("OPENSHELL_SANDBOX_ID"),
        std::env::var("OPENSHELL_ENDPOINT"),
    ) {
        (Ok(id), Ok(endpoint)) if !id.is_empty() && !endpoint.is_empty() => Some((id, endpoint)),
        _ => None,
    }
}
