//! `delete --all` goes on past a sandbox that cannot be deleted and says which and why.

use openshell_gateway::api::Api;
use openshell_gateway::app::{App, Settings};
use openshell_gateway::driver::{Driver, DriverError, Launch, Started};
use openshell_gateway::store::{NewSandbox, Runtime, Store};
use openshell_proto::pb::{self, gateway_server::Gateway};
use std::time::{Duration, Instant};

/// Every supervisor runs; the one of `stuck` never stops.
struct Stubborn;

impl Driver for Stubborn {
    fn name(&self) -> &'static str {
        "process"
    }
    fn start(&self, _: &Launch) -> Result<Started, DriverError> {
        Err(DriverError::Unknown("none".into()))
    }
    fn stop(&self, _: u32, name: &str, _: Duration) -> bool {
        name != "stuck"
    }
    fn alive(&self, _: u32, _: &str) -> bool {
        true
    }
    fn last_output(&self, _: &str, _: usize) -> String {
        String::new()
    }
}

#[tokio::test]
async fn delete_all_reports_each_failure_and_deletes_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = Store::open(dir.path().join("state.db")).expect("store");
    for (i, name) in ["alpha", "stuck", "zulu"].into_iter().enumerate() {
        store
            .create_sandbox(NewSandbox {
                name: name.into(),
                workdir: "/tmp".into(),
                policy_text: "version: 1\n".into(),
                author: "test".into(),
                keep: true,
                ..Default::default()
            })
            .expect("create");
        store
            .set_runtime(
                name,
                &Runtime {
                    supervisor_pid: Some(1000 + i as u32),
                    ..Runtime::default()
                },
            )
            .expect("runtime");
    }
    let app = App::new(
        store,
        Box::new(Stubborn),
        Settings {
            listen: "unix:///nowhere".into(),
            listen_tcp: None,
            state_dir: dir.path().to_path_buf(),
            started: Instant::now(),
        },
    );
    let api = Api { app: app.clone() };
    let r = api
        .delete_sandbox(tonic::Request::new(pb::DeleteSandboxRequest {
            name: String::new(),
            all: true,
        }))
        .await
        .expect("delete --all answers")
        .into_inner();
    assert_eq!(r.deleted, vec!["alpha".to_string(), "zulu".to_string()]);
    assert_eq!(r.failures.len(), 1, "{:?}", r.failures);
    assert!(
        r.failures[0].starts_with("stuck: ") && r.failures[0].contains("did not exit"),
        "{:?}",
        r.failures
    );
    let left: Vec<String> = app
        .list()
        .expect("list")
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(left, vec!["stuck".to_string()]);
}
