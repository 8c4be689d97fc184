#!/usr/bin/env python3
"""moesim's quantized formats against llama.cpp's reference (PyPI gguf==0.19.0).

Usage:
  gguf_fixtures.py generate MOESIM OUT_DIR
      Writes the committed fixtures of tests/data/gguf/: four input matrices (.npy), the
      bytes gguf.quants.quantize gives for Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, MXFP4, TQ1_0 and
      TQ2_0 (*.gguf.bin), and, for the formats gguf cannot quantize (Q6_K, Q5_K, Q4_K, Q3_K,
      Q2_K, IQ4_NL, IQ4_XS: their byte-exactness is checked against llama.cpp's own quantizer,
      tests/data/ggml-quant/), moesim's bytes (*.moesim.bin, from `MOESIM quant dump`) with
      gguf.quants.dequantize's output of those bytes (*.gguf-dequant.npy).
  gguf_fixtures.py verify MOESIM
      The same checks live, on freshly generated inputs, and prints one JSON object:
      per input and format, whether moesim's bytes equal gguf's (where gguf quantizes) and
      whether gguf dequantizes moesim's bytes bit for bit as moesim does (every format).
      Exit status 1 on any mismatch.

Inputs (16 rows x 256 columns, float32): `gauss` = default_rng(0).standard_normal,
`t4` = default_rng(1).standard_t(4), and `edge`: rows of zeros, constants, exact rounding
ties, a single nonzero, tiny values (subnormal f16 scales), large values (f16 overflow),
alternating signs, and negative maxima; `outlier`: default_rng(2).standard_normal with four
columns 25 times larger.
"""

import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants

BYTE_EXACT = {
    "q8_0": T.Q8_0, "q4_0": T.Q4_0, "q4_1": T.Q4_1, "q5_0": T.Q5_0, "q5_1": T.Q5_1,
    "mxfp4": T.MXFP4, "tq1_0": T.TQ1_0, "tq2_0": T.TQ2_0,
}
DEQUANT_EXACT = {
    "q6_k": T.Q6_K, "q5_k": T.Q5_K, "q4_k": T.Q4_K, "q3_k": T.Q3_K, "q2_k": T.Q2_K,
    "iq4_nl": T.IQ4_NL, "iq4_xs": T.IQ4_XS,
}


def inputs():
    gauss = np.random.default_rng(0).standard_normal((16, 256)).astype(np.float32)
    t4 = np.random.default_rng(1).standard_t(4, (16, 256)).astype(np.float32)
    edge = np.zeros((16, 256), dtype=np.float32)
    ramp = np.arange(256, dtype=np.float32)
    edge[1] = 0.75  # constant
    edge[2] = (ramp % 32 - 16) + 0.5  # halves: rounding ties for Q8_0 codes
    edge[3, 17] = -3.0  # a single nonzero
    edge[4] = (ramp - 128) * 1e-7  # tiny: subnormal f16 scales
    edge[5] = (ramp - 128) * 900.0  # large: Q8_0 scale 907, Q4_K mins near the f16 range
    edge[6] = np.where(ramp % 2 == 0, 1.0, -1.0) * (1 + ramp / 256)  # alternating signs
    edge[7] = -np.abs(np.sin(ramp)) * 5  # all negative
    edge[8] = np.where(ramp % 64 == 0, -7.0, 0.1)  # negative maxima
    edge[9] = (ramp % 3 - 1) * 0.37  # already ternary
    edge[10] = np.float32(65504.0) * np.where(ramp % 5 == 0, 1.0, 0.25)  # f16 max and overflow of d
    edge[11] = np.round(np.sin(ramp * 0.7) * 8) / 8  # coarse grid values
    rng = np.random.default_rng(7)
    edge[12:16] = rng.standard_normal((4, 256)).astype(np.float32) * np.float32([[1e-3], [1.0], [30.0], [1e4]])
    # Outlier columns: Gaussian rows whose columns 3, 77, 140 and 255 are 25 times larger (the
    # channel outliers of LLM activations folded into the weights).
    outlier = np.random.default_rng(2).standard_normal((16, 256)).astype(np.float32)
    outlier[:, [3, 77, 140, 255]] *= np.float32(25.0)
    return {"gauss": gauss, "t4": t4, "edge": edge, "outlier": outlier}


def dump(moesim, fmt, npy, out_bin, out_npy=None):
    cmd = [moesim, "quant", "dump", "--format", fmt, "--input", npy, "--out", out_bin]
    if out_npy:
        cmd += ["--dequantized", out_npy]
    subprocess.run(cmd, check=True, capture_output=True)


def generate(moesim, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    for name, x in inputs().items():
        npy = f"{out_dir}/{name}.npy"
        np.save(npy, x)
        for fmt, t in BYTE_EXACT.items():
            quants.quantize(x, t).tofile(f"{out_dir}/{name}.{fmt}.gguf.bin")
        for fmt, t in DEQUANT_EXACT.items():
            ours = f"{out_dir}/{name}.{fmt}.moesim.bin"
            dump(moesim, fmt, npy, ours)
            q = np.fromfile(ours, dtype=np.uint8).reshape(x.shape[0], -1)
            np.save(f"{out_dir}/{name}.{fmt}.gguf-dequant.npy", quants.dequantize(q, t).astype(np.float32))
    print(f"wrote fixtures to {out_dir}")


def verify(moesim):
    result, ok = {}, True
    with tempfile.TemporaryDirectory() as tmp:
        for name, x in inputs().items():
            npy = f"{tmp}/{name}.npy"
            np.save(npy, x)
            for fmt, t in {**BYTE_EXACT, **DEQUANT_EXACT}.items():
                ours_bin, ours_npy = f"{tmp}/{name}.{fmt}.bin", f"{tmp}/{name}.{fmt}.npy"
                dump(moesim, fmt, npy, ours_bin, ours_npy)
                ours = np.fromfile(ours_bin, dtype=np.uint8).reshape(x.shape[0], -1)
                ours_deq = np.load(ours_npy)
                theirs_deq = quants.dequantize(ours, t).astype(np.float32)
                same_deq = theirs_deq.tobytes() == ours_deq.tobytes()
                entry = {"dequantize_identical": same_deq}
                if fmt in BYTE_EXACT:
                    theirs = quants.quantize(x, t)
                    entry["bytes_identical"] = theirs.tobytes() == ours.tobytes()
                    entry["differing_bytes"] = int(np.count_nonzero(theirs != ours))
                else:
                    entry["differing_values"] = int(np.count_nonzero(theirs_deq.view(np.uint32) != ours_deq.view(np.uint32)))
                ok = ok and all(v for k, v in entry.items() if k.endswith("identical"))
                result[f"{name}.{fmt}"] = entry
    print(json.dumps({"ok": ok, "checks": result}, indent=1))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "generate":
        generate(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 3 and sys.argv[1] == "verify":
        verify(sys.argv[2])
    else:
        sys.exit(__doc__)
