//! Routing traces: which experts each token selects in each MoE layer.
//!
//! The native format (`native.rs`) is JSON Lines, version 1: a header record, then one record
//! per (token, layer) routing event in execution order. Importers (`import/`) convert other
//! formats, exporters (`export.rs`) write libCacheSim's formats, the generator (`generate.rs`)
//! synthesises traces from a hidden-state process (`generate_file.rs` writes them, in parallel
//! over requests), and `stats.rs` characterises a trace. Every reader streams: memory is
//! bounded by the largest request, never by the trace length.
//!
//! Layers in a trace are MoE-layer indices `0..layers` (the model's dense layers are not
//! numbered), so a trace of Mixtral has layers 0..32 and one of DeepSeek-V2-Lite 0..26.

pub mod export;
pub mod fit;
pub mod generate;
pub mod generate_file;
pub mod import;
pub mod json;
pub mod lines;
pub mod native;
pub mod stats;
pub mod token_memory;

use serde::{Deserialize, Serialize};

/// Inference phase of a routing event.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Prompt processing; prefill tokens may be batched layer by layer.
    Prefill,
    /// Generation of one token at a time.
    #[default]
    Decode,
}

impl Phase {
    /// Name used in the native format.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Prefill => "prefill",
            Phase::Decode => "decode",
        }
    }
}

/// The model shape and provenance of a trace, from its header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceMeta {
    /// MoE layers.
    pub layers: u32,
    /// Routed experts per layer.
    pub experts: u32,
    /// Experts selected per event (a selection may be shorter, never longer).
    pub top_k: u32,
    /// Whether every record carries the full router logits.
    pub logits: bool,
    /// Model name, if known.
    pub model: Option<String>,
    /// Where the routing came from (a file, a generator preset).
    pub source: Option<String>,
    /// The generator spec and seed that produced this trace, so that later stages can
    /// regenerate its hidden vectors bit for bit.
    pub generator: Option<serde_json::Value>,
}

/// One (token, layer) routing event. Buffers are reused by readers; `logits` is empty when
/// the trace has no logits, `weights` is empty when gate weights are unknown.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RoutingRecord {
    /// Request (prompt) id.
    pub request: u32,
    /// Inference phase.
    pub phase: Phase,
    /// Token position within the request.
    pub position: u32,
    /// MoE layer index.
    pub layer: u32,
    /// Selected experts in rank order.
    pub experts: Vec<u16>,
    /// Gate weights of the selected experts, in the same order.
    pub weights: Vec<f32>,
    /// Full router logits (one per expert), or empty.
    pub logits: Vec<f32>,
    /// Token id, if recorded.
    pub token: Option<u32>,
}

/// The most MoE layers a trace may declare (DeepSeek-V3 has 58): per-layer state is allocated
/// from the header, so the count is bounded before anything is.
pub const MAX_LAYERS: u32 = 65_536;

/// The most (layer, expert) objects a trace may declare: 2^24, over a thousand times
/// DeepSeek-V3's 14,848. Per-object tables (caches, popularity, placement) are sized from it.
pub const MAX_OBJECTS: u64 = 1 << 24;

/// Checks a trace's shape before anything is sized from it.
pub fn check_shape(layers: u32, experts: u32, top_k: u32) -> Result<(), String> {
    if layers == 0 || experts == 0 || top_k == 0 {
        return Err("layers, experts and top_k must be > 0".into());
    }
    if top_k > experts {
        return Err(format!("top_k {top_k} exceeds experts {experts}"));
    }
    if experts > u16::MAX as u32 + 1 {
        return Err(format!("{experts} experts exceed the supported 65536"));
    }
    if layers > MAX_LAYERS {
        return Err(format!("{layers} layers exceed the supported {MAX_LAYERS}"));
    }
    if layers as u64 * experts as u64 > MAX_OBJECTS {
        return Err(format!(
            "{layers} layers x {experts} experts exceed the supported {MAX_OBJECTS} (layer, expert) pairs"
        ));
    }
    Ok(())
}

