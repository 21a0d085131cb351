//! Managed mode: the gateway started this supervisor (`OPENSHELL_SANDBOX_ID`,
//! `OPENSHELL_ENDPOINT`). The policy and its revisions come from the gateway, each revision
//! is acknowledged once enforced (or refused, with why), and events are pushed to it.

use super::{CommandState, Control, Reloader, StatusSink};
use crate::events::Sink;
use futures::future::BoxFuture;
use openshell_proto::pb::supervisor_client::SupervisorClient;
use openshell_proto::pb::{
    Event, EventBatch, Phase, PolicyAck, RegisterRequest, RegisterResponse, StatusReport,
    WatchPolicyRequest,
};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// Batches of events waiting for the gateway; beyond this, new batches are dropped.
const PENDING_BATCHES: usize = 256;

/// Events per batch sent, well under the gateway's 8 MiB request limit.
const BATCH_EVENTS: usize = 512;

pub struct Managed {
    id: String,
    socket: PathBuf,
    registered: RegisterResponse,
    tx: mpsc::Sender<Vec<Event>>,
    rx: Option<mpsc::Receiver<Vec<Event>>>,
    /// The command's latest state, told again on every reconnection (a report sent while the
    /// gateway restarted would be lost).
    state: Arc<Mutex<Option<CommandState>>>,
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
            state: Arc::new(Mutex::new(None)),
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

    fn status_sink(&mut self) -> Arc<dyn StatusSink> {
        Arc::new(GatewayStatus {
            id: self.id.clone(),
            socket: self.socket.clone(),
            state: self.state.clone(),
        })
    }

    fn follow(mut self: Box<Self>, reloader: Reloader) -> BoxFuture<'static, ()> {
        let rx = self.rx.take();
        Box::pin(async move {
            if let Some(rx) = rx {
                tokio::spawn(push_events(self.socket.clone(), rx));
            }
            if let Some(execs) = reloader.execs.clone() {
                tokio::spawn(control_loop(self.socket.clone(), self.id.clone(), execs));
            }
            follow_gateway(*self, reloader).await;
        })
    }
}

