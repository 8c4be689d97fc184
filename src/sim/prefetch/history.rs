//! History-based prediction, learned online: for each layer pair (l, l+1), an exponential
//! moving average `T[l][i][j]` of how often expert j is selected at layer l+1 by a token that
//! selected expert i at layer l. The guess for layer l+1 ranks experts by
//! `Σ_{i ∈ S_l} T[l][i][j]`. Each observation decays the rows of the previous selection:
//! `T[l][i][·] ← decay · T[l][i][·] + (1 − decay) · 1[j ∈ S_{l+1}]`.

use super::{PredictInput, Predictor};
use crate::router::top_k_by;

/// Co-selection EMA predictor.
#[derive(Debug, Clone)]
pub struct HistoryPredictor {
    decay: f32,
    experts: usize,
    /// `[layer][i][j]`, layer = the earlier layer of the pair.
    table: Vec<f32>,
    scores: Vec<f32>,
}

impl HistoryPredictor {
    /// A predictor for `layers` × `experts`.
    pub fn new(decay: f64, layers: u32, experts: u32) -> HistoryPredictor {
        let e = experts as usize;
        HistoryPredictor {
            decay: decay as f32,
            experts: e,
            table: vec![0.0; layers as usize * e * e],
            scores: vec![0.0; e],
        }
    }
}

impl Predictor for HistoryPredictor {
    fn predict(&mut self, input: &PredictInput<'_>, out: &mut Vec<u16>) {
        let e = self.experts;
        let base = input.layer as usize * e * e;
        self.scores.iter_mut().for_each(|s| *s = 0.0);
        for &i in input.selection {
            let row = &self.table[base + i as usize * e..][..e];
            for (s, &t) in self.scores.iter_mut().zip(row) {
                *s += t;
            }
        }
        // Nothing learned yet: no guess rather than experts 0..count.
        if self.scores.iter().all(|&s| s == 0.0) {
            out.clear();
            return;
        }
        top_k_by(&self.scores, input.count, out);
    }

    fn observe(&mut self, layer: u32, previous: Option<&[u16]>, selection: &[u16]) {
        let (Some(prev), true) = (previous, layer > 0) else {
            return;
        };
        let e = self.experts;
        let base = (layer as usize - 1) * e * e;
        for &i in prev {
            let row = &mut self.table[base + i as usize * e..][..e];
            row.iter_mut().for_each(|t| *t *= self.decay);
            for &j in selection {
                row[j as usize] += 1.0 - self.decay;
            }
        }
    }

    fn ops_per_call(&self, experts: u64, _hidden: u64, top_k: u64) -> u64 {
        // Sum k rows, rank, and the k-row update.
        3 * top_k * experts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_a_fixed_transition() {
        let mut p = HistoryPredictor::new(0.5, 2, 4);
        let mut out = Vec::new();
        let input = PredictInput {
            layer: 0,
            selection: &[1],
            speculative_logits: None,
            next_standard: None,
            count: 1,
        };
        p.predict(&input, &mut out);
        assert!(out.is_empty(), "no guess before any observation");
        for _ in 0..3 {
            p.observe(1, Some(&[1]), &[3]);
        }
        p.predict(&input, &mut out);
        assert_eq!(out, [3]);
        // Expert 0 at layer 0 has no history.
        p.predict(
            &PredictInput {
                selection: &[0],
                ..input
            },
            &mut out,
        );
        assert!(out.is_empty());
    }
}
