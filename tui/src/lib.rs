//! The `openshell` CLI and terminal UI, as a library so tests can drive them.

pub mod cli;
pub mod term;
