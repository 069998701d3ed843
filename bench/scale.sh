#!/usr/bin/env bash
# deploy alone at scale (issue 7's 300-host target): plan wall time and peak memory.
#
#   bench/scale.sh [FILES]     (default 5)
#
# The harness can run at most 254 sshd hosts (one loopback address each), so this measures
# 254 real sshd hosts, and 300 hosts with ansible_connection=local (same inventory, vars,
# templates and deploy.yml; deploy renders and plans for all 300, writing into each host's
# root folder on this machine). Results: results/scale-{sshd-254,local-300}-FILES.jsonl.
# Env: REPS (default 3), SCALE_SSHD (default 254; 0 skips the sshd fleet), SCALE_LOCAL
# (default 300; a list such as "10 100 1000" runs each size, and then results/scale-local.md
# shows how wall time, peak memory and controller CPU per host grow: scale.py report); the
# same BENCH_* variables as run.sh.
set -euo pipefail
BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$BENCH")"
export BENCH_HARNESS="${BENCH_HARNESS:-$(cd "$REPO/../shared/bench" && pwd)}"
export BENCH_STATE="${BENCH_STATE:-$BENCH/.state}"
export BENCH_RESULTS="${BENCH_RESULTS:-$BENCH/results}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}"
export DEPLOY_BIN="$CARGO_TARGET_DIR/release/deploy"
export DEPLOY_REPO="$BENCH_STATE/deploy-repo"
export DEPLOY_HOME="$BENCH_STATE/deploy-home"
files=${1:-5}
n_sshd=${SCALE_SSHD:-254}
read -r -a n_local <<< "${SCALE_LOCAL:-300}"

"$BENCH_HARNESS/setup.sh" >/dev/null
PY="$BENCH_STATE/venv/bin/python"
# The same targets as run.sh builds: the example brings in the dev-dependencies, whose features
# change some shared dependencies', so building `--bin deploy` alone would rebuild them all.
(cd "$REPO" && cargo build --release --quiet --bin deploy --example ssh_floor)
mkdir -p "$DEPLOY_HOME/.ssh"
ln -sfn "$BENCH_STATE/known_hosts" "$DEPLOY_HOME/.ssh/known_hosts"

status=0
if (( n_sshd > 0 )); then
  trap '"$BENCH_HARNESS/fleet.sh" down' EXIT
  "$BENCH_HARNESS/fleet.sh" up "$n_sshd"
  "$PY" "$BENCH_HARNESS/gen.py" "$n_sshd" "$files"
  "$PY" "$BENCH/gen_deploy.py" "$BENCH_STATE/fleet" "$DEPLOY_REPO"
  nice -n "${BENCH_NICE:--10}" "$PY" "$BENCH/scale.py" sshd "$n_sshd" "$files" || status=1
  "$BENCH_HARNESS/fleet.sh" down
  trap - EXIT
fi
for n in "${n_local[@]}"; do
  nice -n "${BENCH_NICE:--10}" "$PY" "$BENCH/scale.py" local "$n" "$files" || status=1
done
if (( ${#n_local[@]} > 1 )); then "$PY" "$BENCH/scale.py" report "$files" || status=1; fi
exit $status
