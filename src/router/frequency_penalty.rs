//! Frequency penalty: a logit penalty on experts that are not cached, larger for the experts
//! the layer has selected least, as some published offloading systems do. Experts are ranked on
//! `logits - λ · s · (1 - f_i) · [i not resident]`, where `f_i` is expert i's selections in this
//! layer so far over the most-selected expert's (0 before any selection, so every non-resident
//! expert starts with the full penalty) and `s` the layer's logit scale (as for the
//! memory-aware router, so λ is in units of the gap between the top-1 and the top-k logit).
//! The gate weights come from the original logits.

use super::{GateWeights, Residency, RouteInput, Router, Selection, gate_weights, top_k_by};

/// Top-k of the logits with a frequency-derived penalty on non-resident experts.
#[derive(Debug, Clone)]
pub struct FrequencyPenaltyRouter {
    lambda: f64,
    scales: Vec<f32>,
    experts: usize,
    /// Selections per (layer, expert).
    counts: Vec<u64>,
    gate: GateWeights,
    scores: Vec<f64>,
}

impl FrequencyPenaltyRouter {
    /// A router for `layers` × `experts` with penalty strength `lambda`.
    pub fn new(
        lambda: f64,
        layers: u32,
        experts: u32,
        scales: Vec<f32>,
        gate: GateWeights,
    ) -> FrequencyPenaltyRouter {
        FrequencyPenaltyRouter {
            lambda,
            scales,
            experts: experts as usize,
            counts: vec![0; layers as usize * experts as usize],
            gate,
            scores: Vec::new(),
        }
    }
}

impl Router for FrequencyPenaltyRouter {
    fn route(&mut self, input: &RouteInput<'_>, residency: &Residency<'_>, out: &mut Selection) {
        let l = input.layer as usize;
        let counts = &mut self.counts[l * self.experts..(l + 1) * self.experts];
        let most = counts.iter().copied().max().unwrap_or(0);
        let scale = self.scales.get(l).copied().unwrap_or(1.0) as f64;
        let penalty = self.lambda * scale;
        self.scores.clear();
        self.scores
            .extend(input.logits.iter().enumerate().map(|(i, &x)| {
                if residency.is_resident(i as u16) {
                    x as f64
                } else {
                    let f = if most == 0 {
                        0.0
                    } else {
                        counts[i] as f64 / most as f64
                    };
                    x as f64 - penalty * (1.0 - f)
                }
            }));
        top_k_by(&self.scores, input.top_k, &mut out.experts);
        for &e in &out.experts {
            counts[e as usize] += 1;
        }
        gate_weights(self.gate, input.logits, input.logits, out);
    }

    fn extra_ops_per_call(&self, n_experts: usize, top_k: usize) -> u64 {
        // A residency test, a division and a multiply-add per expert; k counter updates.
        3 * n_experts as u64 + top_k as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rarely_selected_non_resident_experts_pay_the_full_penalty() {
        // Scale 1, λ = 1; logits 3, 2.5, 2, 0; expert 3 resident.
        let mut r = FrequencyPenaltyRouter::new(1.0, 1, 4, vec![1.0], GateWeights::Renormalized);
        let logits = [3.0f32, 2.5, 2.0, 0.0];
        let resident = [0, 0, 0, 1];
        let res = Residency::from_resident_bytes(&resident, false);
        let input = RouteInput {
            layer: 0,
            logits: &logits,
            top_k: 2,
            previous_layer: None,
        };
        let mut out = Selection::default();
        // Nothing selected yet: every non-resident expert loses 1 (2, 1.5, 1 against 0).
        r.route(&input, &res, &mut out);
        assert_eq!(out.experts, [0, 1]);
        // Experts 0 and 1 now have the most selections (f = 1): no penalty for them; expert 2
        // (f = 0) still pays 1.
        r.route(&input, &res, &mut out);
        assert_eq!(out.experts, [0, 1]);
        // λ = 0 is the standard router.
        let mut r0 = FrequencyPenaltyRouter::new(0.0, 1, 4, vec![1.0], GateWeights::Renormalized);
        r0.route(&input, &res, &mut out);
        assert_eq!(out.experts, [0, 1]);
        // A large λ before any selection puts the resident expert first.
        let mut big = FrequencyPenaltyRouter::new(10.0, 1, 4, vec![1.0], GateWeights::Renormalized);
        big.route(&input, &res, &mut out);
        assert_eq!(out.experts[0], 3);
    }
}
