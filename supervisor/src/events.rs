//! Where the supervisor's events go: JSON lines (DESIGN §5) to a log file, or to the gateway
//! in managed mode. Emitting never blocks the proxy: events queue to a writer task.

use openshell_proto::event::{now_rfc3339, write_json};
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
    /// The writer thread, woken early by [`Events::finish`].
    writer: Arc<std::sync::OnceLock<std::thread::Thread>>,
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
                writer: Arc::default(),
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
        if let Some(t) = self.writer.get() {
            t.unpark();
        }
    }
}

/// Writes every event as one JSON line, on its own thread so a slow disk never stalls the
/// proxy, until [`Events::finish`] or until every handle is gone.
pub fn spawn_writer(
    events: &Events,
    mut rx: mpsc::Receiver<Event>,
    mut sink: Box<dyn Sink>,
) -> std::thread::JoinHandle<()> {
    let finishing = events.finishing.clone();
    let writer = events.writer.clone();
    std::thread::spawn(move || {
        let _ = writer.set(std::thread::current());
        let mut batch = Vec::with_capacity(1024);
        while let Some(e) = rx.blocking_recv() {
            // Let a burst gather: one wake-up and one write per batch, not per event, so a
            // busy proxy does not pay a thread switch for every request it logs. One sleep
            // for the window (not a wake-up every millisecond); `finish` cuts it short.
            let gather = std::time::Instant::now();
            while !finishing.load(std::sync::atomic::Ordering::Relaxed) {
                let waited = gather.elapsed();
                if waited >= BATCH_WINDOW {
                    break;
                }
                std::thread::park_timeout(BATCH_WINDOW - waited);
            }
            batch.clear();
            let mut stop = e.kind == STOP;
            if !stop {
                batch.push(e);
            }
            loop {
                match rx.try_recv() {
                    Ok(e) if e.kind == STOP => stop = true,
                    Ok(e) => batch.push(e),
                    Err(_) => break,
                }
            }
            if !batch.is_empty() {
                sink.write(&batch);
            }
            if stop {
                return;
            }
        }
    })
}

/// Where batches of events end up: a log file (standalone) or the gateway (managed).
pub trait Sink: Send {
    fn write(&mut self, batch: &[Event]);
    /// Where it writes, for messages.
    fn describe(&self) -> String;
}

/// JSON lines (DESIGN §5) to a file, or to standard output when the file cannot be written.
pub struct LogSink {
    out: Box<dyn Write + Send>,
    shown: String,
    buf: Vec<u8>,
}

impl LogSink {
    pub fn open(path: &Path) -> LogSink {
        let (out, shown) = open_log(path);
        LogSink {
            out,
            shown: shown
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "stdout".into()),
            buf: Vec::with_capacity(64 * 1024),
        }
    }
}

impl Sink for LogSink {
    fn write(&mut self, batch: &[Event]) {
        self.buf.clear();
        for e in batch {
            push_line(&mut self.buf, e);
        }
        let _ = self.out.write_all(&self.buf);
        let _ = self.out.flush();
    }

    fn describe(&self) -> String {
        self.shown.clone()
    }
}

fn push_line(buf: &mut Vec<u8>, e: &Event) {
    write_json(e, buf);
    buf.push(b'\n');
}