/// Sends event batches to the gateway, reconnecting when it goes away. A batch is kept until
/// the gateway acknowledges it (one `PushAck` per batch, in order, once stored) and whatever
/// is unacknowledged when a connection breaks is sent again on the next one: a batch written
/// into a connection the gateway had just died on used to be lost. (A batch the gateway stored
/// just before dying, without acknowledging it, can arrive twice.)
async fn push_events(socket: PathBuf, mut rx: mpsc::Receiver<Vec<Event>>) {
    let mut unacked: std::collections::VecDeque<Vec<Event>> = std::collections::VecDeque::new();
    loop {
        let Ok(channel) = openshell_proto::transport::unix_channel(&socket).await else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        let mut client = SupervisorClient::new(channel);
        // Unbounded only in name: at most PENDING_BATCHES are ever unacknowledged.
        let (stream_tx, stream_rx) = mpsc::unbounded_channel::<EventBatch>();
        for batch in &unacked {
            let _ = stream_tx.send(EventBatch {
                events: batch.clone(),
            });
        }
        let call = client
            .push_events(tokio_stream::wrappers::UnboundedReceiverStream::new(
                stream_rx,
            ))
            .await;
        let Ok(acks) = call else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        let mut acks = acks.into_inner();
        loop {
            tokio::select! {
                // While the gateway is this far behind, new batches wait in `rx` (and beyond
                // its capacity the sink drops them, as before).
                batch = rx.recv(), if unacked.len() < PENDING_BATCHES => {
                    let Some(batch) = batch else {
                        // The sandbox is ending: close the stream and let the gateway store
                        // the rest.
                        drop(stream_tx);
                        while let Ok(Some(_)) = acks.message().await {}
                        return;
                    };
                    if stream_tx.send(EventBatch { events: batch.clone() }).is_err() {
                        unacked.push_back(batch);
                        break;
                    }
                    unacked.push_back(batch);
                }
                ack = acks.message() => match ack {
                    Ok(Some(_)) => {
                        unacked.pop_front();
                    }
                    _ => break,
                },
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Acknowledges the starting revision, then applies and acknowledges every new one.
async fn follow_gateway(m: Managed, reloader: Reloader) {
    let mut gateway_rev = m.registered.revision;
    // The revision in force (a refused one never is).
    let mut enforced = m.registered.revision;
    loop {
        let Ok(channel) = openshell_proto::transport::unix_channel(&m.socket).await else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        let mut client = SupervisorClient::new(channel);
        // On every (re)connection, not only the first: an ack sent as the gateway died was
        // lost, and a restarted gateway would otherwise never learn what this sandbox enforces.
        let _ = client
            .ack_policy(PolicyAck {
                sandbox_id: m.id.clone(),
                revision: enforced,
                ok: true,
                error: String::new(),
            })
            .await;
        let state = m.state.lock().ok().and_then(|s| s.clone());
        if let Some(state) = state {
            let _ = client.report_status(report_of(&m.id, &state)).await;
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
            if outcome.is_ok() {
                enforced = update.revision;
            }
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

/// Tells the gateway the command's state.
struct GatewayStatus {
    id: String,
    socket: PathBuf,
    state: Arc<Mutex<Option<CommandState>>>,
}

impl StatusSink for GatewayStatus {
    fn report(&self, state: CommandState) -> BoxFuture<'static, ()> {
        if let Ok(mut s) = self.state.lock() {
            *s = Some(state.clone());
        }
        let (socket, report) = (self.socket.clone(), report_of(&self.id, &state));
        // Until delivered: the caller bounds the wait, and a gateway that is away hears it
        // again when `follow_gateway` reconnects.
        Box::pin(async move {
            loop {
                if let Ok(channel) = openshell_proto::transport::unix_channel(&socket).await
                    && SupervisorClient::new(channel)
                        .report_status(report.clone())
                        .await
                        .is_ok()
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    }
}

fn report_of(id: &str, state: &CommandState) -> StatusReport {
    let (phase, reason, exit_code) = match state {
        CommandState::Running => (Phase::Ready, String::new(), 0),
        CommandState::Exited(code) => (
            Phase::Stopped,
            format!("command exited with status {code}"),
            *code,
        ),
        CommandState::Failed(why) => (Phase::Failed, why.clone(), 0),
    };
    StatusReport {
        sandbox_id: id.to_string(),
        phase: phase.into(),
        reason,
        exit_code,
        pid: std::process::id(),
    }
}

/// Hands batches to the push task. When the gateway is behind, the writer thread waits here
/// (it is its own thread: the proxy never waits on it), events gather in the sandbox's
/// bounded queue, and the next batch carries them all: a flood is coalesced into large
/// batches rather than dropped a small batch at a time. Only beyond that queue are events
/// dropped, and counted.
struct GatewaySink {
    tx: mpsc::Sender<Vec<Event>>,
    socket: String,
}

impl Sink for GatewaySink {
    fn write(&mut self, batch: &[Event]) {
        // In chunks: a flood gathers thousands of events in one write, and a batch over the
        // gateway's request limit would be refused, then resent, forever.
        for chunk in batch.chunks(BATCH_EVENTS) {
            // Fails only when the push task is gone (the sandbox is ending).
            if self.tx.blocking_send(chunk.to_vec()).is_err() {
                return;
            }
        }
    }

    fn describe(&self) -> String {
        format!("the gateway at {}", self.socket)
    }
}

/// Serves the gateway's requests to run commands in the sandbox (`sandbox exec`, upload,
/// download), reconnecting when the gateway goes away.
async fn control_loop(
    socket: PathBuf,
    id: String,
    execs: std::sync::Arc<crate::sandbox::exec::Execs>,
) {
    use openshell_proto::pb::{ControlUp, ExecExit, control_down, control_up};
    use std::collections::HashMap;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    loop {
        let Ok(channel) = openshell_proto::transport::unix_channel(&socket).await else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        let mut client = SupervisorClient::new(channel);
        let (up, up_rx) = mpsc::channel::<ControlUp>(64);
        let _ = up
            .send(ControlUp {
                channel: 0,
                frame: Some(control_up::Frame::HelloSandboxId(id.clone())),
            })
            .await;
        let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(up_rx));
        if let Ok(v) = id.parse() {
            request.metadata_mut().insert("openshell-sandbox", v);
        }
        let Ok(resp) = client.control(request).await else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        let mut down = resp.into_inner();
        let mut stdins: HashMap<u64, tokio::net::unix::pipe::Sender> = HashMap::new();
        while let Ok(Some(msg)) = down.message().await {
            let ch = msg.channel;
            match msg.frame {
                Some(control_down::Frame::Exec(start)) => {
                    let cwd = (!start.workdir.is_empty()).then(|| start.workdir.clone());
                    match execs.exec(start.command.clone(), start.env.into_iter().collect(), cwd) {
                        Ok(running) => {
                            stdins.insert(ch, running.stdin);
                            let up = up.clone();
                            tokio::spawn(async move {
                                let pump =
                                    |mut r: tokio::net::unix::pipe::Receiver, stderr: bool| {
                                        let up = up.clone();
                                        async move {
                                            let mut buf = vec![0u8; 32 * 1024];
                                            while let Ok(n) = r.read(&mut buf).await {
                                                if n == 0 {
                                                    break;
                                                }
                                                let data = buf[..n].to_vec();
                                                let frame = if stderr {
                                                    control_up::Frame::Stderr(data)
                                                } else {
                                                    control_up::Frame::Stdout(data)
                                                };
                                                if up
                                                    .send(ControlUp {
                                                        channel: ch,
                                                        frame: Some(frame),
                                                    })
                                                    .await
                                                    .is_err()
                                                {
                                                    break;
                                                }
                                            }
                                        }
                                    };
                                tokio::join!(
                                    pump(running.stdout, false),
                                    pump(running.stderr, true)
                                );
                                let frame = match running.exit.await {
                                    Ok(Ok(code)) => {
                                        control_up::Frame::Exit(ExecExit { code, signal: 0 })
                                    }
                                    Ok(Err(e)) => control_up::Frame::Error(e),
                                    Err(_) => control_up::Frame::Error("the sandbox ended".into()),
                                };
                                let _ = up
                                    .send(ControlUp {
                                        channel: ch,
                                        frame: Some(frame),
                                    })
                                    .await;
                            });
                        }
                        Err(e) => {
                            let _ = up
                                .send(ControlUp {
                                    channel: ch,
                                    frame: Some(control_up::Frame::Error(format!(
                                        "cannot start the command: {e}"
                                    ))),
                                })
                                .await;
                        }
                    }
                }
                Some(control_down::Frame::Stdin(data)) => {
                    if let Some(w) = stdins.get_mut(&ch)
                        && w.write_all(&data).await.is_err()
                    {
                        stdins.remove(&ch);
                    }
                }
                Some(control_down::Frame::StdinEof(_)) => {
                    stdins.remove(&ch);
                }
                _ => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
