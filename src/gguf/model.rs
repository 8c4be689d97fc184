//! A GGUF file's MoE model: its shape from the metadata (`{arch}.block_count`,
//! `{arch}.expert_count`, ...), its parameters and bytes counted from the tensors themselves,
//! and the per-layer formats of its routed experts (a `Q4_K_M` file keeps part of them in Q6_K).
//!
//! Routed experts are the merged 3-D tensors `blk.N.ffn_{gate,up,down}_exps.weight` (ggml `ne`
//! = [in, out, experts]); shared experts `blk.N.ffn_*_shexp.weight`; the router
//! `blk.N.ffn_gate_inp.weight`. Everything else (attention, norms, dense FFN blocks, biases,
//! embeddings, output head) is non-expert. The model spec [`GgufModel::to_spec`] writes gives
//! the non-expert count directly (`[dense] params`), so its total equals the file's values
//! exactly, and the KV shape in `[context]`.

use super::read::{GgufHeader, TensorInfo};
use super::types::GgmlType;
use crate::moe::kv::ContextSpec;
use crate::moe::spec::{DenseSpec, MoeSpecFile};
use crate::moe::{FfnKind, spec::MODEL_SCHEMA_VERSION};

/// The architectures whose metadata names this reader has been checked against.
pub const ARCHITECTURES: &[&str] = &[
    "llama",
    "qwen2moe",
    "qwen3moe",
    "deepseek2",
    "gpt-oss",
    "glm4moe",
    "olmoe",
    "phimoe",
];

/// The routed experts of one MoE layer as the file stores them.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerExperts {
    /// Transformer block index.
    pub layer: u32,
    /// Format of the gate projection (absent for a plain FFN).
    pub gate: Option<GgmlType>,
    /// Format of the up projection.
    pub up: GgmlType,
    /// Format of the down projection.
    pub down: GgmlType,
    /// Bytes of one expert (its slice of each of the three tensors).
    pub expert_bytes: u64,
}

/// Values and bytes of one component of the model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Part {
    /// Values (parameters).
    pub values: u64,
    /// Bytes in the file.
    pub bytes: u64,
}

impl Part {
    fn add(&mut self, t: &TensorInfo) {
        // Tensors may overlap in a crafted file, so the sums are not bounded by its size.
        self.values = self.values.saturating_add(t.values());
        self.bytes = self.bytes.saturating_add(t.bytes);
    }
}

/// A GGUF file read as a MoE model.
#[derive(Debug, Clone)]
pub struct GgufModel {
    /// `general.architecture`.
    pub architecture: String,
    /// `general.name`, or the file's stem.
    pub name: String,
    /// Transformer blocks.
    pub layers: u32,
    /// Model width.
    pub hidden: u64,
    /// Routed experts per MoE layer.
    pub experts: u32,
    /// Experts each token uses.
    pub top_k: u32,
    /// Width of one routed expert.
    pub expert_ffn: u64,
    /// SwiGLU (a gate projection) or plain.
    pub ffn: FfnKind,
    /// Shared experts per MoE layer.
    pub shared_experts: u32,
    /// Width of one shared expert.
    pub shared_ffn: u64,
    /// Blocks with routed experts, and their formats and bytes.
    pub moe_layers: Vec<LayerExperts>,
    /// Routed experts.
    pub routed: Part,
    /// Shared experts.
    pub shared: Part,
    /// Routers (`ffn_gate_inp`).
    pub router: Part,
    /// The input embedding.
    pub embedding: Part,
    /// The output head.
    pub output: Part,
    /// Everything else: attention, norms, dense FFN blocks, biases.
    pub other: Part,
    /// The KV shape and context limit from the metadata.
    pub context: ContextSpec,
}

/// Why a file cannot be read as a MoE model: the key or tensor, and the reason.
pub type ModelError = (String, String);

fn err<T>(at: impl Into<String>, reason: impl Into<String>) -> Result<T, ModelError> {
    Err((at.into(), reason.into()))
}

