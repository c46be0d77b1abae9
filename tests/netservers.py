"""Loopback servers for the tcp, http and tls tests: TLS certificates from trustme (valid, expired, wrong
host, self-signed, chain missing), banner/SMTP/misbehaving TCP servers, a small HTTP/1.1 server with
routes that misbehave on purpose, and nginx from Debian (HTTP/1.1 and HTTP/2).

Each server runs its own event loop in a thread, so a test's loop (the check) and a subprocess
(monitoring-plugins) can both talk to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import socket
import ssl
import struct
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import trustme

import probe
from probe.config.spec import CheckSpec, CommonFields
from probe.config.yamlsource import Location
from probe.engine.runner import Runner
from probe.plugins.manager import load_plugins

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
NOW = datetime.datetime.now(datetime.UTC)


@dataclass
class Certs:
    """Server certificate variants, all for ``localhost``/``127.0.0.1`` unless the name says otherwise."""

    dir: Path
    ca: trustme.CA = field(default_factory=trustme.CA)
    files: dict[str, tuple[Path, Path]] = field(default_factory=dict)  # variant -> (cert chain, key)

    def __post_init__(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        intermediate = self.ca.create_child_ca()
        stranger = trustme.CA()
        leaves = {
            "valid": (self.ca.issue_cert("localhost", "127.0.0.1", "::1",
                                         not_after=NOW + datetime.timedelta(days=30)), None),
            "expired": (self.ca.issue_cert("localhost", "127.0.0.1", not_before=NOW - datetime.timedelta(days=60),
                                           not_after=NOW - datetime.timedelta(days=2)), None),
            "wrong_host": (self.ca.issue_cert("other.test"), None),
            "untrusted": (stranger.issue_cert("localhost", "127.0.0.1"), None),
            "chain_missing": (intermediate.issue_cert("localhost", "127.0.0.1"), 1),
            "chain_complete": (intermediate.issue_cert("localhost", "127.0.0.1"), None),
            "client": (self.ca.issue_cert("client.test"), None),
        }
        for variant, (leaf, keep) in leaves.items():
            cert, key = self.dir / f"{variant}.pem", self.dir / f"{variant}.key"
            cert.write_bytes(b"".join(p.bytes() for p in leaf.cert_chain_pems[:keep]))
            key.write_bytes(leaf.private_key_pem.bytes())
            self.files[variant] = (cert, key)
        # Truly self-signed: a CA certificate serving as the server's own.
        cert, key = self.dir / "self_signed.pem", self.dir / "self_signed.key"
        stranger.cert_pem.write_to_path(str(cert))
        stranger.private_key_pem.write_to_path(str(key))
        self.files["self_signed"] = (cert, key)

    @property
    def ca_file(self) -> Path:
        return self.dir / "ca.pem"

    def server_context(self, variant: str, *, alpn: tuple[str, ...] = (),
                       require_client_cert: bool = False) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cert, key = self.files[variant]
        context.load_cert_chain(cert, key)
        if alpn:
            context.set_alpn_protocols(list(alpn))
        if require_client_cert:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(cafile=str(self.ca_file))
        return context


class ThreadedServer:
    """An asyncio TCP server on a loopback port, in its own thread and loop."""

    def __init__(self, handler: Handler, *, tls: ssl.SSLContext | None = None, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        self.handler, self.tls, self.host = handler, tls, host
        self.port = port
        self.connections = 0
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> ThreadedServer:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("test server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            try:
                await self.handler(reader, writer)
            except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
                pass
            finally:
                writer.close()

        server = self.loop.run_until_complete(asyncio.start_server(handle, self.host, self.port, ssl=self.tls))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self.loop.run_forever()
        server.close()
        for task in asyncio.all_tasks(self.loop):
            task.cancel()
        self.loop.run_until_complete(asyncio.sleep(0))
        self.loop.close()


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST instead of FIN (SO_LINGER 0)."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


# --- TCP handlers --------------------------------------------------------------------------------------

def banner_server(banner: bytes) -> Handler:
    """Greets, then answers each line: ``PING`` -> ``PONG``, ``QUIT`` -> bye, anything else echoed."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(banner)
        await writer.drain()
        while line := await reader.readline():
            if line.strip() == b"QUIT":
                writer.write(b"221 bye\r\n")
                await writer.drain()
                return
            writer.write(b"+PONG\r\n" if line.strip() == b"PING" else b"echo: " + line)
            await writer.drain()
    return handle


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accepts and never says anything (a tarpit)."""
    await asyncio.sleep(3600)


async def resetter(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accepts, says hello, waits for the client's first line, then resets the connection."""
    writer.write(b"hello\r\n")
    await writer.drain()
    await reader.readline()
    reset(writer)


