#!/usr/bin/env python3
"""Runs the ggml_quantize harness over the fixture inputs and writes tests/data/ggml-quant/.

Usage (normally called by scripts/ggml_quant_fixtures.sh, with the Python of scripts/pyenv.sh):
  ggml_quant_fixtures.py HARNESS INPUT_DIR OUT_DIR BUILD_INFO.json [CROSS_HARNESS]

For every input INPUT_DIR/{gauss,t4,edge,outlier}.npy and every type of TYPES, runs
`HARNESS INPUT.npy TYPE OUT.bin` twice, each in its own process (a ggml assertion aborts only
that run), and requires both runs to give identical bytes. Writes
  OUT_DIR/{input}.{type}.ggml.bin           the bytes of ggml_quantize_chunk
  OUT_DIR/{input}.{type}.gguf-dequant.npy   gguf.quants.dequantize of those bytes, float32
  OUT_DIR/MANIFEST.json                     versions, sha256 of every file, imatrix use, failures
CROSS_HARNESS, when given, is the same harness linked against another build of ggml (the
llama.cpp build of scripts/build_llama_bench.sh, -O3 with native SIMD); its bytes are compared
with HARNESS's and the comparison is recorded in the manifest, not written as files.
"""

import hashlib
import importlib.metadata
import json
import os
import signal
import subprocess
import sys
import tempfile

import numpy as np
from gguf import GGMLQuantizationType, quants

INPUTS = ["gauss", "t4", "edge", "outlier"]
TYPES = [
    "q4_0", "q4_1", "q5_0", "q5_1", "q8_0",
    "q2_k", "q3_k", "q4_k", "q5_k", "q6_k",
    "iq4_nl", "iq4_xs", "mxfp4",
    "iq2_xxs", "iq2_xs", "iq2_s", "iq3_xxs", "iq3_s", "iq1_s", "iq1_m",
]


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def run(harness, npy, qtype, out_bin):
    """One harness run: (ok, info-dict-or-failure-dict, bytes-or-None)."""
    p = subprocess.run([harness, npy, qtype, out_bin], capture_output=True, text=True)
    if p.returncode != 0:
        if p.returncode < 0:
            status = f"killed by signal {signal.Signals(-p.returncode).name}"
        else:
            status = f"exit status {p.returncode}"
        tail = [line for line in p.stderr.strip().splitlines() if line.strip()][-3:]
        return False, {"status": status, "stderr_tail": tail}, None
    with open(out_bin, "rb") as f:
        data = f.read()
    return True, json.loads(p.stdout.strip().splitlines()[-1]), data


def main():
    if len(sys.argv) not in (5, 6):
        sys.exit(__doc__)
    harness, input_dir, out_dir, build_info_path = sys.argv[1:5]
    cross = sys.argv[5] if len(sys.argv) == 6 else None
    with open(build_info_path) as f:
        build_info = json.load(f)
    os.makedirs(out_dir, exist_ok=True)
    for name in os.listdir(out_dir):
        if name.endswith(".ggml.bin") or name.endswith(".gguf-dequant.npy"):
            os.remove(os.path.join(out_dir, name))

    entries, failures, ggml_reported = {}, [], None
    cross_same, cross_diff = 0, []
    inputs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for inp in INPUTS:
            npy = os.path.join(input_dir, f"{inp}.npy")
            x = np.load(npy)
            assert x.dtype == np.float32 and x.ndim == 2, npy
            inputs[inp] = {"file": f"tests/data/gguf/{inp}.npy", "sha256": sha256(npy), "shape": list(x.shape)}
            for qt in TYPES:
                key = f"{inp}.{qt}"
                ok1, info1, data1 = run(harness, npy, qt, os.path.join(tmp, "a.bin"))
                ok2, info2, data2 = run(harness, npy, qt, os.path.join(tmp, "b.bin"))
                if not (ok1 and ok2):
                    fail = info1 if not ok1 else info2
                    failures.append({"input": inp, "type": qt, **fail})
                    entries[key] = {"input": inp, "type": qt, "ok": False, **fail}
                    print(f"{key}: FAILED ({fail['status']})", file=sys.stderr)
                    continue
                if data1 != data2:
                    sys.exit(f"{key}: two runs of the harness gave different bytes")
                ggml_reported = {"ggml_version": info1["ggml_version"], "ggml_commit": info1["ggml_commit"]}
                bin_name = f"{key}.ggml.bin"
                bin_path = os.path.join(out_dir, bin_name)
                with open(bin_path, "wb") as f:
                    f.write(data1)
                entry = {
                    "input": inp,
                    "type": qt,
                    "ok": True,
                    "ggml_type": info1["type"],
                    "ggml_type_id": info1["type_id"],
                    "bin": bin_name,
                    "bin_bytes": len(data1),
                    "bin_sha256": sha256(bin_path),
                    "imatrix": info1["imatrix"],
                    "requires_imatrix": info1["requires_imatrix"],
                    "ggml_validate_row_data": info1["valid_row_data"],
                    "deterministic_two_runs": True,
                }
                gt = GGMLQuantizationType[qt.upper()]
                try:
                    q = np.frombuffer(data1, dtype=np.uint8).reshape(x.shape[0], -1)
                    deq = np.asarray(quants.dequantize(q, gt), dtype=np.float32)
                    assert deq.shape == x.shape, deq.shape
                    npy_name = f"{key}.gguf-dequant.npy"
                    np.save(os.path.join(out_dir, npy_name), deq)
                    entry["gguf_dequant"] = npy_name
                    entry["gguf_dequant_sha256"] = sha256(os.path.join(out_dir, npy_name))
                    entry["gguf_dequant_nonfinite"] = int(np.count_nonzero(~np.isfinite(deq)))
                except Exception as e:  # gguf cannot dequantize this type
                    entry["gguf_dequant"] = None
                    entry["gguf_dequant_error"] = f"{type(e).__name__}: {e}"
                if cross:
                    okc, infoc, datac = run(cross, npy, qt, os.path.join(tmp, "c.bin"))
                    if okc and datac == data1:
                        cross_same += 1
                    else:
                        cross_diff.append(key)
                entries[key] = entry
                print(f"{key}: {len(data1)} bytes {entry['bin_sha256'][:12]}", file=sys.stderr)

    manifest = {
        "generator": "scripts/ggml_quant_fixtures.sh (harness scripts/ggml_quantize.c, driver scripts/ggml_quant_fixtures.py)",
        "function": "ggml_quantize_chunk(type, src, dst, 0, nrows, n_per_row, imatrix)",
        "imatrix_rule": "NULL, except all-ones (n_per_row floats of 1.0f) where ggml_quantize_requires_imatrix(type)",
        **build_info,
        **(ggml_reported or {}),
        "gguf_python_version": importlib.metadata.version("gguf"),
        "numpy_version": np.__version__,
        "inputs": inputs,
        "types": TYPES,
        "n_written": sum(1 for e in entries.values() if e["ok"]),
        "failures": failures,
        "entries": entries,
    }
    if cross:
        manifest["cross_check"] = {
            "what": "same harness linked against target/llama.cpp/build/bin/libggml-base.so, the library llama-quantize uses (scripts/build_llama_bench.sh: -O3, OpenMP; GGML_NATIVE only affects ggml-cpu, not ggml-base)",
            "identical": cross_same,
            "different_or_failed": cross_diff,
        }
    with open(os.path.join(out_dir, "MANIFEST.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=False)
        f.write("\n")
    print(f"wrote {manifest['n_written']} fixtures, {len(failures)} failures, to {out_dir}", file=sys.stderr)


if __name__ == "__main__":
    main()
