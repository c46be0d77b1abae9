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
from probe.plugins import load_plugins
from probe.runner import Runner
from probe.spec import CheckSpec, CommonFields
from probe.yamlsource import Location

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

    def __init__(self, handler: Handler, *, tls: ssl.SSLContext | None = None, host: str = "127.0.0.1") -> None:
        self.handler, self.tls, self.host = handler, tls, host
        self.port = 0
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

        server = self.loop.run_until_complete(asyncio.start_server(handle, self.host, 0, ssl=self.tls))
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
        listen 127.0.0.1:{tls_port} ssl;
        http2 on;
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
