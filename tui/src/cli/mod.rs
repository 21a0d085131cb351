//! The `openshell` command line: one module per command group.

pub mod client;
pub mod policy_file;
pub mod policy_local;
pub mod remote;
pub mod remote_gateway;
