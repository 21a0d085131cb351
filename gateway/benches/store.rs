//! Store throughput: event ingest in batches of 500 (the gateway's PushEvents path), and the
//! queries `logs --tail` and a follower make.
//!
//! `cargo bench --bench store`. The database lives under the target directory, on a real disk,
//! so every batch pays its fsync (`synchronous=FULL`): a tmpfs would flatter the figure.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use openshell_gateway::store::{EventQuery, Store};
use openshell_proto::event::now_rfc3339;
use openshell_proto::pb::Event;
use std::hint::black_box;
use std::time::{Duration, Instant};

const BATCH: usize = 500;
/// The log is kept around this size, as the gateway's retention would, so the bench measures
/// a steady state rather than an ever-growing table.
const KEEP: u64 = 200_000;

fn batch(round: usize) -> Vec<Event> {
    let time = now_rfc3339();
    (0..BATCH)
        .map(|i| Event {
            time: time.clone(),
            sandbox: format!("sb-{}", i % 20),
            source: "sandbox".into(),
            level: "info".into(),
            kind: "network".into(),
            action: if i % 7 == 0 { "deny" } else { "allow" }.into(),
            host: "api.github.com".into(),
            port: 443,
            binary: "/usr/bin/curl".into(),
            pid: 4000 + (i as u32),
            method: "GET".into(),
            path: format!("/repos/acme/widgets/issues/{}", round * BATCH + i),
            policy: "github_readonly".into(),
            reason: String::new(),
            message: String::new(),
            layer: "l7".into(),
            ..Default::default()
        })
        .collect()
}

fn bench_store(c: &mut Criterion) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let mut store = Store::open(dir.path().join("state.db")).expect("open");
    let batches: Vec<Vec<Event>> = (0..16).map(batch).collect();

    let mut g = c.benchmark_group("events");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("append_batch_500", |b| {
        let mut n = 0usize;
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let events = &batches[n % batches.len()];
                n += 1;
                let start = Instant::now();
                black_box(store.append_events(events).expect("append"));
                total += start.elapsed();
                // Retention runs outside the timed part, as the gateway runs it off the
                // ingest path.
                if n.is_multiple_of(100) {
                    store
                        .enforce_retention(KEEP, Duration::from_secs(86_400))
                        .expect("retention");
                }
            }
            total
        });
    });
    g.finish();

    let mut g = c.benchmark_group("query");
    g.bench_function("tail_100_of_one_sandbox", |b| {
        let q = EventQuery {
            sandbox: Some("sb-3".into()),
            limit: Some(100),
            tail: true,
            ..Default::default()
        };
        b.iter(|| black_box(store.query_events(&q).expect("query")));
    });
    let last = store.last_seq().expect("last seq");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("follow_500_after_seq", |b| {
        let q = EventQuery {
            after_seq: Some(last.saturating_sub(10_000)),
            limit: Some(BATCH),
            ..Default::default()
        };
        b.iter(|| black_box(store.query_events(&q).expect("query")));
    });
    g.finish();
}

criterion_group!(benches, bench_store);
criterion_main!(benches);
