#!/usr/bin/env bash
# Regenerates every committed report under reports/ from the shipped experiments, and prints each
# one's wall time. Usage: scripts/regenerate-reports.sh [--threads N] [--with-host]
# eviction-policies-mixtral-trace reads the real Mixtral trace from ../shared (never copied here).
# --with-host also re-measures this machine (reports/host-validate, `moesim host validate`).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=target/release/moesim
run() {
  local name=$1; shift
  rm -rf "reports/$name"
  local start=$(date +%s.%N)
  "$bin" run "$@" --out "reports/$name" "${THREADS[@]}" > /dev/null
  rm -rf "reports/$name/points"
  printf '%-24s %6.1f s\n' "$name" "$(awk -v a="$(date +%s.%N)" -v b="$start" "BEGIN{print a-b}")"
}
THREADS=()
HOST=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --threads) THREADS=(--threads "$2"); shift 2 ;;
    --with-host) HOST=1; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
# The quickstart is one point: no --threads.
rm -rf reports/quickstart
start=$(date +%s.%N)
"$bin" run --out reports/quickstart > /dev/null
printf '%-24s %6.1f s\n' quickstart "$(awk -v a="$(date +%s.%N)" -v b="$start" "BEGIN{print a-b}")"
for name in bonus-sweep ema-sweep eviction-policies eviction-policies-mixtral-trace precision-allocation \
  hardware-compare prefetch pi-quant seed-table n-cpu-moe n-cpu-moe-mixtral prefill desktops \
  batch-decode context-kv speculative; do
  run "$name" "experiments/$name.toml"
done
rm -rf reports/quant-eval
start=$(date +%s.%N)
"$bin" quant eval --out reports/quant-eval > /dev/null
printf '%-24s %6.1f s\n' quant-eval "$(awk -v a="$(date +%s.%N)" -v b="$start" "BEGIN{print a-b}")"
# Predictions against published measurements (issue 20): each report's summary.md ends with the
# command, which CI re-runs (tests/integration/validate.rs).
for dir in reports/validation/*/; do
  cmd=$(sed -n 's/^Reproduce: `moesim \(.*\)`$/\1/p' "$dir/summary.md")
  start=$(date +%s.%N)
  eval "\"$bin\" $cmd" > /dev/null
  printf '%-24s %6.1f s\n' "validation/$(basename "$dir")" "$(awk -v a="$(date +%s.%N)" -v b="$start" "BEGIN{print a-b}")"
done
# The fidelity report measures this machine (issue 11): about 75 s, and the expert stores need
# about 360 MB under target/moesim-host/.
[ "$HOST" = 1 ] || exit 0
rm -rf reports/host-validate
start=$(date +%s.%N)
"$bin" host validate --out reports/host-validate > /dev/null
printf '%-24s %6.1f s\n' host-validate "$(awk -v a="$(date +%s.%N)" -v b="$start" "BEGIN{print a-b}")"
