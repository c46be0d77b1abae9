"""Real peers for the alerting tests: a webhook receiver on loopback that checks probe's HMAC signature and can
be told to fail, and a real Alertmanager (Debian's ``prometheus-alertmanager``) on a free loopback port with a
temporary config and data dir, routing every alert to a second receiver at once."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from conftest import require
from daemons import stop

SIGNATURE = "X-Probe-Signature-256"


@dataclass
class Received:
    at: float  # wall clock when it arrived
    body: Any
    headers: dict[str, str]
    valid_signature: bool | None  # None: the receiver has no secret


@dataclass
class Receiver:
    """Records every POST. ``answer`` is the status it answers with (500: down); ``secret`` checks signatures."""

    secret: str | None = None
    answer: int = 200
    received: list[Received] = field(default_factory=list)
    attempts: int = 0
    url: str = ""
    _server: ThreadingHTTPServer | None = None

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.attempts += 1
                status = receiver.answer
                if status == 200:
                    valid = None
                    if receiver.secret is not None:
                        want = "sha256=" + hmac.new(receiver.secret.encode(), raw, hashlib.sha256).hexdigest()
                        valid = hmac.compare_digest(want, self.headers.get(SIGNATURE, ""))
                    receiver.received.append(Received(time.time(), json.loads(raw), dict(self.headers), valid))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def events(self) -> list[str]:
        return [r.body.get("event", "") for r in self.received if isinstance(r.body, dict)]


@contextlib.contextmanager
def receiver(secret: str | None = None) -> Iterator[Receiver]:
    r = Receiver(secret).start()
    try:
        yield r
    finally:
        r.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Alertmanager:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def alerts(self, **filters: str) -> list[dict[str, Any]]:
        query = "&".join(f"{k}={v}" for k, v in filters.items())
        with urllib.request.urlopen(f"{self.url}/api/v2/alerts?{query}", timeout=5) as response:
            return list(json.load(response))

    def amtool(self, *args: str) -> str:
        amtool = shutil.which("amtool")
        assert amtool is not None
        proc = subprocess.run([amtool, f"--alertmanager.url={self.url}", *args], capture_output=True, text=True,
                              timeout=30)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout


def alertmanager_binary() -> str:
    path = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    require(path is not None and shutil.which("amtool") is not None,
            "prometheus-alertmanager is not installed (see .ci/apt-packages)")
    assert path is not None
    return path


@contextlib.contextmanager
def alertmanager(tmp_path: Path, notify_url: str, port: int | None = None) -> Iterator[Alertmanager]:
    """A private Alertmanager that notifies ``notify_url`` (firing and resolved) with no grouping delay."""
    binary = alertmanager_binary()
    config = tmp_path / "alertmanager.yml"
    config.write_text(json.dumps({
        "route": {"receiver": "test", "group_by": ["check"], "group_wait": "0s", "group_interval": "1s",
                  "repeat_interval": "1h"},
        "receivers": [{"name": "test", "webhook_configs": [{"url": notify_url, "send_resolved": True}]}],
    }))
    port = port or free_port()
    log = tmp_path / "alertmanager.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([binary, f"--config.file={config}", f"--storage.path={tmp_path / 'am-data'}",
                                    f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=",
                                    f"--web.external-url=http://127.0.0.1:{port}"],
                                   stdout=out, stderr=subprocess.STDOUT)
    am = Alertmanager(f"http://127.0.0.1:{port}", process, log)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{am.url}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.1)
        yield am
    finally:
        stop(process)
