//! The background tasks that talk to the gateway and report back as [`Msg`]s. The UI never
//! awaits the network.

use super::state::{Effect, Msg};
use crate::cli::client::{self, Client};
use openshell_proto::pb;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// How often the gateway's health is checked (for the header, and to notice a lost gateway
/// while the sandbox stream is quiet).
const HEALTH: Duration = Duration::from_secs(2);
/// How often the open sandbox's denials are refreshed (there is no denial stream).
const DENIALS: Duration = Duration::from_secs(1);
/// Waits between reconnection attempts: doubled after each failure up to the maximum, reset
/// once the sandbox stream delivers again.
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// The running background tasks.
pub struct Net {
    tx: mpsc::UnboundedSender<Msg>,
    watched: watch::Sender<Option<String>>,
    logs: Option<JoinHandle<()>>,
    poller: JoinHandle<()>,
}

impl Net {
    /// Starts the background tasks; the first connection starts the gateway if none runs.
    pub fn start(tx: mpsc::UnboundedSender<Msg>) -> Net {
        let (watched, rx) = watch::channel(None);
        let poller = tokio::spawn(poll(tx.clone(), rx));
        Net {
            tx,
            watched,
            logs: None,
            poller,
        }
    }

    pub fn run(&mut self, effect: Effect) {
        match effect {
            Effect::Watch(name) => {
                if let Some(h) = self.logs.take() {
                    h.abort();
                }
                if let Some(n) = &name {
                    self.logs = Some(tokio::spawn(follow(self.tx.clone(), n.clone())));
                }
                self.watched.send_replace(name);
            }
            Effect::Approve { sandbox, id } => {
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    let result = async {
                        let mut c = connected().await?;
                        c.approve_denial(decision(&sandbox, &id, true))
                            .await
                            .map(|r| r.into_inner())
                            .map_err(|e| client::explain(e).to_string())
                    }
                    .await;
                    let _ = tx.send(Msg::Approved {
                        sandbox,
                        id,
                        result,
                    });
                });
            }
            Effect::LoadPolicy { sandbox } => self.call(move |mut c| async move {
                let result = c
                    .get_policy(pb::GetPolicyRequest {
                        sandbox: sandbox.clone(),
                        revision: 0,
                    })
                    .await
                    .map(|r| r.into_inner())
                    .map_err(|e| client::explain(e).to_string());
                Msg::Policy { sandbox, result }
            }),
            Effect::ApplyPolicy { sandbox, yaml } => self.call(move |mut c| async move {
                let result = c
                    .set_policy(pb::SetPolicyRequest {
                        sandbox: sandbox.clone(),
                        policy_yaml: yaml,
                        source_name: "editor".into(),
                        author: author(),
                        wait: true,
                        wait_timeout_ms: ACK_TIMEOUT_MS,
                    })
                    .await
                    .map(|r| r.into_inner())
                    .map_err(|e| client::explain(e).to_string());
                Msg::Applied { sandbox, result }
            }),
            Effect::LoadHistory { sandbox } => self.call(move |mut c| async move {
                let result = c
                    .policy_history(pb::PolicyHistoryRequest {
                        sandbox: sandbox.clone(),
                    })
                    .await
                    .map(|r| r.into_inner().revisions)
                    .map_err(|e| client::explain(e).to_string());
                Msg::History { sandbox, result }
            }),
            Effect::Rollback { sandbox, revision } => self.call(move |mut c| async move {
                let result = c
                    .rollback_policy(pb::RollbackPolicyRequest {
                        sandbox: sandbox.clone(),
                        revision,
                        wait: true,
                        wait_timeout_ms: ACK_TIMEOUT_MS,
                        author: author(),
                    })
                    .await
                    .map(|r| r.into_inner())
                    .map_err(|e| client::explain(e).to_string());
                Msg::RolledBack {
                    sandbox,
                    revision,
                    result,
                }
            }),
            Effect::Create(req) => self.call(move |mut c| async move {
                let name = req.name.clone();
                let result = c
                    .create_sandbox(req)
                    .await
                    .map(|r| r.into_inner())
                    .map_err(|e| client::explain(e).to_string());
                Msg::Created { name, result }
            }),
            Effect::Delete { sandbox } => self.call(move |mut c| async move {
                let result = c
                    .delete_sandbox(pb::DeleteSandboxRequest {
                        name: sandbox.clone(),
                        all: false,
                    })
                    .await
                    .map(|_| ())
                    .map_err(|e| client::explain(e).to_string());
                Msg::Deleted { sandbox, result }
            }),
            Effect::LoadProviders => self.call(|mut c| async move {
                Msg::Providers(
                    c.list_providers(pb::Empty {})
                        .await
                        .map(|r| r.into_inner().providers)
                        .map_err(|e| client::explain(e).to_string()),
                )
            }),
            Effect::Reject { sandbox, id } => {
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    let result = async {
                        let mut c = connected().await?;
                        c.reject_denial(decision(&sandbox, &id, false))
                            .await
                            .map(|_| ())
                            .map_err(|e| client::explain(e).to_string())
                    }
                    .await;
                    let _ = tx.send(Msg::Rejected {
                        sandbox,
                        id,
                        result,
                    });
                });
            }
        }
    }
}

