//! Where the supervisor's events go: JSON lines (DESIGN §5) to a log file, or to the gateway
//! in managed mode. Emitting never blocks the proxy: events queue to a writer task.

use openshell_proto::event::{now_rfc3339, to_json};
use openshell_proto::pb::Event;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Events waiting to be written; beyond this the newest are dropped and counted, so a flood
/// of denials cannot grow the supervisor's memory.
const QUEUE: usize = 16 * 1024;

/// The handle every part of the supervisor emits through.
#[derive(Clone)]
pub struct Events {
    sandbox: Arc<str>,
    tx: mpsc::Sender<Event>,
    dropped: Arc<std::sync::atomic::AtomicU64>,
}

impl Events {
    /// A handle and the receiving end for a writer.
    pub fn channel(sandbox: &str) -> (Events, mpsc::Receiver<Event>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (
            Events {
                sandbox: sandbox.into(),
                tx,
                dropped: Arc::default(),
            },
            rx,
        )
    }

    /// A new event of `kind` with the common fields filled in.
    pub fn event(&self, level: &str, kind: &str, action: &str) -> Event {
        Event {
            time: now_rfc3339(),
            sandbox: self.sandbox.to_string(),
            source: "sandbox".into(),
            level: level.into(),
            kind: kind.into(),
            action: action.into(),
            ..Event::default()
        }
    }

    pub fn emit(&self, e: Event) {
        if self.tx.try_send(e).is_err() {
            self.dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// A lifecycle or policy message.
    pub fn say(&self, level: &str, kind: &str, message: impl Into<String>) {
        let mut e = self.event(level, kind, "");
        e.message = message.into();
        self.emit(e);
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Opens the log: `path` if it can be appended to, else standard output (DESIGN §4).
pub fn open_log(path: &Path) -> (Box<dyn Write + Send>, Option<PathBuf>) {
    match std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        Ok(f) => (Box::new(f), Some(path.to_path_buf())),
        Err(_) => (Box::new(std::io::stdout()), None),
    }
}

/// Writes every event as one JSON line until all senders are gone, or until `stop` fires;
/// then writes what is still queued and returns.
pub async fn write_lines(
    mut rx: mpsc::Receiver<Event>,
    mut out: Box<dyn Write + Send>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let mut buf = Vec::with_capacity(64 * 1024);
    loop {
        let e = tokio::select! {
            e = rx.recv() => match e {
                Some(e) => e,
                None => return,
            },
            _ = &mut stop => {
                buf.clear();
                while let Ok(e) = rx.try_recv() {
                    push_line(&mut buf, &e);
                }
                let _ = out.write_all(&buf);
                let _ = out.flush();
                return;
            }
        };
        buf.clear();
        push_line(&mut buf, &e);
        // Drain what else is queued so a burst costs one write.
        while buf.len() < 60 * 1024 {
            match rx.try_recv() {
                Ok(e) => push_line(&mut buf, &e),
                Err(_) => break,
            }
        }
        let _ = out.write_all(&buf);
        let _ = out.flush();
    }
}

fn push_line(buf: &mut Vec<u8>, e: &Event) {
    let _ = serde_json::to_writer(&mut *buf, &to_json(e));
    buf.push(b'\n');
}
