//! `MoeSpecFile`: the serde shape of a MoE model spec (TOML), and its validation into [`MoeSpec`].
//!
//! A spec transcribes a model's `config.json`: layer count, widths, expert counts, top-k, and
//! enough of the non-expert architecture (attention, embeddings, dense FFN layers) to count
//! parameters exactly. Alternatively `[dense] params = N` gives the non-expert count directly.

use serde::{Deserialize, Serialize};

use super::{FfnKind, MoeSpec, ParamBreakdown, Published};
use crate::error::InputError;

/// The schema version this build reads.
pub const MODEL_SCHEMA_VERSION: u32 = 1;

/// The largest parameter count a model spec may give (10^15, 1,500 times DeepSeek-V3): every
/// count is checked against it, so sizes in bytes and MACs cannot overflow downstream.
pub const MAX_PARAMS: u64 = 1_000_000_000_000_000;

/// A MoE model spec as written in TOML.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoeSpecFile {
    /// Must equal [`MODEL_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Short identifier, e.g. `mixtral-8x7b`.
    pub name: String,
    /// One sentence on the model.
    pub description: String,
    /// Where the figures come from.
    pub sources: Vec<String>,
    /// Transformer blocks that carry an FFN (MoE or dense).
    pub layers: u32,
    /// Model width h.
    pub hidden_size: u64,
    /// Intermediate width i of one routed expert.
    pub expert_intermediate_size: u64,
    /// Routed experts per MoE layer.
    pub routed_experts: u32,
    /// Experts selected per token per MoE layer.
    pub top_k: u32,
    /// Always-active shared experts per MoE layer.
    #[serde(default)]
    pub shared_experts: u32,
    /// Intermediate width of a shared expert; defaults to `expert_intermediate_size`.
    #[serde(default)]
    pub shared_expert_intermediate_size: Option<u64>,
    /// FFN shape: SwiGLU has 3·h·i parameters per expert, ReLU 2·h·i.
    pub ffn: FfnKind,
    /// The first this-many layers have a dense FFN instead of experts (DeepSeek).
    #[serde(default)]
    pub first_dense_layers: u32,
    /// Every `moe_every`-th remaining layer is MoE, starting with the last of each group
    /// (Switch: 2, so layers 1, 3, 5, … are MoE); 1 means every layer.
    #[serde(default = "one")]
    pub moe_every: u32,
    /// The non-expert part of the model.
    pub dense: DenseSpec,
    /// Published parameter counts, for the consistency test.
    #[serde(default)]
    pub published: Option<PublishedSpec>,
    /// The KV cache's shape and the context limit (default: every attention block full
    /// attention, widths from `dense.attention`, no stated limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<super::kv::ContextSpec>,
}

fn one() -> u32 {
    1
}

/// The non-expert parameters, either counted from the architecture or given directly.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenseSpec {
    /// Give the non-expert parameter count directly (then give nothing else in this table).
    pub params: Option<u64>,
    /// Vocabulary size.
    pub vocab_size: Option<u64>,
    /// Whether the output projection shares the input embedding matrix.
    pub tied_embeddings: Option<bool>,
    /// Attention blocks (self and cross); defaults to `layers`.
    pub attention_blocks: Option<u32>,
    /// Attention shape of one block.
    pub attention: Option<AttentionSpec>,
    /// Intermediate width of the dense FFN layers, if any.
    pub dense_ffn_intermediate_size: Option<u64>,
    /// Normalisation vectors of width h per layer (2 for pre-norm attention and FFN).
    #[serde(default)]
    pub norms_per_layer: u32,
    /// Parameters not covered above (final norm, biases, relative position tables).
    #[serde(default)]
    pub extra_params: u64,
}

