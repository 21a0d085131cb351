//! The gateway's state store, tested on real SQLite files in temporary directories.

use openshell_gateway::store::{
    DenialKey, DenialSighting, DenialStatus, EventQuery, NewSandbox, Phase, Provider, Runtime,
    SCHEMA_VERSION, Store, StoreError,
};
use openshell_proto::event::{format_time, now_rfc3339, to_json};
use openshell_proto::pb::{self, Event};
use proptest::prelude::*;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;
use time::OffsetDateTime;

fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path().join("state.db")).expect("open");
    (dir, store)
}

fn new_sandbox(name: &str) -> NewSandbox {
    NewSandbox {
        name: name.into(),
        workdir: "/work".into(),
        command: vec!["bash".into(), "-lc".into(), "echo hi".into()],
        policy_text: format!("version: 1\n# {name}\n"),
        author: "alice".into(),
        ..Default::default()
    }
}

fn event(sandbox: &str, level: &str, kind: &str, action: &str, message: &str) -> Event {
    Event {
        time: now_rfc3339(),
        sandbox: sandbox.into(),
        source: "sandbox".into(),
        level: level.into(),
        kind: kind.into(),
        action: action.into(),
        message: message.into(),
        ..Default::default()
    }
}

fn net_event(sandbox: &str, action: &str, host: &str, i: u32) -> Event {
    Event {
        host: host.into(),
        port: 443,
        binary: "/usr/bin/curl".into(),
        pid: 1000 + i,
        method: "GET".into(),
        path: format!("/item/{i}"),
        policy: "github".into(),
        reason: "no policy allows it".into(),
        layer: "l7".into(),
        fields: [("k".to_string(), "v".to_string())].into_iter().collect(),
        ..event(sandbox, "info", "network", action, "")
    }
}

fn key(host: &str, port: u16, method: Option<&str>, path: Option<&str>) -> DenialKey {
    DenialKey {
        host: host.into(),
        port,
        binary: "/usr/bin/curl".into(),
        method: method.map(Into::into),
        path: path.map(Into::into),
    }
}

fn ago(d: Duration) -> OffsetDateTime {
    OffsetDateTime::now_utc() - d
}

// ---------------------------------------------------------------------------------------------
// Opening, schema, file

#[test]
fn a_store_can_move_to_another_thread() {
    // The async gateway hands it to spawn_blocking or a dedicated thread.
    fn send<T: Send>() {}
    send::<Store>();
}

#[test]
fn open_creates_schema_and_an_owner_only_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.db");
    let store = Store::open(&path).expect("open");
    assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);
    assert_eq!(store.integrity_check().expect("check"), "ok");
    assert_eq!(store.path(), path);
    let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the database holds secrets");
    drop(store);
    // Reopening an up-to-date database migrates nothing and keeps the data.
    let mut store = Store::open(&path).expect("reopen");
    store.create_sandbox(new_sandbox("a")).expect("create");
    // SQLite gives the write-ahead log the database's mode.
    let wal = dir.path().join("state.db-wal");
    let mode = std::fs::metadata(&wal).expect("wal").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    drop(store);
    let store = Store::open(&path).expect("reopen");
    assert_eq!(store.list_sandboxes().expect("list").len(), 1);
}

#[test]
fn a_database_from_a_newer_build_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.db");
    drop(Store::open(&path).expect("open"));
    let conn = rusqlite::Connection::open(&path).expect("raw open");
    conn.execute(
        "UPDATE schema_version SET version = ?1",
        [SCHEMA_VERSION + 2],
    )
    .expect("bump");
    drop(conn);
    let err = Store::open(&path).expect_err("newer schema");
    assert!(matches!(err, StoreError::NewerSchema { found, known, .. }
        if found == SCHEMA_VERSION + 2 && known == SCHEMA_VERSION));
    let msg = err.to_string();
    assert_eq!(
        msg,
        format!(
            "the state database {} is from a newer OpenShell (schema {}, this build knows {}); \
             upgrade openshell",
            path.display(),
            SCHEMA_VERSION + 2,
            SCHEMA_VERSION
        )
    );
}

#[test]
fn a_file_that_is_not_a_database_is_refused_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.db");
    std::fs::write(&path, vec![b'x'; 4096]).expect("write");
    let err = Store::open(&path).expect_err("garbage");
    let msg = err.to_string();
    assert!(msg.contains("cannot open the state database"), "{msg}");
    assert!(msg.contains(&path.display().to_string()), "{msg}");

    let missing = dir.path().join("no/such/dir/state.db");
    let msg = Store::open(&missing).expect_err("missing dir").to_string();
    assert!(msg.contains(&missing.display().to_string()), "{msg}");
}

// ---------------------------------------------------------------------------------------------
// Sandboxes

