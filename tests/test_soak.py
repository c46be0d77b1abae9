"""A short soak in the suite: benchmarks/soak.py (what ``make soak`` runs for longer) for 25 seconds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO


@pytest.mark.slow
def test_a_short_soak_finds_no_leak_and_no_creeping_lag(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "soak.py"), "--seconds", "25", "--checks", "100",
                           "--sample", "1", "--json", str(out), "--log", str(tmp_path / "agent.log")],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr + (tmp_path / "agent.log").read_text()[-3000:]
    report = json.loads(out.read_text())
    verdict = report["verdict"]
    assert verdict["ok"] and verdict["exit_code"] == 0 and not verdict["failures"]
    assert verdict["runs"] >= 0.9 * verdict["expected_runs"] > 1000
    assert len(report["samples"]) >= 15
    assert "PASS" in proc.stdout


def test_the_verdict_fails_on_growth() -> None:
    """The judge itself, on made-up samples: a leak, fd growth and creeping lag are each caught."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    import argparse

    import soak

    args = argparse.Namespace(seconds=40.0, checks=10, interval=1.0, sample=1.0, max_rss_growth=8.0,
                              max_fd_growth=4, max_lag_growth=0.05)

    def samples(rss_step: float, fd_step: float, lag: float) -> list[soak.Sample]:
        out, lag_sum = [], 0.0
        for t in range(1, 41):
            lag_sum += 10 * (0.001 + lag * t / 40)
            out.append(soak.Sample(t, int(50 * soak.MiB + rss_step * t), int(10 + fd_step * t), lag_sum, 10.0 * t,
                                   10.0 * t))
        return out

    assert soak.judge(samples(0, 0, 0), 0, args).ok
    assert any("RSS" in f for f in soak.judge(samples(1 * soak.MiB, 0, 0), 0, args).failures)
    assert any("fds" in f for f in soak.judge(samples(0, 1, 0), 0, args).failures)
    assert any("lag" in f for f in soak.judge(samples(0, 0, 0.5), 0, args).failures)
    assert any("exited" in f for f in soak.judge(samples(0, 0, 0), None, args).failures)
