#!/usr/bin/env bash
# Submits a sweep to Slurm as a job array of N shards and a dependent merge job.
#   scripts/slurm/submit.sh EXPERIMENT.toml N OUT_DIR [--wait]
# Shards go to OUT_DIR.parts/shard-<i>, logs to OUT_DIR.logs/; the merge writes OUT_DIR, the same
# files as `moesim run EXPERIMENT.toml --out OUT_DIR` on one machine. With --wait the script
# blocks until the merge job ends and exits with its status. Extra sbatch options (partition,
# account, time limit) go in SBATCH_* environment variables, which sbatch reads itself.
# MOESIM names the binary the jobs run (default: moesim on PATH).
set -euo pipefail
if [[ $# -lt 3 ]]; then
  echo "usage: $0 EXPERIMENT.toml N OUT_DIR [--wait]" >&2
  exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
experiment=$(realpath "$1") shards=$2 out=$(realpath -m "$3") wait=${4:-}
if ! [[ $shards =~ ^[1-9][0-9]*$ ]]; then
  echo "error: N must be a positive integer, not '$shards'" >&2
  exit 2
fi
parts=$out.parts logs=$out.logs
mkdir -p "$parts" "$logs"
export MOESIM=${MOESIM:-moesim}
# Fail now, not in N jobs, if the experiment is invalid.
"$MOESIM" run "$experiment" --list-points > /dev/null
array=$(sbatch --parsable --export=ALL --array=0-$((shards - 1)) \
  --output="$logs/shard-%a.out" "$here/shard.sbatch" "$experiment" "$shards" "$parts")
array=${array%%;*}
merge_args=(--parsable --export=ALL --dependency="afterok:$array" --kill-on-invalid-dep=yes --output="$logs/merge.out")
if [[ $wait == --wait ]]; then merge_args+=(--wait); fi
echo "array job $array: $shards shards into $parts"
merge=$(sbatch "${merge_args[@]}" "$here/merge.sbatch" "$parts" "$out")
echo "merge job ${merge%%;*}: $out"