#[test]
fn sandbox_create_get_list_update_delete() {
    let (_dir, mut store) = temp_store();
    let mut n = new_sandbox("web");
    n.env.insert("A".into(), "1".into());
    n.providers = vec!["github".into()];
    n.keep = false;
    let row = store.create_sandbox(n).expect("create");
    assert_eq!(row.name, "web");
    assert_eq!(row.driver, "process");
    assert_eq!(row.phase, Phase::Provisioning);
    assert_eq!(row.command, ["bash", "-lc", "echo hi"]);
    assert_eq!(row.env.get("A").map(String::as_str), Some("1"));
    assert_eq!(row.providers, ["github"]);
    assert!(!row.keep);
    assert_eq!(row.policy_revision, 1);
    assert_eq!(row.enforced_revision, 0);
    assert_eq!(row.runtime, Runtime::default());
    assert_eq!(store.get_sandbox("web").expect("get"), row);
    assert_eq!(
        store.get_sandbox_by_id(row.id).expect("by id"),
        Some(row.clone())
    );
    assert_eq!(store.get_sandbox_by_id(row.id + 100).expect("by id"), None);

    // Revision 1 is the creation policy, stored in the same transaction.
    let rev = store.get_revision("web", None).expect("rev");
    assert_eq!((rev.rev, rev.author.as_str()), (1, "alice"));
    assert_eq!(rev.text, "version: 1\n# web\n");

    store.create_sandbox(new_sandbox("api")).expect("create");
    let names: Vec<_> = store
        .list_sandboxes()
        .expect("list")
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["api", "web"]);

    store
        .set_phase("web", Phase::Failed, Some("boot hook exited 3"))
        .expect("phase");
    let started = OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("time");
    let rt = Runtime {
        pid: Some(4242),
        supervisor_pid: Some(4200),
        endpoint: Some("unix:/run/sb.sock".into()),
        started_at: Some(started),
    };
    store.set_runtime("web", &rt).expect("runtime");
    store.set_exit_code("web", Some(3)).expect("exit");
    let got = store.get_sandbox("web").expect("get");
    assert_eq!(got.phase, Phase::Failed);
    assert_eq!(got.reason, "boot hook exited 3");
    assert_eq!(got.runtime, rt);
    assert_eq!(got.exit_code, Some(3));
    assert!(got.updated_at >= row.updated_at);
    let pb = got.to_pb();
    assert_eq!(pb.phase, pb::Phase::Failed as i32);
    assert_eq!((pb.pid, pb.exit_code, pb.name.as_str()), (4242, 3, "web"));

    // A new phase without a reason clears the old reason.
    store.set_phase("web", Phase::Ready, None).expect("phase");
    assert_eq!(store.get_sandbox("web").expect("get").reason, "");

    store.delete_sandbox("web").expect("delete");
    assert!(matches!(
        store.get_sandbox("web"),
        Err(StoreError::UnknownSandbox { .. })
    ));
    // A sandbox created again under the name starts afresh, with a new id.
    let again = store.create_sandbox(new_sandbox("web")).expect("recreate");
    assert_ne!(again.id, row.id);
    assert_eq!(again.policy_revision, 1);
}

#[test]
fn duplicate_and_empty_names_are_refused() {
    let (_dir, mut store) = temp_store();
    store.create_sandbox(new_sandbox("web")).expect("create");
    let err = store.create_sandbox(new_sandbox("web")).expect_err("dup");
    assert!(matches!(&err, StoreError::SandboxExists(n) if n == "web"));
    assert!(err.to_string().contains("\"web\" already exists"), "{err}");
    // Nothing of the refused sandbox was stored.
    assert_eq!(store.history("web").expect("history").len(), 1);
    let err = store.create_sandbox(new_sandbox(" ")).expect_err("empty");
    assert!(matches!(err, StoreError::Invalid(_)));
}

#[test]
fn unknown_sandbox_errors_list_the_known_names() {
    let (_dir, mut store) = temp_store();
    let err = store.get_sandbox("nope").expect_err("unknown");
    assert_eq!(
        err.to_string(),
        "no sandbox named \"nope\"; there are no sandboxes"
    );
    store.create_sandbox(new_sandbox("beta")).expect("create");
    store.create_sandbox(new_sandbox("alpha")).expect("create");
    let expect = "no sandbox named \"nope\"; the known sandboxes are: alpha, beta";
    let check = |r: Result<(), StoreError>| {
        let err = r.expect_err("unknown");
        assert!(matches!(&err, StoreError::UnknownSandbox { name, known }
            if name == "nope" && known == &["alpha", "beta"]));
        assert_eq!(err.to_string(), expect);
    };
    check(store.get_sandbox("nope").map(drop));
    check(store.set_phase("nope", Phase::Ready, None));
    check(store.set_runtime("nope", &Runtime::default()));
    check(store.set_exit_code("nope", None));
    check(store.set_enforced_revision("nope", 1));
    check(store.delete_sandbox("nope"));
    check(store.add_revision("nope", "x", "a", "").map(drop));
    check(store.get_revision("nope", None).map(drop));
    check(store.history("nope").map(drop));
    check(
        store
            .record_denial("nope", &key("h", 1, None, None), "", ago(Duration::ZERO))
            .map(drop),
    );
    check(store.list_denials("nope", true).map(drop));
    check(store.reject_denial("nope", 1).map(drop));
}

