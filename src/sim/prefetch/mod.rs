//! Prefetch strategies: during layer `l` of a decode token, guess which experts layer `l + 1`
//! will select and start loading them over the same links as demand loads. One file per
//! predictor, one [`PrefetchKind`] with one `build` match.
//!
//! Prefetch stays within a token (the last layer prefetches nothing) and is off during the
//! batched prefill, whose loads are issued together anyway. What happens to a wrong guess is
//! the simulator's business ([`super::setup::OnWrongPrefetch`]).

mod history;
mod oracle;
mod speculative;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use history::HistoryPredictor;
pub use oracle::OraclePredictor;
pub use speculative::SpeculativePredictor;

/// What a predictor may see when it guesses layer `layer + 1` of the current token.
#[derive(Debug, Clone, Copy)]
pub struct PredictInput<'a> {
    /// The current layer.
    pub layer: u32,
    /// The current layer's selection for this token.
    pub selection: &'a [u16],
    /// Layer `layer + 1`'s router applied to this layer's hidden state (generated traces).
    pub speculative_logits: Option<&'a [f32]>,
    /// The standard top-k of layer `layer + 1` for this token (the oracle's knowledge).
    pub next_standard: Option<&'a [u16]>,
    /// Experts to propose.
    pub count: usize,
}

/// A next-layer expert predictor.
pub trait Predictor: Send + fmt::Debug {
    /// Proposes up to `input.count` experts of layer `input.layer + 1`, most likely first.
    fn predict(&mut self, input: &PredictInput<'_>, out: &mut Vec<u16>);
    /// Learns from the selection `selection` at `layer`, given the same token's selection at
    /// `layer − 1` (`None` at layer 0).
    fn observe(&mut self, layer: u32, previous: Option<&[u16]>, selection: &[u16]) {
        let _ = (layer, previous, selection);
    }
    /// Operations (MACs or scalar operations) per prediction, charged on the compute unit.
    fn ops_per_call(&self, experts: u64, hidden: u64, top_k: u64) -> u64;
    /// Whether it reads [`PredictInput::next_standard`], the next layer's standard top-k (the
    /// oracle); the simulator computes it only then.
    fn needs_next_standard(&self) -> bool {
        false
    }
}

/// Selects a prefetch strategy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum PrefetchKind {
    /// No prefetch: every miss is a demand load.
    None {},
    /// Apply layer l+1's router to layer l's hidden state (mixtral-offloading's speculative
    /// loading, Eliseev & Mazur 2023). Needs hidden states: a generated trace source.
    Speculative {},
    /// Learned online: an EMA of which layer-(l+1) experts follow each layer-l expert.
    History {
        /// Decay of the co-selection EMA per observation.
        #[serde(default = "default_history_decay")]
        decay: f64,
    },
    /// The standard top-k of the next layer, known in advance: the upper bound (exact with the
    /// standard router).
    Oracle {},
}

fn default_history_decay() -> f64 {
    0.9
}

impl Default for PrefetchKind {
    fn default() -> Self {
        PrefetchKind::None {}
    }
}

impl PrefetchKind {
    /// Builds the predictor for `layers` × `experts`; `None` for no prefetch.
    pub fn build(&self, layers: u32, experts: u32) -> Option<Box<dyn Predictor>> {
        match self {
            PrefetchKind::None {} => None,
            PrefetchKind::Speculative {} => Some(Box::new(SpeculativePredictor)),
            PrefetchKind::History { decay } => {
                Some(Box::new(HistoryPredictor::new(*decay, layers, experts)))
            }
            PrefetchKind::Oracle {} => Some(Box::new(OraclePredictor)),
        }
    }

    /// The short name.
    pub fn name(&self) -> &'static str {
        match self {
            PrefetchKind::None {} => "none",
            PrefetchKind::Speculative {} => "speculative",
            PrefetchKind::History { .. } => "history",
            PrefetchKind::Oracle {} => "oracle",
        }
    }

    /// Every parameter, as `name=value` pairs separated by spaces.
    pub fn params(&self) -> String {
        match self {
            PrefetchKind::History { decay } => format!("decay={decay}"),
            _ => String::new(),
        }
    }

    /// Checks parameters against the model it predicts for; the error names the field.
    pub fn validate(
        &self,
        shape: &crate::param::ModelShape,
    ) -> Result<(), crate::param::ParamError> {
        match self {
            PrefetchKind::History { decay } => {
                crate::param::decay("decay", *decay)?;
                // Its co-selection EMA: layers × experts² floats.
                let (l, e) = (shape.layers as u64, shape.experts as u64);
                let bytes = e
                    .checked_mul(e)
                    .and_then(|x| x.checked_mul(l))
                    .and_then(|x| x.checked_mul(8));
                crate::units::check_working_bytes(
                    &format!("its co-selection table for {l} layers x {e} experts"),
                    bytes,
                )
                .map(|_| ())
                .map_err(|why| crate::param::ParamError::new("kind", "history", why))
            }
            _ => Ok(()),
        }
    }
}
