//! The `openshell` command line: one module per command group.

pub mod policy_local;
