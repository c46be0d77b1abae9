"""Runs inside the benchmark's systemd container (bench_checks.row_systemd copies it there with probe and
its libraries): CPU per check of probe's systemd check and of ``systemctl is-active UNIT``, alternating.

    python3 systemd_inside.py UNIT RUNS PEER_RUNS ROUNDS   ->  {"probe": [s, ...], "peer": [s, ...]} on stdout

probe: ``time.process_time()`` (all threads: the check is sync and runs on a worker thread) around RUNS runs
through ``probe.engine.runner.Runner``. systemctl: user+system CPU of the children around PEER_RUNS
fork+execs, as for the Nagios plugins in bench_checks.py.
"""

from __future__ import annotations

import asyncio
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "lib"))


async def probe_cpu(unit: str, runs: int) -> float:
    from probe.engine.runner import Runner
    from probe.testing import build_spec, load_registry

    registry = load_registry(entry_points=False)
    spec = build_spec({"type": "systemd", "unit": unit}, registry=registry)
    runner = Runner(registry)
    for _ in range(20):
        outcome = await runner.run(spec)
        if outcome.status.name != "OK":
            raise SystemExit(f"systemd check: {outcome.result.summary}")
    before = time.process_time()
    for _ in range(runs):
        await runner.run(spec)
    return (time.process_time() - before) / runs


def systemctl_cpu(unit: str, runs: int) -> float:
    argv = ["systemctl", "is-active", unit]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0 or done.stdout.strip() != "active":
        raise SystemExit(f"systemctl is-active {unit}: {done.stdout.strip()} (exit {done.returncode})")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    for _ in range(runs):
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / runs


def main() -> None:
    unit, runs, peer_runs, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    mine, theirs = [], []
    for _ in range(rounds):
        mine.append(asyncio.run(probe_cpu(unit, runs)))
        theirs.append(systemctl_cpu(unit, peer_runs))
    print(json.dumps({"probe": mine, "peer": theirs}))


if __name__ == "__main__":
    main()
