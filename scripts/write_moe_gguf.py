#!/usr/bin/env python3
"""Writes a Mixture-of-Experts model with random weights as a GGUF file llama.cpp can load.

Usage:
  write_moe_gguf.py OUT.gguf --layers L --experts E --top-k K --hidden H --expert-ffn F
                    [--format q8_0|f16|f32] [--seed S]

The architecture is `qwen3moe` (merged 3-D ffn_{gate,up,down}_exps tensors, a router per
layer, grouped-query attention with per-head q/k norms), with a minimal SentencePiece-style
vocabulary (<unk>, <s>, </s> and the 256 byte tokens) so that llama-bench can tokenize. The
weights are Gaussian with a small standard deviation, drawn from numpy's default_rng(seed):
their values do not matter for speed; random weights route roughly uniformly. Expert and
attention weights are written in --format (gguf 0.19 quantizes Q8_0 but not the K-quants:
write q8_0 or f16 and convert with llama-quantize for those); norms and the router stay F32.
Run with the Python of scripts/pyenv.sh (gguf==0.19.0, numpy).
"""

import argparse
import sys

import numpy as np
import gguf


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--layers", type=int, required=True)
    ap.add_argument("--experts", type=int, required=True)
    ap.add_argument("--top-k", type=int, required=True)
    ap.add_argument("--hidden", type=int, required=True)
    ap.add_argument("--expert-ffn", type=int, required=True)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--format", choices=["q8_0", "f16", "f32"], default="q8_0")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    for name in ("layers", "experts", "top_k", "hidden", "expert_ffn", "heads", "kv_heads", "head_dim"):
        if getattr(a, name) <= 0:
            print(f"write_moe_gguf.py: --{name.replace('_', '-')} must be positive", file=sys.stderr)
            return 2
    if a.top_k > a.experts:
        print("write_moe_gguf.py: --top-k must not exceed --experts", file=sys.stderr)
        return 2
    if a.hidden % 32 or a.expert_ffn % 32:
        print("write_moe_gguf.py: --hidden and --expert-ffn must be multiples of 32 (the Q8_0 block)", file=sys.stderr)
        return 2

    qtype = {
        "q8_0": gguf.GGMLQuantizationType.Q8_0,
        "f16": gguf.GGMLQuantizationType.F16,
        "f32": gguf.GGMLQuantizationType.F32,
    }[a.format]
    rng = np.random.default_rng(a.seed)
    vocab_bytes = 256
    n_vocab = 3 + vocab_bytes

    w = gguf.GGUFWriter(a.out, "qwen3moe")
    w.add_name(f"moesim random qwen3moe {a.layers}x{a.experts}e top{a.top_k}")
    w.add_block_count(a.layers)
    w.add_context_length(4096)
    w.add_embedding_length(a.hidden)
    w.add_feed_forward_length(a.expert_ffn)
    w.add_expert_feed_forward_length(a.expert_ffn)
    w.add_expert_count(a.experts)
    w.add_expert_used_count(a.top_k)
    w.add_head_count(a.heads)
    w.add_head_count_kv(a.kv_heads)
    w.add_key_length(a.head_dim)
    w.add_value_length(a.head_dim)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(1_000_000.0)
    w.add_file_type(int({"q8_0": 7, "f16": 1, "f32": 0}[a.format]))

    # A byte-level SentencePiece vocabulary: <unk>, <s>, </s>, then <0x00>..<0xFF>.
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(vocab_bytes)]
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * n_vocab)
    w.add_token_types([2, 3, 3] + [6] * vocab_bytes)
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)

    def tensor(name: str, shape, quantized: bool = True) -> None:
        # numpy shape is (rows..., columns): GGUF reverses it.
        x = (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float32)
        if quantized and qtype != gguf.GGMLQuantizationType.F32:
            if qtype == gguf.GGMLQuantizationType.F16:
                w.add_tensor(name, x.astype(np.float16))
            else:
                data = gguf.quants.quantize(x, qtype)
                w.add_tensor(name, data, raw_shape=data.shape, raw_dtype=qtype)
        else:
            w.add_tensor(name, x)

    def ones(name: str, n: int) -> None:
        w.add_tensor(name, np.ones(n, dtype=np.float32))

    q_dim = a.heads * a.head_dim
    kv_dim = a.kv_heads * a.head_dim
    tensor("token_embd.weight", (n_vocab, a.hidden))
    for i in range(a.layers):
        p = f"blk.{i}."
        ones(p + "attn_norm.weight", a.hidden)
        tensor(p + "attn_q.weight", (q_dim, a.hidden))
        tensor(p + "attn_k.weight", (kv_dim, a.hidden))
        tensor(p + "attn_v.weight", (kv_dim, a.hidden))
        tensor(p + "attn_output.weight", (a.hidden, q_dim))
        ones(p + "attn_q_norm.weight", a.head_dim)
        ones(p + "attn_k_norm.weight", a.head_dim)
        ones(p + "ffn_norm.weight", a.hidden)
        tensor(p + "ffn_gate_inp.weight", (a.experts, a.hidden), quantized=False)
        tensor(p + "ffn_gate_exps.weight", (a.experts, a.expert_ffn, a.hidden))
        tensor(p + "ffn_up_exps.weight", (a.experts, a.expert_ffn, a.hidden))
        tensor(p + "ffn_down_exps.weight", (a.experts, a.hidden, a.expert_ffn))
    ones("output_norm.weight", a.hidden)
    tensor("output.weight", (n_vocab, a.hidden))

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
