"""The HTTP ping endpoint: jobs on other hosts report to ``heartbeat`` checks (``pings:`` in probe.yaml, off by
default, loopback by default, a bearer token always).

``POST`` (or ``GET``) ``/ping/NAME`` records a success; ``/ping/NAME/start``, ``/ping/NAME/fail`` and
``/ping/NAME/<exit code>`` the rest. A request body (at most 64 KiB) is kept as the job's output (its tail,
masked). Answers: 200, 401 (no or wrong token; checked first, so check names are not revealed), 404 (no such
heartbeat check), 405, 413, 400. HTTP/1.1 is parsed by h11 (httpx's own parser); each connection has 10 s
to send its request, and at most 32 are served at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import sqlite3
from collections.abc import Callable
from typing import Any

from probe._statedir import StateDirError
from probe.config.incidents import PingEndpointSettings
from probe.sinks.history.pings import PingStore

log = logging.getLogger("probe.pings")

MAX_BODY = 64 * 1024
READ_TIMEOUT = 10.0
MAX_CONNECTIONS = 32


class PingServer:
    def __init__(self, settings: PingEndpointSettings, store: PingStore, heartbeats: Callable[[], set[str]],
                 redact: Callable[[str], str] = str) -> None:
        self.settings = settings
        self.store = store
        self.heartbeats = heartbeats
        self.redact = redact
        self.address: tuple[str, int] | None = None
        self._server: asyncio.Server | None = None
        self._slots = asyncio.Semaphore(MAX_CONNECTIONS)

    async def start(self) -> PingServer:
        self._server = await asyncio.start_server(self._serve, self.settings.host, self.settings.port)
        self.address = self._server.sockets[0].getsockname()[:2]
        log.info("ping endpoint listening on %s:%d", *self.address)
        return self

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5.0)
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._slots.locked():
            writer.close()  # busy: a client retries; the agent does not queue sockets
            return
        async with self._slots:
            try:
                status, text = await asyncio.wait_for(self._request(reader), READ_TIMEOUT)
            except TimeoutError:
                status, text = 408, "request timeout"
            except Exception as exc:  # a malformed request: answer it, never take the agent down
                log.debug("ping endpoint: bad request: %s", exc)
                status, text = 400, "bad request"
            await self._answer(writer, status, text)

    async def _request(self, reader: asyncio.StreamReader) -> tuple[int, str]:
        import h11

        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=16 * 1024)
        request: Any = None
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await reader.read(16 * 1024)
                conn.receive_data(data)
                if not data and request is None:
                    raise ConnectionError("closed before a request")
                continue
            if isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > MAX_BODY:
                    return 413, "body too large"
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                break
        return await self._ping(request, bytes(body))

    async def _ping(self, request: Any, body: bytes) -> tuple[int, str]:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in request.headers}
        token = self.settings.token or ""
        given = headers.get("authorization", "")
        if not token or not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return 401, "unauthorized"
        if request.method not in (b"POST", b"GET"):
            return 405, "method not allowed"
        parts = request.target.decode("latin-1").split("?")[0].strip("/").split("/")
        if len(parts) not in (2, 3) or parts[0] != "ping":
            return 404, "not found"
        name = parts[1]
        if name not in self.heartbeats():
            return 404, "no such heartbeat check"
        kind, exit_code = "success", None
        if len(parts) == 3:
            suffix = parts[2]
            if suffix in ("start", "fail"):
                kind = suffix
            elif suffix.isdigit() and int(suffix) < 256:
                exit_code = int(suffix)
                kind = "success" if exit_code == 0 else "fail"
            else:
                return 404, "not found"
        output = self.redact(body.decode("utf-8", "replace"))
        try:
            await asyncio.to_thread(self.store.add, name, kind, exit_code=exit_code, output=output)
        except (OSError, sqlite3.Error, StateDirError) as exc:
            log.error("ping endpoint: cannot record a ping of %s: %s", name, exc)
            return 503, "cannot record the ping now"
        return 200, "OK"

    async def _answer(self, writer: asyncio.StreamWriter, status: int, text: str) -> None:
        reason = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
                  408: "Request Timeout", 413: "Payload Too Large", 503: "Service Unavailable"}.get(status, "Error")
        payload = (text + "\n").encode()
        head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n").encode()
        try:
            writer.write(head + payload)
            await asyncio.wait_for(writer.drain(), 5.0)
        except (OSError, TimeoutError):
            pass
        finally:
            writer.close()
