//! llama.cpp's quantization mixes: the type `llama-quantize` gives each tensor of a model for a
//! mix such as `Q4_K_M` (which keeps some layers' `ffn_down` and `attn_v` in Q6_K, Mixtral's
//! `attn_k`/`attn_v` in Q8_0 and the output head in Q6_K).
//!
//! The rules are llama.cpp's `llama_tensor_get_type_impl` and `tensor_type_fallback`
//! (`src/llama-quant.cpp`, llama-cpp-python 0.3.36's vendored llama.cpp, commit 0c1e570), for
//! the mixes `llama-quantize` runs without an importance matrix; written from a reading of
//! that source and checked against the types `llama-quantize` wrote for four small MoE models
//! and 19 mixes (`tests/data/ggml-mix/`, `scripts/ggml_mix_fixtures.sh`). The mixes that need
//! an importance matrix (IQ1_*, IQ2_*, IQ3_XXS, IQ3_XS, Q2_K_S) are refused.
//!
//! [`apply`] rewrites a [`GgufHeader`]'s tensor types and byte counts: a real file's header (what
//! requantizing it would give) or one [`super::layout`] writes for a model spec.

use std::fmt;
use std::str::FromStr;

use super::read::{GgufHeader, TensorInfo};
use super::types::{GgmlType, TYPES};

/// A llama.cpp quantization mix (`llama-quantize`'s type argument).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum Mix {
    Q2K,
    Q3KS,
    Q3KM,
    Q3KL,
    Q4KS,
    Q4KM,
    Q5KS,
    Q5KM,
    Q6K,
    Q8_0,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Iq4Nl,
    Iq4Xs,
    Iq3S,
    Iq3M,
    Mxfp4Moe,
}

impl Mix {
    /// Every mix moesim knows, most bits first.
    pub const ALL: [Mix; 19] = [
        Mix::Q8_0,
        Mix::Q6K,
        Mix::Q5_1,
        Mix::Q5KM,
        Mix::Q5KS,
        Mix::Q5_0,
        Mix::Q4_1,
        Mix::Q4KM,
        Mix::Q4KS,
        Mix::Iq4Nl,
        Mix::Q4_0,
        Mix::Iq4Xs,
        Mix::Mxfp4Moe,
        Mix::Q3KL,
        Mix::Q3KM,
        Mix::Iq3M,
        Mix::Iq3S,
        Mix::Q3KS,
        Mix::Q2K,
    ];

    /// llama-quantize's name (`Q4_K_M`).
    pub fn name(self) -> &'static str {
        match self {
            Mix::Q2K => "Q2_K",
            Mix::Q3KS => "Q3_K_S",
            Mix::Q3KM => "Q3_K_M",
            Mix::Q3KL => "Q3_K_L",
            Mix::Q4KS => "Q4_K_S",
            Mix::Q4KM => "Q4_K_M",
            Mix::Q5KS => "Q5_K_S",
            Mix::Q5KM => "Q5_K_M",
            Mix::Q6K => "Q6_K",
            Mix::Q8_0 => "Q8_0",
            Mix::Q4_0 => "Q4_0",
            Mix::Q4_1 => "Q4_1",
            Mix::Q5_0 => "Q5_0",
            Mix::Q5_1 => "Q5_1",
            Mix::Iq4Nl => "IQ4_NL",
            Mix::Iq4Xs => "IQ4_XS",
            Mix::Iq3S => "IQ3_S",
            Mix::Iq3M => "IQ3_M",
            Mix::Mxfp4Moe => "MXFP4_MOE",
        }
    }

    /// The type most tensors get (`llama_ftype_get_default_type`).
    pub fn default_type(self) -> GgmlType {
        ty(match self {
            Mix::Q2K => "Q2_K",
            Mix::Q3KS | Mix::Q3KM | Mix::Q3KL => "Q3_K",
            Mix::Q4KS | Mix::Q4KM => "Q4_K",
            Mix::Q5KS | Mix::Q5KM => "Q5_K",
            Mix::Q6K => "Q6_K",
            Mix::Q8_0 => "Q8_0",
            Mix::Q4_0 => "Q4_0",
            Mix::Q4_1 => "Q4_1",
            Mix::Q5_0 => "Q5_0",
            Mix::Q5_1 => "Q5_1",
            Mix::Iq4Nl => "IQ4_NL",
            Mix::Iq4Xs => "IQ4_XS",
            Mix::Iq3S | Mix::Iq3M => "IQ3_S",
            Mix::Mxfp4Moe => "MXFP4",
        })
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Mix {
    type Err = String;

    /// Case-insensitive; `Q3_K`, `Q4_K` and `Q5_K` mean their `_M` mixes, as in llama-quantize.
    fn from_str(s: &str) -> Result<Mix, String> {
        let upper = s.to_ascii_uppercase();
        let alias = match upper.as_str() {
            "Q3_K" => "Q3_K_M",
            "Q4_K" => "Q4_K_M",
            "Q5_K" => "Q5_K_M",
            other => other,
        };
        if let Some(m) = Mix::ALL.into_iter().find(|m| m.name() == alias) {
            return Ok(m);
        }
        let needs_imatrix = [
            "IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ3_XXS", "IQ3_XS", "Q2_K_S",
        ];
        if needs_imatrix.contains(&alias) {
            return Err(format!(
                "mix `{s}`: llama-quantize gives some tensors of it types that need an importance matrix, which moesim does not model"
            ));
        }
        let names: Vec<&str> = Mix::ALL.iter().map(|m| m.name()).collect();
        Err(format!(
            "unknown mix `{s}` (expected one of {})",
            names.join(", ")
        ))
    }
}

/// The ggml type named `name` (names here are from the table).
fn ty(name: &str) -> GgmlType {
    *TYPES
        .iter()
        .find(|t| t.name == name)
        .expect("a type of ggml's table")
}

/// What the rules call a tensor (`tensor_get_category`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Category {
    Output,
    TokenEmbedding,
    AttentionV,
    AttentionK,
    AttentionQ,
    AttentionOutput,
    FfnUp,
    FfnGate,
    FfnDown,
    Other,
}

