#!/usr/bin/env python3
"""Turns llama.cpp's quantization-type snapshots into moesim test vectors.

llama.cpp's tests/test-quant-type-selection.cpp checks, for a dozen real models, the type
every quantizable tensor gets under every quantization mix ("ftype") against
tests/snapshots/{model}.schema. A snapshot has one section per mix, "[Q4_K_M] q4_K" (the mix
and its default type), listing only the tensors whose type differs from the default. The
tensors the test looks at are the model's GGUF tensors (read from the header of the file
on Hugging Face: `gguf_fetch_model_meta(repo, quant)`, cached by llama.cpp under
$LLAMA_CACHE/gguf-headers or ~/.cache/llama.cpp/gguf-headers), created as F32 and filtered by
`llama_quant_tensor_allows_quantization`: norms, routers (ffn_gate_inp), 1-D tensors,
biases and ssm_conv1d are not in the test at all. The model's facts come from that header
too: architecture, block_count, head_count, head_count_kv (of layer 0 when per-layer),
expert_count (the "# n_embd=..." line of each snapshot).

This script writes tests/data/ggml-mix/snapshots/{model}.json for every model of the test's
`model_specs` (also the one commented out there, marked `checked_by_llama_cpp_test: false`):

  {"model", "repo", "quant", "snapshot", "llama_cpp_commit", "checked_by_llama_cpp_test",
   "shapes": "gguf-header" | "reconstructed",
   "metadata": {"general.architecture", "block_count", "head_count", "head_count_kv"
                [, "expert_count"]},
   "tensors": [[name, ne], ...],   # what the test lists (quantizable), ne[0] = row length
   "kept": [[name, ne], ...],      # not quantized: they keep their input type (F32)
   "mixes": {MIX: {"default": TYPE, "types": {TYPE: [names differing from the default]}}},
   "skipped": {MIX: why}}          # sections moesim does not model

Only the mixes moesim's src/gguf/mix.rs models are written (those llama-quantize runs
without an importance matrix, less the ternary ones); the others are listed in "skipped".

Shapes: with --gguf-headers DIR (llama.cpp's header cache, filled by running the C++ test
once with network) the tensors and metadata are the files' own. Without it (no network
here) they are rebuilt from each architecture's tensor layout (llama.cpp's
src/models/*.cpp load_arch_tensors) and the model's published config.json (ARCHS below).
Either way the list is checked against the snapshot itself (unless expert_count is 8):
  - every tensor the snapshot names is in the list;
  - the MXFP4_MOE section lists exactly the quantizable tensors that are not 3-D (MXFP4
    only goes to tensors with ne[2] > 1; every other one becomes Q8_0, or F16);
  - the Q6_K section lists exactly the quantizable tensors whose rows are not a multiple of
    256 (the shape fallback), as Q8_0 when the rows are a multiple of 32 and F16 otherwise;
  - every MoE layer's ffn_down_exps is in the Q2_K section (Q3_K there).
Together these pin down what the mix rules read: the names, ne[0] modulo 32 and 256 and
whether ne[2] > 1. The "kept" tensors are not in any snapshot, so they are this script's
reconstruction only (the standard norms, routers and biases of each architecture).

Usage (with the Python of scripts/pyenv.sh, from the repository root):
  ggml_mix_snapshots.py [--llama-cpp DIR] [--out DIR] [--gguf-headers DIR]
DIR defaults: target/llama.cpp/src/vendor/llama.cpp (the llama-cpp-python sdist that
scripts/build_llama_bench.sh unpacks) and tests/data/ggml-mix/snapshots.
"""

import argparse
import glob
import json
import os
import re
import struct
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The mixes of moesim's Mix::ALL (src/gguf/mix.rs).
SUPPORTED = [
    "Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K",
    "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "IQ4_NL", "IQ4_XS", "IQ3_S", "IQ3_M", "MXFP4_MOE",
]
NEEDS_IMATRIX = ["IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ3_XXS", "IQ3_XS",
                 "Q2_K_S"]
SKIP_REASON = {
    **{m: "needs an importance matrix (llama-quantize refuses it without one)" for m in NEEDS_IMATRIX},
    "F32": "not a quantization mix", "F16": "not a quantization mix",
    "BF16": "not a quantization mix",
    "TQ1_0": "ternary mix, not modelled by moesim", "TQ2_0": "ternary mix, not modelled by moesim",
    "NVFP4": "not modelled by moesim",
}


