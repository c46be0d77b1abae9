"""The scheduler at scale: N no-op checks at one interval, in the real Agent loop, for a fixed time.

    .venv/bin/python benchmarks/scheduler_scale.py --checks 10000 --interval 60 --seconds 60

Reports what the agent itself costs with checks that cost nothing (the ``noop`` type from
tests/fakeplugins/python), wired as ``probe run`` wires it (history and metrics sinks from
``probe.daemon.wiring.assemble``, state in a temporary dir; ``--bare`` leaves them out): CPU % of one core
(``time.process_time`` over wall time: loop, runner, state, sinks and the history writer thread),
start lateness (actual start - due time; p50/p99/max over every run), runs done vs runs due, resident memory
(VmRSS after the run, and its growth over the run), and how long loading and validating the config took.
No peer: this is the agent's own overhead (docs/scheduling.md), not a ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PLUGINS = ROOT / "tests" / "fakeplugins" / "python"


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Counter:
    def __init__(self) -> None:
        self.runs = 0

    def record(self, outcome: Any, state: Any, transition: Any) -> None:
        self.runs += 1

    async def aclose(self) -> None:
        return None


async def measure(checks: int, interval: float, seconds: float, *, wired: bool = True) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        return await _measure(Path(tmp), checks, interval, seconds, wired)


async def _measure(tmp: Path, checks: int, interval: float, seconds: float, wired: bool) -> dict[str, Any]:
    from probe.config.load import load_plan
    from probe.config.settings import AgentSettings
    from probe.engine.agent import Agent
    from probe.plugins.manager import load_plugins

    path = tmp / "checks.yaml"
    body = "".join(f"  - {{name: noop-{i}, type: noop}}\n" for i in range(checks))
    path.write_text(f"defaults: {{interval: {interval}s, timeout: 1s}}\nchecks:\n{body}")
    t0 = time.perf_counter()
    registry = load_plugins(use_entry_points=False, plugins_dir=PLUGINS)
    plan = load_plan(path, registry, settings=AgentSettings(state_dir=str(tmp / "state")))
    load_seconds = time.perf_counter() - t0
    counter = Counter()
    sinks: list[Any] = [counter]
    if wired:
        from probe.daemon.wiring import assemble

        parts = assemble(plan, registry, rerun=None)
        sinks += parts.sinks
    agent = Agent(plan, registry, sinks=sinks)
    rss_before = rss_mib()
    task = asyncio.create_task(agent.run())
    await asyncio.sleep(0)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.sleep(seconds)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    rss_after = rss_mib()
    agent.request_stop()
    await task
    lag = agent.schedule.lag
    return {
        "checks": checks, "interval_s": interval, "wired": wired, "seconds": round(wall, 1),
        "config_load_s": round(load_seconds, 2),
        "runs": counter.runs, "runs_due": round(checks * wall / interval),
        "cpu_percent_of_one_core": round(100 * cpu / wall, 1),
        "cpu_ms_per_run": round(1000 * cpu / max(1, counter.runs), 3),
        "lag_p50_ms": round(1000 * lag.quantile(0.5), 2), "lag_p99_ms": round(1000 * lag.quantile(0.99), 2),
        "lag_max_ms": round(1000 * lag.worst, 2), "lag_samples": len(lag.samples),
        "skipped_slots": agent.schedule.skipped,
        "rss_mib": round(rss_after, 1), "rss_growth_mib": round(rss_after - rss_before, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checks", type=int, default=10000)
    parser.add_argument("--interval", type=float, default=60.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--bare", action="store_true", help="no history or metrics sinks: the scheduler alone")
    parser.add_argument("--json-line", action="store_true", help="print one JSON line (for bench.py)")
    args = parser.parse_args(argv)
    result = asyncio.run(measure(args.checks, args.interval, args.seconds, wired=not args.bare))
    print(json.dumps(result) if args.json_line else json.dumps(result, indent=2))
    return 0


def bench_rows(peers: Any = None, quick: bool = False, full: bool = False) -> list[dict[str, Any]]:
    """The ``10k-checks`` row of benchmarks/bench.py: targets CPU <= 25% of one core, p99 start lateness
    <= 50 ms, RSS <= 150 MiB. Runs in a child process so the CPU and memory are the agent's own."""
    import subprocess

    checks, seconds = (1000, 5.0) if quick else (10000, 300.0 if full else 60.0)
    done = subprocess.run([sys.executable, __file__, "--checks", str(checks), "--interval", "60", "--seconds",
                           str(seconds), "--json-line"], capture_output=True, text=True, timeout=seconds + 600,
                          check=False)
    row: dict[str, Any] = {"row": "10k-checks", "unit": "% of one core", "target": 25.0}
    if done.returncode != 0:
        return [{**row, "status": "error", "note": f"exited {done.returncode}: {done.stderr[-300:]}"}]
    m = json.loads(done.stdout.strip().splitlines()[-1])
    met = {"cpu": m["cpu_percent_of_one_core"] <= 25.0, "p99 lateness": m["lag_p99_ms"] <= 50.0,
           "rss": m["rss_mib"] <= 150.0}
    note = (f"{checks} noop checks, {seconds:g} s, {m['runs']} runs: p99 start lateness {m['lag_p99_ms']:.1f} ms "
            f"(<= 50), worst {m['lag_max_ms']:.0f} ms; RSS {m['rss_mib']:.0f} MiB (<= 150)"
            + "".join(f"; {k} not met" for k, ok in met.items() if not ok))
    return [{**row, "probe": m["cpu_percent_of_one_core"], "status": "pass" if all(met.values()) else "fail",
             "note": note, "extra": m}]


if __name__ == "__main__":
    sys.exit(main())
