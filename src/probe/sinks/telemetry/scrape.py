"""The ``/metrics`` listener: bounded, so a flood of scrapers can never take what the checks need.

prometheus_client's ``start_http_server`` started a thread per connection with no cap and no timeout: about
1,000 idle connections from any local user used up the agent's 1,024 file descriptors, and every check then
failed with EMFILE (hard transitions that would fire remediation). This server, like nginx or postfix's
``smtpd`` under ``anvil``, keeps the cost of a client fixed and small:

- one thread and one ``selectors`` loop for every connection (no thread per client);
- at most ``max_connections`` open at once; past that the listening socket is not polled, so further clients
  wait in the kernel's accept queue, which costs the agent no descriptor;
- a client has ``REQUEST_TIMEOUT`` in all to send its request (a slow-loris trickle gains nothing) and
  ``RESPONSE_TIMEOUT`` to take the answer; a request head is at most ``MAX_REQUEST`` bytes;
- the page is rendered at most once per ``RENDER_EVERY``, whatever the number of scrapers, so they cannot
  keep the interpreter busy rendering (the checks share its GIL).

Only ``GET``/``HEAD`` of ``/metrics`` (or ``/``) are served; the answer always closes the connection.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("probe.telemetry")

REQUEST_TIMEOUT = 5.0
RESPONSE_TIMEOUT = 10.0
MAX_REQUEST = 8192
RENDER_EVERY = 1.0
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass
class _Client:
    sock: socket.socket
    deadline: float
    inbox: bytearray = field(default_factory=bytearray)
    outbox: memoryview | None = None


class ScrapeServer:
    """Serves ``render()`` (the exposition text, as bytes) to scrapers, within fixed bounds."""

    def __init__(self, host: str, port: int, render: Callable[[], bytes], *, max_connections: int = 32) -> None:
        self.render = render
        self.max_connections = max(1, max_connections)
        self.listener = _listen(host, port)
        self.server_address: tuple[str, int] = self.listener.getsockname()[:2]
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._clients: dict[int, _Client] = {}
        self._accepting = False
        self._stopping = False
        self._page: bytes = b""
        self._rendered = -RENDER_EVERY
        self._resume_at: float | None = None
        self.served = 0
        self.refused = 0
        """Clients dropped for breaking a bound (too slow, too long a request, not a scrape)."""
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._accept(True)
        self.thread = threading.Thread(target=self._serve, name="probe-metrics", daemon=True)
        self.thread.start()

    # -- lifecycle ------------------------------------------------------------------------------------------

    def shutdown(self) -> None:
        self._stopping = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        self.thread.join(timeout=5.0)

    def server_close(self) -> None:
        for client in list(self._clients.values()):
            self._drop(client)
        for sock in (self.listener, self._wake_r, self._wake_w):
            sock.close()
        self._selector.close()

    @property
    def open_connections(self) -> int:
        return len(self._clients)

    # -- the loop ---------------------------------------------------------------------------------------------

    def _serve(self) -> None:
        while not self._stopping:
            timeout = min((c.deadline for c in self._clients.values()), default=self._resume_at)
            if self._resume_at is not None and timeout is not None:
                timeout = min(timeout, self._resume_at)
            wait = None if timeout is None else max(0.0, timeout - time.monotonic())
            try:
                events = self._selector.select(wait)
            except OSError as exc:  # never expected; the agent must not lose its metrics thread silently
                log.error("metrics endpoint: select failed: %s", exc)
                time.sleep(0.1)
                continue
            for key, mask in events:
                if key.fileobj is self.listener:
                    self._take_new()
                elif key.fileobj is self._wake_r:
                    with contextlib.suppress(OSError):
                        self._wake_r.recv(64)
                else:
                    client = key.data
                    if mask & selectors.EVENT_READ:
                        self._read(client)
                    elif mask & selectors.EVENT_WRITE:
                        self._write(client)
            self._expire()

    def _accept(self, on: bool) -> None:
        if on and not self._accepting:
            self._selector.register(self.listener, selectors.EVENT_READ)
        elif not on and self._accepting:
            self._selector.unregister(self.listener)
        self._accepting = on

    def _take_new(self) -> None:
        while len(self._clients) < self.max_connections:
            try:
                sock, _ = self.listener.accept()
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE):  # pause, or the ready listener spins the loop
                    log.warning("metrics endpoint: no file descriptor left to accept a scraper")
                    self._accept(False)
                    self._resume_at = time.monotonic() + 0.5
                    return
                continue  # ECONNABORTED and the like: that client is gone
            sock.setblocking(False)
            client = _Client(sock, time.monotonic() + REQUEST_TIMEOUT)
            self._clients[sock.fileno()] = client
            self._selector.register(sock, selectors.EVENT_READ, client)
        self._accept(len(self._clients) < self.max_connections)

    def _read(self, client: _Client) -> None:
        try:
            data = client.sock.recv(MAX_REQUEST + 1 - len(client.inbox))
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop(client)
            return
        client.inbox += data
        end = client.inbox.find(b"\r\n\r\n")
        if end < 0:
            end = client.inbox.find(b"\n\n")
        if end < 0:
            if len(client.inbox) > MAX_REQUEST:
                self._answer(client, 431, b"request header too large\n")
            return
        self._respond(client, bytes(client.inbox[:end]))

    def _respond(self, client: _Client, head: bytes) -> None:
        method, _, rest = head.partition(b" ")
        target = rest.partition(b" ")[0].partition(b"?")[0]
        if method not in (b"GET", b"HEAD"):
            self._answer(client, 405, b"only GET and HEAD\n")
        elif target not in (b"/metrics", b"/"):
            self._answer(client, 404, b"not found: try /metrics\n")
        else:
            self.served += 1
            self._answer(client, 200, self._current_page(), head_only=method == b"HEAD")

    def _current_page(self) -> bytes:
        now = time.monotonic()
        if now - self._rendered >= RENDER_EVERY:
            try:
                self._page = self.render()
            except Exception as exc:  # a collector bug must not take the endpoint down
                log.error("metrics endpoint: rendering failed: %s: %s", type(exc).__name__, exc)
            self._rendered = now
        return self._page

    def _answer(self, client: _Client, status: int, body: bytes, *, head_only: bool = False) -> None:
        if status != 200:
            self.refused += 1
        reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 431: "Request Header Fields Too Large"}
        head = (f"HTTP/1.1 {status} {reason[status]}\r\nContent-Type: {CONTENT_TYPE}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode("ascii")
        client.outbox = memoryview(head if head_only else head + body)
        client.deadline = time.monotonic() + RESPONSE_TIMEOUT
        self._selector.modify(client.sock, selectors.EVENT_WRITE, client)
        self._write(client)

    def _write(self, client: _Client) -> None:
        assert client.outbox is not None
        try:
            sent = client.sock.send(client.outbox)
        except BlockingIOError:
            return
        except OSError:
            self._drop(client)
            return
        client.outbox = client.outbox[sent:]
        if not client.outbox:
            self._drop(client)

    def _expire(self) -> None:
        now = time.monotonic()
        if self._resume_at is not None and now >= self._resume_at:
            self._resume_at = None
            self._accept(len(self._clients) < self.max_connections)
        late = [c for c in self._clients.values() if c.deadline <= now]
        for client in late:
            self.refused += 1
            self._drop(client)

    def _drop(self, client: _Client) -> None:
        fd = client.sock.fileno()
        if self._clients.pop(fd, None) is None:
            return
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(client.sock)
        client.sock.close()
        if not self._stopping and self._resume_at is None:
            self._accept(True)


def _listen(host: str, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                                         flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and host in ("::", ""):
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address)
        sock.listen(128)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
