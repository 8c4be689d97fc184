#!/usr/bin/env bash
# Writes tests/data/ggml-mix/: for small all-F32 MoE models, the ggml type llama-quantize
# (llama.cpp's quantization mixes, e.g. Q4_K_M) gives every tensor. Not run in CI.
#
#   scripts/ggml_mix_fixtures.sh [OUT_DIR]        # default tests/data/ggml-mix
#
# Builds (or reuses) llama-quantize with scripts/build_llama_bench.sh (8-15 minutes the first
# time), writes each model with scripts/write_f32_moe_gguf.py into target/ggml-mix/, runs
# `llama-quantize MODEL.gguf OUT.gguf MIX 2` for every mix of MIXES, and for each output
# writes OUT_DIR/{model}.{mix}.json (scripts/ggml_mix_tensor_types.py) and deletes the GGUF.
# A mix llama-quantize refuses (the i-quant mixes that need an importance matrix) is recorded
# in OUT_DIR/MANIFEST.json with its error line instead. Models (hidden 256, so that every
# tensor's row length is a multiple of 256 and no shape fallback happens):
#   mixtral        arch llama, 8 experts top-2, 8 layers, expert ffn 512, 8 heads / 2 kv heads
#   qwen3moe       arch qwen3moe, 16 experts top-4, 8 layers, expert ffn 256, 8 / 2 heads
#   qwen3moe-48l   as qwen3moe with 48 layers (the layer-position rules: n_layer/8, use_more_bits)
#   qwen3moe-gqa2  as qwen3moe with 8 / 4 heads (n_gqa 2 < 4: the other attn_v branches)
# Environment: LLAMA_CPP_PYTHON_VERSION (0.3.36), MIXES (space-separated list), MODELS.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
version="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
out="${1:-$root/tests/data/ggml-mix}"
work="$root/target/ggml-mix"
py="$("$root/scripts/pyenv.sh")"
bin="$(LLAMA_CPP_PYTHON_VERSION="$version" "$root/scripts/build_llama_bench.sh")"
vendored="$root/target/llama.cpp/src/vendor/llama.cpp"
if [ "$(git -C "$vendored" rev-parse --show-toplevel 2>/dev/null || true)" = "$vendored" ]; then
  commit="$(git -C "$vendored" rev-parse HEAD)"  # the sdist keeps the submodule's git metadata
else
  commit="$(sed -n "/^## \[$version\]/,/^## /s/.*llama\.cpp@\([0-9a-f]*\).*/\1/p" \
    "$root/target/llama.cpp/src/CHANGELOG.md" | head -1)"
fi

mixes="${MIXES:-Q2_K Q3_K_S Q3_K_M Q3_K_L Q4_K_S Q4_K_M Q5_K_S Q5_K_M Q6_K Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 IQ4_NL IQ4_XS
  Q2_K_S MXFP4_MOE IQ3_XXS IQ3_XS IQ3_S IQ3_M IQ2_XXS IQ2_XS IQ2_S IQ2_M IQ1_S IQ1_M}"
models="${MODELS:-mixtral qwen3moe qwen3moe-48l qwen3moe-gqa2}"
model_args() {
  case "$1" in
    mixtral)       echo "--arch llama --layers 8 --experts 8 --top-k 2 --hidden 256 --expert-ffn 512 --heads 8 --kv-heads 2" ;;
    qwen3moe)      echo "--arch qwen3moe --layers 8 --experts 16 --top-k 4 --hidden 256 --expert-ffn 256 --heads 8 --kv-heads 2" ;;
    qwen3moe-48l)  echo "--arch qwen3moe --layers 48 --experts 16 --top-k 4 --hidden 256 --expert-ffn 256 --heads 8 --kv-heads 2" ;;
    qwen3moe-gqa2) echo "--arch qwen3moe --layers 8 --experts 16 --top-k 4 --hidden 256 --expert-ffn 256 --heads 8 --kv-heads 4" ;;
    *) echo "ggml_mix_fixtures.sh: unknown model $1" >&2; exit 2 ;;
  esac
}

