#!/usr/bin/env bash
# Measures llama.cpp on this host: random-weight qwen3moe models of three sizes (0.4, 2.4 and
# 4.8 G parameters), each in Q8_0, Q4_K and Q2_K, prompt processing (pp64) and generation
# (tg32) at 1 and 2 threads, with llama-bench. Writes one CSV row per model, format, test and
# thread count. Not run in CI: the build takes minutes, the models take 15 GB of disk and the
# runs about half an hour on two cores.
#
#   scripts/llama_bench_suite.sh [OUT.csv] [REPETITIONS]
#       OUT.csv      default target/llama-bench/measured.csv
#       REPETITIONS  llama-bench -r (default 5)
#
# Models live in target/llama-bench/models/ and are reused. Q8_0 files are written by
# scripts/write_moe_gguf.py (gguf's own Q8_0 quantizer); Q4_K and Q2_K are made from them by
# llama-quantize --pure (every weight matrix in the one format; norms and routers stay F32).
# Run it on a quiet machine: every other process shares the two cores.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/target/llama-bench/measured.csv}"
reps="${2:-5}"
case "$reps" in
  ''|*[!0-9]*|0) echo "llama_bench_suite.sh: REPETITIONS must be a positive integer, not '$reps'" >&2; exit 2 ;;
esac
bin="$("$root/scripts/build_llama_bench.sh")"
py="$("$root/scripts/pyenv.sh")"
models="$root/target/llama-bench/models"
mkdir -p "$models" "$(dirname "$out")"
export LD_LIBRARY_PATH="$bin${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

# name: write_moe_gguf.py arguments (the moesim model specs in experiments/published/llama-bench/
# state the same shapes).
declare -A shape=(
  [s]="--layers 4 --experts 64 --top-k 8 --hidden 1024 --expert-ffn 512"
  [m]="--layers 8 --experts 64 --top-k 8 --hidden 2048 --expert-ffn 768"
  [l]="--layers 12 --experts 64 --top-k 8 --hidden 2048 --expert-ffn 1024"
)
declare -A qtype=([q4_k]=Q4_K_S [q2_k]=Q2_K)

for size in s m l; do
  q8="$models/moe-$size-q8_0.gguf"
  if [ ! -f "$q8" ]; then
    # shellcheck disable=SC2086
    "$py" "$root/scripts/write_moe_gguf.py" "$q8.tmp" ${shape[$size]} --format q8_0 --seed 1
    mv "$q8.tmp" "$q8"
  fi
  for fmt in q4_k q2_k; do
    f="$models/moe-$size-$fmt.gguf"
    if [ ! -f "$f" ]; then
      "$bin/llama-quantize" --pure --allow-requantize "$q8" "$f.tmp" "${qtype[$fmt]}" >/dev/null 2>&1
      mv "$f.tmp" "$f"
    fi
  done
done

# moesim's own calibration of this host (int8 kernels), at 1 and 2 threads, on the middle model's expert
# shape, in the three formats, just before the llama-bench runs. llama-bench's models sit in the
# page cache (mmap), so the profiles used to predict them keep the experts in DRAM: the disk
# tier's holds_experts is set to false (its measured figures stay, unused).
moesim="$root/target/release/moesim"
(cd "$root" && cargo build --release --quiet)
for threads in 1 2; do
  plural=$([ "$threads" = 1 ] && echo thread || echo threads)
  prof="$(dirname "$out")/host-$threads-$plural.toml"
  (cd "$root" && "$moesim" host calibrate --model experiments/published/llama-bench/moe-m.toml \
    --generator experiments/published/llama-bench/uniform-moe-m.toml --formats q8_0,q4_k,q2_k \
    --threads "$threads" --kernel int8 --store-dir target/llama-bench/stores --out "$prof.calibrated" >&2)
  "$py" - "$prof.calibrated" "$prof" "$threads" <<'PY'
import sys
src, dst, threads = sys.argv[1:]
text = open(src).read()
at = text.index('name = "disk"')
end = text.index("holds_experts = true", at)
text = text[:end] + "holds_experts = false" + text[end + len("holds_experts = true"):]
text = text.replace('name = "host-calibrated"', f'name = "llama-bench-host-{threads}"', 1)
head = ("# moesim host calibrate of this host for the llama-bench runs (scripts/llama_bench_suite.sh),\n"
        "# with the disk tier's holds_experts set to false: llama-bench's model sits in the page cache.\n")
open(dst, "w").write(head + text)
PY
done

tmp="$out.tmp"
echo "model,format,threads,test,n_prompt,n_gen,tokens_per_s_mean,tokens_per_s_sd,repetitions,model_bytes,model_params,cpu,build" > "$tmp"
cpu="$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //; s/,/ /g')"
for size in s m l; do
  for fmt in q8_0 q4_k q2_k; do
    f="$models/moe-$size-$fmt.gguf"
    # Read once so that the first repetition does not pay for the disk.
    cat "$f" > /dev/null
    "$bin/llama-bench" -m "$f" -p 64 -n 32 -t 1,2 -r "$reps" -o csv 2>/dev/null |
      "$py" -c '
import csv, sys
size, fmt, reps, cpu = sys.argv[1:5]
for r in csv.DictReader(sys.stdin):
    n_p, n_g = int(r["n_prompt"]), int(r["n_gen"])
    test = f"pp{n_p}" if n_g == 0 else f"tg{n_g}"
    print(",".join([size, fmt, r["n_threads"], test, str(n_p), str(n_g), r["avg_ts"], r["stddev_ts"],
                    reps, r["model_size"], r["model_n_params"], cpu, r["build_commit"]]))
' "$size" "$fmt" "$reps" "$cpu" >> "$tmp"
  done
done
mv "$tmp" "$out"
echo "$out"
