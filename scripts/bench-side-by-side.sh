#!/usr/bin/env bash
# Criterion benches of two commits side by side on this machine: builds each commit's bench
# executable in its own worktree (target/bench-side-by-side/), runs them alternately ROUNDS times
# and prints min / median / max of criterion's middle estimate per benchmark, and the ratio of
# medians (new / base). Not in CI; the machine should be otherwise idle.
# Usage: scripts/bench-side-by-side.sh BASE_COMMIT [NEW_COMMIT|WORKTREE] [ROUNDS] [FILTER...]
#   NEW defaults to the working tree; FILTER defaults to sim_decode route_replay cache_replay.
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:?base commit}
new=${2:-.}
rounds=${3:-5}
shift $(( $# < 3 ? $# : 3 ))
filters=("$@")
[ ${#filters[@]} -gt 0 ] || filters=(sim_decode route_replay cache_replay)
dir=target/bench-side-by-side
mkdir -p "$dir"
build() {
  local rev=$1 out=$2 src
  if [ "$rev" = . ]; then
    src=.
  else
    src="$dir/wt-$rev"
    [ -d "$src" ] || git worktree add --detach "$src" "$rev" > /dev/null
  fi
  (cd "$src" && cargo bench --bench bench_main --no-run --message-format=json 2> /dev/null) \
    | python3 -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m["target"]["name"]=="bench_main" and m.get("executable"):
        print(m["executable"])' | tail -1 | xargs -I{} cp {} "$out"
}
build "$base" "$dir/base"
build "$new" "$dir/new"
log="$dir/log.txt"
: > "$log"
for round in $(seq "$rounds"); do
  for which in base new; do
    for f in "${filters[@]}"; do
      echo "=== round $round $which $f" >> "$log"
      "$dir/$which" --bench "$f" --warm-up-time 1 --measurement-time 3 --noplot 2>&1 \
        | grep -E "^[a-z_]+/|thrpt" >> "$log"
    done
  done
done
python3 - "$log" <<'PY'
import re, statistics, sys
data, cur, name = {}, None, None
for ln in open(sys.argv[1]):
    m = re.match(r"=== round \d+ (\w+) ", ln)
    if m:
        cur = m.group(1); continue
    m = re.match(r"^([a-z_]+/\S+)", ln)
    if m:
        name = m.group(1); continue
    m = re.search(r"thrpt:\s+\[\S+ \S+ (\S+) (\S+)", ln)
    if m and name:
        v = float(m.group(1)) * {"K": 1e-3, "M": 1.0, "G": 1e3}.get(m.group(2)[0], 1.0)
        data.setdefault(name, {}).setdefault(cur, []).append(v)
        name = None
print("| benchmark | base (min / median / max) | new (min / median / max) | median ratio |")
print("|---|---|---|---|")
for n, d in data.items():
    b, w = d.get("base", []), d.get("new", [])
    if b and w:
        f = lambda x: f"{min(x):.2f} / {statistics.median(x):.2f} / {max(x):.2f}"
        print(f"| {n} | {f(b)} | {f(w)} | {statistics.median(w) / statistics.median(b):.3f} |")
PY
