"""Runs inside the benchmark's systemd container (bench_checks.row_systemd copies it there with probe, its
libraries and measure.py): CPU per check of probe's systemd check and of ``systemctl is-active UNIT``,
alternating.

    python3 systemd_inside.py UNIT RUNS PEER_RUNS ROUNDS   ->  {"probe": [s, ...], "peer": [s, ...]} on stdout

Both sides are measured as everywhere else (benchmarks/measure.py): probe's CPU (all threads: the check is
sync and runs on a worker thread) around RUNS runs through the Runner, and systemctl's as the children's CPU
around PEER_RUNS fork+execs, as for the Nagios plugins in bench_checks.py.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "lib"))

from measure import alternate, forked_cpu_per_run, probe_cpu_per_check


def main() -> None:
    unit, runs, peer_runs, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    check = {"type": "systemd", "unit": unit}
    mine, theirs = alternate(rounds, lambda: asyncio.run(probe_cpu_per_check(check, runs)),
                             lambda: forked_cpu_per_run(["systemctl", "is-active", unit], peer_runs))
    print(json.dumps({"probe": mine, "peer": theirs}))


if __name__ == "__main__":
    main()
