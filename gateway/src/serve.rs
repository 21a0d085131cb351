//! Running the gateway: its state directory, its socket (only its user can open it), the
//! services, retention, and a clean stop.

use crate::api::Api;
use crate::app::{App, Settings};
use crate::driver::ProcessDriver;
use crate::store::Store;
use crate::supervisors::SupervisorApi;
use anyhow::{Context, Result, bail};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use openshell_proto::pb::gateway_server::GatewayServer;
use openshell_proto::pb::supervisor_server::SupervisorServer;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Largest request the gateway reads; policies are capped at 1 MiB, events come in batches.
const MAX_MESSAGE: usize = 8 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct Options {
    pub state_dir: PathBuf,
    pub socket: PathBuf,
    /// Also listen on this TCP address (HOST:PORT) with mutual TLS, for remote clients.
    pub tcp: Option<String>,
    pub supervisor: PathBuf,
    pub upstream_ca: Vec<PathBuf>,
    pub resolve: Vec<String>,
    pub max_events: u64,
    pub max_event_age: Duration,
}

fn private_dir(p: &std::path::Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(p)
        .with_context(|| format!("cannot create {}", p.display()))
}

/// Takes an exclusive lock on `path` (created if needed), held as long as the returned file
/// lives; `None` when another process holds it. The kernel drops it when the process ends,
/// even on `kill -9`, so it is never stale (and it is close-on-exec: supervisors do not
/// inherit it).
fn lock(path: &Path) -> Result<Option<Flock<std::fs::File>>> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(l) => Ok(Some(l)),
        Err((_, Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(e).with_context(|| format!("cannot lock {}", path.display())),
    }
}

