"""The real ``probe run`` daemon in a subprocess, for tests that need the whole agent: its settings and checks
written as JSON (YAML's subset), its log kept, the ``probe`` CLI pointed at the same configuration."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from hostfs import probe_cli

PY = sys.executable
T = TypeVar("T")


class Daemon:
    def __init__(self, root: Path, checks: dict[str, Any], settings: dict[str, Any]) -> None:
        self.root = root
        self.settings = root / "probe.yaml"
        self.settings.write_text(json.dumps(settings))
        self.checks = root / "checks.yaml"
        self.checks.write_text(json.dumps(checks))
        self.proc: subprocess.Popen[str] | None = None
        self.log = root / "daemon.log"

    def start(self) -> Daemon:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PROBE_", "OTEL_"))}
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(
                [PY, "-m", "probe", "--log-level", "info", "--config", str(self.settings), "--config-dir",
                 str(self.checks), "run"], stdout=log, stderr=subprocess.STDOUT, text=True, env=env)
        return self

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=60)
        self.proc = None
        return code

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=30)
            self.proc = None

    def cli(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        return probe_cli("--config", self.settings, "--config-dir", self.checks, *args)


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 60.0, log: Path | None = None) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = probe()
        except Exception:  # the store may not exist yet
            value = None
        if value:
            return value
        time.sleep(0.2)
    tail = log.read_text()[-3000:] if log is not None and log.exists() else ""
    raise AssertionError(f"timed out waiting for {what}\n{tail}")


def scrape(port: int) -> str:
    """The page the agent's Prometheus endpoint on ``port`` serves at /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


def scrape_until(what: str, port: int, predicate: Callable[[str], T | None], timeout: float = 60.0,
                 log: Path | None = None) -> T:
    """Scrape /metrics on ``port`` until ``predicate(page)`` returns something true, and return that (the
    endpoint may not listen yet: that counts as not yet)."""
    return wait_for(what, lambda: predicate(scrape(port)), timeout, log)
