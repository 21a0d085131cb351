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
    finishing: Arc<std::sync::atomic::AtomicBool>,
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
                finishing: Arc::default(),
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

/// How long the writer lets events gather before writing them.
const BATCH_WINDOW: std::time::Duration = std::time::Duration::from_millis(20);

/// The marker [`Events::finish`] sends: the writer drains what is queued and stops.
const STOP: &str = "\0stop";

impl Events {
    /// Asks the writer to write what is queued and stop (other handles may still exist).
    pub fn finish(&self) {
        self.finishing
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let e = Event {
            kind: STOP.into(),
            ..Event::default()
        };
        // Waits for room: the marker must not be dropped like an event in a flood.
        let _ = self.tx.blocking_send(e);
    }
}

/// Writes every event as one JSON line, on its own thread so a slow disk never stalls the
/// proxy, until [`Events::finish`] or until every handle is gone.
pub fn spawn_writer(
    events: &Events,
    mut rx: mpsc::Receiver<Event>,
    mut out: Box<dyn Write + Send>,
) -> std::thread::JoinHandle<()> {
    let finishing = events.finishing.clone();
    std::thread::spawn(move || {
        let mut buf = Vec::with_capacity(64 * 1024);
        while let Some(e) = rx.blocking_recv() {
            // Let a burst gather: one wake-up and one write per batch, not per event, so a
            // busy proxy does not pay a thread switch for every request it logs.
            let gather = std::time::Instant::now();
            while gather.elapsed() < BATCH_WINDOW
                && !finishing.load(std::sync::atomic::Ordering::Relaxed)
            {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            buf.clear();
            let mut stop = e.kind == STOP;
            if !stop {
                push_line(&mut buf, &e);
            }
            loop {
                match rx.try_recv() {
                    Ok(e) if e.kind == STOP => stop = true,
                    Ok(e) => push_line(&mut buf, &e),
                    Err(_) => break,
                }
            }
            let _ = out.write_all(&buf);
            let _ = out.flush();
            if stop {
                return;
            }
        }
    })
}

fn push_line(buf: &mut Vec<u8>, e: &Event) {
    let _ = serde_json::to_writer(&mut *buf, &to_json(e));
    buf.push(b'\n');
}
