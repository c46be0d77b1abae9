"""The benchmark harness runs end to end (quick mode) and reports every row; its numbers are not judged here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks" / "bench.py"
sys.path.insert(0, str(BENCH.parent))

import bench  # noqa: E402


@pytest.mark.slow
def test_quick_run_reports_every_row(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    done = subprocess.run([sys.executable, str(BENCH), "--quick", "--no-install", "--json", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("| row | unit | probe | peer | ratio | target | result | note |")
    report = json.loads(out.read_text())
    assert report["quick"] is True
    assert report["machine"]["cpus"] >= 1
    rows = report["rows"]
    names = [r["row"] for r in rows]
    for expected in ("http", "tcp", "dns/udp", "dns/tcp", "disk", "startup", "10k-checks", "rss-100", "history"):
        assert expected in names, names
    for row in rows:
        assert row["status"] in ("pass", "fail", "skipped"), row
        assert row["row"] in done.stdout
        if row["status"] == "skipped":
            assert row["note"], row  # a skipped row always says why
        else:
            assert isinstance(row["probe"], float) and row["probe"] > 0, row
            if row["peer_name"]:
                assert row["peer"] > 0 and row["ratio"] == pytest.approx(row["probe"] / row["peer"]), row


def test_startup_config_names_the_missing_types() -> None:
    peers = bench.Peers(unavailable={}, dns="127.0.0.1:5353", web=None)
    config, missing = bench.five_checks(peers, {"dns", "disk", "process", "http", "tcp"})
    assert missing == ["http", "tcp"]  # types exist, but no nginx to point them at
    assert "type: dns" in config and "server: '127.0.0.1:5353'" in config
    assert config.count("\n  - ") == 3


def test_a_missing_peer_is_a_skipped_row_with_the_reason() -> None:
    why = "monitoring-plugins-basic is not installed (/usr/lib/nagios/plugins/check_disk missing)"
    peers = bench.Peers(unavailable={"monitoring-plugins-basic": why})
    settings = bench.Settings(quick=True, full=False)
    [disk] = bench.row_disk(peers, settings)
    assert (disk.status, disk.note, disk.probe) == ("skipped", why, None)
    dns = bench.row_dns(peers, settings)
    assert [r.status for r in dns] == ["skipped", "skipped"]
    assert all("dnsmasq-base did not start" in r.note for r in dns)


def test_rows_are_judged_on_the_ratio_or_on_the_value() -> None:
    assert bench.Row("x", "ms", 0.5, probe=1.0, peer=4.0, peer_name="peer").judge().status == "pass"
    assert bench.Row("x", "ms", 0.5, probe=3.0, peer=4.0, peer_name="peer").judge().status == "fail"
    assert bench.Row("x", "results/s", 5000, goal=">=", probe=6000.0).judge().status == "pass"
    assert bench.Row("x", "results/s", 5000, goal=">=", probe=10.0).judge().status == "fail"
    assert bench.Row("x", "ms", 0.5, peer_name="peer").judge().status == "skipped"


def test_an_unknown_row_is_a_usage_error() -> None:
    done = subprocess.run([sys.executable, str(BENCH), "--rows", "dns,nope", "--no-install"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "unknown rows: nope" in done.stderr


def test_the_forecast_benchmark_runs(capsys: pytest.CaptureFixture[str]) -> None:
    import bench_forecast

    numbers = bench_forecast.main(checks=2, samples=200)
    assert set(numbers) == {"plain_bytes", "plain_ms", "window_bytes", "window_ms"}
    assert all(value > 0 for value in numbers.values())
    assert "ratio: memory" in capsys.readouterr().out


def test_report_benchmark_runs_on_a_small_history() -> None:
    """benchmarks/bench_report.py end to end on 4,000 results (the real runs are 1M and 5M)."""
    import bench_report

    rows = bench_report.run([4_000])
    assert [(r["results"], r["format"]) for r in rows] == [(4_000, "json"), (4_000, "html")]
    assert all(r["rss_mib"] > 0 and r["wall_s"] > 0 for r in rows)


def test_the_startup_floor_imports_a_private_module_after_its_library() -> None:
    """``import _asyncio, asyncio`` on CPython 3.11 leaves two current-task registries, and every
    ``asyncio.timeout()`` then raises "should be used inside a task": the floor (and ab_startup.py's own
    measurement, which runs probe after it) must import asyncio first. The order, then the floor itself."""
    importtime = "\n".join(f"import time:       100 |        100 | {name}" for name in
                           ("_asyncio", "asyncio.events", "asyncio", "_json", "json", "pydantic"))
    modules = bench.libraries_imported(importtime, submodules=True)
    assert modules.index("asyncio") < modules.index("_asyncio")
    assert modules.index("json") < modules.index("_json")
    code = (f"import {', '.join(modules)}\n"
            "async def f():\n    async with asyncio.timeout(1):\n        return 'in a task'\n"
            "print(asyncio.run(f()))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "in a task", done.stderr


def test_the_wake_cost_benchmark_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """benchmarks/wake_cost.py's two tables, small: the wake-ups' CPU and the ssh check against its banner server."""
    import asyncio

    import wake_cost

    user, system = asyncio.run(wake_cost._wakes(1000.0, 50))
    assert user >= 0 and system >= 0 and user + system > 0
    wake_cost.banner_table(runs=30)
    out = capsys.readouterr().out
    assert [line.split(":")[0].strip() for line in out.splitlines()[1:]] == [
        "server answers after 0 ms", "server answers after 1 ms", "server answers after 5 ms"]
    assert all(float(line.split(": ")[1].split(" ms")[0]) > 0 for line in out.splitlines()[1:])