# ---------------------------------------------------------------------------------------------
# The C++ test's model list and snapshot files
# ---------------------------------------------------------------------------------------------

def model_specs(cpp):
    """(repo, quant, commented_out) of `model_specs` in test-quant-type-selection.cpp."""
    src = open(cpp).read()
    body = src[src.index("model_specs[] = {"):]
    body = body[:body.index("};")]
    out = []
    for m in re.finditer(r'^\s*(//)?\s*\{\s*"([^"]+)",\s*"([^"]+)"\s*\}', body, re.M):
        out.append((m.group(2), m.group(3), m.group(1) is not None))
    if not out:
        sys.exit(f"no model_specs found in {cpp}")
    return out


def model_name_from_repo(repo):
    """The test's model_name_from_repo: drop the org, "-GGUF" and anything up to a '_'."""
    s = repo.split("/", 1)[1] if "/" in repo else repo
    if s.endswith("-GGUF"):
        s = s[: -len("-GGUF")]
    if "_" in s:
        s = s[s.index("_") + 1:]
    return s


def parse_snapshot(path):
    """({n_embd, n_ff, ...} from the header comment, [(mix, default, {name: type})])."""
    facts, sections, cur = {}, [], None
    for line in open(path):
        line = line.rstrip("\n")
        if line.startswith("# n_embd="):
            facts = {k: int(v) for k, v in (kv.split("=") for kv in line[2:].split(", "))}
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            mix, default = re.fullmatch(r"\[([^\]]+)\] *(\S+)", line).groups()
            cur = (mix, default.upper(), {})
            sections.append(cur)
            continue
        name, ty = line.rsplit(" ", 1)
        if name in cur[2]:
            sys.exit(f"{path}: {name} twice in [{cur[0]}]")
        cur[2][name] = ty.upper()
    return facts, sections


# ---------------------------------------------------------------------------------------------
# llama.cpp's tensor_allows_quantization (src/llama-quant.cpp), default parameters
# ---------------------------------------------------------------------------------------------

def n_dims(ne):
    """ggml_n_dims: trailing 1s do not count, at least 1."""
    n = len(ne)
    while n > 1 and ne[n - 1] == 1:
        n -= 1
    return n


NOT_QUANTIZED_SUBSTRINGS = [
    "_norm.weight", "ffn_gate_inp.weight", "ffn_gate_tid2eid.weight", "altup", "laurel",
    "per_layer_model_proj", "ssm_conv1d", "shortconv.conv.weight", "indexer.k_proj.weight",
    "indexer.q_proj.weight", "time_mix_first.weight", "time_mix_w0.weight",
    "time_mix_w1.weight", "time_mix_w2.weight", "time_mix_v0.weight", "time_mix_v1.weight",
    "time_mix_v2.weight", "time_mix_a0.weight", "time_mix_a1.weight", "time_mix_a2.weight",
    "time_mix_g1.weight", "time_mix_g2.weight", "time_mix_decay_w1.weight",
    "time_mix_decay_w2.weight", "time_mix_lerp_fused.weight", "attn_rel_b.weight",
    ".position_embd", "sam.pos_embd", "sam.neck.", "sam.net_", ".rel_pos", ".patch_embd",
    ".patch_merger", "a.rvq.codebook", "mm.a.code_embd",
]


def allows_quantization(arch, name, ne):
    if arch == "glm5-next":
        sys.exit("glm5-next has extra exclusions this script does not transcribe")
    if n_dims(ne) < 2 or not name.endswith("weight"):
        return False
    if name in ("position_embd.weight", "token_types.weight"):
        return False
    return not any(s in name for s in NOT_QUANTIZED_SUBSTRINGS)


# ---------------------------------------------------------------------------------------------
# Reading llama.cpp's cached GGUF headers (partial files: the header only)
# ---------------------------------------------------------------------------------------------

class Reader:
    def __init__(self, data):
        self.d, self.o = data, 0

    def take(self, fmt):
        v = struct.unpack_from("<" + fmt, self.d, self.o)
        self.o += struct.calcsize("<" + fmt)
        return v[0]

    def string(self):
        n = self.take("Q")
        s = self.d[self.o:self.o + n].decode("utf-8")
        self.o += n
        return s


SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q",
          12: "d"}


def read_value(r, vtype):
    if vtype in SCALAR:
        return r.take(SCALAR[vtype])
    if vtype == 8:
        return r.string()
    if vtype == 9:
        etype, count = r.take("i"), r.take("Q")
        return [read_value(r, etype) for _ in range(count)]
    raise ValueError(f"unknown GGUF value type {vtype}")


