#!/usr/bin/env python3
"""deploy beside Ansible and pyinfra on the shared harness's fleet (../shared/bench).

    compare.py run N FILES [--tools deploy,pyinfra,ansible] [--reps R] [--ansible-reps R]
    compare.py floor N [--reps R]         bare connect+auth+`true` on every host (deploy's SSH
                                          client and OpenSSH's), all hosts at once
    compare.py report                     medians and ratios -> results/summary.md (+ history.tsv)

This script adds deploy's runner (class Deploy) to the harness's TOOLS and uses the harness's
own functions (reset_hosts, snapshot, run_tool, check_run, format_table) to run and check every
scenario, so deploy is timed and checked exactly as Ansible and pyinfra are. Unlike
`bench.py run`, which runs one tool, `run` alternates the tools: each repetition runs every
tool's four scenarios in turn (deploy, pyinfra, ansible), so drift in the machine's other load
hits every tool alike. Every tool gets the same concurrency: min(N, 50) (Ansible --forks,
pyinfra --parallel, deploy --forks).

Environment: BENCH_HARNESS (the harness folder), BENCH_STATE, BENCH_RESULTS (as for the
harness), DEPLOY_BIN (the deploy binary), DEPLOY_REPO (the folder deploy's --repo points
at; see gen_deploy.py), DEPLOY_HOME (HOME for deploy: its .ssh/known_hosts is the fleet's),
SSH_FLOOR_BIN (the ssh_floor example), QUIET_WAIT (as for the harness).
With the latency proxy in front of the fleet (bench/latency.py, run.sh with LATENCY_MS):
LATENCY_PROXY_LOG (its records; every run's row then gets `proxy`: per host the connections
and request-answer turns the run made), FLOOR_TSV (the fleet list the floor connects to,
default BENCH_STATE/fleet.tsv). `compare.py latency-report --rtt-ms MS --out FILE` then
writes the latency table (wall times, ratios, deploy/floor, round trips per host).
"""
import argparse
import importlib.util
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
HARNESS = Path(os.environ.get("BENCH_HARNESS", HERE.parent.parent / "shared" / "bench")).resolve()

_spec = importlib.util.spec_from_file_location("harness_bench", HARNESS / "bench.py")
hb = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(hb)

STATE, RESULTS, FLEET = hb.STATE, hb.RESULTS, hb.FLEET
DEPLOY_BIN = Path(os.environ.get("DEPLOY_BIN", HERE.parent / "target" / "release" / "deploy"))
DEPLOY_REPO = Path(os.environ.get("DEPLOY_REPO", STATE / "deploy-repo"))
DEPLOY_HOME = Path(os.environ.get("DEPLOY_HOME", STATE / "deploy-home"))
SSH_FLOOR_BIN = Path(os.environ.get("SSH_FLOOR_BIN",
                                    HERE.parent / "target" / "release" / "examples" / "ssh_floor"))
ORDER = ["deploy", "pyinfra", "ansible"]
# -e for deploy: the state record (and lock beside it) under each host's root.
PROXY_LOG = Path(os.environ["LATENCY_PROXY_LOG"]) if os.environ.get("LATENCY_PROXY_LOG") else None
FLOOR_TSV = Path(os.environ.get("FLOOR_TSV") or STATE / "fleet.tsv")
STATE_PATH_VAR = '{"deploy_state_path": "{{ root }}/var/lib/deploy/state.json"}'