impl GgufModel {
    /// Reads the model in `h`; `stem` names it when the file has no `general.name`.
    pub fn from_header(h: &GgufHeader, stem: &str) -> Result<GgufModel, ModelError> {
        let arch = match h.get("general.architecture").and_then(|v| v.as_str()) {
            Some(a)
                if !a.is_empty()
                    && a.len() <= 64
                    && a.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) =>
            {
                a.to_string()
            }
            Some(a) => {
                return err(
                    "general.architecture",
                    format!(
                        "`{}` is not an architecture name",
                        super::read::printable(a)
                    ),
                );
            }
            None => return err("general.architecture", "missing: not a model file"),
        };
        let key = |k: &str| format!("{arch}.{k}");
        let uint = |k: &str| -> Result<u64, ModelError> {
            let full = key(k);
            match h.get(&full) {
                None => err(full, "missing"),
                Some(v) => v
                    .as_u64()
                    .ok_or_else(|| (full.clone(), "not a non-negative integer".to_string())),
            }
        };
        let opt = |k: &str| h.get(&key(k)).and_then(|v| v.as_u64());
        let layers = uint("block_count")?;
        let hidden = uint("embedding_length")?;
        let experts = uint("expert_count")?;
        let top_k = uint("expert_used_count")?;
        if hidden == 0 || hidden > MAX_HIDDEN {
            return err(
                key("embedding_length"),
                format!("{hidden}: not a model width (1..={MAX_HIDDEN})"),
            );
        }
        if layers == 0 || layers > 10_000 {
            return err(key("block_count"), format!("{layers}: not a block count"));
        }
        if experts == 0 || experts > 65_535 {
            return err(
                key("expert_count"),
                format!("{experts}: not a MoE expert count (1..=65535)"),
            );
        }
        if top_k == 0 || top_k > experts {
            return err(
                key("expert_used_count"),
                format!("{top_k}: must be in 1..={experts}"),
            );
        }
        let mut m = GgufModel {
            architecture: arch.clone(),
            name: super::read::printable(
                h.get("general.name")
                    .and_then(|v| v.as_str())
                    .unwrap_or(stem),
            ),
            layers: layers as u32,
            hidden,
            experts: experts as u32,
            top_k: top_k as u32,
            expert_ffn: 0,
            ffn: FfnKind::Swiglu,
            shared_experts: 0,
            shared_ffn: 0,
            moe_layers: Vec::new(),
            routed: Part::default(),
            shared: Part::default(),
            router: Part::default(),
            embedding: Part::default(),
            output: Part::default(),
            other: Part::default(),
            context: ContextSpec::default(),
        };
        // Classify every tensor.
        let mut shexp_ffn: Option<u64> = None;
        for t in &h.tensors {
            let n = t.name.as_str();
            if n.ends_with("_exps.weight") {
                m.routed.add(t);
            } else if n.contains("_shexp.") && n.ends_with(".weight") && !n.contains("gate_inp") {
                m.shared.add(t);
                if n.contains("ffn_up_shexp") {
                    shexp_ffn = Some(t.dims[1]);
                }
            } else if n.ends_with("ffn_gate_inp.weight") {
                m.router.add(t);
            } else if n == "token_embd.weight" {
                m.embedding.add(t);
            } else if n == "output.weight" {
                m.output.add(t);
            } else {
                m.other.add(t);
            }
        }
        if h.tensors.iter().any(|t| {
            t.name.starts_with("blk.0.ffn_gate.0.") || t.name.starts_with("blk.0.ffn_up.0.")
        }) {
            return err(
                "blk.0.ffn_up.0.weight",
                "experts stored as one tensor each (an old Mixtral layout); convert the model with a recent llama.cpp, which merges them",
            );
        }
        // The routed experts of each block.
        for layer in 0..m.layers {
            let p = format!("blk.{layer}.");
            let get = |s: &str| h.tensor(&format!("{p}{s}_exps.weight"));
            let (Some(up), Some(down)) = (get("ffn_up"), get("ffn_down")) else {
                continue;
            };
            let gate = get("ffn_gate");
            let expect = |t: &TensorInfo, inner: u64, outer: u64| -> Result<(), ModelError> {
                if t.dims.len() != 3
                    || t.dims[0] != inner
                    || t.dims[1] != outer
                    || t.dims[2] != experts
                {
                    return err(
                        t.name.clone(),
                        format!(
                            "dimensions {:?}, expected [{inner}, {outer}, {experts}] ({arch}.embedding_length, expert width, {arch}.expert_count)",
                            t.dims
                        ),
                    );
                }
                Ok(())
            };
            let ffn = up.dims.get(1).copied().unwrap_or(0);
            expect(up, hidden, ffn)?;
            expect(down, ffn, hidden)?;
            if let Some(g) = gate {
                expect(g, hidden, ffn)?;
            }
            if m.moe_layers.is_empty() {
                m.expert_ffn = ffn;
                m.ffn = if gate.is_some() {
                    FfnKind::Swiglu
                } else {
                    FfnKind::Relu
                };
            } else if ffn != m.expert_ffn || gate.is_some() != (m.ffn == FfnKind::Swiglu) {
                return err(
                    up.name.clone(),
                    format!(
                        "experts of width {ffn} where block {} has {}: moesim specs give every MoE layer the same experts",
                        m.moe_layers[0].layer, m.expert_ffn
                    ),
                );
            }
            let bytes = up.bytes + down.bytes + gate.map_or(0, |g| g.bytes);
            m.moe_layers.push(LayerExperts {
                layer,
                gate: gate.map(|g| g.ggml_type),
                up: up.ggml_type,
                down: down.ggml_type,
                expert_bytes: bytes / experts,
            });
        }
        if m.moe_layers.is_empty() {
            return err(
                "blk.0.ffn_up_exps.weight",
                "no routed expert tensors (blk.N.ffn_*_exps.weight): not a MoE model",
            );
        }
        if let Some(f) = shexp_ffn {
            let count = opt("expert_shared_count").unwrap_or(1).max(1);
            m.shared_experts = count as u32;
            m.shared_ffn = f / count;
        }
        m.context = context_of(h, &arch, m.layers)?;
        Ok(m)
    }

    /// Every value in the file.
    pub fn total_values(&self) -> u64 {
        [
            self.routed,
            self.shared,
            self.router,
            self.embedding,
            self.output,
            self.other,
        ]
        .iter()
        .map(|p| p.values)
        .sum()
    }

    /// The model as a moesim spec: shape from the metadata, the non-expert parameters counted
    /// from the tensors (`[dense] params`), the KV shape.
    pub fn to_spec(&self, file: &str) -> Result<MoeSpecFile, ModelError> {
        let moe: Vec<u32> = self.moe_layers.iter().map(|l| l.layer).collect();
        let first = moe[0];
        // moesim's layout: after `first_dense_layers`, every `moe_every`-th block is MoE, the
        // last of each group.
        let every = if moe.len() > 1 { moe[1] - moe[0] } else { 1 };
        let (first_dense, every) = if every == 1 {
            (first, 1)
        } else {
            ((first + 1).saturating_sub(every), every)
        };
        let layout: Vec<u32> = (first_dense..self.layers)
            .filter(|l| (l - first_dense + 1).is_multiple_of(every))
            .collect();
        if layout != moe {
            return err(
                format!("blk.{first}.ffn_up_exps.weight"),
                format!(
                    "routed experts in blocks {moe:?}: moesim specs need the MoE blocks to follow the first dense ones at a fixed interval"
                ),
            );
        }
        let n_moe = moe.len() as u64;
        // moesim counts the routers itself (h x experts per MoE layer) and the shared experts
        // from their width; the rest of the file is `[dense] params`.
        let router_counted = n_moe * self.hidden * self.experts as u64;
        // The shared experts' width is bounded only by the file's size, not by the metadata
        // limits above, and a header may describe a file far larger than its own: their count
        // is checked.
        let shared_counted = [
            self.shared_experts as u64,
            self.ffn.matrices(),
            self.hidden,
            self.shared_ffn,
        ]
        .iter()
        .try_fold(n_moe, |a, &b| a.checked_mul(b));
        let dense = shared_counted
            .and_then(|s| s.checked_add(router_counted))
            .and_then(|counted| (self.total_values() - self.routed.values).checked_sub(counted))
            .ok_or_else(|| {
                (
                    "ffn_gate_inp".to_string(),
                    "the routers and shared experts count more values than the file holds"
                        .to_string(),
                )
            })?;
        Ok(MoeSpecFile {
            schema_version: MODEL_SCHEMA_VERSION,
            name: slug(&self.name),
            description: format!(
                "{}: {} MoE layers x {} experts (h {}, i {}), top-{}, imported from a GGUF file ({})",
                self.name,
                n_moe,
                self.experts,
                self.hidden,
                self.expert_ffn,
                self.top_k,
                self.architecture
            ),
            sources: vec![format!(
                "{file}: GGUF metadata and tensor shapes (moesim model import)"
            )],
            layers: self.layers,
            hidden_size: self.hidden,
            expert_intermediate_size: self.expert_ffn,
            routed_experts: self.experts,
            top_k: self.top_k,
            shared_experts: self.shared_experts,
            shared_expert_intermediate_size: (self.shared_experts > 0).then_some(self.shared_ffn),
            ffn: self.ffn,
            first_dense_layers: first_dense,
            moe_every: every,
            dense: DenseSpec {
                params: Some(dense),
                ..DenseSpec::default()
            },
            published: None,
            context: Some(self.context.clone()),
        })
    }
}

