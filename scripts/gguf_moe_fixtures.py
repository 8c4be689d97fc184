#!/usr/bin/env python3
"""Writes small GGUF files of MoE models, one per architecture, with the architecture's real
metadata keys and tensor names and shapes (merged 3-D ffn_*_exps tensors), and beside each a
JSON file of what a reader must find: shape, MoE blocks, each block's expert formats and bytes,
and the total parameter count.

Usage: gguf_moe_fixtures.py OUTDIR

Weights are zeros (only shapes and types matter to the reader). Quantized tensors are written as
raw blocks of the type's exact size (gguf.GGML_QUANT_SIZES), so any type can be stored without a
quantizer: a Q4_K_M-like mix keeps some blocks' down projections in Q6_K, gpt-oss its experts in
MXFP4. Run with the Python of scripts/pyenv.sh (gguf==0.19.0, numpy). The Rust test
tests/integration/gguf_models.rs runs it and checks `moesim model show` and `model import`.
"""

import json
import os
import sys

import numpy as np
import gguf

Q = gguf.GGMLQuantizationType


def writer(path, arch, name, layers, hidden, experts, top_k, ctx, heads, kv_heads, head_dim):
    w = gguf.GGUFWriter(path, arch)
    w.add_name(name)
    w.add_block_count(layers)
    w.add_context_length(ctx)
    w.add_embedding_length(hidden)
    w.add_expert_count(experts)
    w.add_expert_used_count(top_k)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    return w


