//! Watchers that fall behind the live backlog resume from the store: every event arrives once,
//! in seq order. The hub keeps only a few events here, so slow watchers lag again and again
//! while two writers ingest at once.

use futures::StreamExt;
use openshell_gateway::api::Api;
use openshell_gateway::app::{App, Settings};
use openshell_gateway::driver::{Driver, DriverError, Launch, Started};
use openshell_gateway::hub::Hub;
use openshell_gateway::store::{EventQuery, Store};
use openshell_proto::pb::{self, gateway_server::Gateway};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct NoDriver;

impl Driver for NoDriver {
    fn name(&self) -> &'static str {
        "process"
    }
    fn start(&self, _: &Launch) -> Result<Started, DriverError> {
        Err(DriverError::Unknown("none".into()))
    }
    fn stop(&self, _: u32, _: &str, _: std::time::Duration) -> bool {
        true
    }
    fn alive(&self, _: u32, _: &str) -> bool {
        false
    }
    fn last_output(&self, _: &str, _: usize) -> String {
        String::new()
    }
}

fn app(dir: &std::path::Path, backlog: usize) -> Arc<App> {
    let store = Store::open(dir.join("state.db")).expect("open store");
    App::with_hub(
        store,
        Box::new(NoDriver),
        Settings {
            listen: "unix:///nowhere".into(),
            listen_tcp: None,
            state_dir: dir.to_path_buf(),
            started: Instant::now(),
        },
        Hub::new(backlog),
    )
}

fn event(i: usize, writer: usize) -> pb::Event {
    pb::Event {
        time: openshell_proto::event::now_rfc3339(),
        sandbox: format!("s{writer}"),
        source: "sandbox".into(),
        level: "info".into(),
        // Every third event is noise a filtered watcher must pass over.
        kind: if i.is_multiple_of(3) {
            "noise"
        } else {
            "process"
        }
        .into(),
        message: format!("event {i} from writer {writer}"),
        ..pb::Event::default()
    }
}

/// Ingests `per_writer` events from each of two threads, in batches of 1 to 40.
fn write_events(app: &Arc<App>, per_writer: usize) -> Vec<std::thread::JoinHandle<()>> {
    (0..2)
        .map(|w| {
            let app = app.clone();
            std::thread::spawn(move || {
                let mut i = 0;
                let mut size = 1;
                while i < per_writer {
                    let n = size.min(per_writer - i);
                    app.ingest((i..i + n).map(|k| event(k, w)).collect());
                    i += n;
                    size = size % 40 + 7;
                }
            })
        })
        .collect()
}

/// Reads the stream slowly (sleeping after each of the first batches) until `want` events
/// arrived or the time is up; returns their seqs.
async fn read_slowly(
    api: &Api,
    filter: pb::EventFilter,
    want: usize,
    slow_batches: usize,
) -> Vec<u64> {
    let mut stream = api
        .stream_events(tonic::Request::new(filter))
        .await
        .expect("stream_events")
        .into_inner();
    let mut seqs = Vec::new();
    let mut batches = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while seqs.len() < want && Instant::now() < deadline {
        let next = tokio::time::timeout(Duration::from_secs(10), stream.next()).await;
        let Ok(Some(batch)) = next else { break };
        let batch = batch.expect("the stream must not fail when the watcher lags");
        seqs.extend(batch.events.iter().map(|e| e.seq));
        batches += 1;
        if batches < slow_batches {
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    }
    seqs
}

fn assert_once_in_order(got: &[u64], want: &[u64]) {
    for w in got.windows(2) {
        assert!(w[0] < w[1], "seq {} came after seq {}", w[1], w[0]);
    }
    let missing: Vec<&u64> = want
        .iter()
        .filter(|s| got.binary_search(s).is_err())
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} events never arrived (first: {:?})",
        missing.len(),
        want.len(),
        &missing[..missing.len().min(10)]
    );
    assert_eq!(got.len(), want.len(), "extra events arrived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_watcher_gets_every_event_once_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app(dir.path(), 8);
    let api = Api { app: app.clone() };
    // Some history first: the backlog part of the stream.
    app.ingest((0..100).map(|i| event(i, 9)).collect());
    let per_writer = 6000;
    let total = 100 + 2 * per_writer;

    let all = pb::EventFilter {
        follow: true,
        ..Default::default()
    };
    let filtered = pb::EventFilter {
        follow: true,
        kind: "process".into(),
        ..Default::default()
    };
    let process_total = {
        // Events 0..100 of writer 9 plus each writer's: two thirds are `process`.
        let k = |n: usize| (0..n).filter(|i| !i.is_multiple_of(3)).count();
        k(100) + 2 * k(per_writer)
    };
    let reader_all = read_slowly(&api, all, total, 200);
    let reader_filtered = read_slowly(&api, filtered, process_total, 200);
    let writers = write_events(&app, per_writer);
    let (got_all, got_filtered) = tokio::join!(reader_all, reader_filtered);
    for w in writers {
        w.join().expect("writer");
    }

    let store = app.store();
    let stored = |kind: Option<&str>| -> Vec<u64> {
        store
            .query_events(&EventQuery {
                kind: kind.map(str::to_string),
                ..Default::default()
            })
            .expect("query")
            .iter()
            .map(|e| e.seq)
            .collect()
    };
    let want_all = stored(None);
    let want_process = stored(Some("process"));
    assert_eq!(want_all.len(), total);
    assert_eq!(want_process.len(), process_total);
    assert_once_in_order(&got_all, &want_all);
    assert_once_in_order(&got_filtered, &want_process);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_that_never_lags_gets_every_event_once_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app(dir.path(), openshell_gateway::hub::BACKLOG);
    let api = Api { app: app.clone() };
    let per_writer = 3000;
    let reader = read_slowly(
        &api,
        pb::EventFilter {
            follow: true,
            ..Default::default()
        },
        2 * per_writer,
        0,
    );
    let writers = write_events(&app, per_writer);
    let got = reader.await;
    for w in writers {
        w.join().expect("writer");
    }
    let want: Vec<u64> = app
        .store()
        .query_events(&EventQuery::default())
        .expect("query")
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_once_in_order(&got, &want);
}
