"""A plugin whose perfdata label changes every run, against the real daemon: each new name used to become a new
instrument for ever (RSS +12-20 MB per 30 s, and none of it visible on /metrics). Now a check's distinct
measurement names are capped like label values: the first ``max_measurements`` are exported, the rest are
counted and named once in a warning, and the agent's instruments stop growing."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

PLUGIN = """
import time
print(f"OK | 'stamp_{time.time_ns()}'=1 fixed=2")
"""


def test_measurement_names_that_change_every_run_are_capped_per_check(tmp_path: Path) -> None:
    (tmp_path / "plugin.py").write_text(PLUGIN)
    (tmp_path / "checks.yaml").write_text(
        f"checks:\n  - name: churn\n    type: command\n    run: [{sys.executable}, {tmp_path / 'plugin.py'}]\n"
        "    interval: 1s\n    timeout: 900ms\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "probe.yaml").write_text(json.dumps({
        "state_dir": str(tmp_path / "state"), "plugins": {"entry_points": False},
        "telemetry": {"max_measurements": 4, "prometheus": {"enabled": True, "port": port}}}))
    agent = subprocess.Popen([sys.executable, "-m", "probe", "--config", str(tmp_path / "probe.yaml"),
                              "--config-dir", str(tmp_path / "checks.yaml"), "run"], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        page = ""
        # past the cap, and more came
        while not re.search(r"^probe_agent_measurements_dropped_total(\{.*\})? [1-9]", page, re.M):
            assert agent.poll() is None and time.monotonic() < deadline, page[-2000:]
            time.sleep(0.5)
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
            except OSError:
                continue
        time.sleep(3)  # three more runs, three more names
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        agent.send_signal(signal.SIGTERM)
        _, stderr = agent.communicate(timeout=60)
    families = set(re.findall(r"^# TYPE (probe_command_\w+) ", page, re.M))
    # The stamps admitted under the cap have no current value (each run has a new one): only "fixed" shows.
    assert families == {"probe_command_fixed"}, families
    dropped = float(re.search(r"^probe_agent_measurements_dropped_total(?:\{.*\})? (\S+)$", page,  # type: ignore[union-attr]
                              re.M).group(1))
    assert dropped >= 3
    assert stderr.count("check churn reports more than 4 distinct measurement names") == 1


def test_the_sink_stops_creating_instruments_at_the_cap() -> None:
    from probe.config.settings import TelemetrySettings
    from probe.engine.interfaces import Outcome
    from probe.model import Measurement, Result
    from probe.sinks.telemetry.otel import OtelSink
    from probe.testing import build_spec

    sink = OtelSink(TelemetrySettings.model_validate({"max_measurements": 10}), otlp=False, prometheus=False,
                    atexit=False)
    spec = build_spec({"name": "churn", "type": "memory"})
    for run in range(500):
        result = Result.ok("fine", Measurement(f"stamp_{run}", 1.0), Measurement("used", 2.0))
        sink.record(Outcome(spec, result, 0.0, 0.01))
    assert len(sink._units) == 10  # instruments, once created, live as long as the process
    assert sink._measurements_dropped == 491  # 500 runs, 9 of their stamps admitted beside 'used'
    sink.shutdown()
