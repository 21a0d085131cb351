//! Live events: every stored event is also published here for watchers that follow.

use openshell_proto::pb::Event;
use std::sync::Arc;
use tokio::sync::broadcast;

/// Events a slow watcher may lag behind before it is told it missed some.
const BACKLOG: usize = 16 * 1024;

#[derive(Clone)]
pub struct Hub {
    tx: broadcast::Sender<Arc<Event>>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub {
            tx: broadcast::channel(BACKLOG).0,
        }
    }
}

impl Hub {
    pub fn publish(&self, e: Event) {
        let _ = self.tx.send(Arc::new(e));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }
}
