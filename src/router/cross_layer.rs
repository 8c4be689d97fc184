//! Cross-layer affinity (the seed's open question 3: coordinate selections across layers).
//! The router learns online, per layer pair, how often expert j is selected at layer l by a
//! token that selected expert i at layer l − 1: `P̂(j | i) = (n_ij + 1) / (n_i + E)`. A token
//! whose previous-layer selection S is known ranks experts on `logits_j + λ · s · mean_{i∈S}
//! P̂(j | i)`; without S (the first layer, or an unknown previous layer) it routes as the
//! standard router. Counts are updated with the router's own selections and kept across
//! requests. Gate weights come from the original logits.

use super::{GateWeights, Residency, RouteInput, Router, Selection, gate_weights, top_k_by};

/// Cross-layer affinity router.
#[derive(Debug, Clone)]
pub struct CrossLayerRouter {
    lambda: f64,
    experts: usize,
    scales: Vec<f32>,
    /// `[layer][i][j]`: tokens with i at layer − 1 and j at layer.
    pairs: Vec<u32>,
    /// `[layer][i]`: tokens with i at layer − 1 (that reached this layer).
    rows: Vec<u32>,
    gate: GateWeights,
    scores: Vec<f64>,
}

impl CrossLayerRouter {
    /// A router for `layers` × `experts` with per-layer logit scales.
    pub fn new(
        lambda: f64,
        layers: u32,
        experts: u32,
        scales: Vec<f32>,
        gate: GateWeights,
    ) -> CrossLayerRouter {
        let (l, e) = (layers as usize, experts as usize);
        CrossLayerRouter {
            lambda,
            experts: e,
            scales,
            pairs: vec![0; l * e * e],
            rows: vec![0; l * e],
            gate,
            scores: Vec::new(),
        }
    }
}

impl Router for CrossLayerRouter {
    fn route(&mut self, input: &RouteInput<'_>, _residency: &Residency<'_>, out: &mut Selection) {
        let e = self.experts;
        let l = input.layer as usize;
        let scale = self.scales.get(l).copied().unwrap_or(1.0) as f64;
        self.scores.clear();
        self.scores.extend(input.logits.iter().map(|&x| x as f64));
        let previous = input.previous_layer.filter(|p| l > 0 && !p.is_empty());
        if let Some(prev) = previous {
            for (j, score) in self.scores.iter_mut().enumerate() {
                if *score == f64::NEG_INFINITY {
                    continue;
                }
                let mut p = 0.0;
                for &i in prev {
                    let n_ij = self.pairs[(l * e + i as usize) * e + j] as f64;
                    let n_i = self.rows[l * e + i as usize] as f64;
                    p += (n_ij + 1.0) / (n_i + e as f64);
                }
                *score += self.lambda * scale * p / prev.len() as f64;
            }
        }
        top_k_by(&self.scores, input.top_k, &mut out.experts);
        if let Some(prev) = previous {
            for &i in prev {
                self.rows[l * e + i as usize] += 1;
                for &j in &out.experts {
                    self.pairs[(l * e + i as usize) * e + j as usize] += 1;
                }
            }
        }
        gate_weights(self.gate, input.logits, input.logits, out);
    }

    fn extra_ops_per_call(&self, n_experts: usize, top_k: usize) -> u64 {
        // One affinity term per (previous-layer expert, expert), then k x k count updates.
        (top_k * n_experts + top_k * top_k) as u64
    }

    fn uses_previous_layer(&self) -> bool {
        true
    }
}
