//! The service supervisors call: register, follow policy revisions, acknowledge them, push
//! events and report status. Only reachable on the gateway's socket, never from a sandbox.

use crate::app::{App, status};
use crate::store::Phase;
use futures::{Stream, StreamExt};
use openshell_proto::pb::{self, supervisor_server::Supervisor};
use std::pin::Pin;
use std::sync::Arc;
use tonic::{Request, Response, Status, Streaming};

type Stream_<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

pub struct SupervisorApi {
    pub app: Arc<App>,
}

#[tonic::async_trait]
impl Supervisor for SupervisorApi {
    async fn register(
        &self,
        r: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        let req = r.into_inner();
        let app = self.app.clone();
        let name = req.sandbox_id.clone();
        let (row, rev) = tokio::task::spawn_blocking(move || {
            let store = app.store();
            let row = store.get_sandbox(&name).map_err(status)?;
            let rev = store.get_revision(&name, None).map_err(status)?;
            Ok::<_, Status>((row, rev))
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))??;
        let session = self.app.session(&row.name);
        if session.policy.borrow().0 < rev.rev as u64 {
            session
                .policy
                .send_replace((rev.rev as u64, rev.text.clone()));
        }
        self.app.event(
            &row.name,
            "info",
            "lifecycle",
            format!(
                "supervisor registered (pid {}, version {})",
                req.pid, req.version
            ),
        );
        Ok(Response::new(pb::RegisterResponse {
            name: row.name.clone(),
            revision: rev.rev as u64,
            policy_yaml: rev.text,
            command: row.command.clone(),
            env: row.env.clone().into_iter().collect(),
            workdir: row.workdir.clone(),
            upstream_ca_pem: String::new(),
            resolve: Default::default(),
        }))
    }

    type WatchPolicyStream = Stream_<pb::PolicyUpdate>;

    async fn watch_policy(
        &self,
        r: Request<pb::WatchPolicyRequest>,
    ) -> Result<Response<Self::WatchPolicyStream>, Status> {
        let req = r.into_inner();
        let mut rx = self.app.session(&req.sandbox_id).policy.subscribe();
        let mut sent = req.after_revision;
        let (tx, out) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            loop {
                let update = {
                    let (rev, text) = &*rx.borrow_and_update();
                    (*rev > sent).then(|| pb::PolicyUpdate {
                        revision: *rev,
                        policy_yaml: text.clone(),
                    })
                };
                if let Some(u) = update {
                    sent = u.revision;
                    if tx.send(Ok(u)).await.is_err() {
                        return;
                    }
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(out),
        )))
    }

    async fn ack_policy(&self, r: Request<pb::PolicyAck>) -> Result<Response<pb::Empty>, Status> {
        let a = r.into_inner();
        let app = self.app.clone();
        tokio::task::spawn_blocking(move || app.ack(&a.sandbox_id, a.revision, a.ok, &a.error))
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(pb::Empty {}))
    }

    type PushEventsStream = Stream_<pb::PushAck>;

    async fn push_events(
        &self,
        r: Request<Streaming<pb::EventBatch>>,
    ) -> Result<Response<Self::PushEventsStream>, Status> {
        let mut incoming = r.into_inner();
        let app = self.app.clone();
        let (tx, out) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            let mut acked = 0u64;
            while let Some(Ok(batch)) = incoming.next().await {
                let app = app.clone();
                let mut events = batch.events;
                for e in &mut events {
                    // What the supervisor says of itself: the source is not its to choose.
                    e.source = "sandbox".into();
                    e.seq = 0;
                }
                let n = tokio::task::spawn_blocking(move || app.ingest(events))
                    .await
                    .unwrap_or(0);
                acked += n as u64;
                if tx.send(Ok(pb::PushAck { acked })).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(out),
        )))
    }

    async fn report_status(
        &self,
        r: Request<pb::StatusReport>,
    ) -> Result<Response<pb::Empty>, Status> {
        let s = r.into_inner();
        let phase = match pb::Phase::try_from(s.phase) {
            Ok(pb::Phase::Ready) => Phase::Ready,
            Ok(pb::Phase::Stopped) => Phase::Stopped,
            Ok(pb::Phase::Failed) => Phase::Failed,
            _ => {
                return Err(Status::invalid_argument(
                    "a status report is ready, stopped or failed",
                ));
            }
        };
        let app = self.app.clone();
        tokio::task::spawn_blocking(move || {
            let code = (phase == Phase::Stopped).then_some(s.exit_code);
            app.command_status(&s.sandbox_id, phase, &s.reason, code)
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))??;
        Ok(Response::new(pb::Empty {}))
    }

    type ControlStream = Stream_<pb::ControlDown>;

    async fn control(
        &self,
        r: Request<Streaming<pb::ControlUp>>,
    ) -> Result<Response<Self::ControlStream>, Status> {
        // The sandbox is named in the request's metadata: the response must not wait for a
        // first message (a client may not send one before it sees the response).
        let Some(name) = r
            .metadata()
            .get("openshell-sandbox")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
        else {
            return Err(Status::invalid_argument(
                "a control stream names its sandbox in `openshell-sandbox` metadata",
            ));
        };
        let mut incoming = r.into_inner();
        let (down_tx, down_rx) = tokio::sync::mpsc::channel(64);
        let link = crate::control::Link::new(down_tx);
        self.app.links.set(&name, link.clone());
        tokio::spawn(async move {
            while let Some(Ok(up)) = incoming.next().await {
                link.route(up).await;
            }
        });
        let out = tokio_stream::wrappers::ReceiverStream::new(down_rx).map(Ok);
        Ok(Response::new(Box::pin(out)))
    }
}