def smtp_server(tls: ssl.SSLContext, *, offer_starttls: bool = True) -> Handler:
    """Just enough ESMTP for STARTTLS (RFC 3207)."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 mail.test ESMTP fake\r\n")
        while line := await reader.readline():
            verb = line.strip().upper()
            if verb.startswith((b"EHLO", b"HELO")):
                writer.write(b"250-mail.test\r\n250-SIZE 1000\r\n" + (b"250-STARTTLS\r\n" if offer_starttls else b"")
                             + b"250 8BITMIME\r\n")
            elif verb == b"STARTTLS" and offer_starttls:
                writer.write(b"220 ready to start TLS\r\n")
                await writer.drain()
                await writer.start_tls(tls)
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                await writer.drain()
                return
            else:
                writer.write(b"502 unknown command\r\n")
            await writer.drain()
    return handle


@contextlib.contextmanager
def full_backlog() -> Iterator[int]:
    """A port whose accept queue is full, so a further SYN is dropped and connect() times out."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(8):
            s = socket.socket()
            s.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                s.connect(("127.0.0.1", port))
            fillers.append(s)
        time.sleep(0.2)
        yield port
    finally:
        for s in fillers:
            s.close()
        listener.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- nginx -------------------------------------------------------------------------------------------------

NGINX_CONFIG = """
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log error;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    default_type text/plain;
    server {{
        listen 127.0.0.1:{port};
        {routes}
    }}
    server {{
        listen 127.0.0.1:{tls_port} ssl http2;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        {routes}
    }}
}}
"""
NGINX_ROUTES = """
        location = / {{ return 200 "hello from nginx\\n"; }}
        location = /health {{ default_type application/json; return 200 '{{"status":"UP","checks":[{{"ok":true}}]}}'; }}
        location = /missing {{ return 404 "no such page\\n"; }}
        location = /broken {{ return 500 "broken\\n"; }}
        location = /moved {{ return 301 /health; }}
        location = /gzip {{ gzip on; gzip_min_length 1; gzip_types text/plain;
                            return 200 "compress me compress me compress me compress me\n"; }}
""".format()


@dataclass
class Nginx:
    port: int
    tls_port: int
    process: subprocess.Popen[bytes]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def nginx(binary: str, workdir: Path, cert: Path, key: Path) -> Iterator[Nginx]:
    """nginx on two loopback ports (plain HTTP/1.1; TLS with HTTP/2), in the foreground, from a tmp config."""
    workdir.mkdir(parents=True, exist_ok=True)
    port, tls_port = free_port(), free_port()
    config = workdir / "nginx.conf"
    config.write_text(NGINX_CONFIG.format(dir=workdir, port=port, tls_port=tls_port, cert=cert, key=key,
                                          routes=NGINX_ROUTES))
    proc = subprocess.Popen([binary, "-e", str(workdir / "error.log"), "-p", str(workdir), "-c", str(config),
                             "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        until = time.monotonic() + 15
        while time.monotonic() < until:
            if proc.poll() is not None:
                raise RuntimeError(f"nginx exited: {proc.stderr.read().decode() if proc.stderr else ''}")
            try:
                socket.create_connection(("127.0.0.1", tls_port), timeout=1).close()
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise RuntimeError("nginx did not start listening")
        yield Nginx(port, tls_port, proc)
    finally:
        proc.terminate()
        proc.wait(10)


async def run_check(check_type: str, timeout: float = 5.0, **options: object) -> probe.Result:
    """One run through the real runner, as the agent does it."""
    runner = Runner(load_plugins(use_entry_points=False))
    cls = runner.registry.checks[check_type]
    spec = CheckSpec.build(CommonFields(name="t", type=check_type, timeout=timeout, interval=60),
                           cls.Options.model_validate(options), Location("test", 1, 1), options)
    return (await runner.run(spec)).result


# --- a small HTTP/1.1 server with routes that misbehave on purpose -------------------------------------------

HEALTH = b'{"status": "UP", "checks": [{"name": "db", "ok": true, "latency": 0.5}], "version": "1.2.3"}'


@dataclass
class HttpLog:
    requests: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)  # method, path, hdrs, body


def http_server(log: HttpLog | None = None) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, *lines = head.decode("latin-1").split("\r\n")
        method, path, _ = request_line.split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines if line)}
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        if log is not None:
            log.requests.append((method, path, headers, body))
        await _route(method, path.split("?", 1)[0], headers, body, writer)
        await writer.drain()
    return handle


