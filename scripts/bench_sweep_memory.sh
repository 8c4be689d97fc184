#!/usr/bin/env bash
# Peak memory of a sweep against its size: runs 100-, 1000- and 10000-point sweeps of a tiny
# micro-MoE experiment (one axis, trace.seed) and prints wall time and peak RSS of each, so that
# growth per point is visible. Usage: scripts/bench_sweep_memory.sh [--threads N]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=$PWD/target/release/moesim
threads=${2:-2}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for n in 100 1000 10000; do
  seeds=$(seq -s, 1 "$n")
  cat > "$tmp/flat-$n.toml" <<TOML
schema_version = 1
name = "flat-$n"
[hardware]
profile = "esp32-p4"
[model]
spec = "micro-moe"
format = "q2_k"
[trace]
generator = "micro-moe"
requests = 1
prefill_tokens = 8
decode_tokens = 32
[quality]
samples = 0
[sweep]
axes = { "trace.seed" = [$seeds] }
TOML
  /usr/bin/time -f "$n points: %e s wall, peak RSS %M KB" \
    "$bin" run "$tmp/flat-$n.toml" --out "$tmp/out-$n" --threads "$threads" > /dev/null
done
