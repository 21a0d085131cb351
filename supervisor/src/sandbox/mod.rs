//! The sandbox itself: namespaces, filesystem, identity, environment and PID 1.

pub mod env;
pub mod exec;
pub mod fdpass;
pub mod idmap;
pub mod init;
pub mod mounts;
pub mod plan;
pub mod spawn;
