//! The background tasks that talk to the gateway and report back as [`Msg`]s. The UI never
//! awaits the network.

use super::state::{Effect, Msg};
use crate::cli::client::{self, Client};
use openshell_proto::pb;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// How often the sandbox list (and the open sandbox's denials) are refreshed. The gateway's
/// `WatchSandboxes` is not implemented yet, so this polls `list_sandboxes`; switch to the watch
/// stream when it lands.
const POLL: Duration = Duration::from_millis(500);

/// The running background tasks.
pub struct Net {
    tx: mpsc::UnboundedSender<Msg>,
    watched: watch::Sender<Option<String>>,
    logs: Option<JoinHandle<()>>,
    poller: JoinHandle<()>,
}

impl Net {
    /// Starts polling; the first connection starts the gateway if none runs.
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

/// Polls health, the sandbox list and the watched sandbox's denials; reconnects when the
/// gateway goes away.
async fn poll(tx: mpsc::UnboundedSender<Msg>, watched: watch::Receiver<Option<String>>) {
    let mut client = match client::connect().await {
        Ok(c) => Some(c),
        Err(e) => {
            let _ = tx.send(Msg::Health(Err(format!("{e:#}"))));
            None
        }
    };
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if client.is_none() {
            client = client::try_connect().await;
            if client.is_none() {
                let _ = tx.send(Msg::Health(Err("the gateway is not answering".into())));
                continue;
            }
        }
        let Some(c) = client.as_mut() else { continue };
        let res: Result<(), tonic::Status> = async {
            let h = c.health(pb::Empty {}).await?.into_inner();
            let _ = tx.send(Msg::Health(Ok(h)));
            let list = c
                .list_sandboxes(pb::ListSandboxesRequest {})
                .await?
                .into_inner()
                .sandboxes;
            let _ = tx.send(Msg::Sandboxes(list));
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
        }
        .await;
        if let Err(e) = res {
            if matches!(e.code(), tonic::Code::Unavailable | tonic::Code::Unknown) {
                client = None;
                let _ = tx.send(Msg::Health(Err(client::explain(e).to_string())));
            } else {
                let _ = tx.send(Msg::Error(client::explain(e).to_string()));
            }
        }
    }
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
