//! The oracle: it knows the next layer's standard selection. With the standard router that is
//! exactly what will be needed, so no prefetch strategy can do better; it costs nothing.

use super::{PredictInput, Predictor};

/// Perfect knowledge of the next layer's standard top-k.
#[derive(Debug, Clone, Copy)]
pub struct OraclePredictor;

impl Predictor for OraclePredictor {
    fn predict(&mut self, input: &PredictInput<'_>, out: &mut Vec<u16>) {
        out.clear();
        if let Some(next) = input.next_standard {
            out.extend(next.iter().take(input.count));
        }
    }

    fn ops_per_call(&self, _experts: u64, _hidden: u64, _top_k: u64) -> u64 {
        0
    }

    fn needs_next_standard(&self) -> bool {
        true
    }
}
