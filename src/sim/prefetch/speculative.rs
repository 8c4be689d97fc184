//! Speculative next-layer loading (mixtral-offloading, Eliseev & Mazur, arXiv 2312.17238):
//! apply layer l+1's gate to layer l's hidden state, which changes little from one layer to
//! the next through the residual stream, and fetch its top experts. The simulator supplies the
//! speculative logits (the generator's router of layer l+1 applied to the token's layer-l
//! hidden vector); the prediction costs one gate GEMV.

use super::{PredictInput, Predictor};
use crate::router::top_k_by;

/// Speculative gating on the current hidden state.
#[derive(Debug, Clone, Copy)]
pub struct SpeculativePredictor;

impl Predictor for SpeculativePredictor {
    fn predict(&mut self, input: &PredictInput<'_>, out: &mut Vec<u16>) {
        match input.speculative_logits {
            Some(logits) => top_k_by(logits, input.count, out),
            None => out.clear(),
        }
    }

    fn ops_per_call(&self, experts: u64, hidden: u64, _top_k: u64) -> u64 {
        experts * hidden
    }
}
