"""The backlog a receiver outage leaves, and how fast it drains: N checks go hard CRITICAL while the webhook
receiver and the Alertmanager are down, recover, and then the receivers come back.

    .venv/bin/python benchmarks/bench_alert_backlog.py [--checks 500]

Prints the backlog (outbox rows) during the outage and the seconds from the receivers' return until the
outbox is empty, with the number of requests each receiver got. The receivers are loopback HTTP servers that
accept everything (Alertmanager's API is stood in for: its cost is not what is measured here).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from probe.config.incidents import AlertingSettings
from probe.config.load import load_plan
from probe.engine.interfaces import Outcome
from probe.model import Result, Status
from probe.plugins.manager import load_plugins
from probe.sinks.alerting.outbox import Outbox
from probe.sinks.alerting.sink import AlertingSink


class Receiver:
    def __init__(self) -> None:
        self.answer = 503
        self.requests = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.requests += 1
                self.send_response(receiver.answer)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


async def main(checks: int) -> None:
    hook, am = Receiver(), Receiver()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "checks.yaml"
        path.write_text("checks:\n" + "".join(f"  - {{name: c{i}, type: memory}}\n" for i in range(checks)))
        specs = load_plan(path, load_plugins(use_entry_points=False)).checks
        settings = AlertingSettings.model_validate({
            "alertmanager": {"urls": [am.url], "resend": "1m"},
            "webhooks": [{"name": "ops", "url": f"{hook.url}/hook", "secret": "s3cret-key"}]})
        sink = AlertingSink(settings, Outbox(Path(tmp) / "history.sqlite3"), instance="bench")
        for status in (Status.CRITICAL, Status.OK):
            for spec in specs:
                sink.record(Outcome(spec, Result(status, status.name), time.time(), 0.001),
                            SimpleNamespace(hard_status=status, flapping=False))  # type: ignore[arg-type]
            await sink.step()
        await sink.step()
        backlog = sink.health().pending
        print(f"{checks} checks failed and recovered during the outage: backlog {backlog} notifications "
              f"({checks} Alertmanager alerts, coalesced; {2 * checks} webhook events); "
              f"{hook.requests + am.requests} requests to the receivers while they were down")
        hook.answer = am.answer = 200
        hook.requests = am.requests = 0
        sink.delivery._blocked.clear()  # the receivers' backoff would only add its last wait to the figure
        started = time.perf_counter()
        while sink.health().pending:
            await sink.step()
        drained = time.perf_counter() - started
        print(f"drained in {drained:.2f} s after the receivers came back: {hook.requests} webhook requests, "
              f"{am.requests} Alertmanager requests ({backlog / drained:.0f} notifications/s)")
        await sink.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=500)
    asyncio.run(main(parser.parse_args().checks))