def read_gguf_header(path):
    """(metadata {key: value}, [(name, ne)]) of a GGUF file or llama.cpp's .partial copy."""
    r = Reader(open(path, "rb").read())
    if r.d[:4] != b"GGUF":
        raise ValueError(f"{path}: not a GGUF file")
    r.o = 4
    version = r.take("I")
    if version < 2:
        raise ValueError(f"{path}: GGUF version {version}")
    n_tensors, n_kv = r.take("Q"), r.take("Q")
    meta = {}
    for _ in range(n_kv):
        key = r.string()
        meta[key] = read_value(r, r.take("i"))
    tensors = []
    for _ in range(n_tensors):
        name = r.string()
        nd = r.take("I")
        ne = [r.take("q") for _ in range(nd)]
        r.take("i")  # type: the test makes every tensor F32
        r.take("Q")  # offset
        tensors.append((name, ne))
    return meta, tensors


def first(v):
    """gguf-model-data.cpp reads a per-layer array as its first element."""
    return v[0] if isinstance(v, list) else v


def from_gguf_headers(cache, repo, quant):
    """The test's model from llama.cpp's header cache, or None when it is not there."""
    repo_part = re.sub(r"[/\\:]", "_", repo)
    files = sorted(f for f in glob.glob(os.path.join(cache, glob.escape(repo_part) + "--*.partial"))
                   if quant.upper() in os.path.basename(f)[len(repo_part) + 2:].upper())
    if not files:
        return None
    meta, tensors = {}, []
    for f in files:  # shards -00001-of-0000N ... in order
        m, t = read_gguf_header(f)
        if not meta:
            meta = m
        tensors += t
    arch = meta["general.architecture"]
    # gguf_remote_model's fields, 0 when the key is absent (as the test's mock model has them)
    md = {"general.architecture": arch}
    for key, ours in [("block_count", "block_count"), ("attention.head_count", "head_count"),
                      ("attention.head_count_kv", "head_count_kv"),
                      ("expert_count", "expert_count")]:
        md[ours] = int(first(meta.get(f"{arch}.{key}", 0)))
    if not md["expert_count"]:
        del md["expert_count"]
    return md, tensors


# ---------------------------------------------------------------------------------------------
# Rebuilt tensor lists: each architecture's tensors (llama.cpp src/models/*.cpp) with the
# dimensions of the model's published config.json
# ---------------------------------------------------------------------------------------------

class Model:
    def __init__(self):
        self.tensors = []

    def t(self, name, *ne):
        self.tensors.append((name, list(ne)))


def dense_attention(m, p, c, n_head=None, bias=False, qk_norm=False, q_gate=False):
    """attn_q/k/v/output (create_tensor_qkv) with the usual head layout."""
    e, hd, kv = c["n_embd"], c["head_dim"], c["n_head_kv"]
    h = n_head or c["n_head"]
    m.t(p + "attn_q.weight", e, hd * h * (2 if q_gate else 1))
    m.t(p + "attn_k.weight", e, hd * kv)
    m.t(p + "attn_v.weight", e, hd * kv)
    if bias:
        m.t(p + "attn_q.bias", hd * h)
        m.t(p + "attn_k.bias", hd * kv)
        m.t(p + "attn_v.bias", hd * kv)
    m.t(p + "attn_output.weight", hd * h, e)
    if qk_norm:
        m.t(p + "attn_q_norm.weight", hd)
        m.t(p + "attn_k_norm.weight", hd)


def dense_ffn(m, p, e, ff):
    m.t(p + "ffn_gate.weight", e, ff)
    m.t(p + "ffn_up.weight", e, ff)
    m.t(p + "ffn_down.weight", ff, e)


def moe_ffn(m, p, e, ff_exp, n_expert, shexp=0, gated=True, probs_b=False, gate_inp_shexp=False):
    m.t(p + "ffn_gate_inp.weight", e, n_expert)
    if probs_b:
        m.t(p + "exp_probs_b.bias", n_expert)
    if gated:
        m.t(p + "ffn_gate_exps.weight", e, ff_exp, n_expert)
    m.t(p + "ffn_up_exps.weight", e, ff_exp, n_expert)
    m.t(p + "ffn_down_exps.weight", ff_exp, e, n_expert)
    if gate_inp_shexp:
        m.t(p + "ffn_gate_inp_shexp.weight", e)
    if shexp:
        if gated:
            m.t(p + "ffn_gate_shexp.weight", e, shexp)
        m.t(p + "ffn_up_shexp.weight", e, shexp)
        m.t(p + "ffn_down_shexp.weight", shexp, e)


