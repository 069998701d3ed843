#!/usr/bin/env python3
"""deploy alone on a large fleet: wall time and peak memory (max RSS) of each scenario.

    scale.py sshd N FILES [--reps R]    the harness's fleet as it is (fleet.sh up N, gen.py,
                                        gen_deploy.py done by the caller; N <= 254)
    scale.py local N FILES [--reps R]   N hosts with ansible_connection=local (deploy writes
                                        into each host's root folder on this machine): the
                                        same inventory, templates and deploy.yml, generated
                                        with gen.py's own functions past its 254-host limit,
                                        into $BENCH_STATE/scale-local

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


def main():
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