def _reply(writer: asyncio.StreamWriter, status: int, body: bytes = b"", headers: tuple[str, ...] = (),
           content_type: str = "text/plain") -> None:
    head = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}", f"Content-Type: {content_type}",
            "Connection: close", *headers]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)


async def _route(method: str, path: str, headers: dict[str, str], body: bytes, writer: asyncio.StreamWriter) -> None:
    import base64
    import json

    if path == "/health":
        _reply(writer, 200, HEALTH, ("X-Version: 1.2.3", "Set-Cookie: a=1", "Set-Cookie: b=2"), "application/json")
    elif path.startswith("/status/"):
        _reply(writer, int(path.rsplit("/", 1)[1]), b"status page\n")
    elif path.startswith("/redirect/"):  # /redirect/N -> N hops, then /health
        n = int(path.rsplit("/", 1)[1])
        _reply(writer, 302, b"", (f"Location: {'/health' if n <= 1 else f'/redirect/{n - 1}'}",))
    elif path == "/see-other":
        _reply(writer, 303, b"", ("Location: /echo",))
    elif path == "/echo":
        doc = {"method": method, "headers": headers, "body": body.decode("utf-8", "replace")}
        _reply(writer, 200, json.dumps(doc).encode(), content_type="application/json")
    elif path == "/basic":
        good = "Basic " + base64.b64encode(b"alice:s3cret-pw").decode()
        _reply(writer, 200 if headers.get("authorization") == good else 401, b"members only\n")
    elif path == "/bearer":
        _reply(writer, 200 if headers.get("authorization") == "Bearer tok-123456" else 401, b"api\n")
    elif path == "/chunked":
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                     b"6\r\nhello \r\n6;ext=1\r\nchunks\r\n0\r\n\r\n")
    elif path == "/unframed":
        writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the server closes\n")
    elif path == "/endless":  # chunked, never ends
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        while True:
            writer.write(b"4000\r\n" + b"x" * 0x4000 + b"\r\n")
            await writer.drain()
    elif path == "/huge":
        _reply(writer, 200, b"y" * (3 * 1024 * 1024))
    elif path == "/reset-mid-body":
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"z" * 1000)
        await writer.drain()
        await asyncio.sleep(0.1)
        reset(writer)
    elif path == "/short-body":
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")
    elif path == "/tarpit":  # headers, then nothing
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(3600)
    elif path == "/hang":
        await asyncio.sleep(3600)
    elif path == "/garbage":
        writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")
    elif path == "/not-json":
        _reply(writer, 200, b"<html>oops</html>", content_type="text/html")
    else:
        _reply(writer, 404, b"not found\n")


async def forward_proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A plain HTTP forward proxy: absolute-form request in, origin-form request out, response piped back."""
    from urllib.parse import urlsplit

    head = await reader.readuntil(b"\r\n\r\n")
    request_line, rest = head.split(b"\r\n", 1)
    method, url, version = request_line.decode().split(" ")
    parts = urlsplit(url)
    upstream_reader, upstream_writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    rest = rest.replace(b"\r\n\r\n", b"\r\nVia: test-proxy\r\n\r\n")
    upstream_writer.write(f"{method} {path} {version}\r\n".encode() + rest)
    while chunk := await upstream_reader.read(65536):
        writer.write(chunk)
    await writer.drain()
    upstream_writer.close()


# --- timing: the target's time, not the loop's ---------------------------------------------------------------

def slow_answer(greeting: bytes, greet_after: float, answer: bytes, answer_after: float) -> Handler:
    """Greets ``greet_after`` seconds after accepting, then answers the first thing it is sent ``answer_after``
    seconds later, with ``answer``."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(greet_after)
        writer.write(greeting)
        await writer.drain()
        await reader.read(65536)
        await asyncio.sleep(answer_after)
        writer.write(answer)
        await writer.drain()
    return handle


async def run_with_busy_loop(server: ThreadedServer, busy: float, check_type: str, **options: object) -> probe.Result:
    """Run a check and, once ``server`` has its connection, hold the event loop for ``busy`` seconds (as other
    checks' code would): whatever the server sends meanwhile waits to be read."""
    before = server.connections
    running = asyncio.ensure_future(run_check(check_type, **options))
    while server.connections == before and not running.done():
        await asyncio.sleep(0.001)
    time.sleep(busy)  # on purpose: the loop is busy
    return await running
