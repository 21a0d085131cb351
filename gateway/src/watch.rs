//! One watcher's event stream: the backlog, then live events as they are stored.
//!
//! Live events come through the hub's broadcast channel. A watcher too slow for it (its
//! client reads slowly, or a burst outruns it) is told it lagged; it then subscribes again and
//! reads what it missed from the store by seq, so it never loses an event while the gateway
//! lives (unless retention deleted it first). Seqs it has passed are dropped, so each event
//! arrives once, in seq order.

use crate::app::{App, status};
use crate::store::EventQuery;
use openshell_proto::pb;
use std::sync::Arc;
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};
use tokio::sync::mpsc;
use tonic::Status;

/// Events per batch sent to a watcher.
const BATCH: usize = 512;
/// Events read from the store per query while catching up.
const PAGE: usize = 4096;

pub struct Follower {
    pub app: Arc<App>,
    pub filter: pb::EventFilter,
    pub since: Option<time::OffsetDateTime>,
    /// The same filter, for the store.
    pub query: EventQuery,
    /// The largest seq this watcher has dealt with (sent, or passed over by the filter).
    pub cursor: u64,
    pub tx: mpsc::Sender<Result<pb::EventBatch, Status>>,
}

/// Why a watcher's stream ends early.
enum Stop {
    /// The watcher went away.
    Gone,
    /// The store failed; the watcher is told why.
    Failed(Status),
}

impl Follower {
    pub async fn run(
        mut self,
        backlog: Vec<pb::Event>,
        mut live: broadcast::Receiver<Arc<pb::Event>>,
    ) {
        for chunk in backlog.chunks(BATCH) {
            if self.send(chunk.to_vec()).await.is_err() {
                return;
            }
        }
        if !self.filter.follow {
            return;
        }
        loop {
            let mut batch = Vec::new();
            let mut lagged = match live.recv().await {
                Ok(e) => {
                    self.take(&e, &mut batch);
                    false
                }
                Err(RecvError::Lagged(_)) => true,
                Err(RecvError::Closed) => return,
            };
            while !lagged && batch.len() < BATCH {
                match live.try_recv() {
                    Ok(e) => self.take(&e, &mut batch),
                    Err(TryRecvError::Lagged(_)) => lagged = true,
                    Err(_) => break,
                }
            }
            if !batch.is_empty() && self.send(batch).await.is_err() {
                return;
            }
            if lagged {
                // Subscribe again first: whatever is stored from now on comes through the new
                // receiver, and the store has everything before it.
                live = self.app.hub.subscribe();
                match self.catch_up().await {
                    Ok(()) => {}
                    Err(Stop::Gone) => return,
                    Err(Stop::Failed(e)) => {
                        let _ = self.tx.send(Err(e)).await;
                        return;
                    }
                }
            }
        }
    }

    /// Adds `e` to `batch` if it is new to this watcher and passes its filter.
    fn take(&mut self, e: &pb::Event, batch: &mut Vec<pb::Event>) {
        if e.seq <= self.cursor {
            return;
        }
        self.cursor = e.seq;
        if matches(&self.filter, self.since, e) {
            batch.push(e.clone());
        }
    }

    async fn send(&self, events: Vec<pb::Event>) -> Result<(), Stop> {
        self.tx
            .send(Ok(pb::EventBatch { events }))
            .await
            .map_err(|_| Stop::Gone)
    }

    /// Sends the stored events past the cursor, page by page, until none are left.
    async fn catch_up(&mut self) -> Result<(), Stop> {
        loop {
            let app = self.app.clone();
            let q = EventQuery {
                after_seq: Some(self.cursor),
                limit: Some(PAGE),
                tail: false,
                ..self.query.clone()
            };
            let page = tokio::task::spawn_blocking(move || app.store().query_events(&q))
                .await
                .map_err(|e| Stop::Failed(Status::internal(format!("gateway task failed: {e}"))))?
                .map_err(|e| Stop::Failed(status(e)))?;
            let full = page.len() == PAGE;
            if let Some(last) = page.last() {
                self.cursor = self.cursor.max(last.seq);
            }
            for chunk in page.chunks(BATCH) {
                self.send(chunk.to_vec()).await?;
            }
            if !full {
                return Ok(());
            }
        }
    }
}

/// Whether `e` passes the watcher's filter (the same test the store's query makes).
pub fn matches(f: &pb::EventFilter, since: Option<time::OffsetDateTime>, e: &pb::Event) -> bool {
    (f.sandbox.is_empty() || f.sandbox == e.sandbox)
        && (f.source.is_empty() || f.source == e.source)
        && (f.kind.is_empty() || f.kind == e.kind)
        && (f.action.is_empty() || f.action == e.action)
        && (f.level.is_empty()
            || openshell_proto::event::level_rank(&e.level)
                >= openshell_proto::event::level_rank(&f.level))
        && since.is_none_or(|s| openshell_proto::event::parse_time(&e.time).is_none_or(|t| t >= s))
}
