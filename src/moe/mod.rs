//! The MoE network being simulated: shapes, parameter counts and bytes per expert.
//!
//! [`MoeSpec`] is the validated runtime form of a model spec ([`spec::MoeSpecFile`]). The
//! cacheable unit is one routed expert of one MoE layer; its size at a weight format is
//! `params_per_expert · bpw / 8`, rounded up to whole blocks.

pub mod kv;
pub mod presets;
pub mod spec;

use serde::{Deserialize, Serialize};

pub use spec::MoeSpecFile;

use crate::error::{Error, InputError, Result};
use crate::quant::format::WeightFormat;

/// The FFN shape of an expert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FfnKind {
    /// Gated: w1 and w3 (h×i) and w2 (i×h).
    Swiglu,
    /// Plain: w_in (h×i) and w_out (i×h).
    Relu,
}

impl FfnKind {
    /// Number of h×i matrices.
    pub fn matrices(self) -> u64 {
        match self {
            FfnKind::Swiglu => 3,
            FfnKind::Relu => 2,
        }
    }
}

/// Parameter counts by component.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ParamBreakdown {
    /// All routed experts of all MoE layers.
    pub routed_experts: u64,
    /// All shared experts.
    pub shared_experts: u64,
    /// Router (gate) matrices.
    pub router: u64,
    /// Attention blocks.
    pub attention: u64,
    /// Dense FFN layers.
    pub dense_ffn: u64,
    /// Input token embedding.
    pub input_embedding: u64,
    /// Output projection (zero when tied to the input embedding).
    pub output_embedding: u64,
    /// Normalisation vectors.
    pub norms: u64,
    /// Everything else, or the whole non-expert count when the spec gives it directly.
    pub extra: u64,
}

impl ParamBreakdown {
    /// The sum of every part; `None` if it overflows.
    pub fn total_checked(&self) -> Option<u64> {
        [
            self.routed_experts,
            self.shared_experts,
            self.router,
            self.attention,
            self.dense_ffn,
            self.input_embedding,
            self.output_embedding,
            self.norms,
            self.extra,
        ]
        .iter()
        .try_fold(0u64, |a, &b| a.checked_add(b))
    }
}

/// Published parameter counts of a model.
#[derive(Debug, Clone)]
pub struct Published {
    /// Total parameters.
    pub total_params: f64,
    /// Active parameters per token, if published.
    pub active_params: Option<f64>,
    /// Whether the publisher leaves the input embedding out of the active count.
    pub active_excludes_input_embedding: bool,
    /// Whether the publisher leaves the output head out of the active count.
    pub active_excludes_output_head: bool,
    /// Citation.
    pub source: String,
}

/// A validated MoE model spec.
#[derive(Debug, Clone)]
pub struct MoeSpec {
    /// Short identifier.
    pub name: String,
    /// One sentence on the model.
    pub description: String,
    /// Citations.
    pub sources: Vec<String>,
    /// Transformer blocks with an FFN.
    pub n_layers: u32,
    /// Model width h.
    pub hidden_size: u64,
    /// Routed expert intermediate width i.
    pub expert_intermediate_size: u64,
    /// Routed experts per MoE layer.
    pub n_experts: u32,
    /// Experts per token per MoE layer.
    pub top_k: u32,
    /// Shared experts per MoE layer.
    pub n_shared_experts: u32,
    /// Shared expert intermediate width.
    pub shared_intermediate_size: u64,
    /// FFN shape.
    pub ffn: FfnKind,
    /// Indices (0-based) of the MoE layers among all layers.
    pub moe_layers: Vec<u32>,
    /// Parameter counts by component.
    pub params: ParamBreakdown,
    /// Published counts, if known.
    pub published: Option<Published>,
    /// The KV cache's shape.
    pub kv: kv::KvShape,
    /// Per MoE layer, the bytes of one routed expert as a GGUF file stores it (its own mix of
    /// formats); `None` for a spec file, whose experts take the run's format.
    pub layer_expert_bytes: Option<Vec<u64>>,
}