#[test]
fn delete_cascades_to_revisions_and_denials_but_keeps_events() {
    let (dir, mut store) = temp_store();
    store.create_sandbox(new_sandbox("web")).expect("create");
    store.add_revision("web", "v2", "bob", "").expect("rev");
    store
        .record_denial(
            "web",
            &key("a.com", 443, None, None),
            "p",
            ago(Duration::ZERO),
        )
        .expect("deny");
    store
        .append_events(&[event("web", "info", "lifecycle", "", "started")])
        .expect("events");
    store.delete_sandbox("web").expect("delete");

    let conn = rusqlite::Connection::open(dir.path().join("state.db")).expect("raw");
    let count = |table: &str| -> i64 {
        conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
            .expect("count")
    };
    assert_eq!(count("revisions"), 0);
    assert_eq!(count("denials"), 0);
    assert_eq!(count("events"), 1);
    let q = EventQuery {
        sandbox: Some("web".into()),
        ..Default::default()
    };
    assert_eq!(store.query_events(&q).expect("query").len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Policy revisions

#[test]
fn revisions_are_numbered_per_sandbox_and_kept_in_full() {
    let (_dir, mut store) = temp_store();
    store.create_sandbox(new_sandbox("a")).expect("create");
    store.create_sandbox(new_sandbox("b")).expect("create");
    let text = "version: 1\n# ünïcødé ✓\n";
    assert_eq!(
        store
            .add_revision("a", text, "bob", "allow github")
            .expect("rev"),
        2
    );
    assert_eq!(store.add_revision("a", "v3", "carol", "").expect("rev"), 3);
    assert_eq!(store.add_revision("b", "b2", "bob", "").expect("rev"), 2);

    let latest = store.get_revision("a", None).expect("latest");
    assert_eq!(
        (latest.rev, latest.text.as_str(), latest.author.as_str()),
        (3, "v3", "carol")
    );
    let two = store.get_revision("a", Some(2)).expect("rev 2");
    assert_eq!(two.text, text);
    assert_eq!(two.note, "allow github");

    let err = store.get_revision("a", Some(9)).expect_err("no rev 9");
    assert!(matches!(
        err,
        StoreError::UnknownRevision {
            rev: 9,
            latest: 3,
            ..
        }
    ));
    assert_eq!(
        err.to_string(),
        "sandbox \"a\" has no policy revision 9 (its revisions are 1 to 3)"
    );

    let hist = store.history("a").expect("history");
    let revs: Vec<_> = hist.iter().map(|h| h.rev).collect();
    assert_eq!(revs, [1, 2, 3]);
    assert_eq!(hist[1].size, text.len() as u64, "size is in bytes");
    assert_eq!(hist[1].author, "bob");
    assert_eq!(hist[0].note, "created");

    // Acks: the enforced revision must exist, and is reflected in statuses.
    assert!(matches!(
        store.set_enforced_revision("a", 7),
        Err(StoreError::UnknownRevision { rev: 7, .. })
    ));
    store.set_enforced_revision("a", 2).expect("ack");
    store
        .set_revision_failed("a", 3, "unknown field")
        .expect("fail");
    let s = store.get_sandbox("a").expect("get");
    assert_eq!((s.policy_revision, s.enforced_revision), (3, 2));
    let hist = store.history("a").expect("history");
    assert!(hist[1].acked_at.is_some());
    assert_eq!(hist[2].error.as_deref(), Some("unknown field"));
    let statuses: Vec<_> = hist.iter().map(|h| h.to_pb("a", 2).status).collect();
    assert_eq!(
        statuses,
        [
            pb::RevisionStatus::Superseded as i32,
            pb::RevisionStatus::Loaded as i32,
            pb::RevisionStatus::Failed as i32
        ]
    );
    let full = store.get_revision("a", Some(2)).expect("rev").to_pb(2);
    assert_eq!((full.revision, full.yaml.as_str()), (2, text));
}

// ---------------------------------------------------------------------------------------------
// Events

#[test]
fn events_round_trip_and_filter() {
    let (_dir, mut store) = temp_store();
    let old = format_time(ago(Duration::from_secs(3600)));
    let mut batch = vec![
        Event {
            time: old.clone(),
            ..event("a", "debug", "process", "", "spawned")
        },
        net_event("a", "allow", "api.github.com", 1),
        net_event("a", "deny", "evil.example", 2),
        Event {
            source: "gateway".into(),
            ..event("a", "warn", "policy", "", "revision 2 refused")
        },
        event("b", "error", "lifecycle", "", "boot hook failed"),
        net_event("b", "deny", "evil.example", 3),
    ];
    batch[1].seq = 999; // ignored: the store assigns seqs
    let seqs = store.append_events(&batch).expect("append");
    assert_eq!(seqs.len(), batch.len());
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));

    let all = store.query_events(&EventQuery::default()).expect("all");
    assert_eq!(all.len(), 6);
    for ((got, sent), seq) in all.iter().zip(&batch).zip(&seqs) {
        assert_eq!(got.seq, *seq);
        // Everything but seq comes back as sent, in the DESIGN §5 shape.
        let want = Event {
            seq: *seq,
            ..sent.clone()
        };
        assert_eq!(got, &want);
        assert_eq!(to_json(got), to_json(&want));
    }

    let q = |q: EventQuery| -> Vec<u64> {
        store
            .query_events(&q)
            .expect("query")
            .iter()
            .map(|e| e.seq)
            .collect()
    };
    let s = |i: usize| seqs[i];
    let some = |v: &str| Some(v.to_string());
    assert_eq!(
        q(EventQuery {
            sandbox: some("b"),
            ..Default::default()
        }),
        [s(4), s(5)]
    );
    assert_eq!(
        q(EventQuery {
            source: some("gateway"),
            ..Default::default()
        }),
        [s(3)]
    );
    assert_eq!(
        q(EventQuery {
            min_level: some("warn"),
            ..Default::default()
        }),
        [s(3), s(4)]
    );
    assert_eq!(
        q(EventQuery {
            kind: some("network"),
            action: some("deny"),
            ..Default::default()
        }),
        [s(2), s(5)]
    );
    assert_eq!(
        q(EventQuery {
            sandbox: some("a"),
            kind: some("network"),
            action: some("deny"),
            ..Default::default()
        }),
        [s(2)]
    );
    assert_eq!(
        q(EventQuery {
            since: Some(ago(Duration::from_secs(60))),
            ..Default::default()
        }),
        &seqs[1..]
    );
    assert_eq!(
        q(EventQuery {
            after_seq: Some(s(3)),
            ..Default::default()
        }),
        [s(4), s(5)]
    );
    assert_eq!(
        q(EventQuery {
            limit: Some(2),
            ..Default::default()
        }),
        [s(0), s(1)]
    );
    assert_eq!(
        q(EventQuery {
            limit: Some(2),
            tail: true,
            ..Default::default()
        }),
        [s(4), s(5)]
    );
    assert_eq!(
        q(EventQuery {
            sandbox: some("a"),
            limit: Some(2),
            tail: true,
            ..Default::default()
        }),
        [s(2), s(3)]
    );
    assert_eq!(
        q(EventQuery {
            sandbox: some("zzz"),
            ..Default::default()
        }),
        Vec::<u64>::new()
    );
    assert_eq!(store.event_count().expect("count"), 6);
    assert_eq!(store.last_seq().expect("last"), s(5));
}