/// The attention of one block.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum AttentionSpec {
    /// Multi-head or grouped-query attention.
    Gqa {
        /// Query heads.
        heads: u64,
        /// Key/value heads.
        kv_heads: u64,
        /// Width of one head.
        head_dim: u64,
        /// Bias on the q, k and v projections.
        #[serde(default)]
        qkv_bias: bool,
        /// Bias on the output projection.
        #[serde(default)]
        o_bias: bool,
    },
    /// DeepSeek multi-head latent attention.
    Mla {
        /// Heads.
        heads: u64,
        /// Rank of the query compression; 0 for a plain query projection.
        q_lora_rank: u64,
        /// Rank of the key/value compression.
        kv_lora_rank: u64,
        /// Per-head query/key width without rotary part.
        qk_nope_head_dim: u64,
        /// Per-head rotary width.
        qk_rope_head_dim: u64,
        /// Per-head value width.
        v_head_dim: u64,
    },
}

/// Published parameter counts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishedSpec {
    /// Total parameters as published.
    pub total_params: f64,
    /// Active parameters per token as published, if the source gives them.
    pub active_params: Option<f64>,
    /// Whether the source leaves the input embedding out of the active count.
    #[serde(default)]
    pub active_excludes_input_embedding: bool,
    /// Whether the source leaves the output head out of the active count too (Zhipu's GLM).
    #[serde(default)]
    pub active_excludes_output_head: bool,
    /// Where the figures were published.
    pub source: String,
}

