//! The user-facing gRPC service (CLI, TUI): sandboxes, policy, events, denials, providers.

use crate::app::{App, load_policy, status};
use crate::store::{EventQuery, Provider};
use futures::Stream;
use openshell_proto::pb::{self, gateway_server::Gateway};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tonic::{Request, Response, Status, Streaming};

type Stream_<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

const DEFAULT_WAIT: Duration = Duration::from_secs(10);

pub struct Api {
    pub app: Arc<App>,
}

fn wait_of(wait: bool, ms: u32) -> Option<Duration> {
    wait.then(|| {
        if ms == 0 {
            DEFAULT_WAIT
        } else {
            Duration::from_millis(ms.into())
        }
    })
}

/// Runs blocking store work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Status> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("gateway task failed: {e}")))?
}

#[tonic::async_trait]
impl Gateway for Api {
    async fn health(&self, _: Request<pb::Empty>) -> Result<Response<pb::HealthResponse>, Status> {
        let app = self.app.clone();
        let count = blocking(move || app.list().map(|v| v.len())).await?;
        Ok(Response::new(pb::HealthResponse {
            version: env!("CARGO_PKG_VERSION").into(),
            listen: self.app.settings.listen.clone(),
            pid: std::process::id(),
            uptime_secs: self.app.settings.started.elapsed().as_secs(),
            sandbox_count: count as u32,
            state_dir: self.app.settings.state_dir.display().to_string(),
            listen_tcp: self.app.settings.listen_tcp.clone().unwrap_or_default(),
        }))
    }

    async fn create_sandbox(
        &self,
        r: Request<pb::CreateSandboxRequest>,
    ) -> Result<Response<pb::Sandbox>, Status> {
        let app = self.app.clone();
        let req = r.into_inner();
        blocking(move || app.create(req)).await.map(Response::new)
    }

    async fn list_sandboxes(
        &self,
        _: Request<pb::ListSandboxesRequest>,
    ) -> Result<Response<pb::ListSandboxesResponse>, Status> {
        let app = self.app.clone();
        let sandboxes = blocking(move || app.list()).await?;
        Ok(Response::new(pb::ListSandboxesResponse { sandboxes }))
    }

    async fn get_sandbox(
        &self,
        r: Request<pb::GetSandboxRequest>,
    ) -> Result<Response<pb::Sandbox>, Status> {
        let app = self.app.clone();
        let name = r.into_inner().name;
        blocking(move || app.get(&name)).await.map(Response::new)
    }

    async fn delete_sandbox(
        &self,
        r: Request<pb::DeleteSandboxRequest>,
    ) -> Result<Response<pb::DeleteSandboxResponse>, Status> {
        let app = self.app.clone();
        let req = r.into_inner();
        blocking(move || {
            if !req.all {
                app.delete(&req.name)?;
                return Ok(pb::DeleteSandboxResponse {
                    deleted: vec![req.name],
                    failures: Vec::new(),
                });
            }
            // One sandbox that cannot be deleted must not keep the rest running.
            let mut resp = pb::DeleteSandboxResponse::default();
            for s in app.list()? {
                match app.delete(&s.name) {
                    Ok(()) => resp.deleted.push(s.name),
                    Err(e) => resp.failures.push(format!("{}: {}", s.name, e.message())),
                }
            }
            Ok(resp)
        })
        .await
        .map(Response::new)
    }

    type WatchSandboxesStream = Stream_<pb::SandboxChange>;

