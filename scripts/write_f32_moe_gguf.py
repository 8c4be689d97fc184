#!/usr/bin/env python3
"""Writes a small all-F32 Mixture-of-Experts GGUF file for llama-quantize.

Usage:
  write_f32_moe_gguf.py OUT.gguf --arch llama|qwen3moe --layers L --experts E --top-k K
                        --hidden H --expert-ffn F [--heads 8] [--kv-heads 2] [--head-dim D]
                        [--seed S]

Every tensor is F32, so llama-quantize applies its full per-tensor type rules (a mix) when
converting it. Two layouts:
  llama     Mixtral-like: attn_{q,k,v,output}, attn_norm, ffn_norm, a router ffn_gate_inp and
            merged 3-D ffn_{gate,up,down}_exps; head_dim defaults to hidden/heads.
  qwen3moe  as llama plus per-head attn_{q,k}_norm; head_dim defaults to 64.
Both have a minimal byte-level SentencePiece vocabulary (<unk>, <s>, </s>, <0x00>..<0xFF>),
token_embd and a separate (untied) output.weight. Weight values are small Gaussians from
numpy's default_rng(seed); they do not influence which type llama-quantize picks.
Run with the Python of scripts/pyenv.sh (gguf==0.19.0, numpy).
"""

import argparse
import sys

import numpy as np
import gguf


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--arch", choices=["llama", "qwen3moe"], required=True)
    ap.add_argument("--layers", type=int, required=True)
    ap.add_argument("--experts", type=int, required=True)
    ap.add_argument("--top-k", type=int, required=True)
    ap.add_argument("--hidden", type=int, required=True)
    ap.add_argument("--expert-ffn", type=int, required=True)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--head-dim", type=int, default=0, help="0: hidden/heads (llama) or 64 (qwen3moe)")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    if a.head_dim == 0:
        a.head_dim = a.hidden // a.heads if a.arch == "llama" else 64
    for name in ("layers", "experts", "top_k", "hidden", "expert_ffn", "heads", "kv_heads", "head_dim"):
        if getattr(a, name) <= 0:
            print(f"write_f32_moe_gguf.py: --{name.replace('_', '-')} must be positive", file=sys.stderr)
            return 2
    if a.top_k > a.experts or a.heads % a.kv_heads:
        print("write_f32_moe_gguf.py: need top-k <= experts and heads a multiple of kv-heads", file=sys.stderr)
        return 2

    rng = np.random.default_rng(a.seed)
    n_bytes = 256
    n_vocab = 3 + n_bytes

    w = gguf.GGUFWriter(a.out, a.arch)
    w.add_name(f"moesim f32 {a.arch} {a.layers}L {a.experts}e top{a.top_k}")
    w.add_block_count(a.layers)
    w.add_context_length(4096)
    w.add_embedding_length(a.hidden)
    w.add_feed_forward_length(a.expert_ffn)
    if a.arch == "qwen3moe":
        w.add_expert_feed_forward_length(a.expert_ffn)
    w.add_expert_count(a.experts)
    w.add_expert_used_count(a.top_k)
    w.add_head_count(a.heads)
    w.add_head_count_kv(a.kv_heads)
    w.add_key_length(a.head_dim)
    w.add_value_length(a.head_dim)
    w.add_rope_dimension_count(a.head_dim)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(1_000_000.0)
    w.add_vocab_size(n_vocab)
    w.add_file_type(0)  # LLAMA_FTYPE_ALL_F32

    w.add_tokenizer_model("llama")
    w.add_token_list(["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(n_bytes)])
    w.add_token_scores([0.0] * n_vocab)
    w.add_token_types([2, 3, 3] + [6] * n_bytes)
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)

    def weight(name, shape):
        # numpy shape is (..., rows, columns); GGUF stores it reversed (ne[0] = columns).
        w.add_tensor(name, rng.standard_normal(shape, dtype=np.float32) * np.float32(0.02))

    def ones(name, n):
        w.add_tensor(name, np.ones(n, dtype=np.float32))

    q_dim, kv_dim = a.heads * a.head_dim, a.kv_heads * a.head_dim
    weight("token_embd.weight", (n_vocab, a.hidden))
    for i in range(a.layers):
        p = f"blk.{i}."
        ones(p + "attn_norm.weight", a.hidden)
        weight(p + "attn_q.weight", (q_dim, a.hidden))
        weight(p + "attn_k.weight", (kv_dim, a.hidden))
        weight(p + "attn_v.weight", (kv_dim, a.hidden))
        weight(p + "attn_output.weight", (a.hidden, q_dim))
        if a.arch == "qwen3moe":
            ones(p + "attn_q_norm.weight", a.head_dim)
            ones(p + "attn_k_norm.weight", a.head_dim)
        ones(p + "ffn_norm.weight", a.hidden)
        weight(p + "ffn_gate_inp.weight", (a.experts, a.hidden))
        weight(p + "ffn_gate_exps.weight", (a.experts, a.expert_ffn, a.hidden))
        weight(p + "ffn_up_exps.weight", (a.experts, a.expert_ffn, a.hidden))
        weight(p + "ffn_down_exps.weight", (a.experts, a.hidden, a.expert_ffn))
    ones("output_norm.weight", a.hidden)
    weight("output.weight", (n_vocab, a.hidden))

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