def embeddings(m, c, tied=False):
    m.t("token_embd.weight", c["n_embd"], c["n_vocab"])
    m.t("output_norm.weight", c["n_embd"])
    if not tied:
        m.t("output.weight", c["n_embd"], c["n_vocab"])


def build_llama_like(c):
    """llama (models/llama.cpp), qwen3 (qk norms) and gemma3 (qk norms, post norms, tied)."""
    m = Model()
    embeddings(m, c, tied=c.get("tied", False))
    if c.get("rope_freqs"):
        m.t("rope_freqs.weight", c["rope_freqs"])
    for i in range(c["n_layer"]):
        p = f"blk.{i}."
        m.t(p + "attn_norm.weight", c["n_embd"])
        dense_attention(m, p, c, qk_norm=c.get("qk_norm", False))
        if c.get("post_norms"):
            m.t(p + "post_attention_norm.weight", c["n_embd"])
        m.t(p + "ffn_norm.weight", c["n_embd"])
        dense_ffn(m, p, c["n_embd"], c["n_ff"])
        if c.get("post_norms"):
            m.t(p + "post_ffw_norm.weight", c["n_embd"])
    return m.tensors


def build_deepseek2(c):
    """models/deepseek2.cpp with MLA (attn_k_b / attn_v_b, both 3-D)."""
    m = Model()
    embeddings(m, c)
    e, h = c["n_embd"], c["n_head"]
    nope, rope, vhd = c["qk_nope_head_dim"], c["qk_rope_head_dim"], c["v_head_dim"]
    ql, kvl = c["q_lora_rank"], c["kv_lora_rank"]
    for i in range(c["n_layer"]):
        p = f"blk.{i}."
        m.t(p + "attn_norm.weight", e)
        m.t(p + "attn_q_a_norm.weight", ql)
        m.t(p + "attn_kv_a_norm.weight", kvl)
        m.t(p + "attn_q_a.weight", e, ql)
        m.t(p + "attn_q_b.weight", ql, h * (nope + rope))
        m.t(p + "attn_kv_a_mqa.weight", e, kvl + rope)
        m.t(p + "attn_k_b.weight", nope, kvl, h)
        m.t(p + "attn_v_b.weight", kvl, vhd, h)
        m.t(p + "attn_output.weight", h * vhd, e)
        m.t(p + "ffn_norm.weight", e)
        if i < c["n_dense_lead"]:
            dense_ffn(m, p, e, c["n_ff"])
        else:
            moe_ffn(m, p, e, c["n_ff_exp"], c["n_expert"], shexp=c["n_ff_exp"], probs_b=True)
    return m.tensors


def build_glm4moe(c):
    """models/glm4-moe.cpp: biased q/k/v, post-attention norm, leading dense layers."""
    m = Model()
    embeddings(m, c)
    e = c["n_embd"]
    for i in range(c["n_layer"]):
        p = f"blk.{i}."
        m.t(p + "attn_norm.weight", e)
        dense_attention(m, p, c, bias=True)
        m.t(p + "post_attention_norm.weight", e)
        if i < c["n_dense_lead"]:
            dense_ffn(m, p, e, c["n_ff"])
        else:
            moe_ffn(m, p, e, c["n_ff_exp"], c["n_expert"], shexp=c["n_ff_exp"], probs_b=True)
    return m.tensors


def build_gpt_oss(c):
    """models/openai-moe.cpp: biases everywhere, attention sinks, 128 experts with biases."""
    m = Model()
    embeddings(m, c)
    e, ff, ne = c["n_embd"], c["n_ff_exp"], c["n_expert"]
    for i in range(c["n_layer"]):
        p = f"blk.{i}."
        m.t(p + "attn_norm.weight", e)
        m.t(p + "post_attention_norm.weight", e)
        dense_attention(m, p, c, bias=True)
        m.t(p + "attn_output.bias", e)
        m.t(p + "attn_sinks.weight", c["n_head"])
        moe_ffn(m, p, e, ff, ne)
        m.t(p + "ffn_gate_inp.bias", ne)
        m.t(p + "ffn_gate_exps.bias", ff, ne)
        m.t(p + "ffn_up_exps.bias", ff, ne)
        m.t(p + "ffn_down_exps.bias", e, ne)
    return m.tensors