    async fn watch_sandboxes(
        &self,
        _: Request<pb::WatchSandboxesRequest>,
    ) -> Result<Response<Self::WatchSandboxesStream>, Status> {
        let app = self.app.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        tokio::spawn(async move {
            // A snapshot first, then a new one whenever anything a table shows has changed.
            // The gateway compares its own state every 200 ms (cheap, local); watchers get
            // pushed changes and never poll.
            let mut last: Option<Vec<pb::Sandbox>> = None;
            loop {
                let app2 = app.clone();
                let now = match tokio::task::spawn_blocking(move || app2.list()).await {
                    Ok(Ok(v)) => v,
                    _ => return,
                };
                if last.as_ref() != Some(&now) {
                    let change = pb::SandboxChange {
                        kind: pb::sandbox_change::Kind::Snapshot.into(),
                        sandboxes: now.clone(),
                    };
                    if tx.send(Ok(change)).await.is_err() {
                        return;
                    }
                    last = Some(now);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    type ExecSandboxStream = Stream_<pb::ExecOutput>;

    async fn exec_sandbox(
        &self,
        r: Request<Streaming<pb::ExecInput>>,
    ) -> Result<Response<Self::ExecSandboxStream>, Status> {
        use futures::StreamExt;
        use pb::{control_down, control_up, exec_input, exec_output};
        let mut input = r.into_inner();
        let Some(Ok(pb::ExecInput {
            frame: Some(exec_input::Frame::Start(start)),
        })) = input.next().await
        else {
            return Err(Status::invalid_argument(
                "an exec starts with the command to run",
            ));
        };
        if start.command.is_empty() {
            return Err(Status::invalid_argument(
                "exec needs a command: openshell sandbox exec NAME -- CMD",
            ));
        }
        let app = self.app.clone();
        let name = start.sandbox.clone();
        let row = blocking(move || app.store().get_sandbox(&name).map_err(status)).await?;
        // A sandbox that just became ready may still be connecting its exec channel.
        let mut link = self.app.links.get(&row.name);
        for _ in 0..200 {
            if link.is_some()
                || !matches!(
                    row.phase,
                    crate::store::Phase::Ready | crate::store::Phase::Provisioning
                )
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            link = self.app.links.get(&row.name);
        }
        let Some(link) = link else {
            return Err(Status::failed_precondition(format!(
                "sandbox {} is {} and its supervisor is not connected; exec needs a running sandbox",
                row.name,
                row.phase.as_str()
            )));
        };
        let (channel, mut up) = link.open();
        link.down
            .send(pb::ControlDown {
                channel,
                frame: Some(control_down::Frame::Exec(start)),
            })
            .await
            .map_err(|_| Status::unavailable("the sandbox's supervisor went away"))?;
        let to_sandbox = link.clone();
        tokio::spawn(async move {
            while let Some(Ok(pb::ExecInput { frame: Some(f) })) = input.next().await {
                let frame = match f {
                    exec_input::Frame::Stdin(b) => control_down::Frame::Stdin(b),
                    exec_input::Frame::StdinEof(e) => control_down::Frame::StdinEof(e),
                    exec_input::Frame::Signal(s) => control_down::Frame::Signal(s),
                    exec_input::Frame::Start(_) => continue,
                };
                if to_sandbox
                    .down
                    .send(pb::ControlDown {
                        channel,
                        frame: Some(frame),
                    })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            // The caller finished sending: the command's stdin ends.
            let _ = to_sandbox
                .down
                .send(pb::ControlDown {
                    channel,
                    frame: Some(control_down::Frame::StdinEof(pb::Empty {})),
                })
                .await;
        });
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<pb::ExecOutput, Status>>(64);
        tokio::spawn(async move {
            while let Some(msg) = up.recv().await {
                let (out, last) = match msg.frame {
                    Some(control_up::Frame::Stdout(b)) => {
                        (Ok(exec_output::Frame::Stdout(b)), false)
                    }
                    Some(control_up::Frame::Stderr(b)) => {
                        (Ok(exec_output::Frame::Stderr(b)), false)
                    }
                    Some(control_up::Frame::Exit(e)) => (Ok(exec_output::Frame::Exit(e)), true),
                    Some(control_up::Frame::Error(e)) => {
                        (Err(Status::failed_precondition(e)), true)
                    }
                    _ => continue,
                };
                let sent = tx
                    .send(out.map(|f| pb::ExecOutput { frame: Some(f) }))
                    .await;
                if last || sent.is_err() {
                    break;
                }
            }
            link.close(channel);
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn set_policy(
        &self,
        r: Request<pb::SetPolicyRequest>,
    ) -> Result<Response<pb::SetPolicyResponse>, Status> {
        let req = r.into_inner();
        let source = if req.source_name.is_empty() {
            "policy".to_string()
        } else {
            req.source_name.clone()
        };
        let author = if req.author.is_empty() {
            "cli".to_string()
        } else {
            req.author.clone()
        };
        self.app
            .set_policy(
                &req.sandbox,
                &req.policy_yaml,
                &source,
                &author,
                wait_of(req.wait, req.wait_timeout_ms),
            )
            .await
            .map(Response::new)
    }

    async fn get_policy(
        &self,
        r: Request<pb::GetPolicyRequest>,
    ) -> Result<Response<pb::PolicyRevision>, Status> {
        let app = self.app.clone();
        let req = r.into_inner();
        blocking(move || {
            let store = app.store();
            let row = store.get_sandbox(&req.sandbox).map_err(status)?;
            let rev = (req.revision != 0).then_some(req.revision as u32);
            let r = store.get_revision(&req.sandbox, rev).map_err(status)?;
            Ok(r.to_pb(row.enforced_revision))
        })
        .await
        .map(Response::new)
    }

    async fn policy_history(
        &self,
        r: Request<pb::PolicyHistoryRequest>,
    ) -> Result<Response<pb::PolicyHistoryResponse>, Status> {
        let app = self.app.clone();
        let name = r.into_inner().sandbox;
        blocking(move || {
            let store = app.store();
            let row = store.get_sandbox(&name).map_err(status)?;
            let revisions = store
                .history(&name)
                .map_err(status)?
                .iter()
                .map(|m| m.to_pb(&name, row.enforced_revision))
                .collect();
            Ok(pb::PolicyHistoryResponse { revisions })
        })
        .await
        .map(Response::new)
    }

    async fn diff_policy(
        &self,
        r: Request<pb::DiffPolicyRequest>,
    ) -> Result<Response<pb::DiffPolicyResponse>, Status> {
        let app = self.app.clone();
        let req = r.into_inner();
        blocking(move || {
            let store = app.store();
            let a = store
                .get_revision(&req.sandbox, Some(req.from as u32))
                .map_err(status)?;
            let b = store
                .get_revision(&req.sandbox, Some(req.to as u32))
                .map_err(status)?;
            let diff = openshell_proto::policy::diff::unified(
                &a.text,
                &b.text,
                &format!("revision {}", req.from),
                &format!("revision {}", req.to),
            );
            Ok(pb::DiffPolicyResponse { diff })
        })
        .await
        .map(Response::new)
    }

    async fn rollback_policy(
        &self,
        r: Request<pb::RollbackPolicyRequest>,
    ) -> Result<Response<pb::SetPolicyResponse>, Status> {
        let req = r.into_inner();
        let app = self.app.clone();
        let (name, rev) = (req.sandbox.clone(), req.revision as u32);
        let text = blocking(move || {
            app.store()
                .get_revision(&name, Some(rev))
                .map(|r| r.text)
                .map_err(status)
        })
        .await?;
        let author = if req.author.is_empty() {
            "cli".to_string()
        } else {
            req.author.clone()
        };
        self.app
            .set_policy(
                &req.sandbox,
                &text,
                &format!("rollback to revision {}", req.revision),
                &author,
                wait_of(req.wait, req.wait_timeout_ms),
            )
            .await
            .map(Response::new)
    }

    async fn validate_policy(
        &self,
        r: Request<pb::ValidatePolicyRequest>,
    ) -> Result<Response<pb::ValidatePolicyResponse>, Status> {
        let req = r.into_inner();
        let source = if req.source_name.is_empty() {
            "policy".to_string()
        } else {
            req.source_name.clone()
        };
        match openshell_proto::policy::load(&req.policy_yaml, &source) {
            Ok(loaded) => {
                let mut static_changes = Vec::new();
                if !req.sandbox.is_empty() {
                    let app = self.app.clone();
                    let name = req.sandbox.clone();
                    let cur =
                        blocking(move || app.store().get_revision(&name, None).map_err(status))
                            .await?;
                    let current = load_policy(&cur.text, "current")?;
                    let proposed =
                        openshell_proto::policy::inherit_static(&current, &loaded.policy);
                    static_changes = openshell_proto::policy::static_changes(&current, &proposed);
                }
                Ok(Response::new(pb::ValidatePolicyResponse {
                    ok: static_changes.is_empty(),
                    errors: Vec::new(),
                    static_changes,
                    warnings: loaded.findings.iter().map(ToString::to_string).collect(),
                }))
            }
            Err(errors) => Ok(Response::new(pb::ValidatePolicyResponse {
                ok: false,
                errors: errors
                    .0
                    .iter()
                    .map(|e| pb::PolicyError {
                        file: e.file.clone(),
                        line: e.line as u32,
                        column: e.column as u32,
                        field: e.field.clone(),
                        message: e.message.clone(),
                    })
                    .collect(),
                static_changes: Vec::new(),
                warnings: Vec::new(),
            })),
        }
    }

    type StreamEventsStream = Stream_<pb::EventBatch>;

    async fn stream_events(
        &self,
        r: Request<pb::EventFilter>,
    ) -> Result<Response<Self::StreamEventsStream>, Status> {
        let f = r.into_inner();
        if !f.sandbox.is_empty() {
            let app = self.app.clone();
            let name = f.sandbox.clone();
            blocking(move || app.store().get_sandbox(&name).map(|_| ()).map_err(status)).await?;
        }
        let since = if f.since.is_empty() {
            None
        } else {
            Some(parse_since(&f.since).ok_or_else(|| {
                Status::invalid_argument(format!(
                    "`{}` is not a time: use a duration like 5m, 2h, 1d or an RFC 3339 time",
                    f.since
                ))
            })?)
        };
        // Subscribe before reading the backlog, so nothing falls between the two.
        let live = self.app.hub.subscribe();
        let app = self.app.clone();
        let q = EventQuery {
            sandbox: (!f.sandbox.is_empty()).then(|| f.sandbox.clone()),
            source: (!f.source.is_empty()).then(|| f.source.clone()),
            min_level: (!f.level.is_empty()).then(|| f.level.clone()),
            kind: (!f.kind.is_empty()).then(|| f.kind.clone()),
            action: (!f.action.is_empty()).then(|| f.action.clone()),
            since,
            after_seq: None,
            limit: (f.tail > 0).then_some(f.tail as usize),
            tail: f.tail > 0,
        };
        let query = q.clone();
        // The backlog and the last seq stored are read under one lock: every event with a
        // larger seq is still to come through the hub.
        let (backlog, cursor) = blocking(move || {
            let store = app.store();
            let backlog = store.query_events(&query).map_err(status)?;
            let last = store.last_seq().map_err(status)?;
            Ok((backlog, last))
        })
        .await?;
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<pb::EventBatch, Status>>(64);
        let follower = crate::watch::Follower {
            app: self.app.clone(),
            filter: f,
            since,
            query: q,
            cursor,
            tx,
        };
        tokio::spawn(follower.run(backlog, live));
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn list_denials(
        &self,
        r: Request<pb::ListDenialsRequest>,
    ) -> Result<Response<pb::ListDenialsResponse>, Status> {
        let app = self.app.clone();
        let req = r.into_inner();
        blocking(move || {
            let rows = app
                .store()
                .list_denials(&req.sandbox, req.include_decided)
                .map_err(status)?;
            Ok(pb::ListDenialsResponse {
                denials: rows.iter().map(|d| d.to_pb()).collect(),
            })
        })
        .await
        .map(Response::new)
    }

    async fn approve_denial(
        &self,
        r: Request<pb::DenialDecisionRequest>,
    ) -> Result<Response<pb::SetPolicyResponse>, Status> {
        let req = r.into_inner();
        let id: u64 = req.id.parse().map_err(|_| {
            Status::invalid_argument(format!(
                "`{}` is not a denial id (see `openshell policy denials`)",
                req.id
            ))
        })?;
        let app = self.app.clone();
        let name = req.sandbox.clone();
        let (row, current) = blocking(move || {
            let store = app.store();
            let row = store.get_denial(&name, id).map_err(status)?;
            let cur = store.get_revision(&name, None).map_err(status)?;
            Ok((row, cur.text))
        })
        .await?;
        if row.proposal_yaml.trim().is_empty() {
            return Err(Status::failed_precondition(format!(
                "denial {id} has no policy change that could allow it (a direct connection or an unidentified program)"
            )));
        }
        let current = load_policy(&current, "current")?;
        let fragment = load_policy(&row.proposal_yaml, "proposal")?;
        let merged = openshell_proto::policy::merge(&current, &fragment);
        let author = if req.author.is_empty() {
            "approve".to_string()
        } else {
            req.author.clone()
        };
        let resp = self
            .app
            .set_policy(
                &req.sandbox,
                &openshell_proto::policy::to_yaml(&merged),
                &format!("approved denial {id}"),
                &author,
                wait_of(req.wait, req.wait_timeout_ms),
            )
            .await?;
        let app = self.app.clone();
        let name = req.sandbox.clone();
        let rev = resp.revision as u32;
        blocking(move || {
            app.store()
                .mark_approved(&name, id, rev)
                .map(|_| ())
                .map_err(status)
        })
        .await?;
        Ok(Response::new(resp))
    }

    async fn reject_denial(
        &self,
        r: Request<pb::DenialDecisionRequest>,
    ) -> Result<Response<pb::Denial>, Status> {
        let req = r.into_inner();
        let id: u64 = req.id.parse().map_err(|_| {
            Status::invalid_argument(format!(
                "`{}` is not a denial id (see `openshell policy denials`)",
                req.id
            ))
        })?;
        let app = self.app.clone();
        blocking(move || {
            app.store()
                .reject_denial(&req.sandbox, id)
                .map(|d| d.to_pb())
                .map_err(status)
        })
        .await
        .map(Response::new)
    }

    async fn create_provider(
        &self,
        r: Request<pb::Provider>,
    ) -> Result<Response<pb::Provider>, Status> {
        let p = r.into_inner();
        if p.name.is_empty() {
            return Err(Status::invalid_argument("a provider needs a name"));
        }
        let app = self.app.clone();
        blocking(move || {
            let provider = Provider {
                name: p.name.clone(),
                kind: p.r#type.clone(),
                credentials: p.credentials.clone().into_iter().collect(),
                config: p.config.clone().into_iter().collect(),
                created_at: None,
            };
            let saved = app.store().put_provider(&provider).map_err(status)?;
            Ok(saved.to_pb_redacted())
        })
        .await
        .map(Response::new)
    }

    async fn list_providers(
        &self,
        _: Request<pb::Empty>,
    ) -> Result<Response<pb::ListProvidersResponse>, Status> {
        let app = self.app.clone();
        blocking(move || {
            let providers = app.store().list_providers().map_err(status)?;
            Ok(pb::ListProvidersResponse {
                providers: providers.iter().map(|p| p.to_pb_redacted()).collect(),
            })
        })
        .await
        .map(Response::new)
    }

    async fn get_provider(
        &self,
        r: Request<pb::GetProviderRequest>,
    ) -> Result<Response<pb::Provider>, Status> {
        let app = self.app.clone();
        let name = r.into_inner().name;
        blocking(move || {
            app.store()
                .get_provider(&name)
                .map(|p| p.to_pb_redacted())
                .map_err(status)
        })
        .await
        .map(Response::new)
    }

    async fn delete_provider(
        &self,
        r: Request<pb::GetProviderRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let app = self.app.clone();
        let name = r.into_inner().name;
        blocking(move || app.store().delete_provider(&name).map_err(status))
            .await
            .map(|()| Response::new(pb::Empty {}))
    }

    async fn set_inference(
        &self,
        r: Request<pb::InferenceConfig>,
    ) -> Result<Response<pb::InferenceConfig>, Status> {
        let c = r.into_inner();
        let app = self.app.clone();
        let saved = c.clone();
        blocking(move || {
            let mut store = app.store();
            store
                .put_setting("inference.provider", &saved.provider)
                .map_err(status)?;
            store
                .put_setting("inference.model", &saved.model)
                .map_err(status)
        })
        .await?;
        Ok(Response::new(c))
    }

    async fn get_inference(
        &self,
        _: Request<pb::Empty>,
    ) -> Result<Response<pb::InferenceConfig>, Status> {
        let app = self.app.clone();
        blocking(move || {
            let store = app.store();
            Ok(pb::InferenceConfig {
                provider: store
                    .get_setting("inference.provider")
                    .map_err(status)?
                    .unwrap_or_default(),
                model: store
                    .get_setting("inference.model")
                    .map_err(status)?
                    .unwrap_or_default(),
            })
        })
        .await
        .map(Response::new)
    }

    type OpenSessionStream = Stream_<pb::SessionFrame>;

    async fn open_session(
        &self,
        _: Request<Streaming<pb::SessionFrame>>,
    ) -> Result<Response<Self::OpenSessionStream>, Status> {
        Err(Status::unimplemented(
            "interactive sessions (sandbox connect, SSH) are not built yet",
        ))
    }
}

/// `5m`, `2h`, `1d`, `30s` (ago), or an RFC 3339 time.
pub fn parse_since(s: &str) -> Option<time::OffsetDateTime> {
    if let Some(t) = openshell_proto::event::parse_time(s) {
        return Some(t);
    }
    let d = humantime::parse_duration(s).ok()?;
    Some(time::OffsetDateTime::now_utc() - d)
}
