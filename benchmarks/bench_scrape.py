"""Check lateness while 1,000 scrapers hammer the Prometheus endpoint (issue 16).

An agent wired as ``probe run`` wires it (history, metrics with the ``/metrics`` listener on) runs 100 memory
checks every second in a child process; the scheduler's own lag samples give how late runs started, first
with no scraper, then while another process keeps 1,000 concurrent ``GET /metrics`` going. The row is the p99
under the flood (target: at most 50 ms, as for the 10k-checks row); the note gives the quiet p99 beside it and
how many scrapes were answered.

    .venv/bin/python benchmarks/bench.py --rows scrape-flood
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CHECKS = 100
SCRAPERS = 1000


def bench_rows(peers: Any = None, quick: bool = False, full: bool = False) -> list[dict[str, Any]]:
    seconds = 2.0 if quick else 30.0 if full else 10.0
    row: dict[str, Any] = {"row": "scrape-flood", "unit": "ms p99 lateness", "target": 50.0}
    with tempfile.TemporaryDirectory() as tmp:
        port = _free_port()
        lines = ["defaults: {interval: 1s, timeout: 900ms}", "checks:"]
        lines += [f"  - {{name: mem-{i:03d}, type: memory}}" for i in range(CHECKS)]
        (Path(tmp) / "checks.yaml").write_text("\n".join(lines) + "\n")
        (Path(tmp) / "probe.yaml").write_text(json.dumps({
            "state_dir": f"{tmp}/state", "plugins": {"entry_points": False},
            "telemetry": {"prometheus": {"enabled": True, "port": port}}}))
        done = subprocess.run([sys.executable, __file__, tmp, str(port), str(seconds)], capture_output=True,
                              text=True, timeout=seconds * 2 + 300, check=False)
    if done.returncode != 0:
        return [{**row, "status": "error", "note": f"agent child exited {done.returncode}: {done.stderr[-300:]}"}]
    m = json.loads(done.stdout.strip().splitlines()[-1])
    ok = m["flood_p99_ms"] <= 50.0
    note = (f"{CHECKS} checks at 1 s, {seconds:g} s quiet then {seconds:g} s with {SCRAPERS} concurrent scrapers "
            f"({m['scrapes']} answered): p99 start lateness {m['quiet_p99_ms']:.1f} ms quiet, "
            f"{m['flood_p99_ms']:.1f} ms flooded, worst {m['flood_worst_ms']:.0f} ms; {m['runs']} runs")
    return [{**row, "probe": m["flood_p99_ms"], "status": "pass" if ok else "fail", "note": note, "extra": m}]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


FLOOD = """
import selectors, socket, sys, time, resource
port, count, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
sel, end, done = selectors.DefaultSelector(), time.monotonic() + seconds, 0
def connect():
    s = socket.socket(); s.setblocking(False); s.connect_ex(("127.0.0.1", port))
    sel.register(s, selectors.EVENT_WRITE)
for _ in range(count):
    connect()
while time.monotonic() < end:
    for key, mask in sel.select(0.2):
        s = key.fileobj
        if mask & selectors.EVENT_WRITE:
            try: s.send(b"GET /metrics HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
            except OSError: pass
            sel.modify(s, selectors.EVENT_READ)
            continue
        try: data = s.recv(65536)
        except OSError: data = b""
        if not data:
            sel.unregister(s); s.close(); done += 1; connect()
print(done)
"""


def child(tmp: str, port: int, seconds: float) -> None:
    """The agent side, in its own process: its loop's lag samples in each phase."""
    from probe.config.load import load
    from probe.daemon.wiring import assemble
    from probe.engine.agent import Agent, freeze_heap

    registry, plan = load(Path(tmp) / "checks.yaml", settings_path=Path(tmp) / "probe.yaml", env={})

    def phase(agent: Agent, since: int) -> list[float]:
        lag = agent.schedule.lag
        fresh = min(lag.total - since, len(lag.samples))
        return sorted(list(lag.samples)[len(lag.samples) - fresh:])

    async def measure() -> dict[str, float]:
        parts = assemble(plan, registry, rerun=None, remediate=False)
        sinks = [sink for sink in (parts.history, parts.metrics) if sink is not None]
        agent = Agent(plan, registry, sinks=sinks)
        freeze_heap()
        task = asyncio.create_task(agent.run())
        await asyncio.sleep(2.0)  # every check has started (splay is within the interval)
        start = agent.schedule.lag.total
        await asyncio.sleep(seconds)
        quiet, start = phase(agent, start), agent.schedule.lag.total
        flood = await asyncio.create_subprocess_exec(sys.executable, "-c", FLOOD, str(port), str(SCRAPERS),
                                                     str(seconds), stdout=asyncio.subprocess.PIPE)
        out, _ = await flood.communicate()
        flooded = phase(agent, start)
        agent.request_stop()
        await task
        await parts.aclose()

        def p99(values: list[float]) -> float:
            return values[min(len(values) - 1, int(len(values) * 0.99))] * 1e3 if values else 0.0

        return {"quiet_p99_ms": p99(quiet), "flood_p99_ms": p99(flooded),
                "flood_worst_ms": (flooded[-1] * 1e3) if flooded else 0.0, "runs": len(quiet) + len(flooded),
                "scrapes": int(out.decode().split()[-1])}

    started = time.monotonic()
    result = asyncio.run(measure())
    result["seconds"] = time.monotonic() - started
    print(json.dumps(result))


if __name__ == "__main__":
    os.environ.pop("STATE_DIRECTORY", None)
    child(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]))