impl Net {
    /// Runs one gateway call in the background and reports its message; a gateway that does not
    /// answer becomes an error in the status line.
    fn call<F, Fut>(&self, f: F)
    where
        F: FnOnce(Client) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Msg> + Send,
    {
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let msg = match connected().await {
                Ok(c) => f(c).await,
                Err(e) => Msg::Error(e),
            };
            let _ = tx.send(msg);
        });
    }
}

/// How long an apply or rollback waits for the supervisor's acknowledgement.
const ACK_TIMEOUT_MS: u32 = 10_000;

fn author() -> String {
    std::env::var("USER").unwrap_or_else(|_| "openshell term".into())
}

impl Drop for Net {
    fn drop(&mut self) {
        self.poller.abort();
        if let Some(h) = self.logs.take() {
            h.abort();
        }
    }
}

fn decision(sandbox: &str, id: &str, wait: bool) -> pb::DenialDecisionRequest {
    pb::DenialDecisionRequest {
        sandbox: sandbox.to_string(),
        id: id.to_string(),
        wait,
        wait_timeout_ms: 0,
        author: author(),
    }
}

async fn connected() -> Result<Client, String> {
    client::try_connect()
        .await
        .ok_or_else(|| "the gateway is not answering".to_string())
}

/// The sandbox table as the `WatchSandboxes` stream describes it, by name (so the list the
/// state gets is sorted like `list_sandboxes`).
#[derive(Debug, Default)]
pub struct SandboxTable(BTreeMap<String, pb::Sandbox>);

impl SandboxTable {
    /// Applies one change; an unknown kind is ignored (a newer gateway).
    pub fn apply(&mut self, change: pb::SandboxChange) {
        use pb::sandbox_change::Kind;
        match Kind::try_from(change.kind) {
            Ok(Kind::Snapshot) => {
                self.0 = change
                    .sandboxes
                    .into_iter()
                    .map(|s| (s.name.clone(), s))
                    .collect();
            }
            Ok(Kind::Upsert) => {
                for s in change.sandboxes {
                    self.0.insert(s.name.clone(), s);
                }
            }
            Ok(Kind::Deleted) => {
                for s in change.sandboxes {
                    self.0.remove(&s.name);
                }
            }
            Ok(Kind::Unspecified) | Err(_) => {}
        }
    }

    pub fn list(&self) -> Vec<pb::Sandbox> {
        self.0.values().cloned().collect()
    }
}

