//! The standard router: top-k of the logits (equivalently of the softmax), Mixtral-style gate
//! weights.

use super::{GateWeights, Residency, RouteInput, Router, Selection, gate_weights, top_k_by};

/// Top-k of softmax(logits).
#[derive(Debug, Clone)]
pub struct StandardRouter {
    gate: GateWeights,
}

impl StandardRouter {
    /// A standard router with the given gate-weight mode.
    pub fn new(gate: GateWeights) -> StandardRouter {
        StandardRouter { gate }
    }
}

impl Router for StandardRouter {
    fn route(&mut self, input: &RouteInput<'_>, _residency: &Residency<'_>, out: &mut Selection) {
        top_k_by(input.logits, input.top_k, &mut out.experts);
        gate_weights(self.gate, input.logits, input.logits, out);
    }

    fn extra_ops_per_call(&self, _n_experts: usize, _top_k: usize) -> u64 {
        0
    }

    fn is_standard(&self) -> bool {
        true
    }
}
