"""A/B of source trees on the Runner's own cost per run: a tcp check refused on loopback, through ``Runner.run``.

    .venv/bin/python benchmarks/ab_runner.py --tree before=/tmp/base/src --tree after=src --processes 6

A refused connect waits for nothing, so what a run costs here is the Runner, the check's code and two system
calls, the same every time: CPU-time medians of a few processes settle changes of a few microseconds (the
``ctx.time_limit`` change read 58.2 -> 53.2 us with a spread under 1 us) that a check against a live server
hides in its noise. Each process runs 200 warm-up runs, then ``--runs`` runs timed with
``time.process_time()``; the trees take turns, each leading in turn. Take the lock the other benchmarks take.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

CHILD = """
import asyncio, sys, time
from probe.engine.runner import Runner
from probe.testing import build_spec, load_registry

registry = load_registry(entry_points=False)
spec = build_spec({"type": "tcp", "host": "127.0.0.1", "port": 1}, registry=registry)._spec

async def main() -> None:
    runner = Runner(registry)
    for _ in range(200):
        outcome = await runner.run(spec)
    if outcome.result.reason != "connection_refused":
        raise SystemExit(f"expected a refused connect, got {outcome.result.summary}")
    runs = int(sys.argv[1])
    started = time.process_time()
    for _ in range(runs):
        await runner.run(spec)
    print((time.process_time() - started) / runs * 1e6)

asyncio.run(main())
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--tree", action="append", required=True, help="NAME=path/to/src (two or more)")
    parser.add_argument("--processes", type=int, default=6, help="processes per tree")
    parser.add_argument("--runs", type=int, default=20_000, help="timed runs per process")
    args = parser.parse_args()
    trees = [tuple(t.split("=", 1)) for t in args.tree]
    if len(trees) < 2 or any(len(t) != 2 for t in trees):
        parser.error("give two or more --tree NAME=path")
    results: dict[str, list[float]] = {name: [] for name, _ in trees}
    for i in range(args.processes):
        for name, src in trees[i % len(trees):] + trees[:i % len(trees)]:
            done = subprocess.run([sys.executable, "-c", CHILD, str(args.runs)], capture_output=True, text=True,
                                  env={**os.environ, "PYTHONPATH": src}, check=False)
            if done.returncode:
                print(f"{name}: exit {done.returncode}\n{done.stderr[-1500:]}", file=sys.stderr)
                return 1
            results[name].append(float(done.stdout))
    first = statistics.median(results[trees[0][0]])
    for name, values in results.items():
        median = statistics.median(values)
        print(f"{name}: {median:.2f} us per run (min {min(values):.2f}, max {max(values):.2f}), "
              f"{median / first:.3f}x of {trees[0][0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
