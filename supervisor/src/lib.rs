//! `openshell-sandbox`: one sandbox, its egress proxy and its confinement.

pub mod engine;
