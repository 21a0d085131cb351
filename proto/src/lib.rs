//! The contracts between OpenShell's parts: the gRPC services, the policy document model and
//! the event model. No I/O beyond parsing.

pub mod catalog;
pub mod event;
pub mod paths;
pub mod policy;
pub mod transport;

/// Generated gRPC messages and services (`openshell.v1`).
pub mod pb {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("openshell.v1");
}

/// The version every OpenShell binary reports.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
