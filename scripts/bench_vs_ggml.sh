#!/usr/bin/env bash
# Side-by-side matrix-vector and matrix-matrix speed: ggml's CPU backend (`test-backend-ops perf
# -o MUL_MAT`, built from the llama.cpp vendored in the llama-cpp-python sdist) against `moesim
# quant bench` (int8 kernels), on the same 4096 x 14336 matrices (m = 4096 outputs, k = 14336
# inputs), at each batch size of BATCHES, on one thread and on all cores, alternating ggml and
# moesim, ROUNDS times. Prints one row per format, batch and thread count: both rates
# (min/median/max in G weight-token products per second, GFLOPS / 2 for ggml) and the ratio of
# medians. Not run in CI (the build takes minutes).
#
#   scripts/bench_vs_ggml.sh [ROUNDS]      # default 3; BATCHES=1,8,32,512 by default
#
# The script builds test-backend-ops from a copy of the source with two changes: its CPU thread
# count comes from MOESIM_GGML_THREADS (it is otherwise half the machine's CPUs), and its
# 4096 x 14336 perf cases include batch 32 (otherwise 1-5, 8 and 512).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
rounds="${1:-3}"
case "$rounds" in
  ''|*[!0-9]*|0) echo "bench_vs_ggml.sh: ROUNDS must be a positive integer, not '$rounds'" >&2; exit 2 ;;
esac
batches="${BATCHES:-1,8,32,512}"
case ",$batches," in
  *,1,*) ;;
  *) echo "bench_vs_ggml.sh: BATCHES must list 1 (moesim's bench needs the matrix-vector rate), not '$batches'" >&2; exit 2 ;;
esac
for b in ${batches//,/ }; do
  case "$b" in
    1|2|3|4|5|8|32|512) ;;
    *) echo "bench_vs_ggml.sh: BATCHES: ggml's perf cases have batch 1-5, 8, 32 (patched in) and 512, not '$b'" >&2; exit 2 ;;
  esac
done
"$root/scripts/build_llama_bench.sh" >/dev/null
py="$("$root/scripts/pyenv.sh")"
work="$root/target/llama.cpp"
src="$work/ops-src"
if [ ! -f "$src/.patched-v2" ]; then
  rm -rf "$src" "$work/build-ops"
  cp -r "$work/src/vendor/llama.cpp" "$src"
  file="$src/tests/test-backend-ops.cpp"
  grep -q 'ggml_backend_set_n_threads_fn(backend.get(), std::max<int>(1, N_THREADS/2));' "$file" || {
    echo "bench_vs_ggml.sh: $file: the thread-count line to patch was not found (llama.cpp changed)" >&2
    exit 2
  }
  sed -i 's|ggml_backend_set_n_threads_fn(backend.get(), std::max<int>(1, N_THREADS/2));|ggml_backend_set_n_threads_fn(backend.get(), getenv("MOESIM_GGML_THREADS") ? atoi(getenv("MOESIM_GGML_THREADS")) : std::max<int>(1, N_THREADS/2));|' "$file"
  grep -q 'for (int bs : {1, 2, 3, 4, 5, 8, 512}) {' "$file" || {
    echo "bench_vs_ggml.sh: $file: the 4096 x 14336 batch list to patch was not found (llama.cpp changed)" >&2
    exit 2
  }
  sed -i 's|for (int bs : {1, 2, 3, 4, 5, 8, 512}) {|for (int bs : {1, 2, 3, 4, 5, 8, 32, 512}) {|' "$file"
  touch "$src/.patched-v2"
fi
if [ ! -x "$work/build-ops/bin/test-backend-ops" ]; then
  export PATH="$work/venv/bin:$PATH"
  no_amx=""
  if [ "$(uname -m)" = x86_64 ]; then no_amx="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"; fi
  cmake -S "$src" -B "$work/build-ops" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
    -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF \
    -DCMAKE_C_FLAGS="$no_amx" -DCMAKE_CXX_FLAGS="$no_amx" \
    -DLLAMA_CURL=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TESTS=ON >&2
  cmake --build "$work/build-ops" --target test-backend-ops -j "$(nproc)" >&2