/// Keeps the sandbox table live from the gateway's `WatchSandboxes` stream (no polling), checks
/// health every [`HEALTH`] for the header, polls the watched sandbox's denials every
/// [`DENIALS`], and reconnects with backoff when the gateway or the stream goes away.
async fn poll(tx: mpsc::UnboundedSender<Msg>, mut watched: watch::Receiver<Option<String>>) {
    let mut client = match client::connect().await {
        Ok(c) => Some(c),
        Err(e) => {
            let _ = tx.send(Msg::Health(Err(format!("{e:#}"))));
            None
        }
    };
    let mut stream: Option<tonic::Streaming<pb::SandboxChange>> = None;
    let mut table = SandboxTable::default();
    let mut backoff = BACKOFF_MIN;
    let mut health = tokio::time::interval(HEALTH);
    health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut denials = tokio::time::interval(DENIALS);
    denials.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // (Re)connect and (re)open the stream before anything else; wait with backoff between
        // failed attempts so a dead gateway is not hammered.
        if client.is_none() {
            client = client::try_connect().await;
        }
        let Some(c) = client.as_mut() else {
            let _ = tx.send(Msg::Health(Err("the gateway is not answering".into())));
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
            continue;
        };
        if stream.is_none() {
            match c.watch_sandboxes(pb::WatchSandboxesRequest {}).await {
                Ok(s) => {
                    stream = Some(s.into_inner());
                    // A fresh health answer right away: the header need not wait for the tick.
                    health.reset_immediately();
                }
                Err(e) => {
                    lost(&tx, &mut client, e);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            }
        }
        let Some(s) = stream.as_mut() else { continue };
        // `Streaming::message` is cancel-safe, so a tick winning the race loses no change.
        // Errors say whether they came from the stream, which is then spent.
        let res: Result<(), (bool, tonic::Status)> = tokio::select! {
            change = s.message() => match change {
                Ok(Some(change)) => {
                    backoff = BACKOFF_MIN;
                    table.apply(change);
                    let _ = tx.send(Msg::Sandboxes(table.list()));
                    Ok(())
                }
                // The gateway ended the stream (shutting down, or its store failed): open it
                // again after a pause; the snapshot that starts it resets the table.
                Ok(None) => Err((true, tonic::Status::unavailable("the sandbox stream ended"))),
                Err(e) => Err((true, e)),
            },
            _ = health.tick() => async {
                let h = c.health(pb::Empty {}).await?.into_inner();
                let _ = tx.send(Msg::Health(Ok(h)));
                Ok(())
            }.await.map_err(|e| (false, e)),
            // A sandbox just opened: its denials now, not at the next tick.
            changed = watched.changed() => match changed {
                Ok(()) => {
                    denials.reset_immediately();
                    Ok(())
                }
                // The Net is gone, and this task with it.
                Err(_) => return,
            },
            _ = denials.tick() => async {
                let name = watched.borrow().clone();
                if let Some(sandbox) = name {
                    let denials = c
                        .list_denials(pb::ListDenialsRequest {
                            sandbox: sandbox.clone(),
                            include_decided: true,
                        })
                        .await?
                        .into_inner()
                        .denials;
                    let _ = tx.send(Msg::Denials { sandbox, denials });
                }
                Ok(())
            }.await.map_err(|e| (false, e)),
        };
        match res {
            Ok(()) => {}
            Err((_, e)) if matches!(e.code(), tonic::Code::Unavailable | tonic::Code::Unknown) => {
                stream = None;
                lost(&tx, &mut client, e);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
            Err((from_stream, e)) => {
                let _ = tx.send(Msg::Error(client::explain(e).to_string()));
                if from_stream {
                    stream = None;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }
}

/// The gateway (or the stream) is gone: say so in the header and connect afresh next time.
fn lost(tx: &mpsc::UnboundedSender<Msg>, client: &mut Option<Client>, e: tonic::Status) {
    *client = None;
    let _ = tx.send(Msg::Health(Err(client::explain(e).to_string())));
}

/// Follows one sandbox's events, reconnecting after a lost stream (the state drops replays by
/// sequence number).
async fn follow(tx: mpsc::UnboundedSender<Msg>, sandbox: String) {
    loop {
        if let Some(mut c) = client::try_connect().await {
            let stream = c
                .stream_events(pb::EventFilter {
                    sandbox: sandbox.clone(),
                    follow: true,
                    tail: super::state::LOG_HISTORY as u32,
                    ..Default::default()
                })
                .await;
            match stream {
                Ok(s) => {
                    let mut s = s.into_inner();
                    while let Ok(Some(batch)) = s.message().await {
                        let msg = Msg::Events {
                            sandbox: sandbox.clone(),
                            events: batch.events,
                        };
                        if tx.send(msg).is_err() {
                            return;
                        }
                    }
                }
                Err(e) => {
                    let _ = tx.send(Msg::Error(format!(
                        "logs of {sandbox}: {}",
                        client::explain(e)
                    )));
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::sandbox_change::Kind;

    fn change(kind: Kind, names: &[(&str, u64)]) -> pb::SandboxChange {
        pb::SandboxChange {
            kind: kind.into(),
            sandboxes: names
                .iter()
                .map(|(n, rev)| pb::Sandbox {
                    name: n.to_string(),
                    policy_revision: *rev,
                    ..Default::default()
                })
                .collect(),
        }
    }

    fn names(t: &SandboxTable) -> Vec<(String, u64)> {
        t.list()
            .into_iter()
            .map(|s| (s.name, s.policy_revision))
            .collect()
    }

    #[test]
    fn snapshot_then_changes_keep_a_sorted_table() {
        let mut t = SandboxTable::default();
        t.apply(change(Kind::Snapshot, &[("b", 1), ("a", 1)]));
        assert_eq!(names(&t), [("a".into(), 1), ("b".into(), 1)]);
        t.apply(change(Kind::Upsert, &[("c", 1)]));
        t.apply(change(Kind::Upsert, &[("a", 2)]));
        t.apply(change(Kind::Deleted, &[("b", 0)]));
        assert_eq!(names(&t), [("a".into(), 2), ("c".into(), 1)]);
        // A new snapshot (after a reconnect) replaces everything.
        t.apply(change(Kind::Snapshot, &[("d", 1)]));
        assert_eq!(names(&t), [("d".into(), 1)]);
        t.apply(change(Kind::Unspecified, &[("e", 1)]));
        assert_eq!(names(&t), [("d".into(), 1)]);
    }
}
