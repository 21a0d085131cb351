//! The gateway's state and operations, shared by the user-facing API and the supervisors'.

use crate::driver::{Driver, Launch};
use crate::hub::Hub;
use crate::store::{NewSandbox, Phase, Runtime, SandboxRow, Store, StoreError};
use openshell_proto::pb;
use openshell_proto::policy::{self, Policy, static_changes};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tonic::Status;

/// How long a supervisor has to stop on SIGTERM before it is killed.
const STOP_DEADLINE: Duration = Duration::from_secs(5);

/// What the gateway was started with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: String,
    /// tcp://HOST:PORT when remote access (mTLS) is on.
    pub listen_tcp: Option<String>,
    pub state_dir: PathBuf,
    pub started: Instant,
}

/// One sandbox's live link to its supervisor.
pub struct Session {
    /// The newest revision for the supervisor to enforce: (revision, text).
    pub policy: watch::Sender<(u64, String)>,
    /// The newest revision the supervisor acknowledged, and the error of the newest refusal.
    pub acked: watch::Sender<(u64, Option<(u64, String)>)>,
}

pub struct App {
    pub store: Mutex<Store>,
    pub hub: Hub,
    pub driver: Box<dyn Driver>,
    pub settings: Settings,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    /// Sandboxes `create` has stored but whose supervisor pid it has not recorded yet.
    starting: Mutex<HashSet<String>>,
    /// Exec channels to connected supervisors.
    pub links: crate::control::Links,
}

/// Store errors as gRPC statuses a person can act on.
pub fn status(e: StoreError) -> Status {
    match &e {
        StoreError::UnknownSandbox { .. } => Status::not_found(e.to_string()),
        StoreError::SandboxExists(_) => Status::already_exists(e.to_string()),
        _ => Status::internal(e.to_string()),
    }
}

impl App {
    pub fn new(store: Store, driver: Box<dyn Driver>, settings: Settings) -> Arc<App> {
        App::with_hub(store, driver, settings, Hub::default())
    }

    /// As `new`, with a given event hub (tests use a tiny backlog to force watchers to lag).
    pub fn with_hub(
        store: Store,
        driver: Box<dyn Driver>,
        settings: Settings,
        hub: Hub,
    ) -> Arc<App> {
        Arc::new(App {
            store: Mutex::new(store),
            hub,
            driver,
            settings,
            sessions: Mutex::new(HashMap::new()),
            starting: Mutex::new(HashSet::new()),
            links: crate::control::Links::default(),
        })
    }

    pub fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        match self.store.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// The live link to `name`'s supervisor, made on first use.
    pub fn session(&self, name: &str) -> Arc<Session> {
        let mut s = match self.sessions.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        s.entry(name.to_string())
            .or_insert_with(|| {
                Arc::new(Session {
                    policy: watch::channel((0, String::new())).0,
                    acked: watch::channel((0, None)).0,
                })
            })
            .clone()
    }

    fn forget(&self, name: &str) {
        if let Ok(mut s) = self.sessions.lock() {
            s.remove(name);
        }
    }

    /// An event from the gateway itself.
    pub fn event(&self, sandbox: &str, level: &str, kind: &str, message: String) {
        let e = pb::Event {
            time: openshell_proto::event::now_rfc3339(),
            sandbox: sandbox.to_string(),
            source: "gateway".into(),
            level: level.into(),
            kind: kind.into(),
            message,
            ..pb::Event::default()
        };
        self.ingest(vec![e]);
    }