impl MoeSpecFile {
    /// Checks every value and builds the runtime spec. `file` names the input in errors.
    pub fn validate(&self, file: &str) -> Result<MoeSpec, InputError> {
        let err = |key: &str, reason: String| InputError::at_key(file, key, reason);
        if self.schema_version != MODEL_SCHEMA_VERSION {
            return Err(err(
                "schema_version",
                format!(
                    "unsupported version {} (this build reads {MODEL_SCHEMA_VERSION})",
                    self.schema_version
                ),
            ));
        }
        if self.name.trim().is_empty() {
            return Err(err("name", "must not be empty".into()));
        }
        for (key, value) in [
            ("layers", self.layers as u64),
            ("hidden_size", self.hidden_size),
            ("expert_intermediate_size", self.expert_intermediate_size),
            ("routed_experts", self.routed_experts as u64),
            ("top_k", self.top_k as u64),
            ("moe_every", self.moe_every as u64),
        ] {
            if value == 0 {
                return Err(err(key, "must be > 0".into()));
            }
        }
        if self.top_k > self.routed_experts {
            return Err(err(
                "top_k",
                format!(
                    "{} exceeds routed_experts {}",
                    self.top_k, self.routed_experts
                ),
            ));
        }
        if self.first_dense_layers >= self.layers {
            return Err(err(
                "first_dense_layers",
                format!(
                    "{} leaves no MoE layer out of {}",
                    self.first_dense_layers, self.layers
                ),
            ));
        }
        let moe_layers: Vec<u32> = (self.first_dense_layers..self.layers)
            .filter(|l| (l - self.first_dense_layers + 1).is_multiple_of(self.moe_every))
            .collect();
        if moe_layers.is_empty() {
            return Err(err(
                "moe_every",
                format!("{} selects no MoE layer", self.moe_every),
            ));
        }
        let n_moe = moe_layers.len() as u64;
        let n_dense_ffn = self.layers as u64 - n_moe;
        let h = self.hidden_size;
        let ffn_factor = self.ffn.matrices();
        let shared_i = self
            .shared_expert_intermediate_size
            .unwrap_or(self.expert_intermediate_size);
        if shared_i == 0 {
            return Err(err("shared_expert_intermediate_size", "must be > 0".into()));
        }

        // Every count is a checked product, bounded by MAX_PARAMS: a width typed with extra
        // digits is refused by key instead of wrapping to a small total.
        let count = |key: &str, factors: &[u64]| -> Result<u64, InputError> {
            factors
                .iter()
                .try_fold(1u64, |a, &f| a.checked_mul(f))
                .filter(|&n| n <= MAX_PARAMS)
                .ok_or_else(|| {
                    err(
                        key,
                        format!("gives more than 10^15 parameters ({factors:?} multiplied)"),
                    )
                })
        };
        // An overflowing product is blamed on its largest factor the file gives by key.
        let largest = |keyed: &[(&'static str, u64)]| -> &'static str {
            keyed
                .iter()
                .fold(keyed[0], |m, &f| if f.1 > m.1 { f } else { m })
                .0
        };
        let shared_i_key = if self.shared_expert_intermediate_size.is_some() {
            "shared_expert_intermediate_size"
        } else {
            "expert_intermediate_size"
        };
        let mut params = ParamBreakdown {
            routed_experts: count(
                largest(&[
                    ("expert_intermediate_size", self.expert_intermediate_size),
                    ("routed_experts", self.routed_experts as u64),
                    ("hidden_size", h),
                ]),
                &[
                    n_moe,
                    self.routed_experts as u64,
                    ffn_factor,
                    h,
                    self.expert_intermediate_size,
                ],
            )?,
            shared_experts: count(
                largest(&[
                    (shared_i_key, shared_i),
                    ("shared_experts", self.shared_experts as u64),
                    ("hidden_size", h),
                ]),
                &[n_moe, self.shared_experts as u64, ffn_factor, h, shared_i],
            )?,
            router: count("routed_experts", &[n_moe, h, self.routed_experts as u64])?,
            ..ParamBreakdown::default()
        };

        let d = &self.dense;
        if let Some(total) = d.params {
            let architecture_given = d.vocab_size.is_some()
                || d.tied_embeddings.is_some()
                || d.attention.is_some()
                || d.attention_blocks.is_some()
                || d.dense_ffn_intermediate_size.is_some()
                || d.norms_per_layer != 0
                || d.extra_params != 0;
            if architecture_given {
                return Err(err(
                    "dense.params",
                    "give either `params` or the architecture (vocab_size, attention, ...), not both".into(),
                ));
            }
            params.extra = count("dense.params", &[total])?;
        } else {
            let vocab = d.vocab_size.ok_or_else(|| {
                err(
                    "dense.vocab_size",
                    "missing field (or give dense.params)".into(),
                )
            })?;
            let tied = d.tied_embeddings.ok_or_else(|| {
                err(
                    "dense.tied_embeddings",
                    "missing field (or give dense.params)".into(),
                )
            })?;
            let attention = d.attention.as_ref().ok_or_else(|| {
                err(
                    "dense.attention",
                    "missing field (or give dense.params)".into(),
                )
            })?;
            params.input_embedding = count("dense.vocab_size", &[vocab, h])?;
            params.output_embedding = if tied { 0 } else { params.input_embedding };
            let blocks = d.attention_blocks.unwrap_or(self.layers) as u64;
            attention
                .validate()
                .map_err(|(k, r)| err(&format!("dense.attention.{k}"), r))?;
            let per_block = attention
                .params(h)
                .ok_or_else(|| err("dense.attention", "gives more than 10^15 parameters".into()))?;
            params.attention = count("dense.attention", &[blocks, per_block])?;
            if n_dense_ffn > 0 {
                let i = d.dense_ffn_intermediate_size.ok_or_else(|| {
                    err(
                        "dense.dense_ffn_intermediate_size",
                        format!("missing field: the model has {n_dense_ffn} dense FFN layers"),
                    )
                })?;
                params.dense_ffn = count(
                    "dense.dense_ffn_intermediate_size",
                    &[n_dense_ffn, ffn_factor, h, i],
                )?;
            } else if d.dense_ffn_intermediate_size.is_some() {
                return Err(err(
                    "dense.dense_ffn_intermediate_size",
                    "the model has no dense FFN layer".into(),
                ));
            }
            params.norms = count(
                "dense.norms_per_layer",
                &[d.norms_per_layer as u64, self.layers as u64, h],
            )?;
            params.extra = count("dense.extra_params", &[d.extra_params])?;
        }
        if params.total_checked().is_none_or(|t| t > MAX_PARAMS) {
            return Err(err(
                "dense",
                "the model's parameters add up to more than 10^15".into(),
            ));
        }

        let published = match &self.published {
            None => None,
            Some(p) => {
                if !(p.total_params.is_finite() && p.total_params > 0.0) {
                    return Err(err(
                        "published.total_params",
                        "must be a finite number > 0".into(),
                    ));
                }
                if let Some(a) = p.active_params
                    && !(a.is_finite() && a > 0.0)
                {
                    return Err(err(
                        "published.active_params",
                        "must be a finite number > 0".into(),
                    ));
                }
                Some(Published {
                    total_params: p.total_params,
                    active_params: p.active_params,
                    active_excludes_input_embedding: p.active_excludes_input_embedding,
                    active_excludes_output_head: p.active_excludes_output_head,
                    source: p.source.clone(),
                })
            }
        };

        let attention_blocks = self.dense.attention_blocks.unwrap_or(self.layers);
        let kv = self
            .context
            .clone()
            .unwrap_or_default()
            .validate(self.dense.attention.as_ref(), attention_blocks)
            .map_err(|(k, r)| err(&k, r))?;

        Ok(MoeSpec {
            name: self.name.clone(),
            description: self.description.clone(),
            sources: self.sources.clone(),
            n_layers: self.layers,
            hidden_size: h,
            expert_intermediate_size: self.expert_intermediate_size,
            n_experts: self.routed_experts,
            top_k: self.top_k,
            n_shared_experts: self.shared_experts,
            shared_intermediate_size: shared_i,
            ffn: self.ffn,
            moe_layers,
            params,
            published,
            kv,
            layer_expert_bytes: None,
        })
    }
}

impl AttentionSpec {
    /// Checks the head layout; the error names the field.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        match *self {
            AttentionSpec::Gqa {
                heads,
                kv_heads,
                head_dim,
                ..
            } => {
                if heads == 0 {
                    return Err(("heads", "must be > 0".into()));
                }
                if head_dim == 0 {
                    return Err(("head_dim", "must be > 0".into()));
                }
                if kv_heads == 0 || kv_heads > heads || !heads.is_multiple_of(kv_heads) {
                    return Err((
                        "kv_heads",
                        format!(
                            "{kv_heads}: must be in 1..={heads} and divide heads ({heads}), as grouped-query attention shares each KV head among heads / kv_heads query heads"
                        ),
                    ));
                }
                Ok(())
            }
            AttentionSpec::Mla {
                heads,
                kv_lora_rank,
                qk_rope_head_dim,
                v_head_dim,
                ..
            } => {
                for (k, v) in [
                    ("heads", heads),
                    ("kv_lora_rank", kv_lora_rank),
                    ("qk_rope_head_dim", qk_rope_head_dim),
                    ("v_head_dim", v_head_dim),
                ] {
                    if v == 0 {
                        return Err((k, "must be > 0".into()));
                    }
                }
                Ok(())
            }
        }
    }

