//! Hard mask (SwapMoE's masked gating): route only among resident experts, best logits first;
//! when fewer than k experts are resident, the remaining slots take the best non-resident
//! experts (they must be loaded). The λ → ∞ limit of the memory-aware router.

use super::{GateWeights, Residency, RouteInput, Router, Selection, gate_weights, top_k_by};

/// Routing restricted to resident experts.
#[derive(Debug, Clone)]
pub struct HardMaskRouter {
    gate: GateWeights,
    masked: Vec<f32>,
    fill: Vec<u16>,
}

impl HardMaskRouter {
    /// A hard-mask router.
    pub fn new(gate: GateWeights) -> HardMaskRouter {
        HardMaskRouter {
            gate,
            masked: Vec::new(),
            fill: Vec::new(),
        }
    }
}

impl Router for HardMaskRouter {
    fn route(&mut self, input: &RouteInput<'_>, residency: &Residency<'_>, out: &mut Selection) {
        self.masked.clear();
        self.masked
            .extend(input.logits.iter().enumerate().map(|(i, &x)| {
                if residency.is_resident(i as u16) {
                    x
                } else {
                    f32::NEG_INFINITY
                }
            }));
        top_k_by(&self.masked, input.top_k, &mut out.experts);
        if out.experts.len() < input.top_k {
            top_k_by(input.logits, input.top_k, &mut self.fill);
            for &e in &self.fill {
                if out.experts.len() == input.top_k {
                    break;
                }
                if !out.experts.contains(&e) {
                    out.experts.push(e);
                }
            }
        }
        gate_weights(self.gate, input.logits, input.logits, out);
    }

    fn extra_ops_per_call(&self, n_experts: usize, _top_k: usize) -> u64 {
        n_experts as u64
    }
}
