#!/usr/bin/env bash
# Coverage-guided fuzzing of every parser of user files (fuzz/, cargo-fuzz with libFuzzer).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# Default: 12 seconds for each of the 16 targets (CI runs this). For a long run, give more
# seconds (and run targets in parallel by hand). Corpora start from the shipped files (presets,
# experiments, test data, generated traces) in target/fuzz/corpus/<target>/ and grow there;
# fuzz/regressions/<target>/ holds every input that once crashed, replayed first. Prints per
# target the inputs tried and what was found; exits non-zero if any target crashed, hung
# (5 s per input) or exceeded 2 GB.
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --version 0.13.2 --locked`). On stable Rust it
# runs without a sanitizer (`-s none`); `-a` keeps debug assertions, so an arithmetic overflow
# is a crash too.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
secs="${1:-12}"
shift || true
all=(experiment_toml profile_toml runtime_toml model_toml generator_toml native_trace json_record import_jsonl
  import_moe_cache_lab oracle_general npy safetensors expert_store results_csv sweep_parts gguf_header)
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${all[@]}")

cargo build --release --quiet
bin="$root/target/release/moesim"
work="$root/target/fuzz"
corpus="$work/corpus"
seeds="$work/seeds"
rm -rf "$seeds"
mkdir -p "$corpus" "$seeds"
for t in "${all[@]}"; do mkdir -p "$corpus/$t" "$seeds/$t"; done

# Seeds: the files moesim ships and small ones it writes.
cp experiments/*.toml experiments/published/*.toml "$seeds/experiment_toml/"
cp hardware-profiles/*.toml "$seeds/profile_toml/"
cp hardware-profiles/runtimes/*.toml "$seeds/runtime_toml/"
cp src/moe/presets/*.toml experiments/models/*.toml "$seeds/model_toml/"
cp src/trace/presets/*.toml "$seeds/generator_toml/"
"$bin" trace generate --preset micro-moe --requests 2 --tokens 3 --prefill 2 --out "$seeds/native_trace/micro.jsonl" > /dev/null
"$bin" trace generate --preset uniform-8x2 --requests 1 --tokens 4 --out "$seeds/native_trace/uniform.jsonl" > /dev/null
head -c 4000 "$seeds/native_trace/micro.jsonl" | tail -n +2 | head -n 8 | split -l 1 - "$seeds/json_record/line-"
cp tests/data/generic-mixtral-shape.jsonl "$seeds/import_jsonl/"
cp tests/data/moe-cache-lab-v1.jsonl "$seeds/import_moe_cache_lab/"
"$bin" trace export --format oracle-general "$seeds/native_trace/micro.jsonl" --out "$seeds/oracle_general/micro.oracleGeneral" > /dev/null
# GGUF: the small MoE files of five architectures the tests write (needs the venv's gguf).
"$(scripts/pyenv.sh)" scripts/gguf_moe_fixtures.py "$work/gguf" > /dev/null
cp "$work"/gguf/*.gguf "$seeds/gguf_header/"
python3 - "$seeds" <<'EOF'
import json, struct, sys
seeds = sys.argv[1]
# .npy, version 1: a 2 x 256 f32 matrix.
rows, cols = 2, 256
header = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }" % (rows, cols)
pad = 64 - (10 + len(header) + 1) % 64
header = header + " " * pad + "\n"
data = b"".join(struct.pack("<f", (i % 17 - 8) / 8.0) for i in range(rows * cols))
open(f"{seeds}/npy/w.npy", "wb").write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + data)
# .safetensors: tensor `w`, F32, 2 x 256.
h = json.dumps({"w": {"dtype": "F32", "shape": [rows, cols], "data_offsets": [0, len(data)]}}).encode()
open(f"{seeds}/safetensors/w.safetensors", "wb").write(struct.pack("<Q", len(h)) + h + data)
# An expert store: one Q4_K expert of 256 x 256 (3 matrices, 144 bytes per 256 weights).
expert = 3 * 256 * 256 // 256 * 144
stride = (expert + 4095) // 4096 * 4096
text = f"moesim-experts 1 format=q4_k layers=1 experts=1 hidden=256 ffn=256 seed=1 expert_bytes={expert} stride={stride}\n"
store = text.encode().ljust(4096, b" ") + bytes(stride)
open(f"{seeds}/expert_store/one.store", "wb").write(store)
EOF
for f in reports/*/results.csv; do cp "$f" "$seeds/results_csv/$(basename "$(dirname "$f")").csv"; done
sweep="$work/sweep-seed"
rm -rf "$sweep"
mkdir -p "$sweep"
cat > "$sweep/s.toml" <<'EOF'
schema_version = 1
name = "fuzz-seed"
[hardware]
profile = "esp32-p4"
[model]
spec = "micro-moe"
format = "q2_k"
[trace]
generator = "micro-moe"
prefill_tokens = 1
decode_tokens = 2
[quality]
samples = 0
[sweep]
axes = { "cache.capacity_experts" = [2] }
EOF
"$bin" run "$sweep/s.toml" --out "$sweep/out" > /dev/null
{ cat "$sweep/out/runs.csv"; printf -- '--\n'; cat "$sweep/out/points/000000.csv"; } > "$seeds/sweep_parts/one.txt"
cp "$sweep/out/results.csv" "$seeds/results_csv/sweep.csv"

cargo fuzz build -s none -a >&2

printf '%-22s %12s %8s %8s  %s\n' target inputs corpus seconds result
failed=0
total=0
for t in "${targets[@]}"; do
  regress="fuzz/regressions/$t"
  art="$work/artifacts/$t"
  mkdir -p "$art"
  # Each target's scratch files (the inputs it writes to disk for moesim to open) in a
  # directory of its own, on tmpfs when there is one, removed afterwards: leftovers of earlier
  # targets must not fill a small /dev/shm under the later ones.
  scratch_root="$work"
  [ -d /dev/shm ] && [ -w /dev/shm ] && scratch_root=/dev/shm
  scratch_dir="$(mktemp -d "$scratch_root/moesim-fuzz-$t.XXXXXX")"
  export MOESIM_FUZZ_SCRATCH="$scratch_dir"
  # Replay every input that once crashed, then fuzz.
  if [ -d "$regress" ] && [ -n "$(ls -A "$regress" 2>/dev/null)" ]; then
    if ! "fuzz/target/x86_64-unknown-linux-gnu/release/$t" -rss_limit_mb=2048 -timeout=5 "$regress"/* > "$work/$t.regress.log" 2>&1; then
      printf '%-22s %12s %8s %8s  %s\n' "$t" - - - "REGRESSION (see $work/$t.regress.log)"
      failed=1
      rm -rf "$scratch_dir"
      continue
    fi
  fi
  log="$work/$t.log"
  start=$(date +%s)
  set +e
  "fuzz/target/x86_64-unknown-linux-gnu/release/$t" "$corpus/$t" "$seeds/$t" \
    -max_total_time="$secs" -timeout=5 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$art/" -close_fd_mask=1 > "$log" 2>&1
  code=$?
  set -e
  rm -rf "$scratch_dir"
  end=$(date +%s)
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  runs=${runs:-0}
  total=$((total + runs))
  size=$(ls "$corpus/$t" | wc -l)
  if [ $code -eq 0 ]; then
    result="ok, no crash"
  else
    result="FAILED (exit $code; inputs in $art, log $log)"
    failed=1
  fi
  printf '%-22s %12s %8s %8s  %s\n' "$t" "$runs" "$size" "$((end - start))" "$result"
  if [ $code -ne 0 ]; then
    # What crashed, where a CI log shows it (the artifacts stay on the machine that ran).
    grep -m1 -A12 -E 'panicked at|ERROR: libFuzzer|==ERROR' "$log" | sed 's/^/    | /' || true
  fi
done
printf 'total inputs: %s\n' "$total"
exit $failed
