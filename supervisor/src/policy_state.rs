//! The policy the sandbox enforces now. A revision is swapped in whole: a decision reads one
//! `Arc` and never sees half of an old policy and half of a new one.

use crate::engine::{self, Engine, EngineError, EngineKind};
use openshell_proto::policy::Policy;
use std::sync::{Arc, RwLock};

/// One compiled revision.
pub struct Active {
    pub revision: u64,
    pub policy: Policy,
    pub engine: Arc<dyn Engine>,
}

impl Active {
    pub fn compile(revision: u64, policy: Policy) -> Result<Active, EngineError> {
        let engine = engine::build(&policy, EngineKind::Fast)?;
        Ok(Active {
            revision,
            policy,
            engine,
        })
    }
}

/// The current revision, shared by every connection.
pub struct Current(RwLock<Arc<Active>>);

impl Current {
    pub fn new(a: Active) -> Current {
        Current(RwLock::new(Arc::new(a)))
    }

    /// The revision to decide with; cheap (one atomic increment).
    pub fn get(&self) -> Arc<Active> {
        match self.0.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Installs `a` and returns the previous revision.
    pub fn swap(&self, a: Active) -> Arc<Active> {
        let new = Arc::new(a);
        match self.0.write() {
            Ok(mut g) => std::mem::replace(&mut *g, new),
            Err(p) => std::mem::replace(&mut *p.into_inner(), new),
        }
    }
}
