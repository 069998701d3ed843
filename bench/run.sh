#!/usr/bin/env bash
# deploy vs Ansible vs pyinfra on the shared harness's fleet, in one command:
#
#   bench/run.sh [N...] [FILES]        default: N = 10 30, FILES = 5   e.g. bench/run.sh 30 5
#
# For each N: start N real sshd on loopback (../shared/bench/fleet.sh), generate the fleet
# (gen.py) and deploy's deploy.yml beside it (gen_deploy.py), measure the SSH floor, then run
# the four scenarios for deploy, pyinfra and Ansible alternating (compare.py run), and stop
# the fleet. Then results/summary.md: medians and the ratios deploy/Ansible, deploy/pyinfra;
# results/history.tsv gets one line per scenario, to compare across commits.
# With SCALE=1 it also runs bench/scale.sh (300 hosts: plan time and peak memory).
#
# With LATENCY_MS=RTT (e.g. LATENCY_MS=20 bench/run.sh 10), every sshd gets bench/latency-proxy
# in front of it (bench/latency.py: RTT/2 each way, the inventory and known_hosts pointed at
# the proxies), all three tools and the floor run through it, and the proxy counts each run's
# round trips per host. Results then go to results/latency-RTTms/ (JSONL) and
# results/latency-RTTms.md (compare.py latency-report); summary.md and history.tsv are left
# alone.
#
# Env: REPS (default 3), ANSIBLE_REPS (default REPS; Ansible needs ~2 min a run at N=30),
# TOOLS (default deploy,pyinfra,ansible), QUIET_WAIT, BENCH_NICE (harness knobs),
# BENCH_HARNESS (default ../shared/bench from the repo), BENCH_STATE (default bench/.state),
# BENCH_RESULTS (default bench/results).
set -euo pipefail
BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$BENCH")"
export BENCH_HARNESS="${BENCH_HARNESS:-$(cd "$REPO/../shared/bench" && pwd)}"
export BENCH_STATE="${BENCH_STATE:-$BENCH/.state}"
results_given="${BENCH_RESULTS:-}"
export BENCH_RESULTS="${BENCH_RESULTS:-$BENCH/results}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}"
export DEPLOY_BIN="$CARGO_TARGET_DIR/release/deploy"
export SSH_FLOOR_BIN="$CARGO_TARGET_DIR/release/examples/ssh_floor"
export DEPLOY_REPO="$BENCH_STATE/deploy-repo"
export DEPLOY_HOME="$BENCH_STATE/deploy-home"
LATENCY_MS="${LATENCY_MS:-}"
if [[ -n "$LATENCY_MS" ]]; then
  [[ "$LATENCY_MS" =~ ^[0-9]+$ && "$LATENCY_MS" -gt 0 ]] || { echo "LATENCY_MS must be a whole number of ms > 0" >&2; exit 2; }
  [[ -n "$results_given" ]] || export BENCH_RESULTS="$BENCH/results/latency-${LATENCY_MS}ms"
  export LATENCY_PROXY_LOG="$BENCH_STATE/latency/proxy.jsonl"
  export FLOOR_TSV="$BENCH_STATE/fleet-proxied.tsv"
fi

args=("$@")
if (( ${#args[@]} >= 2 )); then
  files=${args[-1]}; sizes=("${args[@]:0:${#args[@]}-1}")
elif (( ${#args[@]} == 1 )); then
  files=5; sizes=("${args[0]}")
else
  files=5; sizes=(10 30)
fi

"$BENCH_HARNESS/setup.sh"
PY="$BENCH_STATE/venv/bin/python"
(cd "$REPO" && cargo build --release --quiet --bin deploy --example ssh_floor)
if [[ -n "$LATENCY_MS" ]]; then
  # Its own workspace and target (latency.py runs it from there, whatever CARGO_TARGET_DIR is).
  (cd "$BENCH/latency-proxy" && CARGO_TARGET_DIR="$BENCH/latency-proxy/target" cargo build --release --quiet --offline)
fi

# deploy checks host keys against $HOME/.ssh/known_hosts: a HOME of its own whose
# known_hosts is the fleet's (fleet.sh rewrites that file on every `up`).
mkdir -p "$DEPLOY_HOME/.ssh"
ln -sfn "$BENCH_STATE/known_hosts" "$DEPLOY_HOME/.ssh/known_hosts"

trap '"$PY" "$BENCH/latency.py" down; "$BENCH_HARNESS/fleet.sh" down' EXIT
status=0
for n in "${sizes[@]}"; do
  "$BENCH_HARNESS/fleet.sh" up "$n"
  "$PY" "$BENCH_HARNESS/gen.py" "$n" "$files"
  "$PY" "$BENCH/gen_deploy.py" "$BENCH_STATE/fleet" "$DEPLOY_REPO"
  if [[ -n "$LATENCY_MS" ]]; then "$PY" "$BENCH/latency.py" up "$LATENCY_MS"; fi
  nice -n "${BENCH_NICE:--10}" "$PY" "$BENCH/compare.py" floor "$n" || status=1
  nice -n "${BENCH_NICE:--10}" "$PY" "$BENCH/compare.py" run "$n" "$files" || status=1
  "$PY" "$BENCH/latency.py" down
done
"$BENCH_HARNESS/fleet.sh" down
trap - EXIT
if [[ "${SCALE:-0}" == 1 ]]; then "$BENCH/scale.sh" || status=1; fi
if [[ -n "$LATENCY_MS" ]]; then
  "$PY" "$BENCH/compare.py" latency-report --rtt-ms "$LATENCY_MS" \
    --out "$BENCH_RESULTS.md"
else
  "$PY" "$BENCH/compare.py" report
fi
exit $status
