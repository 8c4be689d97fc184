//! Long-term preference (seed doc 04 §2.3): experts are ranked on
//! `P_i(t) = α·R_i(x_t) + β·H_i(t−1) + γ·C_i`, with `R` the softmax relevance of the current
//! token, `C_i` = 1 for a resident expert (0 otherwise) and `H` an exponential moving average of
//! past selections at this layer, `H_i(t) = decay·H_i(t−1) + (1−decay)·selected_i(t)`, updated
//! after every routing decision and kept across requests. With β = γ = 0 (α > 0) it is the
//! standard router. Gate weights come from the original logits of the chosen experts.

use super::{GateWeights, Residency, RouteInput, Router, Selection, gate_weights, top_k_by};

/// EMA long-term preference router.
#[derive(Debug, Clone)]
pub struct EmaRouter {
    alpha: f64,
    beta: f64,
    gamma: f64,
    decay: f64,
    experts: usize,
    /// `[layer][expert]`.
    history: Vec<f64>,
    gate: GateWeights,
    scores: Vec<f64>,
}

impl EmaRouter {
    /// A router for `layers` × `experts`.
    pub fn new(
        alpha: f64,
        beta: f64,
        gamma: f64,
        decay: f64,
        layers: u32,
        experts: u32,
        gate: GateWeights,
    ) -> EmaRouter {
        EmaRouter {
            alpha,
            beta,
            gamma,
            decay,
            experts: experts as usize,
            history: vec![0.0; layers as usize * experts as usize],
            gate,
            scores: Vec::new(),
        }
    }
}

impl Router for EmaRouter {
    fn route(&mut self, input: &RouteInput<'_>, residency: &Residency<'_>, out: &mut Selection) {
        let e = self.experts;
        let h = &mut self.history[input.layer as usize * e..(input.layer as usize + 1) * e];
        // Softmax relevance in f64 (no underflow among plausible candidates).
        let max = input
            .logits
            .iter()
            .copied()
            .fold(f32::NEG_INFINITY, f32::max) as f64;
        let sum: f64 = input
            .logits
            .iter()
            .map(|&x| {
                if x == f32::NEG_INFINITY {
                    0.0
                } else {
                    (x as f64 - max).exp()
                }
            })
            .sum();
        self.scores.clear();
        for (i, &x) in input.logits.iter().enumerate() {
            if x == f32::NEG_INFINITY {
                self.scores.push(f64::NEG_INFINITY);
                continue;
            }
            let r = (x as f64 - max).exp() / sum;
            let c = if residency.is_resident(i as u16) {
                1.0
            } else {
                0.0
            };
            self.scores
                .push(self.alpha * r + self.beta * h[i] + self.gamma * c);
        }
        top_k_by(&self.scores, input.top_k, &mut out.experts);
        for v in h.iter_mut() {
            *v *= self.decay;
        }
        for &x in &out.experts {
            h[x as usize] += 1.0 - self.decay;
        }
        gate_weights(self.gate, input.logits, input.logits, out);
    }

    fn extra_ops_per_call(&self, n_experts: usize, _top_k: usize) -> u64 {
        // Softmax, score and history update per expert.
        6 * n_experts as u64
    }
}
