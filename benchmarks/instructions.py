"""User-space instructions per run of one check through the Runner, for each source tree: a deterministic A/B.

    .venv/bin/python benchmarks/instructions.py '{"type": "http", "url": "http://127.0.0.1:8080/"}' \\
        /tmp/base/src src

CPU-time A/Bs on a shared 2-vCPU machine move by 10% between windows; callgrind counts instructions, the same
for the same code and inputs whatever else the machine runs. Each tree runs the check ``--runs`` and
``--runs * 6`` times (after 30 warm-up runs, which must end OK or WARNING) in a fresh process under
``valgrind --tool=callgrind``; the difference over the extra runs is the cost of one run, start-up excluded.
It counts no kernel work (system calls) and no waiting: read it beside ab_agent.py, not instead of it.
Deterministic for a check that does not wait (a refused connect, a disk check); for one talking to a live
server the path varies with the server's timing (whether a read finds its answer or waits: one websocket
tree counted 615k and 655k per run in two runs), so repeat it and compare the spreads.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys

LOOP = """
import asyncio, json, sys
from probe.engine.runner import Runner
from probe.testing import build_spec, load_registry
check, runs = json.loads(sys.argv[1]), int(sys.argv[2])
async def main():
    registry = load_registry(entry_points=False)
    spec = build_spec(check, registry=registry)._spec
    runner = Runner(registry)
    for _ in range(30):
        outcome = await runner.run(spec)
    if outcome.status.name not in ("OK", "WARNING"):
        raise SystemExit(f"the check does not pass: {outcome.result.summary}")
    for _ in range(runs):
        await runner.run(spec)
asyncio.run(main())
"""


def instructions(src: str, check: str, runs: int) -> int:
    env = {**os.environ, "PYTHONPATH": src, "PYTHONHASHSEED": "0"}
    done = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, "-c",
                           LOOP, check, str(runs)], env=env, capture_output=True, text=True, check=False)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode or not found:
        raise SystemExit(f"{src}: exit {done.returncode}\n{done.stderr[-1500:]}")
    return int(found.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("check", help="the check as JSON (a checks.d entry)")
    parser.add_argument("trees", nargs="+", help="src directories to compare")
    parser.add_argument("--runs", type=int, default=100)
    args = parser.parse_args()
    for src in args.trees:
        few, many = instructions(src, args.check, args.runs), instructions(src, args.check, args.runs * 6)
        print(f"{src}: {(many - few) / (args.runs * 5) / 1e3:.1f}k instructions per run", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