fn category(name: &str) -> Category {
    use Category as C;
    if name == "output.weight" {
        C::Output
    } else if name == "token_embd.weight" || name == "per_layer_token_embd.weight" {
        C::TokenEmbedding
    } else if name.contains("attn_qkv.weight")
        || name.contains("attn_kv_b.weight")
        || name.contains("attn_v.weight")
    {
        // llama.cpp's attn_v rules also take the fused qkv and MLA's kv_b projections.
        C::AttentionV
    } else if name.contains("attn_k.weight") {
        C::AttentionK
    } else if name.contains("attn_q.weight") {
        C::AttentionQ
    } else if name.contains("attn_output.weight") {
        C::AttentionOutput
    } else if name.contains("ffn_up") {
        C::FfnUp
    } else if name.contains("ffn_gate") {
        C::FfnGate
    } else if name.contains("ffn_down") {
        C::FfnDown
    } else {
        C::Other
    }
}

/// Whether llama-quantize quantizes the tensor at all (`tensor_allows_quantization`, the cases
/// MoE models have): matrices named `*weight`, not norms, not the routers.
fn quantizable(t: &TensorInfo) -> bool {
    let n = t.name.as_str();
    t.dims.len() >= 2
        && n.ends_with("weight")
        && !n.contains("_norm.weight")
        && !n.contains("ffn_gate_inp.weight")
        && !n.contains("ffn_gate_tid2eid.weight")
        && !n.contains("attn_rel_b.weight")
        && !n.contains("ssm_conv1d")
}

/// The block number in `blk.N.` names.
fn layer_of(name: &str) -> Option<u32> {
    name.strip_prefix("blk.")?.split('.').next()?.parse().ok()
}

/// llama.cpp's `use_more_bits`: the first and last eighth of the layers and every third between.
fn use_more_bits(i: i64, n: i64) -> bool {
    i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
}

/// The shape facts the rules read from the metadata.
struct Facts {
    layers: i64,
    experts: u64,
    gqa: u64,
    is_llama_70b: bool,
}

fn facts(h: &GgufHeader) -> Result<Facts, (String, String)> {
    let arch = h
        .get("general.architecture")
        .and_then(|v| v.as_str())
        .ok_or_else(|| ("general.architecture".to_string(), "missing".to_string()))?
        .to_string();
    let uint = |k: &str| h.get(&format!("{arch}.{k}")).and_then(|v| v.as_u64());
    // A per-layer array of KV heads: llama.cpp reads layer 0's.
    let first = |k: &str| {
        uint(k).or_else(|| match h.get(&format!("{arch}.{k}")) {
            Some(super::read::Value::Array(a)) => a.first().map(|&v| v as u64),
            _ => None,
        })
    };
    let layers = uint("block_count").ok_or_else(|| {
        (
            format!("{arch}.block_count"),
            "missing: the mix rules count layers".to_string(),
        )
    })?;
    let heads = first("attention.head_count").unwrap_or(0);
    let kv_heads = first("attention.head_count_kv").unwrap_or(heads);
    Ok(Facts {
        layers: layers as i64,
        experts: uint("expert_count").unwrap_or(0),
        gqa: heads.checked_div(kv_heads).unwrap_or(0),
        // llama.cpp's LLM_TYPE_70B: a llama with 80 blocks and grouped-query attention.
        is_llama_70b: arch == "llama" && layers == 80 && heads != kv_heads,
    })
}