class Model:
    def __init__(self, w):
        self.w = w
        self.values = 0
        self.layers = {}

    def tensor(self, name, shape, qtype=Q.F32):
        """shape as numpy (slowest first); ggml's ne is reversed."""
        n = int(np.prod(shape))
        self.values += n
        if qtype == Q.F32:
            self.w.add_tensor(name, np.zeros(shape, dtype=np.float32))
        elif qtype == Q.F16:
            self.w.add_tensor(name, np.zeros(shape, dtype=np.float16))
        else:
            block, size = gguf.GGML_QUANT_SIZES[qtype]
            assert shape[-1] % block == 0, (name, shape)
            raw = np.zeros(tuple(shape[:-1]) + (shape[-1] // block * size,), dtype=np.uint8)
            self.w.add_tensor(name, raw, raw_shape=raw.shape, raw_dtype=qtype)
        return n * gguf.GGML_QUANT_SIZES[qtype][1] // gguf.GGML_QUANT_SIZES[qtype][0]

    def experts(self, layer, experts, hidden, ffn, gate_t, up_t, down_t, gate=True, bias=False):
        p = f"blk.{layer}."
        total = 0
        if gate:
            total += self.tensor(p + "ffn_gate_exps.weight", (experts, ffn, hidden), gate_t)
        total += self.tensor(p + "ffn_up_exps.weight", (experts, ffn, hidden), up_t)
        total += self.tensor(p + "ffn_down_exps.weight", (experts, hidden, ffn), down_t)
        if bias:
            for s, width in (("gate", ffn), ("up", ffn), ("down", hidden)):
                self.tensor(p + f"ffn_{s}_exps.bias", (experts, width))
        self.layers[layer] = {
            "gate": gate_t.name.lower() if gate else None,
            "up": up_t.name.lower(),
            "down": down_t.name.lower(),
            "expert_bytes": total // experts,
        }

    def gqa(self, layer, hidden, heads, kv_heads, head_dim, t=Q.F16, qk_norm=False):
        p = f"blk.{layer}."
        self.tensor(p + "attn_norm.weight", (hidden,))
        self.tensor(p + "attn_q.weight", (heads * head_dim, hidden), t)
        self.tensor(p + "attn_k.weight", (kv_heads * head_dim, hidden), t)
        self.tensor(p + "attn_v.weight", (kv_heads * head_dim, hidden), t)
        self.tensor(p + "attn_output.weight", (hidden, heads * head_dim), t)
        if qk_norm:
            self.tensor(p + "attn_q_norm.weight", (head_dim,))
            self.tensor(p + "attn_k_norm.weight", (head_dim,))
        self.tensor(p + "ffn_norm.weight", (hidden,))

    def finish(self, path, expect):
        self.w.write_header_to_file()
        self.w.write_kv_data_to_file()
        self.w.write_tensors_to_file()
        self.w.close()
        expect["total_params"] = self.values
        expect["moe_layers"] = [dict(layer=k, **v) for k, v in sorted(self.layers.items())]
        with open(path[: -len(".gguf")] + ".json", "w") as f:
            json.dump(expect, f, indent=1)


def qwen3moe(out):
    # A Q4_K_M-like mix: blocks 0 and 3 keep their down projections in Q6_K. The micro-moe
    # generator's shape (8 blocks, 16 experts, top-2), so experiments can run on it.
    L, H, E, K, F, V = 8, 256, 16, 2, 256, 300
    path = f"{out}/qwen3moe.gguf"
    w = writer(path, "qwen3moe", "fixture qwen3moe", L, H, E, K, 40960, 8, 2, 64)
    w.add_expert_feed_forward_length(F)
    m = Model(w)
    m.tensor("token_embd.weight", (V, H), Q.Q4_K)
    for i in range(L):
        m.gqa(i, H, 8, 2, 64, Q.Q4_K, qk_norm=True)
        m.tensor(f"blk.{i}.ffn_gate_inp.weight", (E, H))
        m.experts(i, E, H, F, Q.Q4_K, Q.Q4_K, Q.Q6_K if i in (0, 3) else Q.Q4_K)
    m.tensor("output_norm.weight", (H,))
    m.tensor("output.weight", (V, H), Q.Q6_K)
    m.finish(path, dict(architecture="qwen3moe", layers=L, experts=E, top_k=K, expert_ffn=F,
                        shared_experts=0, kv_values_per_token=2 * 2 * 64, max_tokens=40960))


def mixtral(out):
    L, H, E, K, F, V = 2, 128, 8, 2, 256, 64
    path = f"{out}/mixtral.gguf"
    w = writer(path, "llama", "fixture mixtral", L, H, E, K, 32768, 4, 1, 32)
    m = Model(w)
    m.tensor("token_embd.weight", (V, H), Q.F16)
    for i in range(L):
        m.gqa(i, H, 4, 1, 32)
        m.tensor(f"blk.{i}.ffn_gate_inp.weight", (E, H))
        m.experts(i, E, H, F, Q.F16, Q.F16, Q.F16)
    m.tensor("output_norm.weight", (H,))
    m.tensor("output.weight", (V, H), Q.F16)
    m.finish(path, dict(architecture="llama", layers=L, experts=E, top_k=K, expert_ffn=F,
                        shared_experts=0, kv_values_per_token=2 * 1 * 32, max_tokens=32768))


def deepseek2(out):
    # One leading dense block, MLA attention, one shared expert per MoE block.
    L, H, E, K, F, V = 3, 256, 16, 4, 256, 100
    heads, q_lora, kv_lora, nope, rope, vdim = 4, 96, 64, 32, 16, 32
    path = f"{out}/deepseek2.gguf"
    w = gguf.GGUFWriter(path, "deepseek2")
    w.add_name("fixture deepseek2")
    w.add_block_count(L)
    w.add_context_length(163840)
    w.add_embedding_length(H)
    w.add_feed_forward_length(512)
    w.add_expert_feed_forward_length(F)
    w.add_expert_count(E)
    w.add_expert_used_count(K)
    w.add_expert_shared_count(1)
    w.add_leading_dense_block_count(1)
    w.add_head_count(heads)
    w.add_head_count_kv(heads)
    w.add_q_lora_rank(q_lora)
    w.add_kv_lora_rank(kv_lora)
    w.add_key_length(nope + rope)
    w.add_value_length(vdim)
    w.add_rope_dimension_count(rope)
    m = Model(w)
    m.tensor("token_embd.weight", (V, H), Q.Q8_0)
    for i in range(L):
        p = f"blk.{i}."
        m.tensor(p + "attn_norm.weight", (H,))
        m.tensor(p + "attn_q_a.weight", (q_lora, H), Q.Q8_0)
        m.tensor(p + "attn_q_a_norm.weight", (q_lora,))
        m.tensor(p + "attn_q_b.weight", (heads * (nope + rope), q_lora), Q.Q8_0)
        m.tensor(p + "attn_kv_a_mqa.weight", (kv_lora + rope, H), Q.Q8_0)
        m.tensor(p + "attn_kv_a_norm.weight", (kv_lora,))
        m.tensor(p + "attn_kv_b.weight", (heads * (nope + vdim), kv_lora), Q.Q8_0)
        m.tensor(p + "attn_output.weight", (H, heads * vdim), Q.Q8_0)
        m.tensor(p + "ffn_norm.weight", (H,))
        if i == 0:
            m.tensor(p + "ffn_gate.weight", (512, H), Q.Q8_0)
            m.tensor(p + "ffn_up.weight", (512, H), Q.Q8_0)
            m.tensor(p + "ffn_down.weight", (H, 512), Q.Q8_0)
        else:
            m.tensor(p + "ffn_gate_inp.weight", (E, H))
            m.experts(i, E, H, F, Q.Q2_K, Q.Q2_K, Q.Q3_K)
            m.tensor(p + "ffn_gate_shexp.weight", (F, H), Q.Q8_0)
            m.tensor(p + "ffn_up_shexp.weight", (F, H), Q.Q8_0)
            m.tensor(p + "ffn_down_shexp.weight", (H, F), Q.Q8_0)
    m.tensor("output_norm.weight", (H,))
    m.tensor("output.weight", (V, H), Q.Q8_0)
    m.finish(path, dict(architecture="deepseek2", layers=L, experts=E, top_k=K, expert_ffn=F,
                        shared_experts=1, kv_values_per_token=kv_lora + rope, max_tokens=163840))


def gpt_oss(out):
    # MXFP4 experts with biases, alternating sliding-window attention, attention sinks.
    L, H, E, K, F, V = 2, 128, 8, 4, 128, 64
    path = f"{out}/gpt-oss.gguf"
    w = writer(path, "gpt-oss", "fixture gpt-oss", L, H, E, K, 131072, 8, 2, 16)
    w.add_sliding_window(128)
    w.add_expert_feed_forward_length(F)
    m = Model(w)
    m.tensor("token_embd.weight", (V, H), Q.Q8_0)
    for i in range(L):
        m.gqa(i, H, 8, 2, 16, Q.Q8_0)
        m.tensor(f"blk.{i}.attn_sinks.weight", (8,))
        m.tensor(f"blk.{i}.ffn_gate_inp.weight", (E, H))
        m.tensor(f"blk.{i}.ffn_gate_inp.bias", (E,))
        m.experts(i, E, H, F, Q.MXFP4, Q.MXFP4, Q.MXFP4, bias=True)
    m.tensor("output_norm.weight", (H,))
    m.tensor("output.weight", (V, H), Q.Q8_0)
    m.finish(path, dict(architecture="gpt-oss", layers=L, experts=E, top_k=K, expert_ffn=F,
                        shared_experts=0, kv_values_per_token=2 * 2 * 16, max_tokens=131072,
                        sliding_window_layers=1))


def qwen2moe(out):
    # A shared expert with its own sigmoid gate, every other block MoE (moe_every 2).
    L, H, E, K, F, V = 4, 256, 8, 2, 256, 64
    path = f"{out}/qwen2moe.gguf"
    w = writer(path, "qwen2moe", "fixture qwen2moe", L, H, E, K, 8192, 4, 4, 32)
    w.add_expert_feed_forward_length(F)
    w.add_expert_shared_feed_forward_length(2 * F)
    m = Model(w)
    m.tensor("token_embd.weight", (V, H), Q.F16)
    for i in range(L):
        m.gqa(i, H, 4, 4, 32)
        p = f"blk.{i}."
        if i % 2 == 1:
            m.tensor(p + "ffn_gate_inp.weight", (E, H))
            m.experts(i, E, H, F, Q.Q5_K, Q.Q5_K, Q.Q6_K)
            m.tensor(p + "ffn_gate_inp_shexp.weight", (1, H))
            m.tensor(p + "ffn_gate_shexp.weight", (2 * F, H), Q.F16)
            m.tensor(p + "ffn_up_shexp.weight", (2 * F, H), Q.F16)
            m.tensor(p + "ffn_down_shexp.weight", (H, 2 * F), Q.F16)
        else:
            m.tensor(p + "ffn_gate.weight", (256, H), Q.F16)
            m.tensor(p + "ffn_up.weight", (256, H), Q.F16)
            m.tensor(p + "ffn_down.weight", (H, 256), Q.F16)
    m.tensor("output_norm.weight", (H,))
    m.tensor("output.weight", (V, H), Q.F16)
    m.finish(path, dict(architecture="qwen2moe", layers=L, experts=E, top_k=K, expert_ffn=F,
                        shared_experts=1, kv_values_per_token=2 * 4 * 32, max_tokens=8192))


def glm4moe(out):
    # GLM-4.5-style: a dense first block, then MoE blocks with one shared expert (sigmoid
    # routing's bias beside the router), experts in Q4_K with Q5_K down projections.
    L, H, E, K, F, V = 3, 256, 16, 4, 256, 64
    path = f"{out}/glm4moe.gguf"
    w = writer(path, "glm4moe", "fixture glm4moe", L, H, E, K, 131072, 8, 2, 32)
    w.add_expert_feed_forward_length(F)
    w.add_expert_shared_feed_forward_length(F)
    w.add_uint32("glm4moe.leading_dense_block_count", 1)
    w.add_uint32("glm4moe.expert_shared_count", 1)
    m = Model(w)
    m.tensor("token_embd.weight", (V, H), Q.Q8_0)
    for i in range(L):
        m.gqa(i, H, 8, 2, 32, Q.Q8_0)
        p = f"blk.{i}."
        if i == 0:
            m.tensor(p + "ffn_gate.weight", (512, H), Q.Q8_0)
            m.tensor(p + "ffn_up.weight", (512, H), Q.Q8_0)
            m.tensor(p + "ffn_down.weight", (H, 512), Q.Q8_0)
        else:
            m.tensor(p + "ffn_gate_inp.weight", (E, H))
            m.tensor(p + "exp_probs_b.bias", (E,))
            m.experts(i, E, H, F, Q.Q4_K, Q.Q4_K, Q.Q5_K)
            m.tensor(p + "ffn_gate_shexp.weight", (F, H), Q.Q8_0)
            m.tensor(p + "ffn_up_shexp.weight", (F, H), Q.Q8_0)
            m.tensor(p + "ffn_down_shexp.weight", (H, F), Q.Q8_0)
    m.tensor("output_norm.weight", (H,))
    m.tensor("output.weight", (V, H), Q.Q6_K)
    m.finish(path, dict(architecture="glm4moe", layers=L, experts=E, top_k=K, expert_ffn=F,
                        shared_experts=1, kv_values_per_token=2 * 2 * 32, max_tokens=131072))


def olmoe(out):
    # OLMoE-style: 64 experts, top-8, no shared expert, full-width q/k norms.
    L, H, E, K, F, V = 2, 256, 64, 8, 256, 64
    path = f"{out}/olmoe.gguf"
    w = writer(path, "olmoe", "fixture olmoe", L, H, E, K, 4096, 8, 8, 32)
    w.add_expert_feed_forward_length(F)
    m = Model(w)
    m.tensor("token_embd.weight", (V, H), Q.F16)
    for i in range(L):
        m.gqa(i, H, 8, 8, 32)
        p = f"blk.{i}."
        m.tensor(p + "attn_q_norm.weight", (H,))
        m.tensor(p + "attn_k_norm.weight", (H,))
        m.tensor(p + "ffn_gate_inp.weight", (E, H))
        m.experts(i, E, H, F, Q.Q4_0, Q.Q4_0, Q.Q4_1)
    m.tensor("output_norm.weight", (H,))
    m.tensor("output.weight", (V, H), Q.F16)
    m.finish(path, dict(architecture="olmoe", layers=L, experts=E, top_k=K, expert_ffn=F,
                        shared_experts=0, kv_values_per_token=2 * 8 * 32, max_tokens=4096))


def phimoe(out):
    # Phi-3.5-MoE-style: 16 experts, top-2, biased attention projections and norms.
    L, H, E, K, F, V = 2, 256, 16, 2, 512, 64
    path = f"{out}/phimoe.gguf"
    w = writer(path, "phimoe", "fixture phimoe", L, H, E, K, 131072, 8, 2, 32)
    m = Model(w)
    m.tensor("token_embd.weight", (V, H), Q.F16)
    for i in range(L):
        m.gqa(i, H, 8, 2, 32, Q.Q5_0)
        p = f"blk.{i}."
        for t, width in (("attn_q", 8 * 32), ("attn_k", 2 * 32), ("attn_v", 2 * 32), ("attn_output", H)):
            m.tensor(p + f"{t}.bias", (width,))
        m.tensor(p + "attn_norm.bias", (H,))
        m.tensor(p + "ffn_norm.bias", (H,))
        m.tensor(p + "ffn_gate_inp.weight", (E, H))
        m.experts(i, E, H, F, Q.IQ4_XS, Q.IQ4_XS, Q.Q5_1)
    m.tensor("output_norm.weight", (H,))
    m.tensor("output_norm.bias", (H,))
    m.tensor("output.weight", (V, H), Q.F16)
    m.tensor("output.bias", (V,))
    m.finish(path, dict(architecture="phimoe", layers=L, experts=E, top_k=K, expert_ffn=F,
                        shared_experts=0, kv_values_per_token=2 * 2 * 32, max_tokens=131072))


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for f in (qwen3moe, mixtral, deepseek2, gpt_oss, qwen2moe, glm4moe, olmoe, phimoe):
        f(out)
    # gguf's own table of block sizes, for the reader's table to be checked against.
    with open(f"{out}/quant_sizes.json", "w") as f:
        json.dump({t.name: list(gguf.GGML_QUANT_SIZES[t]) + [int(t)] for t in gguf.GGML_QUANT_SIZES}, f)


if __name__ == "__main__":
    main()