impl GgufModel {
    /// The validated moesim model, carrying each MoE layer's exact expert bytes as the file
    /// stores them; errors are one line naming `file` and the key.
    pub fn to_moe_spec(&self, file: &str) -> Result<crate::moe::MoeSpec, String> {
        let spec = self
            .to_spec(file)
            .map_err(|(at, reason)| format!("{file}: {at}: {reason}"))?;
        let mut m = spec.validate(file).map_err(|e| e.to_string())?;
        m.layer_expert_bytes = Some(self.moe_layers.iter().map(|l| l.expert_bytes).collect());
        Ok(m)
    }
}

/// A file-name-safe identifier.
fn slug(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let s = s.trim_matches('-').to_string();
    if s.is_empty() { "imported".into() } else { s }
}

/// The largest head count or head width read from a file's attention metadata.
const MAX_ATTENTION_FIGURE: u64 = 1 << 20;

/// The largest model width (`{arch}.embedding_length`) a file may state.
const MAX_HIDDEN: u64 = 1 << 24;

/// The KV shape from the attention metadata.
fn context_of(h: &GgufHeader, arch: &str, layers: u32) -> Result<ContextSpec, ModelError> {
    let key = |k: &str| format!("{arch}.{k}");
    let opt = |k: &str| h.get(&key(k)).and_then(|v| v.as_u64());
    // Head counts and widths: no model has more than 2^20 of either, and the products below
    // stay far inside u64 with them so bounded.
    let width = |k: &str| -> Result<Option<u64>, ModelError> {
        match opt(k) {
            Some(v) if v > MAX_ATTENTION_FIGURE => err(
                key(k),
                format!("{v}: larger than any model's ({MAX_ATTENTION_FIGURE} at most)"),
            ),
            v => Ok(v),
        }
    };
    let heads = width("attention.head_count")?.unwrap_or(0);
    let embd = opt("embedding_length").unwrap_or(0);
    let mut c = ContextSpec {
        max_tokens: opt("context_length"),
        ..ContextSpec::default()
    };
    if let Some(rank) = width("attention.kv_lora_rank")? {
        // Multi-head latent attention: the latent and the rotary key per token.
        let rope = width("rope.dimension_count")?.unwrap_or(0);
        c.values_per_token = Some(rank + rope);
        c.macs_per_pair = Some(heads * (2 * rank + rope));
        return Ok(c);
    }
    // head_count_kv may be a per-layer array (hybrid models: 0 for layers without attention).
    let (kv_heads, full_layers) = match h.get(&key("attention.head_count_kv")) {
        Some(super::read::Value::Array(v)) => {
            let nonzero: Vec<u64> = v.iter().filter(|&&x| x > 0.0).map(|&x| x as u64).collect();
            (
                nonzero.iter().copied().max().unwrap_or(0),
                Some(nonzero.len() as u32),
            )
        }
        Some(v) => (v.as_u64().unwrap_or(heads), None),
        None => (heads, None),
    };
    if kv_heads > MAX_ATTENTION_FIGURE {
        return err(
            key("attention.head_count_kv"),
            format!("{kv_heads}: larger than any model's ({MAX_ATTENTION_FIGURE} at most)"),
        );
    }
    if heads == 0 || kv_heads == 0 {
        return err(
            key("attention.head_count"),
            "missing or zero: the KV cache cannot be sized",
        );
    }
    // The default is at most the model width, which `from_header` bounds by `MAX_HIDDEN`.
    let k_len = width("attention.key_length")?.unwrap_or(embd / heads);
    let v_len = width("attention.value_length")?.unwrap_or(k_len);
    c.values_per_token = Some(kv_heads * (k_len + v_len));
    c.macs_per_pair = Some(heads * (k_len + v_len));
    c.full_attention_layers = full_layers;
    if let Some(window) = opt("attention.sliding_window")
        && window > 0
        && arch == "gpt-oss"
    {
        // gpt-oss alternates sliding-window and full-attention blocks.
        c.sliding_window_layers = layers / 2;
        c.sliding_window_tokens = window;
        c.full_attention_layers = Some(layers - layers / 2);
    }
    Ok(c)
}
