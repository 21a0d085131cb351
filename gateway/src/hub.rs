//! Live events: every stored event is also published here for watchers that follow.
//!
//! Events are published in `seq` order (the store assigns seqs and publishes under one lock),
//! so a watcher can tell what it has seen by the last seq alone. A watcher that falls further
//! behind than the backlog is told it lagged and resumes from the store (see `api`).

use openshell_proto::pb::Event;
use std::sync::Arc;
use tokio::sync::broadcast;

/// Events a slow watcher may lag behind before it must catch up from the store.
pub const BACKLOG: usize = 16 * 1024;

#[derive(Clone)]
pub struct Hub {
    tx: broadcast::Sender<Arc<Event>>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new(BACKLOG)
    }
}

impl Hub {
    /// A hub keeping `backlog` events for slow watchers (at least 1).
    pub fn new(backlog: usize) -> Self {
        Hub {
            tx: broadcast::channel(backlog.max(1)).0,
        }
    }

    pub fn publish(&self, e: Event) {
        let _ = self.tx.send(Arc::new(e));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }
}
