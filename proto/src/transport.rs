//! Connecting to the gateway over its Unix socket (the local default), shared by the CLI, the
//! TUI and managed supervisors.

use hyper_util::rt::TokioIo;
use std::path::{Path, PathBuf};
use tonic::transport::{Channel, Endpoint};

/// A channel to the gateway at `socket`. Fails at once when nothing listens there.
pub async fn unix_channel(socket: &Path) -> Result<Channel, tonic::transport::Error> {
    let path: PathBuf = socket.to_path_buf();
    // The URI is required by tonic but unused: the connector decides where to go.
    Endpoint::from_static("http://openshell.gateway")
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move {
                tokio::net::UnixStream::connect(path)
                    .await
                    .map(TokioIo::new)
            }
        }))
        .await
}
