//! `openshell term`'s figures (issue 5, "Figures"), without a terminal or a gateway: the real
//! state, renderer and event loop ([`App::run`]) drawing on ratatui's `TestBackend`, fed from
//! channels. Prints a table to paste into a closing note.
//!
//! ```text
//! cargo bench -p openshell --bench render                 # all three, plus criterion
//! cargo bench -p openshell --bench render -- rss render   # some of them
//! ```
//!
//! 1. `rss`: 1,000,000 events streamed through the log view: a feeder thread sends them in
//!    batches of 100 at up to 200,000 events/s into the loop's message channel while the logs
//!    tab is open, at most 20,000 ahead of the last frame (as a gRPC stream's flow control
//!    would hold the gateway back); VmRSS (and the peak, VmHWM) from /proc/self/status once
//!    the last one is drawn. Runs first, so the figure is not inflated by the others. Target
//!    ≤ 150 MB. Then again with a feeder that never waits, for information.
//! 2. `render`: one frame at 200×50 with 100,000 lines of history in the logs tab, following
//!    new lines (10 new ones before each frame, so every frame differs); p50/p99 over 2,000
//!    frames; also scrolled to the oldest line and with a text filter that matches one line in
//!    a thousand (every frame then searches the whole history), for information; then the
//!    following case again through criterion. Target p50 ≤ 2 ms.
//! 3. `latency`: the event loop under 20,000 events/s (batches of 100 every 5 ms) with 100,000
//!    lines already in the logs tab; a key every 30-70 ms, alternating `tab`/`shift-tab`
//!    (logs ↔ denials), then `k`/`G` (scroll back / follow). For each key: the time from
//!    sending it to the end of the first frame that shows it, and which frame that was among
//!    those started after the key was sent (1 = the next frame). Target: the next frame.

use criterion::Criterion;
use crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};
use openshell::term::keymap::Keymap;
use openshell::term::state::{Msg, SandboxView, State, Tab};
use openshell::term::theme::Theme;
use openshell::term::ui;
use openshell::term::{App, FrameInfo};
use openshell_proto::pb;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;

const SANDBOX: &str = "agent";
const HISTORY: u64 = 100_000;

/// A realistic log line's event: mostly allowed requests, one in eight a denial, some
/// lifecycle lines.
fn event(seq: u64) -> pb::Event {
    let t = seq % 86_400_000;
    let time = format!(
        "2026-01-01T{:02}:{:02}:{:02}.{:03}Z",
        t / 3_600_000 % 24,
        t / 60_000 % 60,
        t / 1000 % 60,
        t % 1000
    );
    let mut e = pb::Event {
        seq,
        time,
        sandbox: SANDBOX.into(),
        source: "sandbox".into(),
        level: "info".into(),
        kind: "network".into(),
        action: "allow".into(),
        host: [
            "api.github.com",
            "pypi.org",
            "registry.npmjs.org",
            "files.pythonhosted.org",
        ][(seq % 4) as usize]
            .into(),
        port: 443,
        binary: "/usr/bin/python3.12".into(),
        pid: 4242,
        method: "GET".into(),
        path: format!("/repos/openshell/openshell-rs/pulls/{}/files", seq % 997),
        policy: "allow_github".into(),
        layer: "l7".into(),
        ..Default::default()
    };
    match seq % 8 {
        0 => {
            e.action = "deny".into();
            e.level = "warn".into();
            e.method = "POST".into();
            e.reason = "no rule allows POST here".into();
            e.policy.clear();
        }
        5 => {
            e.kind = "process".into();
            e.action.clear();
            e.message = format!("exec /usr/bin/git fetch origin (pid {})", 5000 + seq % 1000);
        }
        _ => {}
    }
    e
}

fn events(from: u64, n: u64) -> Msg {
    Msg::Events {
        sandbox: SANDBOX.into(),
        events: (from..from + n).map(event).collect(),
    }
}

