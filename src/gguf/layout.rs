//! The tensors llama.cpp's converter would write for a moesim model spec, as a GGUF header
//! that was never a file: names, shapes and (unquantized) types, so that the quantization-mix
//! rules ([`super::mix`]) and the file reader's model ([`super::GgufModel`]) apply to shipped
//! models as they do to real files.
//!
//! Layout (llama.cpp's tensor names): `token_embd`, `output` (unless tied), `output_norm`; per
//! block `attn_norm`, the attention (`attn_q`/`attn_k`/`attn_v`/`attn_output` for grouped-query
//! attention; for DeepSeek's latent attention `attn_q_a` + `attn_q_b` or `attn_q`,
//! `attn_kv_a_mqa`, `attn_kv_b`, `attn_output` and the two latent norms), `ffn_norm`, then in
//! MoE blocks the router `ffn_gate_inp`, the merged `ffn_{gate,up,down}_exps` and the shared
//! experts' `*_shexp`, in dense blocks `ffn_{gate,up,down}`. Norms and routers are F32, the
//! rest F16. Biases are left out (the mix rules do not quantize 1-D tensors). Specs that give
//! the non-expert part as a bare parameter count (`[dense] params`) have no tensors to lay out.

use super::read::{GgufHeader, TensorInfo, Value};
use super::types::{GgmlType, TYPES};
use crate::moe::FfnKind;
use crate::moe::spec::{AttentionSpec, MoeSpecFile};

fn ty(name: &str) -> GgmlType {
    *TYPES
        .iter()
        .find(|t| t.name == name)
        .expect("a type of ggml's table")
}

/// The header of `spec`'s model in llama.cpp's layout, or the reason it has none.
pub fn header_of_spec(spec: &MoeSpecFile) -> Result<GgufHeader, String> {
    let d = &spec.dense;
    let (Some(vocab), Some(attention)) = (d.vocab_size, d.attention.as_ref()) else {
        return Err(format!(
            "{}: the spec gives no vocabulary and attention shape ([dense] vocab_size and attention), so it has no tensors to assign a mix's types to",
            spec.name
        ));
    };
    let h = spec.hidden_size;
    let (f16, f32) = (ty("F16"), ty("F32"));
    let mut tensors: Vec<TensorInfo> = Vec::new();
    let mut add = |name: String, dims: Vec<u64>, t: GgmlType| {
        let values: u64 = dims.iter().product();
        tensors.push(TensorInfo {
            bytes: t.bytes_of(dims[0], values).unwrap_or(u64::MAX),
            name,
            dims,
            ggml_type: t,
            offset: 0,
        });
    };
    add("token_embd.weight".into(), vec![h, vocab], f16);
    if !d.tied_embeddings.unwrap_or(false) {
        add("output.weight".into(), vec![h, vocab], f16);
    }
    add("output_norm.weight".into(), vec![h], f32);
    let moe_layers: Vec<u32> = (spec.first_dense_layers..spec.layers)
        .filter(|l| (l - spec.first_dense_layers + 1).is_multiple_of(spec.moe_every.max(1)))
        .collect();
    let swiglu = spec.ffn == FfnKind::Swiglu;
    let (e, i) = (spec.routed_experts as u64, spec.expert_intermediate_size);
    let shared = spec.shared_experts as u64
        * spec
            .shared_expert_intermediate_size
            .unwrap_or(spec.expert_intermediate_size);
    let (arch, heads, kv_heads) = match attention {
        AttentionSpec::Gqa {
            heads, kv_heads, ..
        } => ("llama", *heads, *kv_heads),
        AttentionSpec::Mla { heads, .. } => ("deepseek2", *heads, *heads),
    };
    for l in 0..spec.layers {
        let p = |s: &str| format!("blk.{l}.{s}.weight");
        add(p("attn_norm"), vec![h], f32);
        match attention {
            AttentionSpec::Gqa {
                heads,
                kv_heads,
                head_dim,
                ..
            } => {
                add(p("attn_q"), vec![h, heads * head_dim], f16);
                add(p("attn_k"), vec![h, kv_heads * head_dim], f16);
                add(p("attn_v"), vec![h, kv_heads * head_dim], f16);
                add(p("attn_output"), vec![heads * head_dim, h], f16);
            }
            AttentionSpec::Mla {
                heads,
                q_lora_rank,
                kv_lora_rank,
                qk_nope_head_dim,
                qk_rope_head_dim,
                v_head_dim,
            } => {
                let qk = qk_nope_head_dim + qk_rope_head_dim;
                if *q_lora_rank > 0 {
                    add(p("attn_q_a"), vec![h, *q_lora_rank], f16);
                    add(p("attn_q_a_norm"), vec![*q_lora_rank], f32);
                    add(p("attn_q_b"), vec![*q_lora_rank, heads * qk], f16);
                } else {
                    add(p("attn_q"), vec![h, heads * qk], f16);
                }
                add(
                    p("attn_kv_a_mqa"),
                    vec![h, kv_lora_rank + qk_rope_head_dim],
                    f16,
                );
                add(p("attn_kv_a_norm"), vec![*kv_lora_rank], f32);
                add(
                    p("attn_kv_b"),
                    vec![*kv_lora_rank, heads * (qk_nope_head_dim + v_head_dim)],
                    f16,
                );
                add(p("attn_output"), vec![heads * v_head_dim, h], f16);
            }
        }
        add(p("ffn_norm"), vec![h], f32);
        if moe_layers.contains(&l) {
            add(p("ffn_gate_inp"), vec![h, e], f32);
            if swiglu {
                add(p("ffn_gate_exps"), vec![h, i, e], f16);
            }
            add(p("ffn_up_exps"), vec![h, i, e], f16);
            add(p("ffn_down_exps"), vec![i, h, e], f16);
            if shared > 0 {
                if swiglu {
                    add(p("ffn_gate_shexp"), vec![h, shared], f16);
                }
                add(p("ffn_up_shexp"), vec![h, shared], f16);
                add(p("ffn_down_shexp"), vec![shared, h], f16);
            }
        } else if let Some(di) = d.dense_ffn_intermediate_size {
            if swiglu {
                add(p("ffn_gate"), vec![h, di], f16);
            }
            add(p("ffn_up"), vec![h, di], f16);
            add(p("ffn_down"), vec![di, h], f16);
        }
    }
    let u = Value::U64;
    let key = |k: &str| format!("{arch}.{k}");
    let mut metadata = vec![
        ("general.architecture".to_string(), Value::Str(arch.into())),
        ("general.name".to_string(), Value::Str(spec.name.clone())),
        (key("block_count"), u(spec.layers as u64)),
        (key("embedding_length"), u(h)),
        (key("expert_count"), u(e)),
        (key("expert_used_count"), u(spec.top_k as u64)),
        (key("expert_feed_forward_length"), u(i)),
        (key("attention.head_count"), u(heads)),
        (key("attention.head_count_kv"), u(kv_heads)),
    ];
    if spec.shared_experts > 0 {
        metadata.push((key("expert_shared_count"), u(spec.shared_experts as u64)));
    }
    let file_bytes = tensors.iter().map(|t| t.bytes).sum();
    Ok(GgufHeader {
        version: 3,
        metadata,
        tensors,
        data_offset: 0,
        file_bytes,
    })
}