mkdir -p "$work" "$out"
rm -f "$out"/*.json
status="$work/status.tsv"
: > "$status"
for model in $models; do
  args="$(model_args "$model")"
  params="$(echo "$args" | "$py" -c 'import json,sys; a=sys.stdin.read().split(); print(json.dumps({a[i][2:].replace("-","_"): (a[i+1] if a[i]=="--arch" else int(a[i+1])) for i in range(0,len(a),2)}))')"
  src="$work/$model.f32.gguf"
  # shellcheck disable=SC2086
  "$py" "$root/scripts/write_f32_moe_gguf.py" "$src" $args
  for mix in $mixes; do
    dst="$work/$model.$mix.gguf"
    log="$work/$model.$mix.log"
    if LD_LIBRARY_PATH="$bin" "$bin/llama-quantize" "$src" "$dst" "$mix" 2 > "$log" 2>&1; then
      "$py" "$root/scripts/ggml_mix_tensor_types.py" types "$dst" "$model" "$mix" "$out/$model.$mix.json"
      printf '%s\t%s\tok\t\t%s\n' "$model" "$mix" "$params" >> "$status"
      echo "$model $mix: ok" >&2
    else
      # The first error line llama-quantize printed, e.g. "this quantization requires an imatrix!".
      reason="$(grep -m1 -E 'ERROR|error|failed|requires' "$log" | tr '\t' ' ' | sed 's/^ *//' || true)"
      if grep -q 'requires an imatrix\|requires an importance matrix' "$log"; then
        kind=refused
        tensor="$(grep -m1 'offending tensor' "$log" | sed 's/.*offending tensor: *//' || true)"
        target="$(grep -m1 'target type' "$log" | sed 's/.*target type: *//' || true)"
        reason="requires an importance matrix (first offending tensor $tensor, target type $target)"
      else
        kind=failed
      fi
      printf '%s\t%s\t%s\t%s\t%s\n' "$model" "$mix" "$kind" "$reason" "$params" >> "$status"
      echo "$model $mix: $kind: $reason" >&2
    fi
    rm -f "$dst"
  done
  rm -f "$src"
done
"$py" "$root/scripts/ggml_mix_tensor_types.py" manifest "$out" "$status" "$version" "${commit:-unknown}"

cat > "$out/README.md" <<EOF
# llama.cpp quantization mixes: per-tensor types

Which ggml type \`llama-quantize\` (llama.cpp ${commit:-unknown}, vendored in the PyPI sdist
of llama-cpp-python $version) gives every tensor of small all-F32 Mixture-of-Experts models,
for each quantization mix ("ftype", e.g. Q4_K_M), without an importance matrix.

- \`{model}.{mix}.json\`: {"mix", "model", "arch", "n_expert", "n_expert_used", "n_layer",
  "n_head", "n_head_kv", "file_type", "tensors": {tensor name: ggml type name}}, tensors in
  the order of the quantized file.
- \`MANIFEST.json\`: versions, each model's parameters, and per (model, mix) \`ok\` or why
  llama-quantize refused. Without an imatrix, IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ2_M,
  IQ3_XXS, IQ3_XS and Q2_K_S are refused (some tensor would get IQ1/IQ2/IQ3_XXS, or Q2_K under
  Q2_K_S); the 16 K/legacy/IQ4 mixes plus IQ3_S, IQ3_M and MXFP4_MOE run.

Models (weights random, hidden 256, every row length a multiple of 256):
\`mixtral\` (arch llama, 8 experts top-2, 8 layers, expert ffn 512, 8 heads / 2 kv heads),
\`qwen3moe\` (16 experts top-4, 8 layers, expert ffn 256, 8 / 2 heads), \`qwen3moe-48l\`
(48 layers) and \`qwen3moe-gqa2\` (8 / 4 heads, so n_gqa = 2). All have an untied output.weight.

Regenerate (about 8 minutes on two cores, plus 8-15 minutes to build llama-quantize first):

    scripts/ggml_mix_fixtures.sh

Each model is written by \`scripts/write_f32_moe_gguf.py\`, quantized with
\`llama-quantize MODEL.f32.gguf OUT.gguf MIX 2\`, read back with the gguf Python package
(\`scripts/ggml_mix_tensor_types.py\`), and the GGUF files are deleted.
EOF
echo "wrote $(ls "$out"/*.*.json | grep -vc MANIFEST) mix files to $out" >&2