impl RoutingRecord {
    /// Checks the record against the trace shape; the reason says what is wrong.
    pub fn validate(&self, meta: &TraceMeta) -> Result<(), String> {
        if self.layer >= MAX_LAYERS {
            return Err(format!(
                "layer {} is beyond the supported {MAX_LAYERS} layers",
                self.layer
            ));
        }
        if self.layer >= meta.layers {
            return Err(format!(
                "layer {} is at or beyond the layer count {}",
                self.layer, meta.layers
            ));
        }
        if self.experts.is_empty() {
            return Err("empty expert selection".into());
        }
        if self.experts.len() > meta.top_k as usize {
            return Err(format!(
                "selection of {} experts is longer than top-k {}",
                self.experts.len(),
                meta.top_k
            ));
        }
        for (i, &e) in self.experts.iter().enumerate() {
            if e as u32 >= meta.experts {
                return Err(format!(
                    "expert id {e} is at or beyond the expert count {}",
                    meta.experts
                ));
            }
            if self.experts[..i].contains(&e) {
                return Err(format!("expert {e} is repeated within one selection"));
            }
        }
        if !self.weights.is_empty() {
            if self.weights.len() != self.experts.len() {
                return Err(format!(
                    "{} gate weights for {} selected experts",
                    self.weights.len(),
                    self.experts.len()
                ));
            }
            for &w in &self.weights {
                if !w.is_finite() {
                    return Err(format!("gate weight {w} is not finite"));
                }
                if w < 0.0 {
                    return Err(format!("gate weight {w} is negative"));
                }
            }
        }
        if meta.logits && self.logits.is_empty() {
            return Err("the header promises logits but this record has none".into());
        }
        if !self.logits.is_empty() {
            if self.logits.len() != meta.experts as usize {
                return Err(format!(
                    "{} logits for {} experts",
                    self.logits.len(),
                    meta.experts
                ));
            }
            if let Some(bad) = self.logits.iter().find(|x| !x.is_finite()) {
                return Err(format!("logit {bad} is not finite"));
            }
        }
        Ok(())
    }
}

/// Checks the order of records within a stream, with memory bounded by the layer count:
/// requests appear in non-decreasing order; within a request every prefill record precedes
/// every decode record and every prefill position is below every decode position; within a
/// (request, phase, layer) stream positions strictly increase, so no (token, layer) repeats.
#[derive(Debug, Clone)]
pub struct OrderCheck {
    request: Option<u32>,
    phase: Phase,
    last_position: Vec<Option<u32>>,
    max_prefill_position: Option<u32>,
}

impl OrderCheck {
    /// A checker for a trace of `layers` layers.
    pub fn new(layers: u32) -> OrderCheck {
        OrderCheck {
            request: None,
            phase: Phase::Prefill,
            last_position: vec![None; layers as usize],
            max_prefill_position: None,
        }
    }

    /// Checks the next record; call after [`RoutingRecord::validate`].
    pub fn check(&mut self, r: &RoutingRecord) -> Result<(), String> {
        if self.request != Some(r.request) {
            if let Some(prev) = self.request
                && r.request < prev
            {
                return Err(format!(
                    "request {} appears after request {prev}: requests must be contiguous and in order",
                    r.request
                ));
            }
            self.request = Some(r.request);
            self.phase = r.phase;
            self.last_position.iter_mut().for_each(|p| *p = None);
            self.max_prefill_position = None;
        } else if r.phase != self.phase {
            if r.phase == Phase::Prefill {
                return Err(format!(
                    "prefill record after decode records in request {}",
                    r.request
                ));
            }
            self.phase = r.phase;
            self.last_position.iter_mut().for_each(|p| *p = None);
        }
        if r.phase == Phase::Decode
            && let Some(max) = self.max_prefill_position
            && r.position <= max
        {
            return Err(format!(
                "decode position {} is not after the last prefill position {max}",
                r.position
            ));
        }
        let slot = &mut self.last_position[r.layer as usize];
        if let Some(prev) = *slot
            && r.position <= prev
        {
            return Err(format!(
                "position {} at layer {} does not follow position {prev} (request {}, {}): positions must \
                     strictly increase within a layer",
                r.position,
                r.layer,
                r.request,
                r.phase.name()
            ));
        }
        *slot = Some(r.position);
        if r.phase == Phase::Prefill {
            self.max_prefill_position = Some(
                self.max_prefill_position
                    .map_or(r.position, |m| m.max(r.position)),
            );
        }
        Ok(())
    }
}
