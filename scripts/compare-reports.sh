#!/usr/bin/env bash
# Regenerates every committed sweep report into a scratch directory and compares it with the
# committed one, byte for byte: results.csv, summary.csv, summary.md, latency.csv,
# popularity.csv (and the quickstart's metrics.csv and summary.md). A restructuring that
# claims "behaviour unchanged" runs this. Usage: scripts/compare-reports.sh [BIN] [SCRATCH]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/moesim}
scratch=${2:-$(mktemp -d)}
status=0
check() {
  local name=$1 file=$2
  if [ ! -f "reports/$name/$file" ]; then return; fi
  if cmp -s "reports/$name/$file" "$scratch/$name/$file"; then
    printf '%-34s %-16s same\n' "$name" "$file"
  else
    printf '%-34s %-16s DIFFERS\n' "$name" "$file"
    status=1
  fi
}
rm -rf "$scratch/quickstart"
"$bin" run --out "$scratch/quickstart" > /dev/null
for f in metrics.csv summary.md links.csv tiers.csv; do check quickstart "$f"; done
for name in bonus-sweep ema-sweep eviction-policies eviction-policies-mixtral-trace precision-allocation \
  hardware-compare prefetch pi-quant seed-table n-cpu-moe n-cpu-moe-mixtral prefill desktops; do
  rm -rf "$scratch/$name"
  "$bin" run "experiments/$name.toml" --out "$scratch/$name" > /dev/null
  for f in results.csv summary.csv summary.md latency.csv popularity.csv; do check "$name" "$f"; done
done
rm -rf "$scratch/quant-eval"
"$bin" quant eval --out "$scratch/quant-eval" > /dev/null
# Its summary names the directory it was written to.
sed -i "s|--out $scratch/quant-eval|--out reports/quant-eval|" "$scratch/quant-eval/summary.md"
for f in $(cd reports/quant-eval && ls *.csv *.md 2>/dev/null); do check quant-eval "$f"; done
exit $status
