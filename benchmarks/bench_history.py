"""History store write rate: how many results per second the writer thread commits.

    .venv/bin/python benchmarks/bench_history.py [N]

Enqueues N results (5 measurements each, one capacity sample) as fast as a producer can, then waits
for the writer; prints the enqueue cost per result (what the event loop pays) and the sustained rate.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from probe.history import HistoryStore


def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = HistoryStore(Path(tmp) / "h.db").open()
        now = time.time()
        measurements = {"duration": 0.01, "utilization": 0.5, "used": 1e9, "free": 2e9, "total": 3e9}
        started = time.perf_counter()
        cpu = time.process_time()
        for i in range(n):
            store.record_result(now + i * 1e-3, f"check-{i % 1000}", "disk", 0, duration=0.01,
                                summary="/ 50.0% used", measurements=measurements, samples=("utilization",))
        enqueue = time.perf_counter() - started
        assert store.flush(timeout=600)
        total = time.perf_counter() - started
        cpu = time.process_time() - cpu
        store.close()
        print(f"results: {n}")
        print(f"enqueue cost: {enqueue / n * 1e6:.1f} us/result (on the caller's thread)")
        print(f"written: {n / total:,.0f} results/s sustained ({total:.2f}s wall, {cpu:.2f}s CPU all threads)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
