"""History store write rate: how many results per second the writer thread commits.

    .venv/bin/python benchmarks/bench_history.py [N]

Enqueues N results (5 measurements each, one capacity sample) as fast as a producer can, then waits
for the writer; prints the enqueue cost per result (what the event loop pays) and the sustained rate.
``benchmarks/bench.py`` calls ``measure``.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from probe.sinks.history import HistoryStore


def measure(n: int) -> dict[str, float]:
    """Enqueue ``n`` results and wait for the writer: rate (results/s), enqueue_us, wall_s, cpu_s."""
    with tempfile.TemporaryDirectory() as tmp:
        # room for every row: the rate is of rows written, none dropped by the in-memory bound
        store = HistoryStore(Path(tmp) / "h.db", max_pending=2 * n + 1).open()
        now = time.time()
        measurements = {"duration": 0.01, "utilization": 0.5, "used": 1e9, "free": 2e9, "total": 3e9}
        started = time.perf_counter()
        cpu = time.process_time()
        for i in range(n):
            store.record_result(now + i * 1e-3, f"check-{i % 1000}", "disk", 0, duration=0.01,
                                summary="/ 50.0% used", measurements=measurements, samples=("utilization",))
        enqueue = time.perf_counter() - started
        if not store.flush(timeout=600):
            raise RuntimeError("the history writer did not drain within 600s")
        total = time.perf_counter() - started
        cpu = time.process_time() - cpu
        store.close()
        if store.health().dropped:
            raise RuntimeError(f"the history store dropped {store.health().dropped} rows")
    return {"results": n, "rate": n / total, "enqueue_us": enqueue / n * 1e6, "wall_s": total, "cpu_s": cpu}


def main(n: int) -> None:
    m = measure(n)
    print(f"results: {n}")
    print(f"enqueue cost: {m['enqueue_us']:.1f} us/result (on the caller's thread)")
    print(f"written: {m['rate']:,.0f} results/s sustained ({m['wall_s']:.2f}s wall, {m['cpu_s']:.2f}s CPU all threads)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