#[test]
fn an_event_without_a_valid_time_gets_its_arrival_time() {
    let (_dir, mut store) = temp_store();
    let before = OffsetDateTime::now_utc() - Duration::from_millis(1);
    let e = Event {
        time: "yesterday-ish".into(),
        ..event("a", "info", "process", "", "x")
    };
    store.append_events(&[e]).expect("append");
    let got = store.query_events(&EventQuery::default()).expect("query");
    let t = openshell_proto::event::parse_time(&got[0].time).expect("rfc3339");
    assert!(t >= before && t <= OffsetDateTime::now_utc());
    assert!(store.append_events(&[]).expect("empty").is_empty());
}

#[test]
fn retention_keeps_the_newest_and_respects_age() {
    let (_dir, mut store) = temp_store();
    let day = Duration::from_secs(86_400);
    // 10 events from 3 hours ago, then 20 recent ones.
    let old: Vec<_> = (0..10)
        .map(|i| Event {
            time: format_time(ago(Duration::from_secs(3 * 3600))),
            ..event("a", "info", "process", "", &format!("old {i}"))
        })
        .collect();
    let new: Vec<_> = (0..20)
        .map(|i| event("a", "info", "process", "", &format!("new {i}")))
        .collect();
    store.append_events(&old).expect("old");
    let new_seqs = store.append_events(&new).expect("new");

    // Nothing is too many or too old.
    assert_eq!(store.enforce_retention(100, day).expect("retain"), 0);
    // Age: the 3-hour-old events go, however few events there are.
    assert_eq!(
        store
            .enforce_retention(1000, Duration::from_secs(3600))
            .expect("retain"),
        10
    );
    // Count: the newest 5 stay.
    assert_eq!(store.enforce_retention(5, day).expect("retain"), 15);
    let left: Vec<_> = store
        .query_events(&EventQuery::default())
        .expect("query")
        .into_iter()
        .map(|e| (e.seq, e.message))
        .collect();
    let want: Vec<_> = (15..20)
        .map(|i| (new_seqs[i], format!("new {i}")))
        .collect();
    assert_eq!(left, want);

    // Emptying the log does not let seq go back.
    assert_eq!(store.enforce_retention(0, day).expect("retain"), 5);
    assert_eq!(store.event_count().expect("count"), 0);
    let next = store
        .append_events(&[event("a", "info", "process", "", "after")])
        .expect("append");
    assert!(next[0] > new_seqs[19]);
}

