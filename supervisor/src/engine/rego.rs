//! The reference engine: `policy.rego` evaluated by regorus with the IR as `data.policy`.

use super::ir::Ir;
use super::{Action, Decision, Engine, EngineError, L7Input, Layer, NetworkInput};
use regorus::Value;
use std::borrow::Cow;
use std::sync::{Arc, Mutex};

/// The Rego program every decision is defined by.
pub const PROGRAM: &str = include_str!("policy.rego");

pub struct RegoEngine {
    // regorus evaluates through `&mut Engine`. Cloning a prepared engine per decision costs
    // more than the evaluation itself, so callers take turns on one; the proxy's hot path uses
    // the native engine and this one is the reference.
    prepared: Mutex<regorus::Engine>,
}

impl RegoEngine {
    pub fn new(ir: &Ir) -> Result<RegoEngine, EngineError> {
        let mut engine = regorus::Engine::new();
        engine
            .add_policy("policy.rego".into(), PROGRAM.into())
            .map_err(|e| EngineError::Rego(e.to_string()))?;
        let data = serde_json::json!({ "policy": ir });
        engine
            .add_data(
                Value::from_json_str(&data.to_string())
                    .map_err(|e| EngineError::Rego(e.to_string()))?,
            )
            .map_err(|e| EngineError::Rego(e.to_string()))?;
        Ok(RegoEngine {
            prepared: Mutex::new(engine),
        })
    }

    fn eval(&self, rule: &str, input: serde_json::Value) -> Decision {
        let mut engine = match self.prepared.lock() {
            Ok(e) => e,
            Err(poisoned) => poisoned.into_inner(),
        };
        let result = Value::from_json_str(&input.to_string())
            .map_err(|e| e.to_string())
            .and_then(|v| {
                engine.set_input(v);
                engine
                    .eval_rule(format!("data.openshell.{rule}"))
                    .map_err(|e| e.to_string())
            });
        match result {
            Ok(v) => decode(&v).unwrap_or_else(|| failure(format!("unexpected result {v}"))),
            Err(e) => failure(e),
        }
    }
}

/// A program failure denies: the safe answer when the reference cannot decide.
fn failure(why: String) -> Decision {
    Decision {
        action: Action::Deny,
        policy: None,
        reason: Cow::Owned(format!("policy evaluation failed: {why}")),
        layer: Layer::L4,
        inspect: false,
    }
}

fn decode(v: &Value) -> Option<Decision> {
    let field = |k: &str| &v[&Value::from(k)];
    let text = |k: &str| -> Option<String> {
        match field(k) {
            Value::String(s) => Some(s.to_string()),
            _ => None,
        }
    };
    Some(Decision {
        action: Action::parse(&text("action")?)?,
        policy: text("policy").map(|s| Arc::from(s.as_str())),
        reason: Cow::Owned(text("reason").unwrap_or_default()),
        layer: Layer::parse(&text("layer")?)?,
        inspect: matches!(field("inspect"), Value::Bool(true)),
    })
}

impl Engine for RegoEngine {
    fn network(&self, i: &NetworkInput<'_>) -> Decision {
        let mut input = serde_json::json!({
            "host": i.host,
            "port": i.port,
            "binary": i.binary,
            "pinned": i.pinned,
        });
        if let Some(ips) = i.ips {
            input["ips"] = ips.iter().map(|ip| ip.to_string()).collect();
        }
        self.eval("network", input)
    }

    fn l7(&self, i: &L7Input<'_>) -> Decision {
        let input = serde_json::json!({
            "host": i.host,
            "port": i.port,
            "binary": i.binary,
            "method": i.method,
            "path": i.path,
            "query": i.query.iter().map(|(k, v)| [k, v]).collect::<Vec<_>>(),
        });
        self.eval("l7", input)
    }

    fn name(&self) -> &'static str {
        "rego"
    }
}
