//! The egress proxy: the sandbox's only way out. It listens inside the sandbox's network
//! namespace, answers CONNECT and absolute-form HTTP, decides each connection (host, port,
//! calling binary, resolved addresses) and, on inspected endpoints, each request.

pub mod busy_poll;
pub mod deny;
mod h1;
mod http;
mod inspect;
pub mod owner;
mod prefixed;
mod relay;
mod splice;
pub mod tls;
pub mod upstream;

use crate::engine::{Action, Decision, NetworkInput};
use crate::events::Events;
use crate::policy_state::Current;
use openshell_proto::pb::Event;
use std::net::IpAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// What every connection shares.
pub struct Shared {
    pub current: Arc<Current>,
    pub events: Events,
    pub ca: Arc<tls::SandboxCa>,
    pub upstream_tls: Arc<rustls::ClientConfig>,
    pub pins: upstream::Pins,
    pub owners: owner::OwnerLookup,
    /// Bumped after every policy swap: open tunnels re-check themselves against it.
    pub revision: watch::Receiver<u64>,
}

/// The process on the other end of a proxy connection.
#[derive(Debug, Clone)]
pub struct Caller {
    pub pid: u32,
    pub binary: Arc<str>,
}

/// A destination being decided or connected.
#[derive(Debug, Clone)]
pub struct Target {
    pub host: String,
    pub port: u16,
}

/// Connections served at once per sandbox; beyond this new ones are closed at once, so a
/// flood from inside cannot take the supervisor's descriptors.
pub const MAX_CONNECTIONS: usize = 8192;

/// Serves the proxy on `listener` until the runtime stops.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    tune(&listener);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    // Bound to one address, every accepted socket has it as its local end: no need to ask.
    let bound = listener
        .local_addr()
        .ok()
        .filter(|a| !a.ip().is_unspecified());
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of descriptors (an fd flood inside the sandbox): wait, keep serving.
                tracing::warn!("proxy accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                continue;
            }
        };
        busy_poll::moved();
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let local = match bound.map_or_else(|| stream.local_addr(), Ok) {
                Ok(a) => a,
                Err(_) => return,
            };
            let caller = match shared.owners.find(peer, local) {
                Some(o) => Caller {
                    pid: o.pid,
                    binary: o.exe.into(),
                },
                None => Caller {
                    pid: 0,
                    binary: "".into(),
                },
            };
            http::serve_client(stream, shared, caller).await;
        });
    }
}

/// Options every accepted connection inherits: no Nagle delay (one call here instead of one
/// per connection). Accepting is not deferred until the request has arrived
/// (TCP_DEFER_ACCEPT): a connection accepted at once has its owner looked up while its
/// client is still sending the request, which took about 10 µs off a CONNECT.
fn tune(listener: &TcpListener) {
    if let Err(e) = socket2::SockRef::from(listener).set_tcp_nodelay(true) {
        tracing::warn!("proxy listener: cannot turn off Nagle's delay: {e}");
    }
}

impl Shared {
    /// The network decision for `t` from `caller`, before or after resolution.
    pub fn decide(&self, t: &Target, caller: &Caller, ips: Option<(&[IpAddr], bool)>) -> Decision {
        let active = self.current.get();
        active.engine.network(&NetworkInput {
            host: &t.host,
            port: t.port,
            binary: &caller.binary,
            ips: ips.map(|(i, _)| i),
            pinned: ips.is_some_and(|(_, p)| p),
        })
    }

    /// The event for a network decision.
    pub fn network_event(&self, d: &Decision, t: &Target, caller: &Caller) -> Event {
        let level = match d.action {
            Action::Allow => "info",
            Action::Audit | Action::Deny => "warn",
        };
        let mut e = self.events.event(level, "network", d.action.as_str());
        e.host = t.host.clone();
        e.port = u32::from(t.port);
        e.binary = caller.binary.to_string();
        e.pid = caller.pid;
        e.policy = d.policy.as_deref().unwrap_or_default().to_string();
        e.reason = d.reason.to_string();
        e.layer = d.layer.as_str().to_string();
        e
    }
}
