#!/usr/bin/env python3
"""What one command costs the tool and the fleet's hosts, measured as the harness does.

    BENCH_STATE=... cost.py REPS -- COMMAND...

Runs COMMAND REPS times against the fleet that is up (fleet.sh up N) and prints, as JSON,
the median wall seconds, the command's own CPU (it and its waited children: getrusage) and
the hosts' CPU (what the fleet's sshd listeners accumulate from their finished sessions:
sshd, shell, every process a session ran; the harness's remote_cpu_s). CPU seconds vary
far less than wall time on a shared machine, so variants are compared by them, e.g.

    cost.py 3 -- target/release/examples/ssh_floor FLEET_TSV KEY KNOWN_HOSTS 50 true
    cost.py 3 -- target/release/deploy --repo REPO --forks 50 plan --json -e ...
"""
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

STATE = Path(os.environ.get("BENCH_STATE", Path(__file__).resolve().parent / ".state"))


def listeners():
    pids = []
    for pid_file in sorted((STATE / "sshd").glob("host*/sshd.pid")):
        pids.append(int(pid_file.read_text().split()[0]))
    return pids


def stat(pid):
    """(ppid, cutime + cstime seconds) of a process, or None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return int(fields[1]), (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


def hosts_cpu(pids):
    return sum((stat(p) or (0, 0.0))[1] for p in pids)


def wait_sessions_closed(pids, timeout_s=15):
    pids = set(pids)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not [p for p in os.listdir("/proc") if p.isdigit() and (stat(p) or (None,))[0] in pids]:
            return
        time.sleep(0.05)


def main():
    if len(sys.argv) < 4 or sys.argv[2] != "--":
        sys.exit(__doc__)
    reps, cmd = int(sys.argv[1]), sys.argv[3:]
    pids = listeners()
    rows = []
    for _ in range(reps):
        own0, hosts0 = resource.getrusage(resource.RUSAGE_CHILDREN), hosts_cpu(pids)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wall = time.perf_counter() - t0
        own1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        wait_sessions_closed(pids)
        rows.append({"wall": wall,
                     "tool_cpu": own1.ru_utime + own1.ru_stime - own0.ru_utime - own0.ru_stime,
                     "hosts_cpu": hosts_cpu(pids) - hosts0, "rc": proc.returncode})
        if proc.returncode:
            print(proc.stderr.decode(errors="replace")[-2000:], file=sys.stderr)
    out = {k: round(statistics.median(r[k] for r in rows), 3) for k in ("wall", "tool_cpu", "hosts_cpu")}
    out["hosts"], out["reps"] = len(pids), reps
    out["exit"] = sorted({r["rc"] for r in rows})
    print(json.dumps(out))
    return 0 if out["exit"] == [0] else 1


if __name__ == "__main__":
    sys.exit(main())
