"""``probe report`` memory and time against the number of results in the history.

    .venv/bin/python benchmarks/bench_report.py                 # 1M and 5M results (about 3 minutes)
    .venv/bin/python benchmarks/bench_report.py 20000 80000     # any sizes

For each size: a history of 20 checks, one result each every 30 s (so 1M results are 17 days, 5M results 87
days, with an outage every few hours and a maintenance mark on one check), written straight into SQLite with
probe's own schema; then the real command, ``probe report --since <all of it> --format json`` and
``--format html``, in a child process whose peak RSS (``ru_maxrss``) and wall time are measured. The report
streams the rows (``probe.sinks.history.aggregate``), so its peak should not grow with them; before it did,
the issue measured 846 MiB at 1M results and 2.5 GB at 3M.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from probe.sinks.history import DB_NAME, HistoryStore

CHECKS = 20
SPACING = 30.0
BATCH = 50_000


def history(state: Path, rows: int) -> tuple[float, float]:
    """A history of ``rows`` results; returns (first, last) timestamp."""
    path = state / DB_NAME
    HistoryStore(path).open().close()  # the schema, as the agent creates it
    db = sqlite3.connect(path)
    columns = {r[1] for r in db.execute("PRAGMA table_info(results)")}
    if "maintenance" not in columns:  # the incidents feature's mark, on a schema without it
        db.execute("ALTER TABLE results ADD COLUMN maintenance TEXT")
    per_check = rows // CHECKS
    last = float(int(time.time()))
    first = last - per_check * SPACING
    db.execute("PRAGMA synchronous=OFF")

    def results(offset: int, count: int):  # type: ignore[no-untyped-def]
        for i in range(offset, offset + count):
            tick, check = divmod(i, CHECKS)
            ts = first + tick * SPACING + check * 0.01
            bad = tick % 480 < 2 and check % 4 == 0  # a minute of outage every four hours on five checks
            warn = tick % 2880 < 10 and check % 5 == 1
            status = 2 if bad else 1 if warn else 0
            marked = "patching" if check == 3 and tick % 2880 < 60 else None
            yield (ts, f"check-{check:02d}", "http", status, status, "hard", "timeout" if bad else "",
                   "HTTP 200 in 12ms" if not status else "HTTP 503", 0.012 + (i % 13) / 1000, "{}", marked)

    sql = ("INSERT INTO results (ts, check_name, check_type, status, hard_status, state_type, reason, summary, "
           "duration, measurements, maintenance) VALUES (?,?,?,?,?,?,?,?,?,?,?)")
    for offset in range(0, per_check * CHECKS, BATCH):
        db.executemany(sql, results(offset, min(BATCH, per_check * CHECKS - offset)))
        db.commit()
    db.close()
    return first, last


def measure(state: Path, since: float, fmt: str) -> dict[str, float]:
    """Run ``probe report`` once in a child; its peak RSS (MiB) and wall time (s)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROBE_")}
    out = state / f"report.{fmt}"
    window = f"{int(time.time() - since) + 60}s"
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "probe", "report", "--since", window, "--state-dir", str(state),
                             "--format", fmt, "-o", str(out)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=state)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"probe report failed: {proc.stderr.read().decode() if proc.stderr else ''}")
    if fmt == "json":
        doc = json.loads(out.read_text())
        assert len(doc["checks"]) == CHECKS, "every check is in the report"
    return {"rss_mib": usage.ru_maxrss / 1024, "wall_s": wall}


def run(sizes: list[int]) -> list[dict[str, float]]:
    rows = []
    for size in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            state = Path(tmp)
            started = time.perf_counter()
            first, _ = history(state, size)
            built = time.perf_counter() - started
            db_mib = (state / DB_NAME).stat().st_size / 2**20
            for fmt in ("json", "html"):
                m = measure(state, first, fmt)
                rows.append({"results": size, "format": fmt, "db_mib": db_mib, "build_s": built, **m})
    return rows


def main(argv: list[str]) -> int:
    sizes = [int(a) for a in argv] or [1_000_000, 5_000_000]
    print("| results | format | history (MiB) | peak RSS (MiB) | wall (s) |")
    print("| --- | --- | --- | --- | --- |")
    for row in run(sizes):
        print(f"| {row['results']:,} | {row['format']} | {row['db_mib']:.0f} | {row['rss_mib']:.1f} | "
              f"{row['wall_s']:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
