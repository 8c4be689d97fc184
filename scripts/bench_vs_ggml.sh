#!/usr/bin/env bash
# Side-by-side matrix-vector and matrix-matrix speed: ggml's CPU backend (`test-backend-ops perf
# -o MUL_MAT`, built from the llama.cpp vendored in the llama-cpp-python sdist) against `moesim
# quant bench` (int8 kernels), on the same 4096 x 14336 matrices, at batch 1 and 8, on one
# thread and on all cores, alternating ggml and moesim, ROUNDS times. Prints one row per format,
# batch and thread count: both rates (min/median/max in G weight-token products per second,
# GFLOPS / 2 for ggml) and the ratio of medians. Not run in CI (the build takes minutes).
#
#   scripts/bench_vs_ggml.sh [ROUNDS]      # default 3
#
# test-backend-ops sets its CPU thread count to half the machine's CPUs; the script builds it from
# a copy of the source in which that count comes from MOESIM_GGML_THREADS instead.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
rounds="${1:-3}"
case "$rounds" in
  ''|*[!0-9]*|0) echo "bench_vs_ggml.sh: ROUNDS must be a positive integer, not '$rounds'" >&2; exit 2 ;;
esac
"$root/scripts/build_llama_bench.sh" >/dev/null
py="$("$root/scripts/pyenv.sh")"
work="$root/target/llama.cpp"
src="$work/ops-src"
if [ ! -f "$src/.patched" ]; then
  rm -rf "$src"
  cp -r "$work/src/vendor/llama.cpp" "$src"
  file="$src/tests/test-backend-ops.cpp"
  grep -q 'ggml_backend_set_n_threads_fn(backend.get(), std::max<int>(1, N_THREADS/2));' "$file" || {
    echo "bench_vs_ggml.sh: $file: the thread-count line to patch was not found (llama.cpp changed)" >&2
    exit 2
  }
  sed -i 's|ggml_backend_set_n_threads_fn(backend.get(), std::max<int>(1, N_THREADS/2));|ggml_backend_set_n_threads_fn(backend.get(), getenv("MOESIM_GGML_THREADS") ? atoi(getenv("MOESIM_GGML_THREADS")) : std::max<int>(1, N_THREADS/2));|' "$file"
  touch "$src/.patched"
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
for r in $(seq 1 "$rounds"); do
  for t in 1 "$all"; do
    MOESIM_GGML_THREADS=$t "$ops" perf -b CPU -o MUL_MAT \
      -p 'type_a=(q8_0|q4_0|q4_K|q3_K|q2_K),type_b=f32,m=4096,n=(1|8),k=14336,' > "$out/ggml-t$t-r$r.txt" 2>&1
    RAYON_NUM_THREADS=$t "$root/target/release/moesim" quant bench --shapes 4096x14336 \
      --profile-shape 4096x14336 --formats q8_0,q4_0,q4_k,q3_k,q2_k --kernels int8 \
      --batches 1,8 --repeats 3 --min-ms 200 --json > "$out/moesim-t$t-r$r.json"
  done
done
"$py" - "$out" "$rounds" "$all" <<'PY'
import json, re, statistics, sys, platform
out, rounds, all_threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
flags = next((l.split(":", 1)[1].split() for l in open("/proc/cpuinfo") if l.startswith("flags")), [])
simd = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni") if f in flags]
ggml, ours = {}, {}
pat = re.compile(r"MUL_MAT\(type_a=(\w+),type_b=f32,m=4096,n=(\d+),k=14336.*?([\d.]+) (G|T|M)FLOPS")
for t in (1, all_threads):
    for r in range(1, rounds + 1):
        for line in open(f"{out}/ggml-t{t}-r{r}.txt"):
            m = pat.search(line)
            if m:
                f, n, v, unit = m.group(1).lower(), int(m.group(2)), float(m.group(3)), m.group(4)
                v *= {"M": 1e-3, "G": 1.0, "T": 1e3}[unit]
                ggml.setdefault((f, n, t), []).append(v / 2)
        for row in json.load(open(f"{out}/moesim-t{t}-r{r}.json")):
            key = (row["format"], row["batch"], t)
            rate = row["one_core_weights_per_s"] if t == 1 else row["all_cores_weights_per_s"]
            ours.setdefault(key, []).append(rate / 1e9)
print(f"CPU: {cpu}; SIMD: {', '.join(simd)}; {rounds} alternating rounds; G weight-token products/s (min / median / max)")
print()
print("| format | batch | threads | ggml | moesim int8 | ratio of medians |")
print("|---|---:|---:|---|---|---:|")
for f in ("q8_0", "q4_0", "q4_k", "q3_k", "q2_k"):
    for n in (1, 8):
        for t in (1, all_threads):
            g, o = ggml.get((f, n, t)), ours.get((f, n, t))
            if not g or not o:
                print(f"| {f} | {n} | {t} | {'missing' if not g else ''} | {'missing' if not o else ''} | - |")
                continue
            fmt = lambda v: f"{min(v):.2f} / {statistics.median(v):.2f} / {max(v):.2f}"
            print(f"| {f} | {n} | {t} | {fmt(g)} | {fmt(o)} | {statistics.median(o) / statistics.median(g):.2f} |")
PY
