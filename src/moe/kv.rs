//! The KV cache of a model: what one token of context keeps per attention layer, what
//! sliding-window and linear-attention layers keep instead, and the model's context limit.
//!
//! A model spec's optional `[context]` table ([`ContextSpec`]) is validated into a [`KvShape`]:
//! by default every attention block is full attention and keeps, per token, the widths its
//! attention kind stores (GQA: a key and a value per KV head, `2 · kv_heads · head_dim`; MLA:
//! the compressed latent and the rotary key, `kv_lora_rank + qk_rope_head_dim`). Hybrid models
//! say how many blocks are full attention, how many slide a window (they keep at most `window`
//! tokens) and how many are linear attention (a fixed recurrent state per request, whatever the
//! context). Bytes follow from a [`KvFormat`], the element format the engine stores the cache in.

use serde::{Deserialize, Serialize};

use super::spec::AttentionSpec;

/// `[context]` of a model spec.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextSpec {
    /// The longest context the model supports (`max_position_embeddings`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// Blocks with full attention over the whole context (default: every attention block that
    /// is not sliding-window or linear).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_attention_layers: Option<u32>,
    /// Values one token keeps per full-attention layer (default: from `dense.attention`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values_per_token: Option<u64>,
    /// Multiply-accumulates per (query token, context token) pair per attention layer
    /// (default: from `dense.attention`: `2 · heads · head_dim` for GQA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub macs_per_pair: Option<u64>,
    /// Blocks with sliding-window attention.
    #[serde(default)]
    pub sliding_window_layers: u32,
    /// The window of those blocks, in tokens.
    #[serde(default)]
    pub sliding_window_tokens: u64,
    /// Blocks with linear attention (a recurrent state instead of a KV cache).
    #[serde(default)]
    pub linear_attention_layers: u32,
    /// Values of one linear-attention block's state per request (kept in f32, as engines do).
    #[serde(default)]
    pub linear_state_values: u64,
}

/// The KV cache's shape, validated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KvShape {
    /// The model's context limit, if its spec states one.
    pub max_tokens: Option<u64>,
    /// Full-attention layers.
    pub full_layers: u32,
    /// Values per token per full or sliding-window layer (0 when the model's attention is not
    /// given: then no KV figure can be computed).
    pub values_per_token: u64,
    /// MACs per (query, key) pair per full or sliding-window layer.
    pub macs_per_pair: u64,
    /// Sliding-window layers and their window.
    pub window_layers: u32,
    /// The window, in tokens.
    pub window_tokens: u64,
    /// Linear-attention layers and their state per request.
    pub linear_layers: u32,
    /// Values of one linear layer's state.
    pub linear_state_values: u64,
}

impl KvShape {
    /// Whether the spec gives enough to size a KV cache.
    pub fn is_known(&self) -> bool {
        self.values_per_token > 0 || (self.full_layers == 0 && self.window_layers == 0)
    }

    /// Bytes the KV cache of one request holds at `context` tokens, in `format`; also what one
    /// decode token reads (every full layer all of it, a window layer its window, a linear
    /// layer its state).
    pub fn bytes_at(&self, context: u64, format: KvFormat) -> u64 {
        let full = context.saturating_mul(self.full_layers as u64);
        let window = context.min(self.window_tokens) * self.window_layers as u64;
        let values = (full + window).saturating_mul(self.values_per_token);
        format
            .bytes_of(values)
            .saturating_add(self.linear_layers as u64 * self.linear_state_values * 4)
    }

    /// Attention MACs of `queries` new tokens whose first sees `context` earlier tokens
    /// (each query attends to the tokens before it and itself).
    pub fn macs(&self, context: u64, queries: u64) -> u64 {
        let q = queries;
        // Full layers: sum over i < q of (context + i + 1) pairs.
        let full_pairs = q * context + q * (q + 1) / 2;
        let window_pairs: u64 = if self.window_layers == 0 {
            0
        } else {
            (0..q)
                .map(|i| (context + i + 1).min(self.window_tokens))
                .sum()
        };
        let pairs = full_pairs * self.full_layers as u64 + window_pairs * self.window_layers as u64;
        let linear = q * self.linear_layers as u64 * self.linear_state_values;
        pairs
            .saturating_mul(self.macs_per_pair)
            .saturating_add(linear)
    }
}

/// Per-token widths of an attention kind: (values kept, MACs per pair).
fn attention_widths(a: &AttentionSpec) -> (u64, u64) {
    match *a {
        AttentionSpec::Gqa {
            heads,
            kv_heads,
            head_dim,
            ..
        } => (2 * kv_heads * head_dim, 2 * heads * head_dim),
        AttentionSpec::Mla {
            heads,
            kv_lora_rank,
            qk_rope_head_dim,
            ..
        } => (
            kv_lora_rank + qk_rope_head_dim,
            // Absorbed MLA: scores against the latent and rotary key, values from the latent.
            heads * (2 * kv_lora_rank + qk_rope_head_dim),
        ),
    }
}

/// The largest count a `[context]` figure may give (10^12).
const MAX_CONTEXT_FIGURE: u64 = 1_000_000_000_000;