// ---------------------------------------------------------------------------------------------
// Denials

#[test]
fn denials_aggregate_per_key_and_sandbox() {
    let (_dir, mut store) = temp_store();
    store.create_sandbox(new_sandbox("a")).expect("create");
    store.create_sandbox(new_sandbox("b")).expect("create");
    let t0 = ago(Duration::from_secs(600));
    let t1 = ago(Duration::from_secs(300));
    let t2 = ago(Duration::from_secs(10));
    let l4 = key("api.github.com", 443, None, None);
    let l7 = key(
        "api.github.com",
        443,
        Some("POST"),
        Some("/repos/o/r/issues"),
    );

    let d1 = store.record_denial("a", &l4, "rule v1", t1).expect("deny");
    assert_eq!((d1.id, d1.count, d1.status), (1, 1, DenialStatus::Pending));
    let d2 = store.record_denial("a", &l7, "l7 rule", t1).expect("deny");
    assert_eq!(d2.id, 2);
    // Same key (host case and an empty method/path do not make a new one); an earlier event
    // arriving late moves first_seen back, a later one moves last_seen on.
    let same = key("API.GitHub.com", 443, Some(""), None);
    let d = store
        .record_denial("a", &same, "rule v2", t2)
        .expect("deny");
    assert_eq!((d.id, d.count), (1, 2));
    let d = store.record_denial("a", &l4, "rule v3", t0).expect("deny");
    assert_eq!((d.id, d.count), (1, 3));
    assert_eq!(d.first_seen.unix_timestamp(), t0.unix_timestamp());
    assert_eq!(d.last_seen.unix_timestamp(), t2.unix_timestamp());
    assert_eq!(d.proposal_yaml, "rule v3");
    assert_eq!(d.key.host, "api.github.com");
    assert_eq!((d.key.method.clone(), d.key.path.clone()), (None, None));
    // Ids are per sandbox.
    let other = store.record_denial("b", &l7, "l7 rule", t1).expect("deny");
    assert_eq!(other.id, 1);

    let list = store.list_denials("a", false).expect("list");
    assert_eq!(list.iter().map(|d| d.id).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(list[1].key, l7);
    let pb = list[1].to_pb();
    assert_eq!(
        (pb.id.as_str(), pb.method.as_str(), pb.count),
        ("2", "POST", 1)
    );
    assert_eq!(store.get_denial("a", 2).expect("get"), list[1]);

    // A batch is one transaction and aggregates like single sightings.
    let sight = |k: &DenialKey| DenialSighting {
        key: k.clone(),
        proposal_yaml: "p".into(),
        at: t2,
    };
    let rows = store
        .record_denials(
            "a",
            &[sight(&l7), sight(&l7), sight(&key("x.com", 80, None, None))],
        )
        .expect("batch");
    let got: Vec<_> = rows.iter().map(|d| (d.id, d.count)).collect();
    assert_eq!(got, [(2, 2), (2, 3), (3, 1)]);

    let err = store.get_denial("a", 77).expect_err("unknown");
    assert_eq!(err.to_string(), "sandbox \"a\" has no denial with id 77");
}

#[test]
fn rejected_denials_stay_hidden_and_counted() {
    let (_dir, mut store) = temp_store();
    store.create_sandbox(new_sandbox("a")).expect("create");
    let k = key("evil.example", 443, None, None);
    let now = ago(Duration::ZERO);
    store.record_denial("a", &k, "p", now).expect("deny");
    let r = store.reject_denial("a", 1).expect("reject");
    assert_eq!(r.status, DenialStatus::Rejected);
    assert!(r.decided_at.is_some());
    assert!(store.list_denials("a", false).expect("list").is_empty());

    let again = store.record_denial("a", &k, "p", now).expect("deny");
    assert_eq!(
        (again.id, again.count, again.status),
        (1, 2, DenialStatus::Rejected)
    );
    assert!(store.list_denials("a", false).expect("list").is_empty());
    let all = store.list_denials("a", true).expect("list");
    assert_eq!((all.len(), all[0].count), (1, 2));

    let back = store.unreject_denial("a", 1).expect("unreject");
    assert_eq!(
        (back.status, back.decided_at),
        (DenialStatus::Pending, None)
    );
    assert_eq!(store.list_denials("a", false).expect("list").len(), 1);
    assert!(matches!(
        store.reject_denial("a", 5),
        Err(StoreError::UnknownDenial { id: 5, .. })
    ));
}

#[test]
fn approved_denials_record_the_revision_and_reopen_if_seen_once_enforced() {
    let (_dir, mut store) = temp_store();
    store.create_sandbox(new_sandbox("a")).expect("create");
    let k = key("api.github.com", 443, Some("POST"), Some("/x"));
    let now = ago(Duration::ZERO);
    store.record_denial("a", &k, "p", now).expect("deny");
    assert!(matches!(
        store.mark_approved("a", 1, 2),
        Err(StoreError::UnknownRevision { rev: 2, .. })
    ));
    let rev = store
        .add_revision("a", "with the rule", "tui", "approve 1")
        .expect("rev");
    let d = store.mark_approved("a", 1, rev).expect("approve");
    assert_eq!(
        (d.status, d.approved_revision),
        (DenialStatus::Approved, Some(rev))
    );
    assert!(store.list_denials("a", false).expect("list").is_empty());

    // Seen again before the supervisor enforces the revision: still approved (in flight).
    let d = store.record_denial("a", &k, "p", now).expect("deny");
    assert_eq!((d.count, d.status), (2, DenialStatus::Approved));
    // Seen again once it is enforced: the approval did not let it through; propose again.
    store.set_enforced_revision("a", rev).expect("ack");
    let d = store.record_denial("a", &k, "p", now).expect("deny");
    assert_eq!(
        (d.count, d.status, d.approved_revision),
        (3, DenialStatus::Pending, None)
    );
    assert_eq!(store.list_denials("a", false).expect("list").len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Providers and settings

#[test]
fn providers_keep_secrets_and_show_them_redacted() {
    let (_dir, mut store) = temp_store();
    let p = Provider {
        name: "github".into(),
        kind: "github".into(),
        credentials: [
            (
                "GITHUB_TOKEN".to_string(),
                "ghp_abcdefghijklmnop1234".to_string(),
            ),
            ("PIN".to_string(), "12345".to_string()),
        ]
        .into_iter()
        .collect(),
        config: [("org".to_string(), "acme".to_string())]
            .into_iter()
            .collect(),
        created_at: None,
    };
    let stored = store.put_provider(&p).expect("put");
    let created = stored.created_at.expect("created");
    assert_eq!(stored.credentials, p.credentials);
    assert_eq!(store.get_provider("github").expect("get"), stored);

    let r = stored.redacted();
    assert_eq!(r.credentials["GITHUB_TOKEN"], "****1234");
    assert_eq!(r.credentials["PIN"], "****", "short secrets show nothing");
    assert_eq!(r.config, p.config);
    let dbg = format!("{stored:?}");
    assert!(!dbg.contains("abcdefgh") && !dbg.contains("12345"), "{dbg}");
    let pbp = stored.to_pb_redacted();
    assert_eq!(pbp.credentials["GITHUB_TOKEN"], "****1234");
    assert_eq!(pbp.r#type, "github");

    // Replacing keeps the creation time.
    let mut p2 = p.clone();
    p2.credentials
        .insert("GITHUB_TOKEN".into(), "ghp_zzzzzzzzzzzzzzzz9999".into());
    let again = store.put_provider(&p2).expect("put");
    assert_eq!(again.created_at, Some(created));
    assert_eq!(
        again.credentials["GITHUB_TOKEN"],
        "ghp_zzzzzzzzzzzzzzzz9999"
    );

    store
        .put_provider(&Provider {
            name: "anthropic".into(),
            kind: "anthropic".into(),
            ..Default::default()
        })
        .expect("put");
    let names: Vec<_> = store
        .list_providers()
        .expect("list")
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["anthropic", "github"]);
    store.delete_provider("anthropic").expect("delete");
    let err = store.delete_provider("anthropic").expect_err("gone");
    assert_eq!(
        err.to_string(),
        "no provider named \"anthropic\"; the known providers are: github"
    );
    assert!(matches!(
        store.put_provider(&Provider::default()),
        Err(StoreError::Invalid(_))
    ));
}

#[test]
fn settings_put_get_delete() {
    let (_dir, mut store) = temp_store();
    assert_eq!(store.get_setting("inference").expect("get"), None);
    store
        .put_setting("inference", r#"{"provider":"x"}"#)
        .expect("put");
    store
        .put_setting("inference", r#"{"provider":"y"}"#)
        .expect("put");
    store.put_setting("resolve", "a=1.2.3.4").expect("put");
    assert_eq!(
        store.get_setting("inference").expect("get").as_deref(),
        Some(r#"{"provider":"y"}"#)
    );
    assert_eq!(store.list_settings().expect("list").len(), 2);
    assert!(store.delete_setting("resolve").expect("delete"));
    assert!(!store.delete_setting("resolve").expect("delete"));
}

// ---------------------------------------------------------------------------------------------
// Durability: a writer killed with SIGKILL loses nothing it acknowledged.

const CHILD_DB: &str = "OPENSHELL_STORE_TEST_CHILD_DB";
const CHILD_ROUND: &str = "OPENSHELL_STORE_TEST_CHILD_ROUND";
const EVENTS_PER_BATCH: usize = 25;

fn child_rev_text(round: u32, i: u64) -> String {
    format!(
        "version: 1\n# round {round} step {i}\n{}\n",
        "x".repeat((i % 50) as usize)
    )
}

/// The writer half of `kill_9_loses_nothing_acknowledged`: a no-op in a normal test run; with
/// `OPENSHELL_STORE_TEST_CHILD_DB` set (when the parent re-runs this test binary) it writes
/// until killed, printing each write once `Store` has returned `Ok` for it.
#[test]
fn durability_child_writer() {
    let Ok(path) = std::env::var(CHILD_DB) else {
        return;
    };
    let round: u32 = std::env::var(CHILD_ROUND)
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0);
    let mut store = Store::open(&path).expect("open");
    if store.get_sandbox("dur").is_err() {
        store.create_sandbox(new_sandbox("dur")).expect("create");
    }
    let k = key("evil.example", 443, None, None);
    // Written straight to the stdout handle: the test harness captures only print! output.
    let mut out = std::io::stdout().lock();
    for i in 0u64.. {
        let rev = store
            .add_revision("dur", &child_rev_text(round, i), "child", "")
            .expect("revision");
        writeln!(out, "REV {rev} {round} {i}").expect("stdout");
        let batch: Vec<Event> = (0..EVENTS_PER_BATCH)
            .map(|j| event("dur", "info", "process", "", &format!("{round}-{i}-{j}")))
            .collect();
        let seqs = store.append_events(&batch).expect("events");
        writeln!(out, "SEQ {} {} {round} {i}", seqs[0], seqs[seqs.len() - 1]).expect("stdout");
        let d = store
            .record_denial("dur", &k, "p", OffsetDateTime::now_utc())
            .expect("denial");
        writeln!(out, "DEN {}", d.count).expect("stdout");
        out.flush().expect("flush");
    }
}

#[derive(Default)]
struct Acked {
    revs: Vec<(u32, String)>,
    batches: Vec<(u64, u64, String)>,
    denials: u64,
}

impl Acked {
    fn take(&mut self, line: &str) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let num = |s: &str| s.parse::<u64>().expect("number in child output");
        match f.as_slice() {
            ["REV", rev, round, i] => self
                .revs
                .push((num(rev) as u32, child_rev_text(num(round) as u32, num(i)))),
            ["SEQ", first, last, round, i] => {
                self.batches
                    .push((num(first), num(last), format!("{round}-{i}-")))
            }
            ["DEN", count] => self.denials = self.denials.max(num(count)),
            // The test harness's own lines ("running 1 test").
            _ => {}
        }
    }
}

#[test]
fn kill_9_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.db");
    let exe = std::env::current_exe().expect("test binary");
    let mut acked = Acked::default();
    // Kill after a different number of writes each round, so the kill lands at different
    // points of a transaction; each round reopens what the previous one left.
    for (round, revs_before_kill) in [(0u32, 40usize), (1, 97), (2, 13), (3, 151)] {
        let mut child = Command::new(&exe)
            .args([
                "durability_child_writer",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DB, &path)
            .env(CHILD_ROUND, round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn writer");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let start = acked.revs.len();
        while acked.revs.len() - start < revs_before_kill {
            let line = lines
                .next()
                .expect("the writer stopped early")
                .expect("read");
            acked.take(&line);
        }
        child.kill().expect("kill -9"); // SIGKILL on Unix
        child.wait().expect("wait");
        // Lines still in the pipe were acknowledged too.
        for line in lines {
            acked.take(&line.expect("read"));
        }

        let store = Store::open(&path).expect("reopen after kill");
        assert_eq!(store.integrity_check().expect("check"), "ok");
        let hist = store.history("dur").expect("history");
        for (rev, text) in &acked.revs {
            let got = store
                .get_revision("dur", Some(*rev))
                .expect("acked revision");
            assert_eq!(&got.text, text, "revision {rev}");
        }
        // Revision numbers have no holes.
        let revs: Vec<u32> = hist.iter().map(|h| h.rev).collect();
        assert_eq!(revs, (1..=revs.len() as u32).collect::<Vec<_>>());
        for (first, last, prefix) in &acked.batches {
            let got = store
                .query_events(&EventQuery {
                    after_seq: Some(first - 1),
                    limit: Some(EVENTS_PER_BATCH),
                    ..Default::default()
                })
                .expect("query");
            let seqs: Vec<u64> = got.iter().map(|e| e.seq).collect();
            assert_eq!(seqs, (*first..=*last).collect::<Vec<_>>(), "batch {prefix}");
            for (j, e) in got.iter().enumerate() {
                assert_eq!(e.message, format!("{prefix}{j}"));
            }
        }
        let d = store.get_denial("dur", 1).expect("denial");
        assert!(d.count >= acked.denials, "{} < {}", d.count, acked.denials);
    }
    assert!(acked.revs.len() >= 301 && acked.batches.len() >= 300);
}

// ---------------------------------------------------------------------------------------------
// Properties

proptest! {
    // Each case is a fresh database with real fsyncs; a few dozen cases cover the small key
    // space below many times over.
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn denial_upsert_never_makes_two_rows_for_one_key(
        ops in proptest::collection::vec(
            (0..3usize, 0..2usize, 0..3usize, 0..3usize, 0..4u8),
            1..40,
        )
    ) {
        let (_dir, mut store) = temp_store();
        store.create_sandbox(new_sandbox("a")).expect("create");
        let hosts = ["a.example", "B.example", "b.example"];
        let ports = [443u16, 80];
        let methods = [None, Some("GET"), Some("")];
        let paths = [None, Some("/x"), Some("")];
        let mut model: HashMap<(String, u16, String, String), u64> = HashMap::new();
        for (h, p, m, pa, decide) in ops {
            let k = key(hosts[h], ports[p], methods[m], paths[pa]);
            let d = store
                .record_denial("a", &k, "p", OffsetDateTime::now_utc())
                .expect("deny");
            let norm = (
                hosts[h].to_lowercase(),
                ports[p],
                methods[m].unwrap_or("").to_string(),
                paths[pa].unwrap_or("").to_string(),
            );
            *model.entry(norm).or_default() += 1;
            // Decisions in between must not split a key either.
            match decide {
                0 => { store.reject_denial("a", d.id).expect("reject"); }
                1 => { store.mark_approved("a", d.id, 1).expect("approve"); }
                2 => { store.unreject_denial("a", d.id).expect("unreject"); }
                _ => {}
            }
        }
        let rows = store.list_denials("a", true).expect("list");
        prop_assert_eq!(rows.len(), model.len());
        let ids: Vec<u64> = rows.iter().map(|d| d.id).collect();
        prop_assert_eq!(ids, (1..=model.len() as u64).collect::<Vec<_>>());
        for d in &rows {
            let norm = (
                d.key.host.clone(),
                d.key.port,
                d.key.method.clone().unwrap_or_default(),
                d.key.path.clone().unwrap_or_default(),
            );
            prop_assert_eq!(Some(&d.count), model.get(&norm));
        }
    }

    #[test]
    fn seq_strictly_increases_across_batches(
        batches in proptest::collection::vec(
            (0..30usize, proptest::option::of(0..20u64)),
            1..10,
        )
    ) {
        let (_dir, mut store) = temp_store();
        let mut last = 0u64;
        let mut kept: Vec<u64> = Vec::new();
        for (n, retain) in batches {
            let events: Vec<Event> =
                (0..n).map(|i| event("a", "info", "process", "", &i.to_string())).collect();
            let seqs = store.append_events(&events).expect("append");
            prop_assert_eq!(seqs.len(), n);
            for s in seqs {
                prop_assert!(s > last, "seq {} after {}", s, last);
                last = s;
                kept.push(s);
            }
            if let Some(max) = retain {
                store.enforce_retention(max, Duration::from_secs(3600)).expect("retain");
                let drop = kept.len().saturating_sub(max as usize);
                kept.drain(..drop);
            }
        }
        let stored: Vec<u64> = store
            .query_events(&EventQuery::default())
            .expect("query")
            .iter()
            .map(|e| e.seq)
            .collect();
        prop_assert_eq!(stored, kept);
        prop_assert_eq!(store.last_seq().expect("last"), last);
    }
}
