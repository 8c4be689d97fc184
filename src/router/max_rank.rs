//! Max-Rank (Skliar et al., arXiv 2412.00099): keep the standard top-J experts and fill the
//! remaining k − J slots with the best-ranked *resident* experts whose standard rank is within
//! `rank_limit`; slots still empty take the next standard ranks. Gate weights come from the
//! original logits.

use super::{GateWeights, Residency, RouteInput, Router, Selection, gate_weights, top_k_by};

/// Max-Rank cache-conditional routing.
#[derive(Debug, Clone)]
pub struct MaxRankRouter {
    keep: usize,
    rank_limit: usize,
    gate: GateWeights,
    ranked: Vec<u16>,
}

impl MaxRankRouter {
    /// Keep `keep` standard experts; take residents from ranks ≤ `rank_limit`.
    pub fn new(keep: usize, rank_limit: usize, gate: GateWeights) -> MaxRankRouter {
        MaxRankRouter {
            keep,
            rank_limit,
            gate,
            ranked: Vec::new(),
        }
    }
}

impl Router for MaxRankRouter {
    fn route(&mut self, input: &RouteInput<'_>, residency: &Residency<'_>, out: &mut Selection) {
        let k = input.top_k;
        let keep = self.keep.min(k);
        top_k_by(input.logits, self.rank_limit.max(k), &mut self.ranked);
        out.experts.clear();
        out.experts
            .extend_from_slice(&self.ranked[..keep.min(self.ranked.len())]);
        for &e in self.ranked.iter().skip(keep) {
            if out.experts.len() == k {
                break;
            }
            if residency.is_resident(e) {
                out.experts.push(e);
            }
        }
        for &e in self.ranked.iter().skip(keep) {
            if out.experts.len() == k {
                break;
            }
            if !out.experts.contains(&e) {
                out.experts.push(e);
            }
        }
        gate_weights(self.gate, input.logits, input.logits, out);
    }

    fn extra_ops_per_call(&self, n_experts: usize, _top_k: usize) -> u64 {
        // Ranking beyond the top-k and residency tests.
        2 * n_experts as u64
    }
}
