#!/usr/bin/env python3
"""deploy alone on a large fleet: wall time and peak memory (max RSS) of each scenario.

    scale.py sshd N FILES [--reps R]    the harness's fleet as it is (fleet.sh up N, gen.py,
                                        gen_deploy.py done by the caller; N <= 254)
    scale.py local N FILES [--reps R]   N hosts with ansible_connection=local (deploy writes
                                        into each host's root folder on this machine): the
                                        same inventory, templates and deploy.yml, generated
                                        with gen.py's own functions past its 254-host limit,
                                        into $BENCH_STATE/scale-local

    scale.py report [FILES]             results/scale-local-*-FILES.jsonl -> results/scale-local.md:
                                        per scenario and N, wall time, peak memory and the
                                        controller's CPU per host, so growth is visible

Each repetition runs the harness's four scenarios from empty hosts (first apply, no-change
apply, plan after the group_vars change, apply of it) with the same checks as compare.py,
and records the peak memory of deploy (GNU time's %M). Results: results/scale-KIND-N-FILES.jsonl.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


LABELS = {"apply_first": "(i) first apply", "apply_noop": "(ii) no-change apply",
          "plan_change": "(iii) plan 1 change", "apply_change": "(iv) apply 1 change"}


def report(files):
    """How deploy's cost grows with N local hosts: scale-local-N-FILES.jsonl for every N."""
    results = Path(os.environ.get("BENCH_RESULTS", HERE / "results")).resolve()
    by_n = {}
    for path in results.glob(f"scale-local-*-{files}.jsonl"):
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if rows:
            by_n[rows[0]["n"]] = rows
    if not by_n:
        sys.exit(f"no scale-local-*-{files}.jsonl in {results}")
    ns = sorted(by_n)
    commit = subprocess.run(["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    every = [r for n in ns for r in by_n[n]]
    loads = [r["load1_before"] for r in every]
    busy = [r["busy_cores_before"] for r in every]
    lines = ["# deploy on N local hosts: growth with the fleet (bench/scale.sh)", "",
             f"Written {time.strftime('%Y-%m-%d %H:%M %z')} by `bench/scale.py report` at commit "
             f"{commit}; {os.cpu_count()} cores; versions: "
             + "; ".join(sorted({r['version'] for r in every})) + ".", "",
             f"N hosts × {files} files with `ansible_connection=local` (the harness's inventory, "
             "vars, templates and deploy.yml; each host writes into its own root folder on this "
             "machine), --forks 50, each repetition from empty hosts. Wall: median seconds; "
             "peak: the largest max RSS (GNU time) over the repetitions; CPU: deploy's user + "
             "system seconds (median); per host: CPU / N; marginal: the CPU the hosts added "
             "since the previous N, per added host (flat = linear growth).", "",
             f"Load: load average (1 min) before the runs median {statistics.median(loads):.2f} "
             f"(max {max(loads):.2f}); other work kept a median {statistics.median(busy):.2f} "
             "of the 2 cores busy just before each run: numbers under load.", ""]
    for scenario in LABELS:
        lines += [f"## {LABELS[scenario]}", "",
                  "| N | wall s | peak MB | CPU s | CPU per host ms | marginal CPU per host ms "
                  "| runs ok | version | load1 before |", "|---:|---:|---:|---:|---:|---:|---|---|---:|"]
        prev = None
        for n in ns:
            runs = [r for r in by_n[n] if r["scenario"] == scenario]
            if not runs:
                continue
            wall = statistics.median(r["wall_s"] for r in runs)
            peak = max(r["max_rss_mb"] for r in runs)
            cpu = statistics.median(r["tool_cpu_s"] for r in runs)
            marginal = "-" if prev is None else f"{(cpu - prev[1]) / (n - prev[0]) * 1000:.2f}"
            lines.append(f"| {n} | {wall:.3f} | {peak:.1f} | {cpu:.2f} | {cpu / n * 1000:.2f} | "
                         f"{marginal} | {sum(r['ok'] for r in runs)}/{len(runs)} | "
                         f"{runs[0]['version'].split(' ', 2)[-1]} | "
                         f"{statistics.median(r['load1_before'] for r in runs):.1f} |")
            prev = (n, cpu)
        lines.append("")
    text = "\n".join(lines)
    (results / "scale-local.md").write_text(text)
    print(text)
    return 0


def main():
    if sys.argv[1:2] == ["report"]:
        sys.exit(report(int(sys.argv[2]) if len(sys.argv) > 2 else 5))
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kind", choices=["sshd", "local"])
    ap.add_argument("n", type=int)
    ap.add_argument("files", type=int)
    ap.add_argument("--reps", type=int, default=int(os.environ.get("REPS", 3)))
    args = ap.parse_args()
    results = Path(os.environ.get("BENCH_RESULTS", HERE / "results")).resolve()
    state = Path(os.environ.get("BENCH_STATE", HERE / ".state")).resolve()
    extra = []
    if args.kind == "local":
        # Everything the local fleet needs lives in a state folder of its own; the harness's
        # module paths follow BENCH_STATE, so both gen.py and bench.py work on it unchanged.
        os.environ["BENCH_STATE"] = str(state / "scale-local")
        os.environ["DEPLOY_REPO"] = str(state / "scale-local" / "deploy-repo")
        extra = ["-e", "ansible_connection=local"]
    os.environ["BENCH_RESULTS"] = str(results)
    sys.path.insert(0, str(HERE))
    import compare  # noqa: E402  (reads the environment set above)
    hb = compare.hb

    if args.kind == "local":
        import importlib.util
        spec = importlib.util.spec_from_file_location("harness_gen", compare.HARNESS / "gen.py")
        gen = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(gen)
        gen.MAX_HOSTS = max(gen.MAX_HOSTS, args.n)  # no sshd needed, so no loopback limit
        sys.argv = ["gen.py", str(args.n), str(args.files)]
        gen.main()
        subprocess.run([sys.executable, HERE / "gen_deploy.py", hb.FLEET, compare.DEPLOY_REPO],
                       check=True)

    class DeployMem(compare.Deploy):
        def command(self, plan, forks, run_dir):
            cmd, env = super().command(plan, forks, run_dir)
            self.rss_file = run_dir.parent / f"{run_dir.name}.maxrss"
            return ["/usr/bin/time", "-o", str(self.rss_file), "-f", "%M"] + cmd + extra, env

    manifest = hb.load_manifest()
    if (manifest["n"], manifest["files_per_host"]) != (args.n, args.files):
        sys.exit(f"{hb.FLEET} is for N={manifest['n']} FILES={manifest['files_per_host']}")
    listeners = hb.sshd_pids(manifest) if args.kind == "sshd" else []
    tool = DeployMem()
    version = tool.version()
    forks = 50
    rows = []
    out_path = results / f"scale-{args.kind}-{args.n}-{args.files}.jsonl"
    results.mkdir(parents=True, exist_ok=True)
    print(f"{version}: {args.kind} N={args.n} FILES={args.files} forks={forks} reps={args.reps}")
    with open(out_path, "w") as out:
        for rep in range(1, args.reps + 1):
            hb.reset_hosts(manifest)
            state_before = hb.snapshot(manifest)
            for scenario in hb.SCENARIOS:
                if scenario == "plan_change":
                    hb.set_change(manifest, manifest["change"]["new"])
                log_path = results / "logs" / f"scale-{args.kind}-{args.n}-{args.files}" / \
                    f"r{rep}-{scenario}.log"
                timing = hb.run_tool(tool, scenario == "plan_change", forks, log_path, 0,
                                     listeners)
                rss_kb = int(tool.rss_file.read_text().split()[-1])
                tool.rss_file.unlink()
                state_after = hb.snapshot(manifest)
                checks, _ = hb.check_run(tool, scenario, manifest, log_path.read_text(),
                                         state_before, state_after)
                checks["exit status 0"] = timing["rc"] == 0
                state_before = state_after
                row = {"tool": "deploy", "kind": args.kind, "version": version, "n": args.n,
                       "files": args.files, "forks": forks, "rep": rep, "scenario": scenario,
                       **timing, "max_rss_mb": round(rss_kb / 1024, 1),
                       "ok": all(checks.values()), "checks": checks,
                       "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
                out.write(json.dumps(row) + "\n")
                out.flush()
                rows.append(row)
                failed = [k for k, v in checks.items() if not v]
                print(f"  rep {rep} {scenario:<13} {timing['wall_s']:7.3f} s "
                      f"{row['max_rss_mb']:6.1f} MB  cpu {timing['tool_cpu_s']} s"
                      f"  (other load before {timing['busy_cores_before']:.1f} cores)"
                      f"  {'ok' if not failed else 'FAILED: ' + ', '.join(failed)}", flush=True)
    hb.reset_hosts(manifest)
    for s in hb.SCENARIOS:
        sel = [r for r in rows if r["scenario"] == s]
        print(f"  {s:<13} median {statistics.median(r['wall_s'] for r in sel):.3f} s, "
              f"peak {max(r['max_rss_mb'] for r in sel):.1f} MB")
    sys.exit(0 if all(r["ok"] for r in rows) else 1)


if __name__ == "__main__":
    main()
