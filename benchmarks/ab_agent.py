"""A/B of source trees on the running agent: CPU per check run of ``probe run`` from each tree, side by side.

    .venv/bin/python benchmarks/ab_agent.py --tree before=/tmp/base/src --tree after=src --kinds disk,tcp

Every tree's agent runs at the same time (shipped ``packaging/probe.yaml``, ``--checks`` checks of one type
every ``--interval``, the same loopback nginx and dnsmasq as ``bench.py``), so a busy machine loads them all
alike; CPU per run is read from ``/proc/PID/stat`` and the agent's own ``probe_check_runs_total`` over
``--rounds`` windows (the method of benchmarks/bench_agent.py, without the peer). Prints the median per tree
and kind. A tree is the ``src`` directory of a checkout (``git worktree add`` or ``git archive`` of a commit);
the installed venv supplies the libraries.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]

from bench import start_peers  # noqa: E402
from bench_agent import running_agent, runs_total  # noqa: E402
from measure import process_cpu  # noqa: E402


def check_for(kind: str, web: str, dns: str) -> dict[str, object]:
    host, port = web.rsplit(":", 1)
    return {"http": {"type": "http", "url": f"http://{web}/"},
            "tcp": {"type": "tcp", "host": host, "port": int(port)},
            "dns": {"type": "dns", "query": "www.test", "server": dns},
            "disk": {"type": "disk", "path": "/",
                     "thresholds": {"utilization": {"warning": ">= 80%", "critical": ">= 90%"}}}}[kind]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", action="append", required=True, metavar="NAME=SRC")
    parser.add_argument("--kinds", default="http,tcp,dns,disk")
    parser.add_argument("--checks", type=int, default=100)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--warmup", type=float, default=25.0, help="seconds after start-up (21 runs: flapping window)")
    parser.add_argument("--window", type=float, default=12.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    trees = [(name, Path(src).resolve()) for name, src in (t.split("=", 1) for t in args.tree)]
    with start_peers(install=False) as peers:
        if peers.web is None or peers.dns is None:
            raise SystemExit("needs nginx and dnsmasq (see benchmarks/bench.py)")
        for kind in args.kinds.split(","):
            check = check_for(kind, peers.web, peers.dns)
            with contextlib.ExitStack() as stack:
                # Started together: each running_agent waits only for its endpoint (warmup 0), then one warm-up.
                agents = [(name, stack.enter_context(running_agent(check, args.checks, args.interval, 0.0, src)))
                          for name, src in trees]
                time.sleep(args.warmup)
                per_run: dict[str, list[float]] = {name: [] for name, _ in trees}
                for _ in range(args.rounds):
                    before = {name: (runs_total(a.port), process_cpu(a.proc.pid)) for name, a in agents}
                    time.sleep(args.window)
                    for name, a in agents:
                        runs, cpu = runs_total(a.port) - before[name][0], process_cpu(a.proc.pid) - before[name][1]
                        per_run[name].append(cpu / runs * 1e3 if runs else float("nan"))
                for name, values in per_run.items():
                    shown = " ".join(f"{v:.3f}" for v in values)
                    print(f"{kind:5} {name:12} median {statistics.median(values):.3f} ms/run  ({shown})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
