//! The memory-aware router in its Cache-Prior form (seed doc 04 §2.2; Skliar et al., arXiv
//! 2412.00099): experts are ranked on `logits + λ(t) · s · M`, where `M_i` is `hot_bonus` for a
//! resident expert, 0 for a non-resident one while the cache has room, and `−evict_penalty`
//! when loading it would evict a resident expert. `s` is the layer's logit scale (the mean gap
//! between the top-1 and the top-k logit under standard routing), so λ is in units of that
//! gap. Gate weights come from the original logits of the chosen experts unless the biased
//! mode is asked for. Annealing: `λ(t) = min(λ, warmup_rate · t)`, t = tokens routed so far
//! (counted at layer 0). Scores are computed in f64 so that a very large λ keeps the logit
//! order among residents (the hard-mask limit).

use super::{GateWeights, Residency, RouteInput, Router, Selection, gate_weights, top_k_by};

/// Cache-Prior memory-aware routing.
#[derive(Debug, Clone)]
pub struct MemoryAwareRouter {
    lambda: f64,
    hot_bonus: f64,
    evict_penalty: f64,
    warmup_rate: Option<f64>,
    scales: Vec<f32>,
    gate: GateWeights,
    tokens: u64,
    scores: Vec<f64>,
}

impl MemoryAwareRouter {
    /// A router with bonus strength `lambda` and per-layer logit scales `scales`.
    pub fn new(
        lambda: f64,
        hot_bonus: f64,
        evict_penalty: f64,
        warmup_rate: Option<f64>,
        scales: Vec<f32>,
        gate: GateWeights,
    ) -> MemoryAwareRouter {
        MemoryAwareRouter {
            lambda,
            hot_bonus,
            evict_penalty,
            warmup_rate,
            scales,
            gate,
            tokens: 0,
            scores: Vec::new(),
        }
    }

    /// λ(t) for the current token.
    pub fn current_lambda(&self) -> f64 {
        match self.warmup_rate {
            Some(rate) => self.lambda.min(rate * self.tokens as f64),
            None => self.lambda,
        }
    }
}

impl Router for MemoryAwareRouter {
    fn route(&mut self, input: &RouteInput<'_>, residency: &Residency<'_>, out: &mut Selection) {
        if input.layer == 0 {
            self.tokens += 1;
        }
        let lambda = self.current_lambda();
        let scale = self
            .scales
            .get(input.layer as usize)
            .copied()
            .unwrap_or(1.0) as f64;
        let hot = lambda * scale * self.hot_bonus;
        let cold = if residency.has_room() {
            0.0
        } else {
            -lambda * scale * self.evict_penalty
        };
        residency.add_bonus(input.logits, hot, cold, &mut self.scores);
        top_k_by(&self.scores, input.top_k, &mut out.experts);
        if self.gate == GateWeights::Biased {
            // Softmax of the biased scores over the selection, in f64 (the bonus can dwarf the
            // logit differences).
            let biased: Vec<f64> = out
                .experts
                .iter()
                .map(|&e| self.scores[e as usize])
                .collect();
            let max = biased.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = biased.iter().map(|&b| (b - max).exp()).sum();
            out.weights.clear();
            out.weights
                .extend(biased.iter().map(|&b| ((b - max).exp() / sum) as f32));
        } else {
            gate_weights(self.gate, input.logits, input.logits, out);
        }
    }

    fn extra_ops_per_call(&self, n_experts: usize, _top_k: usize) -> u64 {
        // One residency test, one multiply-add per expert.
        2 * n_experts as u64
    }
}
