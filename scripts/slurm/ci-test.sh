#!/usr/bin/env bash
# A real Slurm on this machine: installs Debian's slurm-wlm if needed, starts munged, slurmctld
# and slurmd on localhost (the one-node recipe of ../shared/reference/anchors.md §7.2, with a
# private configuration, state directory and ports), submits a 4-shard sweep of a shipped
# experiment with scripts/slurm/submit.sh, waits for the dependent merge job, and checks that the
# merged report equals a single-machine run byte for byte. It stops the daemons it started, by
# their PIDs. Needs root and apt-get (or slurm-wlm installed); otherwise it prints a SKIP line
# saying why and exits 77. Run by tests/integration/slurm.rs when CI=true or MOESIM_SLURM=1.
#   MOESIM=target/release/moesim scripts/slurm/ci-test.sh [EXPERIMENT.toml]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
experiment=$(realpath "${1:-$root/experiments/eviction-policies.toml}")
MOESIM=$(realpath "${MOESIM:-$root/target/release/moesim}")
export MOESIM
skip() { echo "SKIP: real Slurm test: $*"; exit 77; }
[[ -x $MOESIM ]] || { echo "error: no moesim binary at $MOESIM (build it, or set MOESIM)" >&2; exit 2; }
export PATH=$PATH:/usr/sbin
installed() { command -v slurmctld && command -v slurmd && command -v sbatch && command -v munged; }
if ! installed > /dev/null; then
  [[ $(id -u) == 0 ]] || skip "slurm-wlm is not installed and installing it needs root"
  command -v apt-get > /dev/null || skip "slurm-wlm is not installed and there is no apt-get"
  echo "installing slurm-wlm with apt-get"
  apt-get update -qq > /dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm > /dev/null
fi
[[ $(id -u) == 0 ]] || skip "starting munged, slurmctld and slurmd needs root"

work=$(mktemp -d /tmp/moesim-slurm.XXXXXX)
chmod 755 "$work"
started=()
cleanup() {
  local status=$?
  for pid in "${started[@]}"; do
    kill "$pid" 2> /dev/null || true
  done
  for pid in "${started[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2> /dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2> /dev/null || true
  done
  [[ ${#started[@]} -gt 0 ]] && echo "stopped daemons (PIDs ${started[*]})"
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT

# munge: reuse a running daemon, else start one.
if ! munge -n 2> /dev/null | unmunge > /dev/null 2>&1; then
  if [[ ! -s /etc/munge/munge.key ]]; then
    mungekey --create --keyfile=/etc/munge/munge.key 2> /dev/null \
      || dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
  fi
  mkdir -p /run/munge && chown munge:munge /run/munge
  runuser -u munge -- munged
  for _ in $(seq 50); do [[ -s /run/munge/munged.pid ]] && break; sleep 0.1; done
  started+=("$(cat /run/munge/munged.pid)")
  munge -n | unmunge > /dev/null || { echo "error: munged does not answer" >&2; exit 1; }
fi

host=$(hostname -s)
mkdir -p "$work/state" "$work/spool" "$work/out"
export SLURM_CONF=$work/slurm.conf
cat > "$SLURM_CONF" <<CONF
ClusterName=moesimci
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=16817
SlurmdPort=16818
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd.log
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
NodeName=$host NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=1000 State=UNKNOWN
PartitionName=ci Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
slurmctld -f "$SLURM_CONF"
for _ in $(seq 100); do [[ -s $work/slurmctld.pid ]] && break; sleep 0.1; done
started+=("$(cat "$work/slurmctld.pid")")
slurmd -f "$SLURM_CONF"
for _ in $(seq 100); do [[ -s $work/slurmd.pid ]] && break; sleep 0.1; done
started+=("$(cat "$work/slurmd.pid")")
echo "started slurmctld and slurmd on $host (PIDs ${started[*]})"
state=
for _ in $(seq 60); do
  state=$(sinfo -h -o %t 2> /dev/null || true)
  [[ $state == idle* ]] && break
  sleep 0.5
done
if [[ $state != idle* ]]; then
  echo "error: the node did not come up (state '$state'); slurmctld log:" >&2
  tail -20 "$work/slurmctld.log" >&2 || true
  exit 1
fi

start=$(date +%s.%N)
"$MOESIM" run "$experiment" --out "$work/out/single" > /dev/null
single=$(awk -v a="$(date +%s.%N)" -v b="$start" 'BEGIN{printf "%.1f", a-b}')
start=$(date +%s.%N)
timeout 600 "$root/scripts/slurm/submit.sh" "$experiment" 4 "$work/out/slurm" --wait
slurm=$(awk -v a="$(date +%s.%N)" -v b="$start" 'BEGIN{printf "%.1f", a-b}')
for f in results.csv summary.csv latency.csv popularity.csv summary.md; do
  if ! cmp "$work/out/single/$f" "$work/out/slurm/$f"; then
    echo "FAIL: $f of the Slurm run differs from the single-machine run" >&2
    exit 1
  fi
done
echo "PASS: 4-shard Slurm array + merge of $(basename "$experiment") ($slurm s) equals the single-machine run ($single s) byte for byte"