/// The types `mix` gives every tensor of `h` (in `h`'s order), as `llama-quantize` would
/// from an unquantized file without an importance matrix; tensors it does not quantize keep
/// their type. Errors name the metadata key.
pub fn types(mix: Mix, h: &GgufHeader) -> Result<Vec<GgmlType>, (String, String)> {
    use Category as C;
    let f = facts(h)?;
    let default = mix.default_type();
    let q = ty;
    // llama.cpp visits tensors by block number, then by name; the attn_v counter follows it.
    let mut order: Vec<usize> = (0..h.tensors.len()).collect();
    order.sort_by(|&a, &b| {
        let key = |i: usize| {
            let n = &h.tensors[i].name;
            (layer_of(n).map_or(-1, |l| l as i64), n.clone())
        };
        key(a).cmp(&key(b))
    });
    let n_attention_wv = h
        .tensors
        .iter()
        .filter(|t| category(&t.name) == C::AttentionV)
        .count() as i64;
    let tied = !h.tensors.iter().any(|t| t.name == "output.weight");
    let (mut i_attention_wv, mut i_ffn_down) = (0i64, 0i64);
    let mut out: Vec<GgmlType> = h.tensors.iter().map(|t| t.ggml_type).collect();
    for idx in order {
        let t = &h.tensors[idx];
        if !quantizable(t) {
            continue;
        }
        let cat = category(&t.name);
        let cols = t.dims[0];
        let merged_experts = t.dims.get(2).is_some_and(|&e| e > 1);
        // The layer the FFN rules read: parsed from the name in MoE models, else a counter.
        let layer = |counter: i64| -> i64 {
            if f.experts > 1 {
                layer_of(&t.name).map_or(counter, |l| l as i64)
            } else {
                counter
            }
        };
        let n = f.layers;
        let mut new = default;
        if cat == C::Output || (cat == C::TokenEmbedding && tied) {
            new = if mix == Mix::Mxfp4Moe || !cols.is_multiple_of(default.block_values) {
                q("Q8_0")
            } else if default.name != "Q8_0" {
                q("Q6_K")
            } else {
                default
            };
        } else if mix == Mix::Mxfp4Moe {
            new = if merged_experts {
                q("MXFP4")
            } else {
                q("Q8_0")
            };
        } else if cat == C::TokenEmbedding {
            new = default;
        } else if cat == C::AttentionV {
            let i = i_attention_wv;
            new = match mix {
                Mix::Q2K => q(if f.gqa >= 4 { "Q4_K" } else { "Q3_K" }),
                Mix::Iq3S if f.gqa >= 4 => q("Q4_K"),
                Mix::Iq3M => q("Q4_K"),
                Mix::Q3KM => q(if i < 2 { "Q5_K" } else { "Q4_K" }),
                Mix::Q3KL => q("Q5_K"),
                Mix::Iq4Nl | Mix::Iq4Xs if f.gqa >= 4 => q("Q5_K"),
                Mix::Q4KM | Mix::Q5KM if use_more_bits(i, n_attention_wv) => q("Q6_K"),
                Mix::Q4KS if i < 4 => q("Q5_K"),
                _ => default,
            };
            if f.is_llama_70b && (new.name == "Q3_K" || new.name == "Q4_K") {
                new = q("Q5_K");
            }
            if f.experts == 8 {
                new = q("Q8_0");
            }
            i_attention_wv += 1;
        } else if cat == C::AttentionK {
            if f.experts == 8 {
                new = q("Q8_0");
            }
        } else if cat == C::FfnDown {
            let i = layer(i_ffn_down);
            new = match mix {
                Mix::Q2K => q("Q3_K"),
                Mix::Q3KM => q(if i < n / 16 { "Q5_K" } else { "Q4_K" }),
                Mix::Iq3M if i < n / 8 || (f.experts == 8 && use_more_bits(i, n)) => q("Q4_K"),
                Mix::Q3KL => q("Q5_K"),
                Mix::Q4KM if use_more_bits(i, n) => q("Q6_K"),
                Mix::Iq4Nl | Mix::Iq4Xs if i < n / 8 => q("Q5_K"),
                Mix::Q5KM if use_more_bits(i, n) => q("Q6_K"),
                Mix::Q4KS if i < n / 8 => q("Q5_K"),
                _ => default,
            };
            i_ffn_down += 1;
        } else if cat == C::AttentionOutput {
            new = if f.experts == 8 {
                match mix {
                    Mix::Q2K
                    | Mix::Q3KS
                    | Mix::Q3KM
                    | Mix::Iq4Nl
                    | Mix::Q4KS
                    | Mix::Q4KM
                    | Mix::Iq3S
                    | Mix::Iq3M
                    | Mix::Iq4Xs => q("Q5_K"),
                    _ => default,
                }
            } else {
                match mix {
                    Mix::Q2K => q("Q3_K"),
                    Mix::Q3KM | Mix::Iq3M => q("Q4_K"),
                    Mix::Q3KL => q("Q5_K"),
                    _ => default,
                }
            };
        }
        out[idx] = fallback(new, cols);
    }
    Ok(out)
}

