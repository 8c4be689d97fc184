//! Probability bonus: a residency bonus added to the post-softmax gate probabilities of cached
//! experts before top-k, as some published offloading systems do (as opposed to the
//! memory-aware router's bonus on the logits). Experts are ranked on
//! `softmax(logits)_i + bonus · [i resident]`; the gate weights come from the original logits.
//! A bonus of 1 or more puts every resident expert ahead of every other (the hard-mask limit).

use super::{GateWeights, Residency, RouteInput, Router, Selection, gate_weights, top_k_by};

/// Top-k of the gate probabilities plus a bonus for resident experts.
#[derive(Debug, Clone)]
pub struct ProbBonusRouter {
    bonus: f64,
    gate: GateWeights,
    scores: Vec<f64>,
}

impl ProbBonusRouter {
    /// A router adding `bonus` to the probability of every resident expert.
    pub fn new(bonus: f64, gate: GateWeights) -> ProbBonusRouter {
        ProbBonusRouter {
            bonus,
            gate,
            scores: Vec::new(),
        }
    }
}

impl Router for ProbBonusRouter {
    fn route(&mut self, input: &RouteInput<'_>, residency: &Residency<'_>, out: &mut Selection) {
        let max = input
            .logits
            .iter()
            .copied()
            .fold(f32::NEG_INFINITY, f32::max) as f64;
        self.scores.clear();
        let mut sum = 0.0;
        for &x in input.logits {
            // exp(-inf) = 0: experts outside a restricted trace's candidates get no probability.
            let p = (x as f64 - max).exp();
            sum += p;
            self.scores.push(p);
        }
        for (i, s) in self.scores.iter_mut().enumerate() {
            *s /= sum;
            if residency.is_resident(i as u16) && input.logits[i] != f32::NEG_INFINITY {
                *s += self.bonus;
            }
        }
        top_k_by(&self.scores, input.top_k, &mut out.experts);
        gate_weights(self.gate, input.logits, input.logits, out);
    }

    fn extra_ops_per_call(&self, n_experts: usize, _top_k: usize) -> u64 {
        // An exponential, a division, a residency test and an add per expert.
        4 * n_experts as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(bonus: f64, logits: &[f32], resident: &[u64]) -> Vec<u16> {
        let mut r = ProbBonusRouter::new(bonus, GateWeights::Renormalized);
        let mut out = Selection::default();
        let input = RouteInput {
            layer: 0,
            logits,
            top_k: 2,
            previous_layer: None,
        };
        r.route(
            &input,
            &Residency::from_resident_bytes(resident, false),
            &mut out,
        );
        out.experts
    }

    #[test]
    fn the_bonus_acts_on_probabilities_not_logits() {
        // Probabilities 0.5, 0.3, 0.2 (logits ln of them); expert 2 resident.
        let logits = [0.5f32.ln(), 0.3f32.ln(), 0.2f32.ln()];
        let resident = [0, 0, 1];
        assert_eq!(
            route(0.0, &logits, &resident),
            [0, 1],
            "no bonus: standard top-2"
        );
        // 0.2 + 0.09 < 0.3: not enough; 0.2 + 0.11 > 0.3: expert 2 overtakes expert 1.
        assert_eq!(route(0.09, &logits, &resident), [0, 1]);
        assert_eq!(route(0.11, &logits, &resident), [0, 2]);
        // A bonus of 1 puts the resident expert first.
        assert_eq!(route(1.0, &logits, &resident), [2, 0]);
    }
}
