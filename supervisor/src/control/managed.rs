//! Managed mode: the gateway started this supervisor (`OPENSHELL_SANDBOX_ID`,
//! `OPENSHELL_ENDPOINT`). The policy and its revisions come from the gateway, each revision
//! is acknowledged once enforced (or refused, with why), and events are pushed to it.

use super::{Control, Reloader};
use crate::events::Sink;
use futures::future::BoxFuture;
use openshell_proto::pb::supervisor_client::SupervisorClient;
use openshell_proto::pb::{
    Event, EventBatch, PolicyAck, RegisterRequest, RegisterResponse, WatchPolicyRequest,
};
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::mpsc;

/// Batches of events waiting for the gateway; beyond this, new batches are dropped.
const PENDING_BATCHES: usize = 256;

pub struct Managed {
    id: String,
    socket: PathBuf,
    registered: RegisterResponse,
    tx: mpsc::Sender<Vec<Event>>,
    rx: Option<mpsc::Receiver<Vec<Event>>>,
}

/// `unix:///path` or a plain path.
fn socket_of(endpoint: &str) -> PathBuf {
    PathBuf::from(endpoint.strip_prefix("unix://").unwrap_or(endpoint))
}

impl Managed {
    /// Registers with the gateway. Runs a short-lived single-threaded runtime, so the
    /// supervisor is single-threaded again when this returns (the sandbox is cloned next).
    pub fn register(id: &str, endpoint: &str) -> anyhow::Result<Managed> {
        let socket = socket_of(endpoint);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let registered = runtime.block_on(async {
            let channel = openshell_proto::transport::unix_channel(&socket)
                .await
                .map_err(|e| {
                    anyhow::anyhow!("cannot reach the gateway at {}: {e}", socket.display())
                })?;
            let resp = SupervisorClient::new(channel)
                .register(RegisterRequest {
                    sandbox_id: id.to_string(),
                    pid: std::process::id(),
                    version: env!("CARGO_PKG_VERSION").to_string(),
                    enforcing_revision: 0,
                })
                .await
                .map_err(|s| {
                    anyhow::anyhow!(
                        "the gateway refused to register sandbox {id}: {}",
                        s.message()
                    )
                })?;
            anyhow::Ok(resp.into_inner())
        })?;
        drop(runtime);
        let (tx, rx) = mpsc::channel(PENDING_BATCHES);
        Ok(Managed {
            id: id.to_string(),
            socket,
            registered,
            tx,
            rx: Some(rx),
        })
    }
}

impl Control for Managed {
    fn initial_policy(&mut self) -> anyhow::Result<(String, String)> {
        Ok((
            self.registered.policy_yaml.clone(),
            format!("gateway revision {}", self.registered.revision),
        ))
    }

    fn event_sink(&mut self) -> Box<dyn Sink> {
        Box::new(GatewaySink {
            tx: self.tx.clone(),
            socket: self.socket.display().to_string(),
        })
    }

    fn follow(mut self: Box<Self>, reloader: Reloader) -> BoxFuture<'static, ()> {
        let rx = self.rx.take();
        Box::pin(async move {
            if let Some(rx) = rx {
                tokio::spawn(push_events(self.socket.clone(), rx));
            }
            follow_gateway(*self, reloader).await;
        })
    }
}

/// Sends event batches to the gateway, reconnecting when it goes away.
async fn push_events(socket: PathBuf, mut rx: mpsc::Receiver<Vec<Event>>) {
    loop {
        let Ok(channel) = openshell_proto::transport::unix_channel(&socket).await else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        let mut client = SupervisorClient::new(channel);
        // One stream per connection; batches flow until it breaks.
        let (stream_tx, stream_rx) = mpsc::channel::<EventBatch>(16);
        let call = tokio::spawn(async move {
            client
                .push_events(tokio_stream::wrappers::ReceiverStream::new(stream_rx))
                .await
        });
        loop {
            let Some(batch) = rx.recv().await else {
                return;
            };
            if stream_tx.send(EventBatch { events: batch }).await.is_err() {
                break;
            }
        }
        call.abort();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Acknowledges the starting revision, then applies and acknowledges every new one.
async fn follow_gateway(m: Managed, reloader: Reloader) {
    let mut gateway_rev = m.registered.revision;
    let mut first = true;
    loop {
        let Ok(channel) = openshell_proto::transport::unix_channel(&m.socket).await else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        let mut client = SupervisorClient::new(channel);
        if first {
            let _ = client
                .ack_policy(PolicyAck {
                    sandbox_id: m.id.clone(),
                    revision: gateway_rev,
                    ok: true,
                    error: String::new(),
                })
                .await;
            first = false;
        }
        let stream = client
            .watch_policy(WatchPolicyRequest {
                sandbox_id: m.id.clone(),
                after_revision: gateway_rev,
            })
            .await;
        let mut stream = match stream {
            Ok(s) => s.into_inner(),
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        while let Ok(Some(update)) = stream.message().await {
            if update.revision <= gateway_rev {
                continue;
            }
            let label = format!("gateway revision {}", update.revision);
            let outcome = reloader.apply(&update.policy_yaml, &label);
            gateway_rev = update.revision;
            let _ = client
                .ack_policy(PolicyAck {
                    sandbox_id: m.id.clone(),
                    revision: update.revision,
                    ok: outcome.is_ok(),
                    error: outcome.err().unwrap_or_default(),
                })
                .await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Hands batches to the push task; never blocks the writer.
struct GatewaySink {
    tx: mpsc::Sender<Vec<Event>>,
    socket: String,
}

impl Sink for GatewaySink {
    fn write(&mut self, batch: &[Event]) {
        let _ = self.tx.try_send(batch.to_vec());
    }

    fn describe(&self) -> String {
        format!("the gateway at {}", self.socket)
    }
}