/// `tensor_type_fallback`: a type whose blocks do not tile a row of `cols` values gives way
/// to one whose do (then to F16).
fn fallback(t: GgmlType, cols: u64) -> GgmlType {
    if cols.is_multiple_of(t.block_values) {
        return t;
    }
    let to = match t.name {
        "IQ1_S" | "IQ1_M" | "IQ2_XXS" | "IQ2_XS" | "IQ2_S" | "IQ3_XXS" | "IQ3_S" | "IQ4_XS" => {
            ty("IQ4_NL")
        }
        "Q2_K" | "Q3_K" | "TQ1_0" | "TQ2_0" => ty("Q4_0"),
        "Q4_K" => ty("Q5_0"),
        "Q5_K" => ty("Q5_1"),
        "Q6_K" => ty("Q8_0"),
        _ => t,
    };
    if cols.is_multiple_of(to.block_values) {
        to
    } else {
        ty("F16")
    }
}

/// `h` with every tensor in the type `mix` gives it and its byte count to match (offsets are
/// left as they were: the header describes a file that was never written).
pub fn apply(mix: Mix, h: &GgufHeader) -> Result<GgufHeader, (String, String)> {
    let types = types(mix, h)?;
    let mut out = h.clone();
    for (t, new) in out.tensors.iter_mut().zip(types) {
        let row = t.dims.first().copied().unwrap_or(1);
        t.bytes = new.bytes_of(row, t.values()).ok_or_else(|| {
            (
                t.name.clone(),
                format!(
                    "{} values in rows of {row} do not fit {}",
                    t.values(),
                    new.name
                ),
            )
        })?;
        t.ggml_type = new;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_aliases() {
        for m in Mix::ALL {
            assert_eq!(m.name().parse::<Mix>().unwrap(), m);
            assert_eq!(m.name().to_lowercase().parse::<Mix>().unwrap(), m);
        }
        assert_eq!("q4_k".parse::<Mix>().unwrap(), Mix::Q4KM);
        assert!(
            "iq2_xxs"
                .parse::<Mix>()
                .unwrap_err()
                .contains("importance matrix")
        );
        assert!("q9".parse::<Mix>().unwrap_err().contains("unknown mix"));
    }

    #[test]
    fn more_bits_in_the_first_and_last_eighth_and_every_third() {
        let on: Vec<i64> = (0..8).filter(|&i| use_more_bits(i, 8)).collect();
        assert_eq!(on, [0, 3, 6, 7]);
        let on: Vec<i64> = (0..32).filter(|&i| use_more_bits(i, 32)).collect();
        assert_eq!(
            on,
            [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]
        );
    }

    #[test]
    fn fallbacks_keep_rows_whole() {
        assert_eq!(fallback(ty("Q4_K"), 2880).name, "Q5_0");
        assert_eq!(fallback(ty("Q6_K"), 2880).name, "Q8_0");
        assert_eq!(fallback(ty("IQ4_XS"), 2880).name, "IQ4_NL");
        assert_eq!(fallback(ty("Q4_K"), 100).name, "F16");
        assert_eq!(fallback(ty("Q4_K"), 4096).name, "Q4_K");
    }
}