/// A state with the sandbox open on its logs tab and `history` lines in it.
fn logs_state(history: u64) -> State {
    let mut s = State::new("/run/openshell/gateway.sock", "0.1.0");
    s.msg(Msg::Health(Ok(pb::HealthResponse {
        version: "0.1.0".into(),
        ..Default::default()
    })));
    s.msg(Msg::Sandboxes(vec![pb::Sandbox {
        name: SANDBOX.into(),
        phase: pb::Phase::Ready as i32,
        driver: "linux".into(),
        ..Default::default()
    }]));
    let mut v = SandboxView::new(SANDBOX);
    v.tab = Tab::Logs;
    s.open = Some(v);
    let mut seq = 1;
    while seq <= history {
        let n = 1000.min(history - seq + 1);
        s.msg(events(seq, n));
        seq += n;
    }
    s
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The `q`-quantile of sorted values.
fn quantile<T: Copy>(sorted: &[T], q: f64) -> T {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn proc_status(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn mb(kib: Option<u64>) -> String {
    kib.map_or("?".into(), |k| format!("{:.1} MB", k as f64 / 1024.0))
}

fn runtime() -> tokio::runtime::Runtime {
    // As `openshell term` runs it.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

fn app(state: State) -> App<TestBackend> {
    let terminal = Terminal::new(TestBackend::new(200, 50)).expect("a test terminal");
    App::new(
        terminal,
        state,
        Theme::default_theme(),
        Keymap::default_keymap(),
    )
}

/// How far a feeder may run ahead of what the screen has shown: events applied (the open
/// sandbox's last sequence number, as of the last frame), and the most events in flight.
type Window = Option<(Arc<AtomicU64>, u64)>;

/// Sends `total` events in batches of `batch` at `rate` events/s from a thread of its own,
/// waiting while more than the window's worth are not yet shown.
fn feeder(
    tx: mpsc::UnboundedSender<Msg>,
    first: u64,
    total: u64,
    (batch, rate): (u64, u64),
    window: Window,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let start = Instant::now();
        let mut sent = 0;
        while sent < total {
            if let Some((applied, max)) = &window {
                while first + sent > applied.load(Ordering::Relaxed) + max {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            let n = batch.min(total - sent);
            if tx.send(events(first + sent, n)).is_err() {
                return;
            }
            sent += n;
            // Paced by absolute deadlines, so a slow send does not lower the rate.
            let due = start + Duration::from_secs_f64(sent as f64 / rate as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
    })
}

/// 1,000,000 events through the log view at up to `rate`/s; with a window, the feeder waits
/// for the screen the way a gRPC stream waits for its reader.
fn figure_rss(label: &str, rate: u64, window: Option<u64>) {
    const TOTAL: u64 = 1_000_000;
    let before = proc_status("VmRSS:");
    let rt = runtime();
    let mut app = app(logs_state(0));
    let applied = Arc::new(AtomicU64::new(0));
    let a = applied.clone();
    app.on_frame = Some(Box::new(move |s: &State, _: FrameInfo| {
        if let Some(v) = &s.open {
            a.store(v.logs.last_seq, Ordering::Relaxed);
        }
    }));
    let (input_tx, input_rx) = mpsc::unbounded_channel::<std::io::Result<Event>>();
    let (tx, rx) = mpsc::unbounded_channel();
    let start = Instant::now();
    let feed = feeder(
        tx,
        1,
        TOTAL,
        (100, rate),
        window.map(|w| (applied.clone(), w)),
    );
    let watcher = std::thread::spawn(move || {
        // Ends the loop once the last event has been drawn (or after two minutes, to report
        // what got through).
        let start = Instant::now();
        while applied.load(Ordering::Relaxed) < TOTAL && start.elapsed() < Duration::from_secs(120)
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(input_tx);
    });
    rt.block_on(app.run(UnboundedReceiverStream::new(input_rx), rx, |_| {}))
        .expect("the loop runs");
    let took = start.elapsed();
    feed.join().expect("feeder");
    watcher.join().expect("watcher");
    let lines = app.state.open.as_ref().map_or(0, |v| v.logs.lines.len());
    let after = proc_status("VmRSS:");
    let peak = proc_status("VmHWM:");
    println!(
        "rss      {label}: {TOTAL} events through the log view in {:.1} s ({:.0}/s, {} frames, \
         {lines} lines kept): VmRSS {} (before {}), peak VmHWM {}",
        took.as_secs_f64(),
        TOTAL as f64 / took.as_secs_f64(),
        app.frames,
        mb(after),
        mb(before),
        mb(peak)
    );
}

/// Frame times of `n` draws of `state`, pushing `fresh` new events before each.
fn frame_times(state: &mut State, n: usize, fresh: u64) -> Vec<Duration> {
    let theme = Theme::default_theme();
    let keymap = Keymap::default_keymap();
    let mut terminal = Terminal::new(TestBackend::new(200, 50)).expect("a test terminal");
    let mut seq = state.open.as_ref().map_or(0, |v| v.logs.last_seq) + 1;
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        if fresh > 0 {
            state.msg(events(seq, fresh));
            seq += fresh;
        }
        let t = Instant::now();
        terminal
            .draw(|f| ui::render(state, &theme, &keymap, f))
            .expect("draw");
        times.push(t.elapsed());
    }
    times.sort();
    times
}

fn figure_render(c: &mut Criterion) {
    let mut state = logs_state(HISTORY);
    let lines = state.open.as_ref().map_or(0, |v| v.logs.lines.len());
    let report = |what: &str, t: &[Duration]| {
        println!(
            "render   200×50, {lines} lines, {what}: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms \
             over {} frames{}",
            ms(quantile(t, 0.5)),
            ms(quantile(t, 0.99)),
            ms(quantile(t, 1.0)),
            t.len(),
            if what == "following" {
                "   [target p50 ≤ 2 ms]"
            } else {
                ""
            }
        );
    };
    frame_times(&mut state, 200, 10); // warm-up
    report("following", &frame_times(&mut state, 2000, 10));
    if let Some(v) = state.open.as_mut() {
        v.logs.scroll = v.logs.max_scroll();
    }
    report(
        "scrolled to the oldest line",
        &frame_times(&mut state, 500, 0),
    );
    if let Some(v) = state.open.as_mut() {
        v.logs.scroll = 0;
        // One line in 997 (the request paths cycle through 997 pull numbers).
        v.logs.set_filter("pulls/99/");
    }
    report("filtered (a rare match)", &frame_times(&mut state, 200, 0));
    if let Some(v) = state.open.as_mut() {
        v.logs.set_filter("");
    }

    let theme = Theme::default_theme();
    let keymap = Keymap::default_keymap();
    let mut terminal = Terminal::new(TestBackend::new(200, 50)).expect("a test terminal");
    let mut seq = state.open.as_ref().map_or(0, |v| v.logs.last_seq) + 1;
    c.bench_function("render 200x50, 100k lines, following", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                state.msg(events(seq, 10));
                seq += 10;
                let t = Instant::now();
                terminal
                    .draw(|f| ui::render(&state, &theme, &keymap, f))
                    .expect("draw");
                total += t.elapsed();
            }
            total
        })
    });
}

/// One key sent in the latency run: when, and which state shows it.
struct Sent {
    at: Instant,
    shows: Shows,
}

#[derive(Clone, Copy, PartialEq)]
enum Shows {
    Tab(Tab),
    ScrolledBack(bool),
}

/// A frame in the latency run: when it started and ended, and what it showed.
struct Drawn {
    started: Instant,
    at: Instant,
    tab: Option<Tab>,
    scrolled: bool,
}

fn figure_latency() {
    const RATE: u64 = 20_000;
    const BATCH: u64 = 100;
    const SECS: u64 = 10;
    let rt = runtime();
    let mut app = app(logs_state(HISTORY));
    let drawn: Arc<Mutex<Vec<Drawn>>> = Arc::default();
    let d = drawn.clone();
    app.on_frame = Some(Box::new(move |s: &State, f: FrameInfo| {
        let v = s.open.as_ref();
        d.lock().expect("lock").push(Drawn {
            started: f.started,
            at: Instant::now(),
            tab: v.map(|v| v.tab),
            scrolled: v.is_some_and(|v| v.logs.scroll > 0),
        });
    }));
    let (input_tx, input_rx) = mpsc::unbounded_channel::<std::io::Result<Event>>();
    let (tx, rx) = mpsc::unbounded_channel();
    let feed = feeder(tx, HISTORY + 1, RATE * SECS, (BATCH, RATE), None);
    let keys = std::thread::spawn(move || {
        let key = |code| Ok(Event::Key(KeyEvent::new(code, KeyModifiers::NONE)));
        let mut sent = vec![];
        let start = Instant::now();
        let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
        let (mut on_denials, mut scrolled) = (false, false);
        // Half the run switches tabs, the other half scrolls back and follows again.
        while start.elapsed() < Duration::from_secs(SECS) {
            rng = rng.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            std::thread::sleep(Duration::from_millis(30 + (rng >> 33) % 41));
            let tabs = start.elapsed() < Duration::from_secs(SECS / 2);
            let (code, shows) = if on_denials {
                on_denials = false;
                (KeyCode::BackTab, Shows::Tab(Tab::Logs))
            } else if tabs {
                on_denials = true;
                (KeyCode::Tab, Shows::Tab(Tab::Denials))
            } else {
                scrolled = !scrolled;
                if scrolled {
                    (KeyCode::Char('k'), Shows::ScrolledBack(true))
                } else {
                    (KeyCode::Char('G'), Shows::ScrolledBack(false))
                }
            };
            sent.push(Sent {
                at: Instant::now(),
                shows,
            });
            if input_tx.send(key(code)).is_err() {
                break;
            }
        }
        // Let the last key be drawn, then end the loop.
        std::thread::sleep(Duration::from_millis(200));
        drop(input_tx);
        sent
    });
    let start = Instant::now();
    rt.block_on(app.run(UnboundedReceiverStream::new(input_rx), rx, |_| {}))
        .expect("the loop runs");
    let took = start.elapsed();
    feed.join().expect("feeder");
    let sent = keys.join().expect("keys");
    let drawn = drawn.lock().expect("lock");
    let mut lat = vec![];
    let mut nframes = vec![];
    let mut missed = 0;
    for s in &sent {
        // Frames started after the key was sent; the first that shows it ends the wait.
        let after: Vec<&Drawn> = drawn.iter().filter(|d| d.started >= s.at).collect();
        let hit = after.iter().position(|d| match s.shows {
            Shows::Tab(t) => d.tab == Some(t),
            Shows::ScrolledBack(b) => d.scrolled == b,
        });
        match hit {
            Some(i) => {
                lat.push(after[i].at - s.at);
                nframes.push(i as u64 + 1);
            }
            None => missed += 1,
        }
    }
    lat.sort();
    nframes.sort();
    let applied = app.state.open.as_ref().map_or(0, |v| v.logs.last_seq) - HISTORY;
    let next = nframes.iter().filter(|n| **n == 1).count();
    println!(
        "latency  {} keys under {RATE} events/s ({applied} of {} applied, {} frames in {:.1} s, \
         {HISTORY} lines of history): p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms; frames to \
         show it p50 {}, p99 {}, max {}; in the next frame {next}/{}; never shown {missed}   \
         [target: the next frame]",
        sent.len(),
        RATE * SECS,
        app.frames,
        took.as_secs_f64(),
        ms(quantile(&lat, 0.5)),
        ms(quantile(&lat, 0.99)),
        ms(quantile(&lat, 1.0)),
        quantile(&nframes, 0.5),
        quantile(&nframes, 0.99),
        quantile(&nframes, 1.0),
        lat.len(),
    );
}

fn main() {
    // Names given after `--` pick figures (and filter criterion's benchmarks); flags are
    // criterion's.
    let picks: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let want = |f: &str| picks.is_empty() || picks.iter().any(|p| f.contains(p.as_str()));
    println!("openshell term figures (TestBackend 200×50, default theme and keymap)");
    if want("rss") {
        figure_rss(
            "at up to 200,000/s, ≤ 20,000 in flight   [target ≤ 150 MB]",
            200_000,
            Some(20_000),
        );
        // For information: a feeder that never waits. What the loop has not applied yet
        // queues in the channel, so this measures the backlog as much as the view.
        figure_rss("at 200,000/s, never waiting (information)", 200_000, None);
    }
    if want("render") {
        let mut c = Criterion::default()
            .measurement_time(Duration::from_secs(3))
            .sample_size(50)
            .configure_from_args();
        figure_render(&mut c);
        c.final_summary();
    }
    if want("latency") {
        figure_latency();
    }
}