impl ContextSpec {
    /// Validates against the model's attention (if given) and its attention block count.
    /// Errors are `(key under context., reason)`.
    pub fn validate(
        &self,
        attention: Option<&AttentionSpec>,
        attention_blocks: u32,
    ) -> Result<KvShape, (String, String)> {
        let e = |k: &str, r: String| Err((format!("context.{k}"), r));
        for (k, v) in [
            ("max_tokens", self.max_tokens.unwrap_or(1)),
            ("values_per_token", self.values_per_token.unwrap_or(1)),
            ("macs_per_pair", self.macs_per_pair.unwrap_or(1)),
            ("sliding_window_tokens", self.sliding_window_tokens),
            ("linear_state_values", self.linear_state_values),
        ] {
            if v > MAX_CONTEXT_FIGURE {
                return e(k, format!("{v}: must be at most 10^12"));
            }
        }
        if self.max_tokens == Some(0) {
            return e("max_tokens", "must be at least 1".into());
        }
        let (values, macs) = attention.map(attention_widths).unwrap_or((0, 0));
        let values = self.values_per_token.unwrap_or(values);
        let macs = self.macs_per_pair.unwrap_or(macs);
        let special = self.sliding_window_layers as u64 + self.linear_attention_layers as u64;
        if special > attention_blocks as u64 {
            return e(
                "sliding_window_layers",
                format!(
                    "{} sliding-window and {} linear-attention layers exceed the model's {attention_blocks} attention blocks",
                    self.sliding_window_layers, self.linear_attention_layers
                ),
            );
        }
        let full = match self.full_attention_layers {
            Some(f) if f as u64 + special > attention_blocks as u64 => {
                return e(
                    "full_attention_layers",
                    format!(
                        "{f} full plus {special} sliding-window or linear layers exceed the model's {attention_blocks} attention blocks"
                    ),
                );
            }
            Some(f) => f,
            None => attention_blocks - special as u32,
        };
        if self.sliding_window_layers > 0 && self.sliding_window_tokens == 0 {
            return e(
                "sliding_window_tokens",
                "the sliding-window layers need their window (tokens > 0)".into(),
            );
        }
        if self.linear_attention_layers > 0 && self.linear_state_values == 0 {
            return e(
                "linear_state_values",
                "the linear-attention layers need their state size (values > 0)".into(),
            );
        }
        Ok(KvShape {
            max_tokens: self.max_tokens,
            full_layers: full,
            values_per_token: values,
            macs_per_pair: macs,
            window_layers: self.sliding_window_layers,
            window_tokens: self.sliding_window_tokens,
            linear_layers: self.linear_attention_layers,
            linear_state_values: self.linear_state_values,
        })
    }
}

/// The element format of a KV cache (llama.cpp's `--cache-type-k/-v`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KvFormat {
    /// 4 bytes per value.
    F32,
    /// 2 bytes per value (the usual default).
    #[default]
    F16,
    /// 2 bytes per value.
    Bf16,
    /// Blocks of 32 values in 34 bytes (ggml Q8_0).
    Q8_0,
    /// Blocks of 32 values in 18 bytes (ggml Q4_0).
    Q4_0,
}

impl KvFormat {
    /// Bytes of `values` values (whole blocks for the block formats).
    pub fn bytes_of(self, values: u64) -> u64 {
        match self {
            KvFormat::F32 => values.saturating_mul(4),
            KvFormat::F16 | KvFormat::Bf16 => values.saturating_mul(2),
            KvFormat::Q8_0 => values.div_ceil(32).saturating_mul(34),
            KvFormat::Q4_0 => values.div_ceil(32).saturating_mul(18),
        }
    }

    /// The name as written in TOML.
    pub fn name(self) -> &'static str {
        match self {
            KvFormat::F32 => "f32",
            KvFormat::F16 => "f16",
            KvFormat::Bf16 => "bf16",
            KvFormat::Q8_0 => "q8_0",
            KvFormat::Q4_0 => "q4_0",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gqa() -> AttentionSpec {
        AttentionSpec::Gqa {
            heads: 32,
            kv_heads: 8,
            head_dim: 128,
            qkv_bias: false,
            o_bias: false,
        }
    }

    #[test]
    fn mixtral_kv_is_128_kib_per_token_in_f16() {
        // 32 layers x 2 (K, V) x 8 heads x 128 x 2 bytes = 131,072 bytes per token.
        let kv = ContextSpec::default().validate(Some(&gqa()), 32).unwrap();
        assert_eq!(kv.bytes_at(1, KvFormat::F16), 131_072);
        assert_eq!(kv.bytes_at(1000, KvFormat::F16), 131_072_000);
        // q8_0: 2048 values per layer = 64 blocks of 34 bytes.
        assert_eq!(kv.bytes_at(1, KvFormat::Q8_0), 32 * 64 * 34);
    }

    #[test]
    fn windows_and_linear_layers_keep_only_what_they_keep() {
        let spec = ContextSpec {
            sliding_window_layers: 12,
            sliding_window_tokens: 128,
            linear_attention_layers: 4,
            linear_state_values: 1000,
            ..ContextSpec::default()
        };
        let kv = spec.validate(Some(&gqa()), 24).unwrap();
        assert_eq!(kv.full_layers, 8);
        let per_layer_token = 2048 * 2;
        let state = 4 * 1000 * 4;
        assert_eq!(
            kv.bytes_at(100, KvFormat::F16),
            (8 * 100 + 12 * 100) * per_layer_token + state
        );
        assert_eq!(
            kv.bytes_at(10_000, KvFormat::F16),
            (8 * 10_000 + 12 * 128) * per_layer_token + state
        );
    }

    #[test]
    fn prefill_pairs_are_a_triangle() {
        let kv = ContextSpec::default().validate(Some(&gqa()), 1).unwrap();
        // 3 queries on 10 earlier tokens: 11 + 12 + 13 pairs.
        assert_eq!(kv.macs(10, 3), 36 * 2 * 32 * 128);
    }

    #[test]
    fn too_many_special_layers_name_the_key() {
        let spec = ContextSpec {
            sliding_window_layers: 30,
            sliding_window_tokens: 10,
            ..ContextSpec::default()
        };
        let (key, _) = spec.validate(Some(&gqa()), 24).unwrap_err();
        assert_eq!(key, "context.sliding_window_layers");
    }
}
