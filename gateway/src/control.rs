//! The exec channel to each supervisor: the supervisor keeps one `Control` stream open, and
//! every `sandbox exec` (and upload/download) is a numbered channel multiplexed on it.

use openshell_proto::pb::{ControlDown, ControlUp};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

pub struct Link {
    pub down: mpsc::Sender<ControlDown>,
    channels: Mutex<HashMap<u64, mpsc::Sender<ControlUp>>>,
    next: AtomicU64,
}

impl Link {
    pub fn new(down: mpsc::Sender<ControlDown>) -> Arc<Link> {
        Arc::new(Link {
            down,
            channels: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
        })
    }

    /// A new channel and the receiver of its frames.
    pub fn open(&self) -> (u64, mpsc::Receiver<ControlUp>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(64);
        if let Ok(mut c) = self.channels.lock() {
            c.insert(id, tx);
        }
        (id, rx)
    }

    pub fn close(&self, id: u64) {
        if let Ok(mut c) = self.channels.lock() {
            c.remove(&id);
        }
    }

    /// Routes a frame from the supervisor to its channel.
    pub async fn route(&self, up: ControlUp) {
        let tx = self
            .channels
            .lock()
            .ok()
            .and_then(|c| c.get(&up.channel).cloned());
        if let Some(tx) = tx {
            let _ = tx.send(up).await;
        }
    }
}

/// The links of all connected supervisors, by sandbox name.
#[derive(Default)]
pub struct Links(Mutex<HashMap<String, Arc<Link>>>);

impl Links {
    pub fn set(&self, sandbox: &str, link: Arc<Link>) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(sandbox.to_string(), link);
        }
    }

    pub fn get(&self, sandbox: &str) -> Option<Arc<Link>> {
        self.0
            .lock()
            .ok()
            .and_then(|m| m.get(sandbox).cloned())
            .filter(|l| !l.down.is_closed())
    }
}
