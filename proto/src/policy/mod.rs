//! The policy document model (DESIGN §3): types, strict loading with located errors,
//! glob semantics, merge, diff, and the static/dynamic split.

pub mod diff;
pub mod glob;
pub mod load;
pub mod merge;
pub mod model;
pub mod positions;
pub mod proposal;
pub mod render;
pub mod sections;
pub mod validate;

pub use diff::{Change, diff};
pub use load::{Loaded, PolicyError, PolicyErrors, load, parse};
pub use merge::{merge, merge_into};
pub use model::*;
pub use render::to_yaml;
pub use sections::{inherit_static, static_changes};
pub use validate::Severity;