    /// Stores events (assigning their sequence numbers), publishes them, and aggregates the
    /// denials among them.
    pub fn ingest(&self, mut events: Vec<pb::Event>) -> usize {
        let n = events.len();
        let denials: Vec<pb::Event> = {
            let mut store = self.store();
            let seqs = match store.append_events(&events) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!("cannot store events: {e}");
                    return 0;
                }
            };
            for (e, seq) in events.iter_mut().zip(seqs) {
                e.seq = seq;
            }
            let denials = events
                .iter()
                .filter(|e| e.action == "deny" && e.kind == "network" && !e.host.is_empty())
                .cloned()
                .collect();
            // Published while the store is still locked: two ingests at once would otherwise
            // publish out of seq order, and a watcher (which drops seqs it has passed) would
            // lose the earlier batch.
            for e in events {
                self.hub.publish(e);
            }
            denials
        };
        self.record_denials(&denials);
        n
    }

    /// Aggregates a batch's denials: per sandbox, the policy is read once, each distinct
    /// denial's proposal computed once, and every sighting recorded in one transaction (a
    /// flood of one denial costs a row update per event, not a policy parse).
    fn record_denials(&self, denials: &[pb::Event]) {
        let mut by_sandbox: HashMap<&str, Vec<&pb::Event>> = HashMap::new();
        for e in denials {
            by_sandbox.entry(e.sandbox.as_str()).or_default().push(e);
        }
        for (sandbox, events) in by_sandbox {
            let current = self
                .store()
                .get_revision(sandbox, None)
                .ok()
                .and_then(|r| policy::load(&r.text, "current").ok())
                .map(|l| l.policy)
                .unwrap_or_default();
            let mut proposals: HashMap<crate::store::DenialKey, String> = HashMap::new();
            let sightings: Vec<crate::store::DenialSighting> = events
                .iter()
                .map(|e| {
                    let key = crate::denials::key_of(e);
                    let proposal = proposals
                        .entry(key.clone())
                        .or_insert_with(|| crate::denials::proposal_yaml(e, &current))
                        .clone();
                    crate::store::DenialSighting {
                        key,
                        proposal_yaml: proposal,
                        at: openshell_proto::event::parse_time(&e.time)
                            .unwrap_or_else(time::OffsetDateTime::now_utc),
                    }
                })
                .collect();
            if let Err(err) = self.store().record_denials(sandbox, &sightings) {
                tracing::warn!("cannot record denials for {sandbox}: {err}");
            }
        }
    }

    /// Creates and starts a sandbox.
    pub fn create(&self, req: pb::CreateSandboxRequest) -> Result<pb::Sandbox, Status> {
        let name = if req.name.is_empty() {
            self.fresh_name()
        } else {
            req.name.clone()
        };
        validate_name(&name)?;
        let driver = if req.driver.is_empty() {
            "process".to_string()
        } else {
            req.driver.clone()
        };
        if driver != self.driver.name() {
            return Err(Status::invalid_argument(
                crate::driver::DriverError::Unknown(driver).to_string(),
            ));
        }
        let mut text = if req.policy_yaml.trim().is_empty() {
            openshell_proto::catalog::baseline_text().to_string()
        } else {
            req.policy_yaml.clone()
        };
        let mut p = load_policy(&text, "policy")?;
        if !req.presets.is_empty() {
            for name in &req.presets {
                let preset = openshell_proto::catalog::preset(name).ok_or_else(|| {
                    let known: Vec<&str> = openshell_proto::catalog::presets()
                        .map(|p| p.name)
                        .collect();
                    Status::invalid_argument(format!(
                        "no preset `{name}`; presets: {}",
                        known.join(", ")
                    ))
                })?;
                let pp = preset
                    .policy()
                    .map_err(|e| Status::internal(format!("preset {name} does not load: {e}")))?;
                p = policy::merge(&p, &pp);
            }
            text = policy::to_yaml(&p);
        }
        let workdir = if req.workdir.is_empty() {
            let d = self.settings.state_dir.join("workdirs").join(&name);
            std::fs::create_dir_all(&d)
                .map_err(|e| Status::internal(format!("cannot create {}: {e}", d.display())))?;
            d
        } else {
            PathBuf::from(&req.workdir)
        };
        if !workdir.is_dir() {
            return Err(Status::invalid_argument(format!(
                "the workdir {} is not a directory",
                workdir.display()
            )));
        }
        // Until its supervisor's pid is stored, the watcher must not take the new sandbox for
        // one whose supervisor is gone (it marked it stopped, even deleted it with --no-keep).
        let _starting = Starting::new(self, &name);
        self.store()
            .create_sandbox(NewSandbox {
                name: name.clone(),
                driver: driver.clone(),
                workdir: workdir.display().to_string(),
                command: req.command.clone(),
                policy_text: text.clone(),
                author: "create".into(),
                env: req.env.clone().into_iter().collect(),
                providers: req.providers.clone(),
                image: req.from.clone(),
                keep: !req.no_keep,
            })
            .map_err(status)?;
        let session = self.session(&name);
        session.policy.send_replace((1, text));
        session.acked.send_replace((0, None));
        let started = self.driver.start(&Launch {
            name: name.clone(),
            workdir,
            command: req.command.clone(),
            env: req.env.clone().into_iter().collect(),
        });
        match started {
            Ok(s) => {
                let _ = self.store().set_runtime(
                    &name,
                    &Runtime {
                        supervisor_pid: Some(s.pid),
                        started_at: Some(time::OffsetDateTime::now_utc()),
                        ..Runtime::default()
                    },
                );
                self.event(
                    &name,
                    "info",
                    "lifecycle",
                    format!("sandbox {name} provisioning (supervisor pid {})", s.pid),
                );
            }
            Err(e) => {
                let _ = self
                    .store()
                    .set_phase(&name, Phase::Failed, Some(&e.to_string()));
                return Err(Status::unavailable(e.to_string()));
            }
        }
        self.get(&name)
    }

    fn fresh_name(&self) -> String {
        let taken: Vec<String> = self
            .store()
            .list_sandboxes()
            .map(|v| v.into_iter().map(|s| s.name).collect())
            .unwrap_or_default();
        (1..)
            .map(|i| format!("sandbox-{i}"))
            .find(|n| !taken.contains(n))
            .unwrap_or_else(|| "sandbox".into())
    }

    pub fn get(&self, name: &str) -> Result<pb::Sandbox, Status> {
        let row = self.store().get_sandbox(name).map_err(status)?;
        Ok(self.to_pb(&row))
    }

    pub fn to_pb(&self, row: &SandboxRow) -> pb::Sandbox {
        let mut s = row.to_pb();
        if let Ok(d) = self.store().list_denials(&row.name, false) {
            s.recent_denials = d.len() as u32;
        }
        s
    }

    pub fn list(&self) -> Result<Vec<pb::Sandbox>, Status> {
        let rows = self.store().list_sandboxes().map_err(status)?;
        Ok(rows.iter().map(|r| self.to_pb(r)).collect())
    }

    pub fn delete(&self, name: &str) -> Result<(), Status> {
        let row = self.store().get_sandbox(name).map_err(status)?;
        if let Some(pid) = row.runtime.supervisor_pid
            && self.driver.alive(pid, name)
            && !self.driver.stop(pid, name, STOP_DEADLINE)
        {
            return Err(Status::internal(format!(
                "the supervisor of {name} (pid {pid}) did not exit even when killed; the sandbox is kept"
            )));
        }
        match self.store().delete_sandbox(name) {
            Ok(()) => {}
            // A `--no-keep` sandbox: the watcher saw the supervisor just stopped above end and
            // removed it first. It is gone, as asked (failing here made `delete --all` stop
            // half-way and leave the rest running).
            Err(StoreError::UnknownSandbox { .. }) if !row.keep => {}
            Err(e) => return Err(status(e)),
        }
        self.forget(name);
        self.event(name, "info", "lifecycle", format!("sandbox {name} deleted"));
        Ok(())
    }

    /// Validates, stores and pushes a new revision; with `wait`, returns once the supervisor
    /// enforces it (or refuses it, or the time is up).
    pub async fn set_policy(
        self: &Arc<Self>,
        name: &str,
        text: &str,
        source: &str,
        author: &str,
        wait: Option<Duration>,
    ) -> Result<pb::SetPolicyResponse, Status> {
        let submitted = load_policy(text, source)?;
        let (current_text, row) = {
            let store = self.store();
            let row = store.get_sandbox(name).map_err(status)?;
            let cur = store.get_revision(name, None).map_err(status)?;
            (cur.text, row)
        };
        let current = load_policy(&current_text, "current")?;
        // A network-only document keeps the running sandbox's static sections.
        let proposed = policy::inherit_static(&current, &submitted);
        let changed = static_changes(&current, &proposed);
        if !changed.is_empty() && matches!(row.phase, Phase::Ready | Phase::Provisioning) {
            return Err(Status::failed_precondition(format!(
                "static sections cannot change on a running sandbox: {}; delete and recreate the sandbox to change them",
                changed.join(", ")
            )));
        }
        let diff = policy::diff::unified_policies(
            &current,
            &proposed,
            &format!("revision {}", row.policy_revision),
            source,
        );
        if diff.trim().is_empty() {
            let mut acknowledged = row.enforced_revision >= row.policy_revision;
            // `--wait` promises enforcement even when the text is already the latest revision
            // (stored an instant ago by another client, not yet acknowledged): wait for it.
            if !acknowledged && let Some(timeout) = wait {
                acknowledged = self
                    .wait_ack(name, row.policy_revision as u64, timeout)
                    .await?;
            }
            return Ok(pb::SetPolicyResponse {
                revision: row.policy_revision as u64,
                acknowledged,
                unchanged: true,
                diff,
            });
        }
        // A complete document is stored as written, comments and layout included, so the
        // editor and `policy get` give back what the author wrote; a network-only document
        // becomes the canonical rendering of the policy it completes.
        let new_text = if submitted == proposed {
            text.to_string()
        } else {
            policy::to_yaml(&proposed)
        };
        let rev = self
            .store()
            .add_revision(name, &new_text, author, source)
            .map_err(status)? as u64;
        let session = self.session(name);
        session.policy.send_replace((rev, new_text));
        self.event(
            name,
            "info",
            "policy",
            format!("policy revision {rev} stored ({source}, by {author})"),
        );
        let mut acknowledged = false;
        if let Some(timeout) = wait {
            acknowledged = self.wait_ack(name, rev, timeout).await?;
        }
        Ok(pb::SetPolicyResponse {
            revision: rev,
            acknowledged,
            unchanged: false,
            diff,
        })
    }

    async fn wait_ack(&self, name: &str, rev: u64, timeout: Duration) -> Result<bool, Status> {
        let mut rx = self.session(name).acked.subscribe();
        let outcome = tokio::time::timeout(timeout, async {
            loop {
                {
                    let (acked, refused) = &*rx.borrow_and_update();
                    if let Some((r, why)) = refused
                        && *r == rev
                    {
                        return Err(Status::failed_precondition(format!(
                            "the sandbox refused revision {rev}: {why}; it keeps enforcing revision {acked}"
                        )));
                    }
                    if *acked >= rev {
                        return Ok(true);
                    }
                }
                if rx.changed().await.is_err() {
                    return Err(Status::unavailable("the gateway is shutting down"));
                }
            }
        })
        .await;
        match outcome {
            Ok(r) => r,
            Err(_) => {
                let running = self
                    .store()
                    .get_sandbox(name)
                    .map(|r| r.phase == Phase::Ready || r.phase == Phase::Provisioning)
                    .unwrap_or(false);
                Err(Status::deadline_exceeded(if running {
                    format!(
                        "revision {rev} is stored but the sandbox did not confirm it within {:.1}s; check `openshell logs {name}`",
                        timeout.as_secs_f64()
                    )
                } else {
                    format!(
                        "revision {rev} is stored; the sandbox is not running, so it applies when it starts"
                    )
                }))
            }
        }
    }

    /// The supervisor acknowledged (or refused) a revision.
    pub fn ack(&self, name: &str, rev: u64, ok: bool, error: &str) {
        let session = self.session(name);
        if ok {
            // Not `ready` yet: that waits for the supervisor to say its command runs.
            let _ = self.store().set_enforced_revision(name, rev as u32);
            session.acked.send_modify(|a| a.0 = a.0.max(rev));
        } else {
            let _ = self.store().set_revision_failed(name, rev as u32, error);
            session
                .acked
                .send_modify(|a| a.1 = Some((rev, error.to_string())));
        }
    }

    /// The supervisor reports its command's state: `ready` once it was executed, `stopped`
    /// when it exited (with its status), `failed` when it could not start. A phase never goes
    /// back: a late `ready` after the end (two connections can cross) is ignored.
    pub fn command_status(
        &self,
        name: &str,
        phase: Phase,
        reason: &str,
        exit_code: Option<i32>,
    ) -> Result<(), Status> {
        let row = self.store().get_sandbox(name).map_err(status)?;
        let applies = match phase {
            Phase::Ready => row.phase == Phase::Provisioning,
            Phase::Stopped | Phase::Failed => {
                matches!(row.phase, Phase::Provisioning | Phase::Ready)
            }
            Phase::Provisioning => false,
        };
        if !applies {
            return Ok(());
        }
        {
            let mut store = self.store();
            let reason = (!reason.is_empty()).then_some(reason);
            store.set_phase(name, phase, reason).map_err(status)?;
            if phase == Phase::Stopped {
                store.set_exit_code(name, exit_code).map_err(status)?;
            }
        }
        let message = match phase {
            Phase::Ready => format!(
                "sandbox {name} ready: its command runs, enforcing revision {}",
                row.enforced_revision
            ),
            _ => format!("sandbox {name} {}: {reason}", phase.as_str()),
        };
        let level = if phase == Phase::Failed {
            "error"
        } else {
            "info"
        };
        self.event(name, level, "lifecycle", message);
        Ok(())
    }

    fn is_starting(&self, name: &str) -> bool {
        match self.starting.lock() {
            Ok(s) => s.contains(name),
            Err(p) => p.into_inner().contains(name),
        }
    }

    /// A supervisor that outlived a gateway restart gets a session from the stored state: the
    /// newest revision (one stored just before a crash may never have reached it; it is pushed
    /// when the supervisor re-attaches) and the revision it last acknowledged. A session this
    /// gateway already fed is left alone.
    fn reattach(&self, row: &SandboxRow) {
        let session = self.session(&row.name);
        if session.policy.borrow().0 != 0 {
            return;
        }
        let Ok(latest) = self.store().get_revision(&row.name, None) else {
            return;
        };
        session.policy.send_if_modified(|p| {
            let fresh = p.0 == 0;
            if fresh {
                *p = (latest.rev as u64, latest.text);
            }
            fresh
        });
        session.acked.send_if_modified(|a| {
            let fresh = a.0 == 0 && row.enforced_revision > 0;
            if fresh {
                a.0 = row.enforced_revision as u64;
            }
            fresh
        });
    }

    /// Watches supervisors: a sandbox whose supervisor is gone is stopped (exit 0) or failed
    /// (with its last words). Also re-attaches after a gateway restart.
    pub fn watch_supervisors(self: &Arc<Self>) {
        let app = self.clone();
        std::thread::spawn(move || {
            loop {
                let rows = app.store().list_sandboxes().unwrap_or_default();
                for row in rows {
                    if !matches!(row.phase, Phase::Ready | Phase::Provisioning) {
                        // Its supervisor said how it ended; a `--no-keep` sandbox goes once
                        // the supervisor is gone too.
                        let gone = row
                            .runtime
                            .supervisor_pid
                            .is_none_or(|pid| !app.driver.alive(pid, &row.name));
                        if !row.keep && gone && !app.is_starting(&row.name) {
                            let _ = app.store().delete_sandbox(&row.name);
                            app.forget(&row.name);
                        }
                        continue;
                    }
                    if row.runtime.supervisor_pid.is_none()
                        && (app.is_starting(&row.name)
                            // `create` may have stored the pid since the list was read.
                            || app
                                .store()
                                .get_sandbox(&row.name)
                                .map_or(true, |r| r.runtime.supervisor_pid.is_some()))
                    {
                        continue;
                    }
                    let alive = row
                        .runtime
                        .supervisor_pid
                        .is_some_and(|pid| app.driver.alive(pid, &row.name));
                    if alive {
                        app.reattach(&row);
                        continue;
                    }
                    let last = app.driver.last_output(&row.name, 5);
                    let (phase, reason) = if row.runtime.supervisor_pid.is_none() {
                        (
                            Phase::Failed,
                            "its supervisor was never started (the gateway stopped while creating the sandbox); delete and create it again".to_string(),
                        )
                    } else if last.trim().is_empty() {
                        // Silence does not mean the command ended: a supervisor killed (or one
                        // that died while no gateway ran) says nothing either.
                        let pid = row.runtime.supervisor_pid.unwrap_or_default();
                        (
                            Phase::Stopped,
                            format!(
                                "the supervisor (pid {pid}) is gone without a word: the command ended or the supervisor was killed"
                            ),
                        )
                    } else if last.contains("openshell-sandbox:") {
                        (
                            Phase::Failed,
                            format!("the supervisor stopped: {}", last.trim()),
                        )
                    } else {
                        (
                            Phase::Stopped,
                            format!("the sandbox's command ended; last output: {}", last.trim()),
                        )
                    };
                    let _ = app.store().set_phase(&row.name, phase, Some(&reason));
                    app.event(
                        &row.name,
                        "info",
                        "lifecycle",
                        format!("sandbox {} {}: {reason}", row.name, phase.as_str()),
                    );
                    if !row.keep {
                        let _ = app.store().delete_sandbox(&row.name);
                        app.forget(&row.name);
                    }
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        });
    }
}

/// Marks a sandbox as being started by `create` for as long as it lives.
struct Starting<'a> {
    app: &'a App,
    name: String,
}

impl<'a> Starting<'a> {
    fn new(app: &'a App, name: &str) -> Starting<'a> {
        let mut s = match app.starting.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        s.insert(name.to_string());
        Starting {
            app,
            name: name.to_string(),
        }
    }
}

impl Drop for Starting<'_> {
    fn drop(&mut self) {
        let mut s = match self.app.starting.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        s.remove(&self.name);
    }
}

/// A policy, or InvalidArgument with every located error.
pub fn load_policy(text: &str, source: &str) -> Result<Policy, Status> {
    policy::load(text, source)
        .map(|l| l.policy)
        .map_err(|e| Status::invalid_argument(e.to_string()))
}

fn validate_name(name: &str) -> Result<(), Status> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(Status::invalid_argument(format!(
            "`{name}` is not a valid sandbox name: use lower-case letters, digits and `-` (up to 63)"
        )))
    }
}