class Deploy:
    """deploy apply --yes / deploy plan --json on the generated fleet (see gen_deploy.py)."""

    name = "deploy"
    cwd = STATE

    def version(self):
        out = subprocess.run([DEPLOY_BIN, "--version"], capture_output=True, text=True,
                             check=True).stdout.strip()
        commit = subprocess.run(["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(HERE), "status", "--porcelain", "--", "src"],
                               capture_output=True, text=True).stdout.strip()
        return f"{out} ({commit}{'+dirty' if dirty else ''})"

    def command(self, plan, forks, run_dir):
        cmd = [str(DEPLOY_BIN), "--repo", str(DEPLOY_REPO), "--forks", str(forks)]
        cmd += ["plan", "--json"] if plan else ["apply", "--yes"]
        # Each host's state record and lock under its own root, as its files are: the
        # default /var/lib/deploy is this one machine's, which every simulated host shares.
        cmd += ["-e", STATE_PATH_VAR]
        # HOME: deploy checks host keys against $HOME/.ssh/known_hosts, here the fleet's.
        return cmd, {"HOME": str(DEPLOY_HOME), "NO_COLOR": "1"}

    NO_CHANGES = re.compile(r"^(\S+): no changes \(", re.M)
    HOST_ERROR = re.compile(r"^(\S+): error: ", re.M)
    WROTE = re.compile(r"^(\S+): wrote (\d+) files?(?:; ran ([^;\n]+))?(.*)$", re.M)

    def parse(self, log):
        start = log.find("{\n")
        if start >= 0 and '"format_version"' in log:  # plan --json
            try:
                doc = json.loads(log[start:])
            except ValueError:
                return {}
            return {h["host"]: {"changed": sum(f["action"] != "unchanged" for f in h["files"]),
                                "failed": int("error" in h)} for h in doc["hosts"]}
        # apply: the plan's text (every host: "no changes" or its changes), then what it did
        hosts = {h: {"changed": 0, "failed": 0} for h in self.NO_CHANGES.findall(log)}
        for h in self.HOST_ERROR.findall(log):
            hosts[h] = {"changed": 0, "failed": 1}
        for h, written, ran, rest in self.WROTE.findall(log):
            handlers = len(ran.split(", ")) if ran else 0
            hosts[h] = {"changed": int(written) + handlers, "failed": int("failed:" in rest)}
        return hosts

    def expected_changed(self, scenario, manifest, hit_files):
        return {
            "apply_first": len(manifest["files"]) + 1,  # files + the handler
            "apply_noop": 0,
            "plan_change": hit_files,                   # files that would change
            "apply_change": hit_files + (hit_files > 0),
        }[scenario]


class Pyinfra(hb.Pyinfra):
    """The harness's pyinfra runner with bench/pyinfra_inventory.py, which takes the
    known_hosts file from BENCH_STATE (the harness's inventory.py looks in its own .state/)."""

    def command(self, plan, forks, run_dir):
        cmd, env = super().command(plan, forks, run_dir)
        cmd[cmd.index("inventory.py")] = str(HERE / "pyinfra_inventory.py")
        return cmd, {**env, "BENCH_HARNESS": str(HARNESS), "BENCH_STATE": str(STATE)}


hb.TOOLS["deploy"] = Deploy
hb.TOOLS["pyinfra"] = Pyinfra


def proxy_mark():
    """Where the latency proxy's records stand now: the next run's start after this."""
    return PROXY_LOG.stat().st_size if PROXY_LOG is not None and PROXY_LOG.exists() else 0


def proxy_collect(offset, hosts, timeout_s=15):
    """What the latency proxy recorded since `offset`, once every connection opened since
    then is closed (bounded wait): per host its connections, their request-answer turns and
    bytes; and the median over `hosts` (a host with no connection counts 0). None without
    a proxy."""
    if PROXY_LOG is None:
        return None
    deadline = time.monotonic() + timeout_s
    while True:
        with open(PROXY_LOG, "rb") as f:
            f.seek(offset)
            data = f.read(64 << 20)
        lines = data.decode(errors="replace").split("\n")[:-1]  # complete lines only
        records = [json.loads(line) for line in lines if line.strip()]
        opened = {r["conn"] for r in records if r.get("event") == "open"}
        closed = {r["conn"]: r for r in records if r.get("event") == "close"}
        if opened <= closed.keys() or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    per_host = {h: {"conns": 0, "turns": 0, "client_bytes": 0, "server_bytes": 0} for h in hosts}
    for r in closed.values():
        h = per_host.setdefault(r["route"], {"conns": 0, "turns": 0, "client_bytes": 0,
                                             "server_bytes": 0})
        h["conns"] += 1
        h["turns"] += r["turns"]
        h["client_bytes"] += r["client_bytes"]
        h["server_bytes"] += r["server_bytes"]
    ends = sorted({r["end"] for r in closed.values()} - {"closed"})
    return {"turns_per_host": statistics.median(h["turns"] for h in per_host.values()),
            "conns_per_host": statistics.median(h["conns"] for h in per_host.values()),
            "max_turns_per_host": max(h["turns"] for h in per_host.values()),
            "left_open": len(opened - closed.keys()), "other_ends": ends, "hosts": per_host}


def proxy_text(proxy):
    if proxy is None:
        return ""
    return (f"  turns/host {proxy['turns_per_host']:g} over {proxy['conns_per_host']:g} conn(s)"
            + (f" ({proxy['left_open']} left open)" if proxy["left_open"] else ""))


def log_name(path):
    try:
        return str(path.relative_to(RESULTS))
    except ValueError:
        return str(path)


def cmd_run(args):
    manifest = hb.load_manifest()
    n, n_files = manifest["n"], manifest["files_per_host"]
    if (n, n_files) != (args.n, args.files):
        sys.exit(f"{FLEET} was generated for N={n} FILES={n_files}, not {args.n} {args.files}")
    tools = [t for t in ORDER if t in args.tools.split(",")]
    reps = {t: args.reps for t in tools}
    if "ansible" in reps and args.ansible_reps:
        reps["ansible"] = args.ansible_reps
    forks = min(n, 50)
    listeners = hb.sshd_pids(manifest)
    if len(listeners) != n:
        sys.exit(f"{len(listeners)} sshd running for {n} hosts: run fleet.sh up {n}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    objs = {t: hb.TOOLS[t]() for t in tools}
    versions = {t: o.version() for t, o in objs.items()}
    outs = {}
    for t in tools:
        shutil.rmtree(RESULTS / "logs" / f"{t}-{n}-{n_files}", ignore_errors=True)
        outs[t] = open(RESULTS / f"{t}-{n}-{n_files}.jsonl", "w")
    print(f"N={n} FILES={n_files} forks={forks} reps={reps}")
    for t in tools:
        print(f"  {versions[t]}")
    rows = []
    for rep in range(1, max(reps.values()) + 1):
        for t in tools:
            if rep > reps[t]:
                continue
            tool = objs[t]
            hb.reset_hosts(manifest)
            state = hb.snapshot(manifest)
            for scenario in hb.SCENARIOS:
                if scenario == "plan_change":
                    hb.set_change(manifest, manifest["change"]["new"])
                log_path = RESULTS / "logs" / f"{t}-{n}-{n_files}" / f"f{forks}-r{rep}-{scenario}.log"
                mark = proxy_mark()
                timing = hb.run_tool(tool, scenario == "plan_change", forks, log_path,
                                     args.quiet_wait, listeners)
                proxy = proxy_collect(mark, [h["name"] for h in manifest["hosts"]])
                new_state = hb.snapshot(manifest)
                checks, reported = hb.check_run(tool, scenario, manifest, log_path.read_text(),
                                                state, new_state)
                checks["exit status 0"] = timing["rc"] == 0
                state = new_state
                row = {"tool": t, "version": versions[t], "n": n, "files": n_files,
                       "forks": forks, "rep": rep, "scenario": scenario, **timing,
                       "ok": all(checks.values()), "checks": checks,
                       "reported_changed": reported, "log": log_name(log_path),
                       "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
                if proxy is not None:
                    row["proxy"] = proxy
                outs[t].write(json.dumps(row) + "\n")
                outs[t].flush()
                rows.append(row)
                failed = [k for k, v in checks.items() if not v]
                print(f"  rep {rep} {t:<8} {scenario:<13} {timing['wall_s']:8.3f} s"
                      f"  cpu {timing['total_cpu_s']} s"
                      f"  (other load before {timing['busy_cores_before']:.1f} cores)"
                      f"{proxy_text(proxy)}"
                      f"  {'ok' if not failed else 'FAILED: ' + ', '.join(failed)}", flush=True)
    for f in outs.values():
        f.close()
    hb.reset_hosts(manifest)
    return 0 if all(r["ok"] for r in rows) else 1


def cmd_floor(args):
    """N bare SSH sessions (connect, host key, auth, `true`), all at once: deploy's client
    (the ssh_floor example, deploy's own transport) and OpenSSH's ssh, one process per host."""
    tsv = FLOOR_TSV
    hosts = [line.split("\t") for line in tsv.read_text().splitlines() if line.strip()]
    names = [h[0] for h in hosts]
    if len(hosts) != args.n:
        sys.exit(f"{len(hosts)} hosts up, not {args.n}")
    key, known = STATE / "client_ed25519", STATE / "known_hosts"
    rows = []
    for rep in range(1, args.reps + 1):
        busy, load1 = hb.busy_cores(), os.getloadavg()[0]
        mark = proxy_mark()
        out = subprocess.run([SSH_FLOOR_BIN, tsv, key, known, str(min(args.n, 50))],
                             capture_output=True, text=True, timeout=120)
        res = json.loads(out.stdout) if out.returncode == 0 else {"wall_s": None}
        rows.append({"client": "deploy (russh)", "n": args.n, "rep": rep,
                     "wall_s": res["wall_s"], "ok": out.returncode == 0,
                     "busy_cores_before": round(busy, 2), "load1_before": load1})
        proxy = proxy_collect(mark, names)
        if proxy is not None:
            rows[-1]["proxy"] = proxy
        busy, load1 = hb.busy_cores(), os.getloadavg()[0]
        mark = proxy_mark()
        t0 = time.perf_counter()
        procs = [subprocess.Popen(
            ["ssh", "-q", "-i", key, "-o", "IdentitiesOnly=yes", "-o", f"UserKnownHostsFile={known}",
             "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ControlMaster=no",
             "-o", "ControlPath=none", "-o", "ConnectTimeout=10", "-p", port, f"root@{addr}", "true"],
            stdin=subprocess.DEVNULL) for _, addr, port, *_ in hosts]
        rcs = [p.wait(timeout=120) for p in procs]
        rows.append({"client": "OpenSSH ssh", "n": args.n, "rep": rep,
                     "wall_s": round(time.perf_counter() - t0, 4), "ok": not any(rcs),
                     "busy_cores_before": round(busy, 2), "load1_before": load1})
        proxy = proxy_collect(mark, names)
        if proxy is not None:
            rows[-1]["proxy"] = proxy
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(RESULTS / f"floor-{args.n}.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps({**r, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}) + "\n")
    for client in ("deploy (russh)", "OpenSSH ssh"):
        walls = [r["wall_s"] for r in rows if r["client"] == client and r["ok"]]
        turns = [r["proxy"]["turns_per_host"] for r in rows if r["client"] == client
                 and "proxy" in r]
        print(f"  floor N={args.n} {client:<15} median {statistics.median(walls):.3f} s"
              + (f", turns/host {statistics.median(turns):g}" if turns else "")
              if walls else f"  floor N={args.n} {client}: FAILED")
    return 0 if all(r["ok"] for r in rows) else 1


# --- report ------------------------------------------------------------------------------------

def load_rows(pattern, scale=False):
    """Rows of results/PATTERN; scale.py's files (scale-*) only when `scale`."""
    rows = []
    for path in sorted(RESULTS.glob(pattern)):
        if path.name.startswith("scale-") != scale:
            continue
        rows += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return rows


def scale_lines():
    """deploy alone at scale (scale.py): median wall and peak memory per scenario."""
    rows = load_rows("scale-*.jsonl", scale=True)
    if not rows:
        return []
    lines = ["## deploy alone at scale (bench/scale.sh)", "",
             "Median wall seconds, and the peak memory (max RSS) over the repetitions.", "",
             "| fleet | " + " | ".join(hb.LABELS[s] for s in hb.SCENARIOS) + " | runs ok |",
             "|---|" + "---:|" * len(hb.SCENARIOS) + "---|"]
    for kind, n, n_files in sorted({(r["kind"], r["n"], r["files"]) for r in rows}):
        sel = [r for r in rows if (r["kind"], r["n"], r["files"]) == (kind, n, n_files)]
        cells = []
        for s in hb.SCENARIOS:
            runs = [r for r in sel if r["scenario"] == s]
            cells.append(f"{median(r['wall_s'] for r in runs):.2f} s, "
                         f"{max(r['max_rss_mb'] for r in runs):.0f} MB" if runs else "-")
        lines.append(f"| {n} {kind} hosts × {n_files} files | " + " | ".join(cells)
                     + f" | {sum(r['ok'] for r in sel)}/{len(sel)} |")
    floors = load_rows("floor-*.jsonl")
    for n in sorted({r["n"] for r in rows if r["kind"] == "sshd"}):
        parts = floor_parts(floors, n)
        if parts:
            lines += ["", f"Floor (N={n} bare SSH connect+auth+`true`, all at once, "
                      f"--forks {min(n, 50)}): " + "; ".join(parts) + "."]
    return lines + [""]


def floor_parts(floors, n):
    """The floor's median per client at N=n, as "client 0.123 s" texts."""
    parts = []
    for client in ("deploy (russh)", "OpenSSH ssh"):
        m = median(r["wall_s"] for r in floors if r["n"] == n and r["client"] == client
                   and r["ok"])
        if m is not None:
            parts.append(f"{client} {m:.3f} s")
    return parts


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(x, digits=2):
    return "-" if x is None else f"{x:.{digits}f}"


def ratio_cell(d, other):
    if d is None or other is None or not d:
        return "-"
    return f"{d / other:.4f} ({other / d:.0f}×)"


def cmd_report(_args):
    rows = load_rows("*-*-*.jsonl")
    rows = [r for r in rows if r.get("tool") in ORDER]
    if not rows:
        sys.exit(f"no results in {RESULTS}")
    floors = load_rows("floor-*.jsonl")
    commit = subprocess.run(["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    versions = {r["tool"]: r["version"] for r in rows}
    lines = ["# deploy vs Ansible vs pyinfra", "",
             f"Written {time.strftime('%Y-%m-%d %H:%M %z')} by `bench/compare.py report` at "
             f"commit {commit}; {os.cpu_count()} cores. Versions: "
             + "; ".join(versions[t] for t in ORDER if t in versions) + ".", "",
             "Median wall seconds per scenario (all tools with concurrency min(N, 50)); "
             "ratio = deploy / other (× = how many times faster deploy is). "
             "Ok = runs whose result the harness verified on the hosts.", ""]
    history = []
    for n, n_files in sorted({(r["n"], r["files"]) for r in rows}):
        sel = [r for r in rows if r["n"] == n and r["files"] == n_files]
        lines += [f"## N={n} hosts × FILES={n_files}", "",
                  "| scenario | deploy | pyinfra | Ansible | deploy/Ansible | deploy/pyinfra |",
                  "|---|---:|---:|---:|---:|---:|"]
        for s in hb.SCENARIOS:
            med = {t: median(r["wall_s"] for r in sel if r["tool"] == t and r["scenario"] == s)
                   for t in ORDER}
            lines.append(f"| {hb.LABELS[s]} | {fmt(med['deploy'], 3)} | {fmt(med['pyinfra'])} | "
                         f"{fmt(med['ansible'])} | {ratio_cell(med['deploy'], med['ansible'])} | "
                         f"{ratio_cell(med['deploy'], med['pyinfra'])} |")
            history.append([commit, time.strftime("%Y-%m-%d"), n, n_files, s]
                           + [fmt(med[t], 3) for t in ORDER])
        floor_line = floor_parts(floors, n)
        if floor_line:
            lines += ["", f"Floor (N={n} bare SSH connect+auth+`true`, all at once): "
                      + "; ".join(floor_line) + "."]
        runs = {t: (sum(r["ok"] for r in sel if r["tool"] == t), sum(r["tool"] == t for r in sel),
                    len({r["rep"] for r in sel if r["tool"] == t})) for t in ORDER}
        loads = [x for x in map(hb.other_load, sel) if x is not None]
        lines += ["", "Runs: " + "; ".join(f"{t} {ok}/{total} ok over {reps} rep(s)"
                                           for t, (ok, total, reps) in runs.items() if total)
                  + (f". Other load during runs: median {statistics.median(loads):.2f} cores."
                     if loads else "."), ""]
    lines += scale_lines()
    lines += ["## Harness tables (all tools)", "", hb.format_table(rows), ""]
    text = "\n".join(lines)
    (RESULTS / "summary.md").write_text(text)
    hist = RESULTS / "history.tsv"
    new = not hist.exists()
    with open(hist, "a") as f:
        if new:
            f.write("commit\tdate\tN\tFILES\tscenario\tdeploy_s\tpyinfra_s\tansible_s\n")
        for h in history:
            f.write("\t".join(map(str, h)) + "\n")
    print(text)
    return 0


def turns_cell(runs):
    """Median round trips (turns) per host, and connections per host, over runs with counts."""
    runs = [r for r in runs if "proxy" in r]
    if not runs:
        return "-"
    turns = statistics.median(r["proxy"]["turns_per_host"] for r in runs)
    conns = statistics.median(r["proxy"]["conns_per_host"] for r in runs)
    return f"{turns:g} ({conns:g})"


def cmd_latency_report(args):
    """The runs through the latency proxy (RESULTS is the folder of one RTT) -> args.out."""
    rows = [r for r in load_rows("*-*-*.jsonl") if r.get("tool") in ORDER]
    if not rows:
        sys.exit(f"no results in {RESULTS}")
    floors = load_rows("floor-*.jsonl")
    rtt = args.rtt_ms
    commit = subprocess.run(["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    versions = {r["tool"]: r["version"] for r in rows}
    loads = [r["load1_before"] for r in rows + floors if r.get("load1_before") is not None]
    others = [x for x in map(hb.other_load, rows) if x is not None]
    lines = [f"# deploy vs Ansible vs pyinfra at RTT {rtt:g} ms", "",
             f"Written {time.strftime('%Y-%m-%d %H:%M %z')} by `bench/compare.py latency-report` "
             f"at commit {commit}; {os.cpu_count()} cores. Versions: "
             + "; ".join(versions[t] for t in ORDER if t in versions) + ".", "",
             f"Every host's sshd behind `bench/latency-proxy`: {rtt / 2:g} ms each way (RTT "
             f"{rtt:g} ms), the TCP handshake priced (the server sees a connection 1.5 RTT after "
             "the client's connect), every tool and the floor through the same proxies. "
             "Median wall seconds per scenario (concurrency min(N, 50) for every tool); "
             "ratio = deploy / other (× = how many times faster deploy is); deploy/floor = "
             "deploy's wall over the bare SSH floor's (deploy's own client). Round trips/host: "
             "the request-answer turns the proxy counted on a host's connections, summed per "
             "host, median over hosts and runs (connections per host in brackets); a turn is "
             "server bytes arriving at least RTT/2 after client bytes sent since the previous "
             "turn (so they can be the answer) with the server quiet for at least RTT/2 before "
             "them (bench/latency-proxy/src/turns.rs); it includes the SSH handshake's turns, "
             "which the floor shows on its own.", "",
             f"Load: load average (1 min) before the runs median {statistics.median(loads):.2f}"
             f" (min {min(loads):.2f}, max {max(loads):.2f}); other work kept a median "
             f"{statistics.median(others) if others else 0:.2f} of the 2 cores busy during "
             "runs. The machine was shared with other agents' builds: these are numbers under "
             "load.", ""]
    for n, n_files in sorted({(r["n"], r["files"]) for r in rows}):
        sel = [r for r in rows if r["n"] == n and r["files"] == n_files]
        floor_d = median(r["wall_s"] for r in floors
                         if r["n"] == n and r["client"] == "deploy (russh)" and r["ok"])
        lines += [f"## N={n} hosts × FILES={n_files}, RTT {rtt:g} ms", "",
                  "| scenario | deploy | pyinfra | Ansible | deploy/Ansible | deploy/pyinfra "
                  "| deploy/floor | deploy round trips/host (conns) | pyinfra round trips/host "
                  "(conns) | Ansible round trips/host (conns) |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for s in hb.SCENARIOS:
            by = {t: [r for r in sel if r["tool"] == t and r["scenario"] == s and r["ok"]]
                  for t in ORDER}
            med = {t: median(r["wall_s"] for r in by[t]) for t in ORDER}
            d = med["deploy"]
            lines.append(
                f"| {hb.LABELS[s]} | {fmt(d, 3)} | {fmt(med['pyinfra'])} | {fmt(med['ansible'])} "
                f"| {ratio_cell(d, med['ansible'])} | {ratio_cell(d, med['pyinfra'])} "
                f"| {fmt(d / floor_d if d and floor_d else None)} | {turns_cell(by['deploy'])} "
                f"| {turns_cell(by['pyinfra'])} | {turns_cell(by['ansible'])} |")
        parts = []
        for client in ("deploy (russh)", "OpenSSH ssh"):
            fr = [r for r in floors if r["n"] == n and r["client"] == client and r["ok"]]
            if fr:
                parts.append(f"{client} {median(r['wall_s'] for r in fr):.3f} s, "
                             f"{turns_cell(fr)} round trips/host")
        if parts:
            lines += ["", f"Floor (N={n} bare SSH connect+auth+`true`, all at once, through "
                      "the proxies): " + "; ".join(parts) + "."]
        runs = {t: (sum(r["ok"] for r in sel if r["tool"] == t), sum(r["tool"] == t for r in sel),
                    len({r["rep"] for r in sel if r["tool"] == t})) for t in ORDER}
        lines += ["", "Runs: " + "; ".join(f"{t} {ok}/{total} ok over {reps} rep(s)"
                                           for t, (ok, total, reps) in runs.items() if total)
                  + ". Medians are over the runs that passed the harness's checks.", ""]
        per_host = {}
        for r in sel:
            if r["tool"] == "deploy" and "proxy" in r:
                counts = sorted({(h["turns"], h["conns"]) for h in r["proxy"]["hosts"].values()})
                per_host.setdefault(r["scenario"], set()).update(counts)
        if per_host:
            lines += ["deploy's round trips per host as counted (every value seen over hosts "
                      "and runs, as turns/connections):", ""]
            lines += [f"- {hb.LABELS[s]}: " + ", ".join(f"{t}/{c}" for t, c in
                                                       sorted(per_host[s]))
                      for s in hb.SCENARIOS if s in per_host]
            lines.append("")
    lines += ["## Harness tables (all tools, through the proxies)", "", hb.format_table(rows), ""]
    text = "\n".join(lines)
    Path(args.out).write_text(text)
    print(text)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run")
    run.add_argument("n", type=int)
    run.add_argument("files", type=int)
    run.add_argument("--tools", default=os.environ.get("TOOLS", ",".join(ORDER)))
    run.add_argument("--reps", type=int, default=int(os.environ.get("REPS", 3)))
    run.add_argument("--ansible-reps", type=int,
                     default=int(os.environ.get("ANSIBLE_REPS", 0)) or None,
                     help="repetitions for Ansible (default: --reps)")
    run.add_argument("--quiet-wait", type=float, default=float(os.environ.get("QUIET_WAIT", 0)))
    floor = sub.add_parser("floor")
    floor.add_argument("n", type=int)
    floor.add_argument("--reps", type=int, default=int(os.environ.get("REPS", 3)))
    sub.add_parser("report")
    latency = sub.add_parser("latency-report")
    latency.add_argument("--rtt-ms", type=float, required=True)
    latency.add_argument("--out", required=True)
    args = ap.parse_args()
    sys.exit({"run": cmd_run, "floor": cmd_floor, "report": cmd_report,
              "latency-report": cmd_latency_report}[args.command](args))


if __name__ == "__main__":
    main()