fi
(cd "$root" && cargo build --release --quiet)
ops="$work/build-ops/bin/test-backend-ops"
export LD_LIBRARY_PATH="$work/build-ops/bin${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
out="$root/target/bench-vs-ggml"
mkdir -p "$out"
rm -f "$out"/*.txt "$out"/*.json
all="$(nproc)"
ggml_n="(${batches//,/|})"
for r in $(seq 1 "$rounds"); do
  # ggml on one thread, moesim (its bench times one thread and the whole pool in one run), then
  # ggml on all threads: the three alternate within every round.
  MOESIM_GGML_THREADS=1 "$ops" perf -b CPU -o MUL_MAT \
    -p "type_a=(q8_0|q4_0|q4_K|q6_K|q3_K|q2_K),type_b=f32,m=4096,n=$ggml_n,k=14336," > "$out/ggml-t1-r$r.txt" 2>&1
  RAYON_NUM_THREADS=$all "$root/target/release/moesim" quant bench --shapes 4096x14336 \
    --profile-shape 4096x14336 --formats q8_0,q4_0,q4_k,q6_k,q3_k,q2_k --kernels int8 \
    --batches "$batches" --repeats 3 --min-ms 200 --json > "$out/moesim-r$r.json"
  MOESIM_GGML_THREADS=$all "$ops" perf -b CPU -o MUL_MAT \
    -p "type_a=(q8_0|q4_0|q4_K|q6_K|q3_K|q2_K),type_b=f32,m=4096,n=$ggml_n,k=14336," > "$out/ggml-t$all-r$r.txt" 2>&1
done
"$py" - "$out" "$rounds" "$all" "$batches" <<'PY'
import json, re, statistics, sys, platform
out, rounds, all_threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
batches = [int(b) for b in sys.argv[4].split(",")]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
flags = next((l.split(":", 1)[1].split() for l in open("/proc/cpuinfo") if l.startswith("flags")), [])
simd = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni") if f in flags]
ggml, ours, levels = {}, {}, set()
pat = re.compile(r"MUL_MAT\(type_a=(\w+),type_b=f32,m=4096,n=(\d+),k=14336.*?([\d.]+) (G|T|M)FLOPS")
for t in (1, all_threads):
    for r in range(1, rounds + 1):
        for line in open(f"{out}/ggml-t{t}-r{r}.txt"):
            m = pat.search(line)
            if m:
                f, n, v, unit = m.group(1).lower(), int(m.group(2)), float(m.group(3)), m.group(4)
                v *= {"M": 1e-3, "G": 1.0, "T": 1e3}[unit]
                ggml.setdefault((f, n, t), []).append(v / 2)
for r in range(1, rounds + 1):
    for row in json.load(open(f"{out}/moesim-r{r}.json")):
        if (row["rows"], row["cols"]) != (4096, 14336):
            continue
        levels.add(row["simd"])
        for t, rate in ((1, row["one_core_weights_per_s"]), (all_threads, row["all_cores_weights_per_s"])):
            ours.setdefault((row["format"], row["batch"], t), []).append(rate / 1e9)
print(f"CPU: {cpu}; SIMD: {', '.join(simd)}; moesim's integer kernels at {', '.join(sorted(levels))}; {rounds} alternating rounds; G weight-token products/s (min / median / max)")
print()
print("| format | batch | threads | ggml | moesim int8 | ratio of medians |")
print("|---|---:|---:|---|---|---:|")
for f in ("q8_0", "q4_0", "q4_k", "q6_k", "q3_k", "q2_k"):
    for n in batches:
        for t in (1, all_threads):
            g, o = ggml.get((f, n, t)), ours.get((f, n, t))
            if not g or not o:
                print(f"| {f} | {n} | {t} | {'missing' if not g else ''} | {'missing' if not o else ''} | - |")
                continue
            fmt = lambda v: f"{min(v):.2f} / {statistics.median(v):.2f} / {max(v):.2f}"
            print(f"| {f} | {n} | {t} | {fmt(g)} | {fmt(o)} | {statistics.median(o) / statistics.median(g):.2f} |")
PY