def build_nemotron_h_moe(c):
    """models/nemotron-h.cpp: Mamba-2 (M), attention (*) and MoE (E) blocks by the pattern."""
    m = Model()
    embeddings(m, c)
    e = c["n_embd"]
    d_inner = c["mamba_num_heads"] * c["mamba_head_dim"]
    ng, ds, nh = c["n_groups"], c["ssm_state_size"], c["mamba_num_heads"]
    conv = d_inner + 2 * ng * ds
    for i, kind in enumerate(c["pattern"]):
        p = f"blk.{i}."
        m.t(p + "attn_norm.weight", e)
        if kind == "M":
            m.t(p + "ssm_in.weight", e, 2 * d_inner + 2 * ng * ds + nh)
            m.t(p + "ssm_conv1d.weight", c["conv_kernel"], conv)
            m.t(p + "ssm_conv1d.bias", conv)
            m.t(p + "ssm_dt.bias", nh)
            m.t(p + "ssm_a", 1, nh)
            m.t(p + "ssm_d", 1, nh)
            m.t(p + "ssm_norm.weight", d_inner // ng, ng)
            m.t(p + "ssm_out.weight", d_inner, e)
        elif kind == "*":
            dense_attention(m, p, c)
        elif kind == "E":
            moe_ffn(m, p, e, c["n_ff_exp"], c["n_expert"], shexp=c["n_ff_shexp"], gated=False,
                    probs_b=True)
        else:
            raise ValueError(kind)
    return m.tensors


def build_qwen_hybrid(c):
    """models/qwen3next.cpp, qwen35.cpp, qwen35moe.cpp: gated delta-net layers, a full
    (gated-query) attention layer every `full_every`, MoE or dense FFN."""
    m = Model()
    embeddings(m, c)
    e = c["n_embd"]
    kd = c["linear_key_head_dim"] * c["linear_num_key_heads"]
    vd = c["linear_value_head_dim"] * c["linear_num_value_heads"]
    nv = c["linear_num_value_heads"]
    for i in range(c["n_layer"]):
        p = f"blk.{i}."
        m.t(p + "attn_norm.weight", e)
        m.t(p + "post_attention_norm.weight", e)
        if (i + 1) % c["full_every"] == 0:
            dense_attention(m, p, c, qk_norm=True, q_gate=True)
        else:
            m.t(p + "attn_qkv.weight", e, 2 * kd + vd)
            m.t(p + "attn_gate.weight", e, vd)
            m.t(p + "ssm_conv1d.weight", c["conv_kernel"], 2 * kd + vd)
            m.t(p + "ssm_dt.bias", nv)
            m.t(p + "ssm_a", nv)
            if c["arch"] == "qwen3next":
                m.t(p + "ssm_ba.weight", e, 2 * nv)
            else:
                m.t(p + "ssm_beta.weight", e, nv)
                m.t(p + "ssm_alpha.weight", e, nv)
            m.t(p + "ssm_norm.weight", c["linear_value_head_dim"])
            m.t(p + "ssm_out.weight", vd, e)
        if c.get("n_expert"):
            moe_ffn(m, p, e, c["n_ff_exp"], c["n_expert"], shexp=c["n_ff_shexp"],
                    gate_inp_shexp=True)
        else:
            dense_ffn(m, p, e, c["n_ff"])
    return m.tensors


def build_step35(c):
    """models/step35.cpp: full attention every 4th layer (64 heads), sliding window in the
    others (96 heads), a per-head attention gate, leading dense layers, then MoE."""
    m = Model()
    embeddings(m, c)
    e = c["n_embd"]
    for i in range(c["n_layer"]):
        p = f"blk.{i}."
        n_head = c["n_head"] if i % 4 == 0 else c["n_head_swa"]
        m.t(p + "attn_norm.weight", e)
        dense_attention(m, p, c, n_head=n_head, qk_norm=True)
        m.t(p + "attn_gate.weight", e, n_head)
        m.t(p + "ffn_norm.weight", e)
        if i < c["n_dense_lead"]:
            dense_ffn(m, p, e, c["n_ff"])
        else:
            moe_ffn(m, p, e, c["n_ff_exp"], c["n_expert"], shexp=c["n_ff_shexp"], probs_b=True)
    return m.tensors


# Per snapshot: the GGUF architecture and the config values the snapshot header lacks (from
# each model's config.json on Hugging Face). n_embd, n_ff, n_layer, n_head, n_head_kv and
# n_expert come from the snapshot's header line and are checked against these.
ARCHS = {
    "qwen3-0.6b": dict(arch="qwen3", build=build_llama_like, head_dim=128, n_vocab=151936,
                       qk_norm=True),
    "qwen3-14b": dict(arch="qwen3", build=build_llama_like, head_dim=128, n_vocab=151936,
                      qk_norm=True),
    "meta-llama-3.1-70b-instruct": dict(arch="llama", build=build_llama_like, head_dim=128,
                                        n_vocab=128256, rope_freqs=64),
    "gemma-3-4b-it": dict(arch="gemma3", build=build_llama_like, head_dim=256,
                          n_vocab=262144, qk_norm=True, post_norms=True, tied=True),
    "deepseek-v3.1": dict(arch="deepseek2", build=build_deepseek2, n_vocab=129280,
                          q_lora_rank=1536, kv_lora_rank=512, qk_nope_head_dim=128,
                          qk_rope_head_dim=64, v_head_dim=128, n_dense_lead=3, n_ff_exp=2048),
    "glm-4.6v": dict(arch="glm4moe", build=build_glm4moe, head_dim=128, n_vocab=151552,
                     n_dense_lead=1, n_ff_exp=1408),
    "gpt-oss-120b": dict(arch="gpt-oss", build=build_gpt_oss, head_dim=64, n_vocab=201088,
                         n_ff_exp=2880),
    "nvidia-nemotron-3-nano-30b-a3b": dict(
        arch="nemotron_h_moe", build=build_nemotron_h_moe, head_dim=128, n_vocab=131072,
        # n_head_kv of the attention layers (the header's 0 is layer 0's, a Mamba layer)
        attn_kv_heads=2, pattern="MEMEM*EMEMEM*EMEMEM*EMEMEM*EMEMEM*EMEMEMEM*EMEMEMEME",
        mamba_num_heads=64, mamba_head_dim=64, n_groups=8, ssm_state_size=128, conv_kernel=4,
        n_ff_exp=1856, n_ff_shexp=3712),
    "qwen3-coder-next": dict(
        arch="qwen3next", build=build_qwen_hybrid, head_dim=256, n_vocab=151936, full_every=4,
        linear_num_key_heads=16, linear_key_head_dim=128, linear_num_value_heads=32,
        linear_value_head_dim=128, conv_kernel=4, n_ff_exp=512, n_ff_shexp=512),
    "qwen3.5-397b-a17b": dict(
        arch="qwen35moe", build=build_qwen_hybrid, head_dim=256, n_vocab=248320, full_every=4,
        linear_num_key_heads=16, linear_key_head_dim=128, linear_num_value_heads=64,
        linear_value_head_dim=128, conv_kernel=4, n_ff_exp=1024, n_ff_shexp=1024),
    "qwen3.6-27b": dict(
        arch="qwen35", build=build_qwen_hybrid, head_dim=256, n_vocab=248320, full_every=4,
        linear_num_key_heads=16, linear_key_head_dim=128, linear_num_value_heads=48,
        linear_value_head_dim=128, conv_kernel=4),
    "step-3.5-flash": dict(arch="step35", build=build_step35, head_dim=128, n_vocab=128896,
                           n_head_swa=96, n_dense_lead=3, n_ff_exp=1280, n_ff_shexp=1280),
}


def reconstructed(snap, facts):
    spec = dict(ARCHS[snap])
    c = dict(spec)
    c.update({k: facts[k] for k in ("n_embd", "n_ff", "n_layer", "n_head", "n_head_kv")})
    c["n_expert"] = facts.get("n_expert", 0)
    if "attn_kv_heads" in c:
        c["n_head_kv"] = c["attn_kv_heads"]
    md = {"general.architecture": spec["arch"], "block_count": facts["n_layer"],
          "head_count": facts["n_head"], "head_count_kv": facts["n_head_kv"]}
    if facts.get("n_expert"):
        md["expert_count"] = facts["n_expert"]
    return md, spec["build"](c)


# ---------------------------------------------------------------------------------------------
# Checks of a tensor list against its snapshot
# ---------------------------------------------------------------------------------------------

def check_against_snapshot(tensors, sections, n_expert):
    problems = []
    names = {n for n, _ in tensors}
    if len(names) != len(tensors):
        problems.append("duplicate tensor names")
    for mix, _, over in sections:
        for n in over:
            if n not in names:
                problems.append(f"[{mix}] names {n}, not a quantizable tensor of the list")
    if n_expert == 8:  # attn_k / attn_v get Q8_0 in every mix: the checks below do not hold
        return problems
    by_mix = {mix: over for mix, _, over in sections}
    # MXFP4_MOE: every quantizable tensor but the 3-D ones differs from MXFP4.
    want = {n for n, ne in tensors if not (len(ne) > 2 and ne[2] > 1)}
    want |= {n for n, ne in tensors if ne[0] % 32}  # MXFP4 falls back to F16
    got = set(by_mix["MXFP4_MOE"])
    for n in sorted(want ^ got):
        problems.append(f"[MXFP4_MOE] {n}: {'listed' if n in got else 'not listed'}, "
                        f"but the rebuilt shape says otherwise")
    # Q6_K: exactly the tensors whose rows are not a multiple of 256 (no expert_count of 8).
    q6 = by_mix["Q6_K"]
    for n, ne in tensors:
        expect = None if ne[0] % 256 == 0 else ("Q8_0" if ne[0] % 32 == 0 else "F16")
        if q6.get(n) != expect:
            problems.append(f"[Q6_K] {n} (ne[0] {ne[0]}): {q6.get(n)} listed, {expect} expected")
    # Q2_K: every ffn_down_exps is Q3_K (all layers, no layer rule for Q2_K).
    for n, ne in tensors:
        if "ffn_down_exps" in n and n not in by_mix["Q2_K"]:
            problems.append(f"[Q2_K] {n} not listed")
    return problems


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------

def split_layer(name):
    m = re.fullmatch(r"blk\.(\d+)\.(.+)", name)
    return (int(m.group(1)), m.group(2)) if m else (None, name)


def layer_set(layers):
    """[0, 1, 2, 5, 7, 8] -> "0-2,5,7-8"."""
    out, layers = [], sorted(layers)
    start = prev = layers[0]
    for i in layers[1:] + [None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        out.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = i
    return ",".join(out)


def compress(items):
    """[(name, extra)] -> [(pattern, extra)]: names that differ only in their block number
    become one "blk.{0-2,5}.rest" pattern (groups in order of first appearance)."""
    groups = {}
    for name, extra in items:
        layer, rest = split_layer(name)
        key = (rest, json.dumps(extra), layer is None)
        groups.setdefault(key, (extra, []))[1].append(layer)
    out = []
    for (rest, _, plain), (extra, layers) in groups.items():
        if plain:
            out += [(rest, extra)] * len(layers)
        elif len(layers) == 1:
            out.append((f"blk.{layers[0]}.{rest}", extra))
        else:
            out.append((f"blk.{{{layer_set(layers)}}}.{rest}", extra))
    return out


def expand(pattern):
    """The inverse of compress, for one pattern (the Rust test does the same)."""
    m = re.fullmatch(r"blk\.\{([0-9,-]+)\}\.(.+)", pattern)
    if not m:
        return [pattern]
    names = []
    for part in m.group(1).split(","):
        a, _, b = part.partition("-")
        names += [f"blk.{i}.{m.group(2)}" for i in range(int(a), int(b or a) + 1)]
    return names


def dumps(doc):
    """JSON with one tensor group per line and one type per line: small and diffable."""
    j = lambda v: json.dumps(v, separators=(",", ":"))  # noqa: E731
    out = ["{"]
    keys = list(doc)
    for k in keys:
        v = doc[k]
        end = "," if k != keys[-1] else ""
        if k in ("tensors", "kept"):
            rows = [f"  {j(t)}" for t in v]
            out.append(f" {j(k)}: [\n" + ",\n".join(rows) + f"\n ]{end}")
        elif k == "mixes":
            parts = []
            for mix, sec in v.items():
                groups = [f"    {j(t)}: {j(ns)}" for t, ns in sec["types"].items()]
                body = ("\n" + ",\n".join(groups) + "\n   ") if groups else ""
                parts.append(f"  {j(mix)}: {{\"default\": {j(sec['default'])}, \"types\": {{"
                             + body + "}}")
            out.append(f" {j(k)}: {{\n" + ",\n".join(parts) + f"\n }}{end}")
        else:
            out.append(f" {j(k)}: {j(v)}{end}")
    out.append("}")
    return "\n".join(out) + "\n"


def llama_cpp_commit(src):
    try:
        top = subprocess.run(["git", "-C", src, "rev-parse", "--show-toplevel"],
                             capture_output=True, text=True, check=True).stdout.strip()
        if os.path.realpath(top) == os.path.realpath(src):
            return subprocess.run(["git", "-C", src, "rev-parse", "HEAD"], capture_output=True,
                                  text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    # An sdist without git metadata: its CHANGELOG names the llama.cpp commit.
    changelog = os.path.join(src, "..", "..", "CHANGELOG.md")
    if os.path.exists(changelog):
        m = re.search(r"llama\.cpp@([0-9a-f]{7,40})", open(changelog).read())
        if m:
            return m.group(1)
    return "unknown"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--llama-cpp", default=os.path.join(ROOT, "target/llama.cpp/src/vendor/llama.cpp"))
    ap.add_argument("--out", default=os.path.join(ROOT, "tests/data/ggml-mix/snapshots"))
    ap.add_argument("--gguf-headers", help="llama.cpp's gguf-headers cache directory")
    a = ap.parse_args()
    cpp = os.path.join(a.llama_cpp, "tests/test-quant-type-selection.cpp")
    snapdir = os.path.join(a.llama_cpp, "tests/snapshots")
    commit = llama_cpp_commit(a.llama_cpp)
    os.makedirs(a.out, exist_ok=True)
    failed = False
    for repo, quant, commented in model_specs(cpp):
        name = model_name_from_repo(repo)
        snap = name.lower()
        facts, sections = parse_snapshot(os.path.join(snapdir, snap + ".schema"))
        got = from_gguf_headers(a.gguf_headers, repo, quant) if a.gguf_headers else None
        if got:
            md, all_tensors = got
            shapes = "gguf-header"
            header = {"n_layer": "block_count", "n_head": "head_count",
                      "n_head_kv": "head_count_kv", "n_expert": "expert_count"}
            for k, ours in header.items():
                if facts.get(k, 0) != md.get(ours, 0):
                    print(f"{snap}: snapshot says {k}={facts.get(k, 0)}, the header "
                          f"{md.get(ours, 0)}", file=sys.stderr)
                    failed = True
        else:
            md, all_tensors = reconstructed(snap, facts)
            shapes = "reconstructed"
        arch = md["general.architecture"]
        tensors = [(n, ne) for n, ne in all_tensors if allows_quantization(arch, n, ne)]
        kept = [(n, ne) for n, ne in all_tensors if not allows_quantization(arch, n, ne)]
        problems = check_against_snapshot(tensors, sections, md.get("expert_count", 0))
        for p in problems:
            print(f"{snap}: {p}", file=sys.stderr)
        failed |= bool(problems)
        mixes, skipped = {}, {}
        for mix, default, over in sections:
            if mix not in SUPPORTED:
                skipped[mix] = SKIP_REASON.get(mix, "not modelled by moesim")
                continue
            groups = {}
            for n, t in over.items():
                groups.setdefault(t, []).append(n)
            mixes[mix] = {"default": default,
                          "types": {t: [p for p, _ in compress([(n, None) for n in ns])]
                                    for t, ns in sorted(groups.items())}}
            expanded = {n: t for t, ps in mixes[mix]["types"].items() for p in ps for n in expand(p)}
            assert expanded == over, (snap, mix)
        missing = [m for m in SUPPORTED if m not in mixes]
        if missing:
            print(f"{snap}: no section for {missing}", file=sys.stderr)
            failed = True
        doc = {
            "model": name, "repo": repo, "quant": quant, "snapshot": f"tests/snapshots/{snap}.schema",
            "llama_cpp_commit": commit, "checked_by_llama_cpp_test": not commented,
            "shapes": shapes, "metadata": md,
            "tensors": [[p, ne] for p, ne in compress(tensors)],
            "kept": [[p, ne] for p, ne in compress(kept)],
            "mixes": mixes, "skipped": skipped,
        }
        path = os.path.join(a.out, snap + ".json")
        with open(path, "w") as f:
            f.write(dumps(doc))
        n_over = sum(len(expand(p)) for s in mixes.values() for ps in s["types"].values()
                     for p in ps)
        print(f"{path}: {arch}, {len(tensors)} tensors (+{len(kept)} kept), {len(mixes)} mixes, "
              f"{n_over} non-default types, shapes {shapes}")
    if failed:
        sys.exit("some tensor lists disagree with their snapshots (see above)")


if __name__ == "__main__":
    main()
