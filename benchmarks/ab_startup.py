"""A/B of source trees on start-up: ``probe run --once`` on bench.py's 5-check config from each tree, side by side.

    .venv/bin/python benchmarks/ab_startup.py --tree before=/tmp/base/src --tree after=src --runs 30

Two measurements, each alternating the trees run by run (each leads in turn), with the median of the per-run
differences against the first tree:

- ``whole``: wall and CPU of the command as the ``startup`` row runs it (``.venv/bin/probe``), and the row's
  floor (``python -c "import <every module of the libraries run loads>"``, found as bench.py finds it);
- ``own``: a process that imports the floor's modules first, then times probe's ``main`` in-process: probe's
  own part (its modules, models, config, plugins and the checks) without the libraries' import and the
  interpreter's start and exit, most of the noise on a busy machine.

A tree is the ``src`` directory of a checkout (``git worktree add`` or ``git archive`` of a commit); the venv
supplies the libraries. Take the lock the other benchmarks take.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]

from bench import check_types, five_checks, libraries_imported, probe_command, start_peers  # noqa: E402

OWN = """\
import sys, time
exec("import " + sys.argv[1])
wall, cpu = time.perf_counter(), time.process_time()
from probe._entry import main
sys.argv = ["probe", *sys.argv[2:]]
try:
    main()
except SystemExit:
    pass
print(f"own {time.perf_counter() - wall} {time.process_time() - cpu}", file=sys.stderr)
"""


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def own(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    err = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         check=False).stderr
    line = next(line for line in reversed(err.splitlines()) if line.startswith("own "))
    wall, cpu = line.split()[1:]
    return float(wall), float(cpu)


def alternate(commands: dict[str, tuple[list[str], dict[str, str]]], runs: int,
              measure: object) -> dict[str, list[tuple[float, float]]]:
    names = list(commands)
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    for argv, env in commands.values():  # bytecode written, caches warm
        subprocess.run(argv, env=env, capture_output=True, check=False)
    for i in range(runs):
        for name in names[i % len(names):] + names[:i % len(names)]:
            results[name].append(measure(*commands[name]))  # type: ignore[operator]
    return results


def report(title: str, results: dict[str, list[tuple[float, float]]]) -> None:
    names = list(results)
    print(f"{title}: median wall / CPU in ms; difference from {names[0]}: median of the per-run differences")
    for name in names:
        walls, cpus = zip(*results[name], strict=True)
        line = f"  {name:12s} {statistics.median(walls) * 1e3:7.1f} / {statistics.median(cpus) * 1e3:7.1f}"
        if name != names[0]:
            base_walls, base_cpus = zip(*results[names[0]], strict=True)
            dw = statistics.median(a - b for a, b in zip(walls, base_walls, strict=True))
            dc = statistics.median(a - b for a, b in zip(cpus, base_cpus, strict=True))
            line += f"   {dw * 1e3:+6.1f} / {dc * 1e3:+6.1f}"
        print(line)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", action="append", required=True, metavar="NAME=SRC")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--only", choices=["whole", "own"], help="one of the two measurements")
    args = parser.parse_args()
    trees = [(name, str(Path(src).resolve())) for name, src in (t.split("=", 1) for t in args.tree)]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    with start_peers(install=False) as peers, tempfile.TemporaryDirectory() as tmp:
        config, missing = five_checks(peers, check_types())
        if missing:
            raise SystemExit(f"the 5-check config lacks {', '.join(missing)} (see benchmarks/bench.py)")
        path = Path(tmp) / "five.yaml"
        path.write_text(config)
        run = ["--config-dir", str(path), "run", "--once"]
        first = {**env, "PYTHONPATH": trees[0][1]}
        importtime = subprocess.run([sys.executable, "-X", "importtime", "-m", "probe", *run], env=first,
                                    capture_output=True, text=True, check=False).stderr
        modules = ", ".join(libraries_imported(importtime, submodules=True))
        if args.only != "own":
            whole = {name: ([*probe_command(), *run], {**env, "PYTHONPATH": src}) for name, src in trees}
            whole["floor"] = ([sys.executable, "-c", f"import {modules}"], first)
            report("whole", alternate(whole, args.runs, timed))
        if args.only != "whole":
            own_runs = {name: ([sys.executable, "-c", OWN, modules, *run], {**env, "PYTHONPATH": src})
                        for name, src in trees}
            report("own", alternate(own_runs, args.runs, own))
    print(f"load average {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
