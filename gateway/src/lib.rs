//! The OpenShell gateway: the control plane that keeps sandboxes, policy revisions, events
//! and denials, runs supervisors through a driver, and serves the CLI, the TUI and the
//! supervisors over gRPC.

pub mod api;
pub mod app;
pub mod control;
pub mod denials;
pub mod driver;
pub mod hub;
pub mod serve;
pub mod store;
pub mod supervisors;
pub mod tls;
pub mod watch;
