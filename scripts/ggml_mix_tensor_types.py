#!/usr/bin/env python3
"""Records which ggml type llama-quantize gave every tensor of a quantized GGUF file.

Usage (with the Python of scripts/pyenv.sh; called by scripts/ggml_mix_fixtures.sh):
  ggml_mix_tensor_types.py types QUANTIZED.gguf MODEL MIX OUT.json
      Writes {"mix", "model", "arch", "n_expert", "n_expert_used", "n_layer", "n_head",
      "n_head_kv", "file_type", "tensors": {name: TYPE_NAME}} with tensors in file order.
  ggml_mix_tensor_types.py manifest OUT_DIR STATUS.tsv VERSION COMMIT
      Writes OUT_DIR/MANIFEST.json from STATUS.tsv (lines: model, mix, ok|refused|failed,
      reason, model parameters as JSON).
"""

import json
import sys

from gguf import GGUFReader


def field(reader, key, default=None):
    f = reader.get_field(key)
    return default if f is None else f.contents()


def types(path, model, mix, out):
    r = GGUFReader(path)
    arch = field(r, "general.architecture")
    doc = {
        "mix": mix,
        "model": model,
        "arch": arch,
        "n_expert": field(r, f"{arch}.expert_count"),
        "n_expert_used": field(r, f"{arch}.expert_used_count"),
        "n_layer": field(r, f"{arch}.block_count"),
        "n_head": field(r, f"{arch}.attention.head_count"),
        "n_head_kv": field(r, f"{arch}.attention.head_count_kv"),
        "file_type": field(r, "general.file_type"),
        "tensors": {t.name: t.tensor_type.name for t in r.tensors},
    }
    with open(out, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


def manifest(out_dir, status_tsv, version, commit):
    models, results = {}, {}
    with open(status_tsv) as f:
        for line in f:
            model, mix, status, reason, params = line.rstrip("\n").split("\t")
            models[model] = json.loads(params)
            entry = {"status": status}
            if status == "ok":
                entry["file"] = f"{model}.{mix}.json"
            else:
                entry["reason"] = reason
            results.setdefault(model, {})[mix] = entry
    doc = {
        "generator": "scripts/ggml_mix_fixtures.sh",
        "llama_cpp_python_version": version,
        "llama_cpp_commit": commit,
        "models": models,
        "results": results,
    }
    with open(f"{out_dir}/MANIFEST.json", "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "types":
        types(*sys.argv[2:])
    elif len(sys.argv) == 6 and sys.argv[1] == "manifest":
        manifest(*sys.argv[2:])
    else:
        sys.exit(__doc__)