    /// Parameters of one attention block at model width `h`; `None` if the count overflows.
    pub fn params(&self, h: u64) -> Option<u64> {
        let m = |a: u64, b: u64| a.checked_mul(b);
        let add = |a: u64, b: u64| a.checked_add(b);
        match *self {
            AttentionSpec::Gqa {
                heads,
                kv_heads,
                head_dim,
                qkv_bias,
                o_bias,
            } => {
                let q = m(m(h, heads)?, head_dim)?;
                let kv = m(m(m(2, h)?, kv_heads)?, head_dim)?;
                let o = q;
                let bias = if qkv_bias {
                    m(add(heads, m(2, kv_heads)?)?, head_dim)?
                } else {
                    0
                } + if o_bias { h } else { 0 };
                add(add(add(q, kv)?, o)?, bias)
            }
            AttentionSpec::Mla {
                heads,
                q_lora_rank,
                kv_lora_rank,
                qk_nope_head_dim,
                qk_rope_head_dim,
                v_head_dim,
            } => {
                let q_width = m(heads, add(qk_nope_head_dim, qk_rope_head_dim)?)?;
                // With a low-rank query: down-projection, its norm, up-projection.
                let q = if q_lora_rank == 0 {
                    m(h, q_width)?
                } else {
                    add(
                        add(m(h, q_lora_rank)?, q_lora_rank)?,
                        m(q_lora_rank, q_width)?,
                    )?
                };
                let kv_down = add(m(h, add(kv_lora_rank, qk_rope_head_dim)?)?, kv_lora_rank)?;
                let kv_up = m(m(kv_lora_rank, heads)?, add(qk_nope_head_dim, v_head_dim)?)?;
                let o = m(m(heads, v_head_dim)?, h)?;
                add(add(add(q, kv_down)?, kv_up)?, o)
            }
        }
    }
}
