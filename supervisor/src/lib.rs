//! `openshell-sandbox`: one sandbox, its egress proxy and its confinement.

pub mod confine;
pub mod control;
pub mod engine;
pub mod events;
pub mod net;
pub mod policy_state;
pub mod proxy;
pub mod reload;
pub mod run;
pub mod sandbox;
