#!/usr/bin/env python3
"""Random i-quant blocks and the `gguf` package's dequantization of them (PyPI gguf==0.19.0),
for moesim's bit-for-bit check of its own (src/quant/iquant/, tests/integration/iquant.rs).

Usage: "$(scripts/pyenv.sh)" scripts/iquant_check.py OUT_DIR [--blocks N] [--seed S] [--nonfinite]

For each format (IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M) writes
OUT_DIR/{name}.bin, N blocks (default 8) of random bytes from numpy's default_rng(S + type id)
(S default 0), and OUT_DIR/{name}.gguf-dequant.npy, gguf.quants.dequantize of those bytes:
float32, N rows of 256. {name} is ggml's name in lower case (iq2_xxs).

Every byte is random except the f16 block scale, set to a finite value: ±10^u with u uniform
in [-3, 0), and in every eighth block (blocks 7, 15, ...) in turn the edges 65504 (the largest
f16), 2^-24 (the smallest subnormal), 0, -65504, -0 and 2^-14 (the smallest normal). IQ1_M has
no scale field of its own: the scale's four nibbles go in the high nibbles of the four
little-endian u16 words of its `scales` (bytes 48..56), the rest of those words staying random.
With --nonfinite, every odd block's scale is instead in turn +inf, -inf, NaN, -NaN and a
signalling NaN (f16 bits 0x7c01), as a damaged file may hold.

Prints one JSON object: per format, its ggml type id, block count and bytes per block.
The committed fixtures of tests/data/iquant/ are this script's output with the defaults.
"""

import argparse
import json
import os

import numpy as np
from gguf import GGML_QUANT_SIZES
from gguf import GGMLQuantizationType as T
from gguf import quants

FORMATS = [T.IQ2_XXS, T.IQ2_XS, T.IQ2_S, T.IQ3_XXS, T.IQ3_S, T.IQ1_S, T.IQ1_M]
EDGE_SCALES = [65504.0, 2.0**-24, 0.0, -65504.0, -0.0, 2.0**-14]
NONFINITE_BITS = [0x7C00, 0xFC00, 0x7E00, 0xFE00, 0x7C01]


def scales(rng, n, nonfinite):
    """The f16 bits of n block scales."""
    d = rng.choice([-1.0, 1.0], n) * 10.0 ** rng.uniform(-3.0, 0.0, n)
    for k, i in enumerate(range(7, n, 8)):
        d[i] = EDGE_SCALES[k % len(EDGE_SCALES)]
    bits = d.astype(np.float16).view(np.uint16)
    if nonfinite:
        for k, i in enumerate(range(1, n, 2)):
            bits[i] = NONFINITE_BITS[k % len(NONFINITE_BITS)]
    return bits


def blocks(qtype, n, seed, nonfinite=False):
    rng = np.random.default_rng(seed + int(qtype))
    values, size = GGML_QUANT_SIZES[qtype]
    assert values == 256
    b = rng.integers(0, 256, (n, size), dtype=np.uint8)
    bits = scales(rng, n, nonfinite)
    if qtype == T.IQ1_M:
        words = b[:, 48:56].copy().view("<u2")  # (n, 4)
        for k in range(4):
            nibble = (bits >> np.uint16(4 * k)) & np.uint16(0xF)
            words[:, k] = (words[:, k] & np.uint16(0x0FFF)) | (nibble << np.uint16(12))
        b[:, 48:56] = words.view(np.uint8)
    else:
        b[:, 0:2] = bits.reshape(n, 1).view(np.uint8)
    return b


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out_dir")
    p.add_argument("--blocks", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--nonfinite", action="store_true")
    a = p.parse_args()
    os.makedirs(a.out_dir, exist_ok=True)
    summary = {}
    for qtype in FORMATS:
        name = qtype.name.lower()
        b = blocks(qtype, a.blocks, a.seed, a.nonfinite)
        b.tofile(os.path.join(a.out_dir, f"{name}.bin"))
        with np.errstate(invalid="ignore", over="ignore"):
            values = quants.dequantize(b, qtype).astype(np.float32, copy=False)
        assert values.shape == (a.blocks, 256), values.shape
        np.save(os.path.join(a.out_dir, f"{name}.gguf-dequant.npy"), values)
        summary[name] = {"type": int(qtype), "blocks": a.blocks, "block_bytes": b.shape[1]}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