pub async fn run(o: Options) -> Result<()> {
    private_dir(&o.state_dir)?;
    if let Some(parent) = o.socket.parent() {
        private_dir(parent)?;
    }
    // One gateway per socket and per state dir. Checking the socket alone raced: gateways
    // started at once (several CLI commands auto-starting after a crash) could each find it
    // stale, and one would unlink the socket the other had just bound, leaving two gateways
    // on one database (or fail with "address in use" instead of saying why).
    let mut socket_lock = o.socket.clone().into_os_string();
    socket_lock.push(".lock");
    let Some(_socket_lock) = lock(Path::new(&socket_lock))? else {
        // The other one may still be starting: answer once it serves, so a CLI that started
        // this one finds a gateway rather than a failure.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline
            && openshell_proto::transport::unix_channel(&o.socket)
                .await
                .is_err()
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bail!(
            "a gateway is already running on {}; stop it with `openshell gateway stop` first",
            o.socket.display()
        );
    };
    let Some(_state_lock) = lock(&o.state_dir.join("gateway.lock"))? else {
        bail!(
            "another gateway already uses the state in {} (its pid is in gateway.pid there); stop it with `openshell gateway stop` first",
            o.state_dir.display()
        );
    };
    if o.socket.exists() {
        if openshell_proto::transport::unix_channel(&o.socket)
            .await
            .is_ok()
        {
            bail!(
                "a gateway is already running on {}; stop it with `openshell gateway stop` first",
                o.socket.display()
            );
        }
        // Left behind by a gateway that was killed.
        std::fs::remove_file(&o.socket)
            .with_context(|| format!("cannot remove the stale socket {}", o.socket.display()))?;
    }
    let store = Store::open(o.state_dir.join("openshell.db"))?;
    // Before the socket: a client that finds the socket finds the TLS files made too.
    let remote = match &o.tcp {
        Some(addr) => Some(remote_listener(addr, &o.state_dir).await?),
        None => None,
    };
    let listener = tokio::net::UnixListener::bind(&o.socket)
        .with_context(|| format!("cannot listen on {}", o.socket.display()))?;
    std::fs::set_permissions(&o.socket, std::fs::Permissions::from_mode(0o600))?;
    let pid_file = o.state_dir.join("gateway.pid");
    std::fs::write(&pid_file, format!("{}\n", std::process::id()))?;

    let driver = ProcessDriver {
        supervisor: o.supervisor.clone(),
        socket: o.socket.clone(),
        output_dir: o.state_dir.join("sandboxes"),
        upstream_ca: o.upstream_ca.clone(),
        resolve: o.resolve.clone(),
    };
    let app = App::new(
        store,
        Box::new(driver),
        Settings {
            listen: format!("unix://{}", o.socket.display()),
            listen_tcp: remote.as_ref().map(|r| format!("tcp://{}", r.addr)),
            state_dir: o.state_dir.clone(),
            started: Instant::now(),
        },
    );
    app.watch_supervisors();
    app.event(
        "",
        "info",
        "lifecycle",
        format!(
            "gateway {} listening on {}{}",
            env!("CARGO_PKG_VERSION"),
            o.socket.display(),
            remote
                .as_ref()
                .map(|r| format!(" and tcp://{} (mTLS)", r.addr))
                .unwrap_or_default()
        ),
    );
    let retention_app = app.clone();
    let (max_events, max_age) = (o.max_events, o.max_event_age);
    tokio::spawn(async move {
        loop {
            let app = retention_app.clone();
            let _ = tokio::task::spawn_blocking(move || {
                app.store().enforce_retention(max_events, max_age)
            })
            .await;
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
    });

    // One signal stops both listeners.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let local = tonic::transport::Server::builder()
        .add_service(
            GatewayServer::new(Api { app: app.clone() }).max_decoding_message_size(MAX_MESSAGE),
        )
        .add_service(
            SupervisorServer::new(SupervisorApi { app: app.clone() })
                .max_decoding_message_size(MAX_MESSAGE),
        )
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::UnixListenerStream::new(listener),
            stopped(stop_rx.clone()),
        );
    let result = match remote {
        None => local.await.context("the gateway server failed"),
        Some(r) => {
            // Remote clients get the user-facing service only: supervisors are local.
            let tls = tonic::transport::ServerTlsConfig::new()
                .identity(tonic::transport::Identity::from_pem(
                    &r.materials.cert_pem,
                    &r.materials.key_pem,
                ))
                .client_ca_root(tonic::transport::Certificate::from_pem(&r.materials.ca_pem));
            let remote = tonic::transport::Server::builder()
                .tls_config(tls)
                .context("cannot set up TLS for remote access")?
                .add_service(
                    GatewayServer::new(Api { app: app.clone() })
                        .max_decoding_message_size(MAX_MESSAGE),
                )
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(r.listener),
                    stopped(stop_rx.clone()),
                );
            tokio::try_join!(
                async { local.await.context("the gateway server failed") },
                async {
                    remote
                        .await
                        .context("the gateway's remote (TCP) server failed")
                }
            )
            .map(|_| ())
        }
    };
    // Sandboxes keep running: they re-attach when a gateway starts again.
    let _ = std::fs::remove_file(&o.socket);
    let _ = std::fs::remove_file(&pid_file);
    result
}

/// The TCP listener for remote clients, and its TLS materials (made on first use).
struct Remote {
    listener: tokio::net::TcpListener,
    /// The bound address (the port the kernel chose when asked for 0).
    addr: String,
    materials: crate::tls::ServerMaterials,
}

async fn remote_listener(addr: &str, state_dir: &Path) -> Result<Remote> {
    let host = match addr.rsplit_once(':') {
        Some((h, port)) if !h.is_empty() && port.parse::<u16>().is_ok() => h,
        _ => bail!("--listen tcp://{addr}: give HOST:PORT, e.g. tcp://127.0.0.1:7443"),
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on tcp://{addr}"))?;
    let port = listener.local_addr()?.port();
    let tls_dir = state_dir.join("tls");
    let materials = crate::tls::ensure(&tls_dir, host)
        .with_context(|| format!("cannot prepare TLS in {}", tls_dir.display()))?;
    Ok(Remote {
        listener,
        addr: format!("{host}:{port}"),
        materials,
    })
}