impl MoeSpec {
    /// Number of MoE layers.
    pub fn n_moe_layers(&self) -> u32 {
        self.moe_layers.len() as u32
    }

    /// Parameters of one routed expert of one layer.
    pub fn params_per_expert(&self) -> u64 {
        self.ffn.matrices() * self.hidden_size * self.expert_intermediate_size
    }

    /// Parameters of one shared expert of one layer.
    pub fn params_per_shared_expert(&self) -> u64 {
        self.ffn.matrices() * self.hidden_size * self.shared_intermediate_size
    }

    /// Bytes of one routed expert at `format`.
    pub fn expert_bytes(&self, format: WeightFormat) -> u64 {
        // Each matrix is stored on its own, so blocks round up per matrix.
        self.ffn.matrices() * format.bytes_for(self.hidden_size * self.expert_intermediate_size)
    }

    /// Bytes of one shared expert at `format`.
    pub fn shared_expert_bytes(&self, format: WeightFormat) -> u64 {
        self.ffn.matrices() * format.bytes_for(self.hidden_size * self.shared_intermediate_size)
    }

    /// All parameters.
    pub fn total_params(&self) -> u64 {
        let p = &self.params;
        p.routed_experts
            + p.shared_experts
            + p.router
            + p.attention
            + p.dense_ffn
            + p.input_embedding
            + p.output_embedding
            + p.norms
            + p.extra
    }

    /// Non-expert parameters (everything but routed and shared experts).
    pub fn non_expert_params(&self) -> u64 {
        self.total_params() - self.params.routed_experts - self.params.shared_experts
    }

    /// Parameters touched per token, counting every matrix including both embeddings.
    pub fn active_params(&self) -> u64 {
        let routed_active =
            self.n_moe_layers() as u64 * self.top_k as u64 * self.params_per_expert();
        self.total_params() - self.params.routed_experts + routed_active
    }

    /// Active parameters counted the way the publisher counts them.
    pub fn active_params_as_published(&self) -> u64 {
        let (input, output) = self.published.as_ref().map_or((false, false), |p| {
            (
                p.active_excludes_input_embedding,
                p.active_excludes_output_head,
            )
        });
        self.active_params()
            - if input {
                self.params.input_embedding
            } else {
                0
            }
            - if output {
                self.params.output_embedding
            } else {
                0
            }
    }

    /// Multiply-accumulates per token outside the routed experts, excluding the embedding
    /// lookup (which reads one row and multiplies nothing).
    pub fn dense_macs_per_token(&self) -> u64 {
        self.non_expert_params() + self.params.shared_experts - self.params.input_embedding
    }
}

/// Loads a model spec by preset name or file path.
pub fn load(name_or_path: &str) -> Result<MoeSpec> {
    let (label, text) = crate::preset::read_source(
        name_or_path,
        presets::get(name_or_path),
        "model",
        &presets::names(),
    )?;
    parse(&label, &text).map_err(Error::from)
}

/// The unvalidated spec of a model name or spec file, with the label that names it in errors
/// (checked by validating it once, so a bad spec is refused here too).
pub fn load_spec_file(name_or_path: &str) -> Result<(String, MoeSpecFile)> {
    let (label, text) = crate::preset::read_source(
        name_or_path,
        presets::get(name_or_path),
        "model",
        &presets::names(),
    )?;
    let spec: MoeSpecFile = crate::config::parse_toml(&label, &text)?;
    spec.validate(&label)?;
    Ok((label, spec))
}

/// Parses and validates the text of a model spec; `label` names it in errors.
pub fn parse(label: &str, text: &str) -> Result<MoeSpec, InputError> {
    let spec: MoeSpecFile = crate::config::parse_toml(label, text)?;
    spec.validate(label)
}
