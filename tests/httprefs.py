"""The references the http check is compared with, each reduced to one ``Verdict``: curl (libcurl, as a
subprocess) and httpx (the Python client whose HTTP/1.1 engine, h11, probe drives). And a raw server
that answers each path with canned bytes and records every request exactly as it came over the wire.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

import probe

TIMEOUT = 5.0
Reply = bytes | Callable[["RawServer"], bytes]


@dataclass(frozen=True)
class Verdict:
    kind: str  # "response", "malformed", "bad_redirect", "too_many_redirects", "timeout", "refused", "tls"
    status: int = 0
    body: bytes | None = None  # decoded body (curl's and httpx's); probe's is checked against httpx's text

    def __str__(self) -> str:
        shown = "" if self.body is None else f" {len(self.body)} bytes {self.body[:40]!r}"
        return f"{self.kind} {self.status or ''}{shown}".strip()

    def without_body(self) -> Verdict:
        return Verdict(self.kind, self.status)


@dataclass
class Recorded:
    method: str
    target: str
    headers: dict[str, str]
    raw: bytes
    at: float = field(default_factory=time.monotonic)


@dataclass
class RawServer:
    """Canned replies by request path (``{port}`` in a reply becomes this server's port); every request kept."""

    replies: dict[str, Reply] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    port: int = 0
    scheme: str = "http"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        line, *lines = head.decode("latin-1").split("\r\n")
        method, target, _ = line.split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines if x)}
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        self.requests.append(Recorded(method, target, headers, head + body))
        key = re.sub(r"%[0-9a-f]{2}", lambda m: m.group(0).upper(), target)  # curl writes %e9, httpx %E9
        reply = self.replies.get(key) or self.replies.get(key.split("?", 1)[0],
                                                             b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        data = reply(self) if callable(reply) else reply
        writer.write(data.replace(b"{port}", str(self.port).encode()))
        await writer.drain()

    def url(self, path: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    def last(self) -> Recorded:
        return self.requests[-1]


# --- curl -------------------------------------------------------------------------------------------------

_CURL_KINDS = {1: "bad_redirect", 3: "bad_redirect", 7: "refused", 8: "malformed", 18: "malformed",
               28: "timeout", 35: "tls", 43: "malformed", 47: "too_many_redirects", 52: "malformed",
               56: "malformed", 60: "tls", 61: "malformed", 92: "malformed"}


def of_curl(url: str, *, follow: bool = True, method: str = "GET", body: str | None = None,
            headers: dict[str, str] | None = None, user: str | None = None, ca_file: str | None = None,
            compressed: bool = True) -> Verdict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "body"
        # only http(s) redirects, as a monitor follows; -X only where curl would not pick the method itself
        # (with -X POST curl keeps POST after a 303); one request per connection, as probe
        argv = ["curl", "-sS", "-o", str(out), "-w", "%{http_code}", "--max-time", str(TIMEOUT), "--max-redirs", "10",
                "--proto-redir", "=http,https", "-H", "Connection: close", "--globoff"]
        if method == "HEAD":
            argv.append("-I")
        elif method not in ("GET", "POST") or (method == "POST" and body is None):
            argv += ["-X", method]
        if follow:
            argv.append("-L")
        if compressed:
            argv.append("--compressed")
        if body is not None:
            argv += ["--data-binary", body]
        for name, value in (headers or {}).items():
            argv += ["-H", f"{name}: {value}"]
        if user is not None:
            argv += ["-u", user]
        if ca_file is not None:
            argv += ["--cacert", ca_file]
        done = subprocess.run([*argv, url], capture_output=True, text=True, timeout=TIMEOUT + 10)
        if done.returncode == 1 and "not supported" not in done.stderr:  # 1 is also a redirect to ftp://
            return Verdict("malformed")  # HTTP/0.9, "Unsupported response code"
        if done.returncode:
            return Verdict(_CURL_KINDS.get(done.returncode, f"curl exit {done.returncode}"))
        data = out.read_bytes() if out.exists() else b""
        return Verdict("response", int(done.stdout.strip() or 0), b"" if method == "HEAD" else data)


# --- httpx ------------------------------------------------------------------------------------------------

def of_httpx(url: str, *, follow: bool = True, method: str = "GET", body: str | None = None,
             headers: dict[str, str] | None = None, user: str | None = None, ca_file: str | None = None) -> Verdict:
    auth = tuple(user.split(":", 1)) if user else None
    try:
        with httpx.Client(verify=_verify(ca_file), timeout=TIMEOUT, follow_redirects=follow, trust_env=False,
                          max_redirects=10) as client:
            response = client.request(method, url, content=body, auth=auth,  # type: ignore[arg-type]
                                      headers={"Connection": "close", **(headers or {})})
            return Verdict("response", response.status_code, response.content)
    except httpx.TooManyRedirects:
        return Verdict("too_many_redirects")
    except (httpx.UnsupportedProtocol, httpx.InvalidURL):
        return Verdict("bad_redirect")
    except (httpx.RemoteProtocolError, httpx.LocalProtocolError, httpx.DecodingError):
        return Verdict("malformed")
    except httpx.TimeoutException:
        return Verdict("timeout")
    except httpx.ConnectError as exc:
        return Verdict("tls" if "SSL" in str(exc) or "certificate" in str(exc) else "refused")


def _verify(ca_file: str | None) -> ssl.SSLContext | bool:
    return ssl.create_default_context(cafile=ca_file) if ca_file else True


def httpx_text(url: str, **kwargs: Any) -> str | None:
    """httpx's decoded text of the body (its charset rules), or None when it got no response."""
    with contextlib.suppress(httpx.HTTPError), httpx.Client(timeout=TIMEOUT, trust_env=False,
                                                            verify=_verify(kwargs.pop("ca_file", None))) as client:
        return client.request(kwargs.pop("method", "GET"), url, follow_redirects=kwargs.pop("follow", True),
                              **kwargs).text
    return None


# --- probe ------------------------------------------------------------------------------------------------

_PROBE_KINDS = {"malformed_response": "malformed", "bad_redirect": "bad_redirect", "timeout": "timeout",
                "too_many_redirects": "too_many_redirects", "connection_refused": "refused",
                "tls_error": "tls", "certificate_invalid": "tls", "certificate_expired": "tls"}
_ANY_STATUS = ["100-599"]


def probe_options(url: str, *, follow: bool = True, method: str = "GET", body: str | None = None,
                  headers: dict[str, str] | None = None, user: str | None = None, ca_file: str | None = None,
                  text: str | None = None) -> dict[str, Any]:
    options: dict[str, Any] = {"url": url, "follow_redirects": follow, "method": method, "compressed": True,
                               "expect": {"status": _ANY_STATUS}}
    if body is not None:
        options["body"] = body
    if headers:
        options["headers"] = headers
    if user is not None:
        name, _, password = user.partition(":")
        options["basic_auth"] = {"username": name, "password": password}
    if ca_file is not None:
        options["tls"] = {"ca_file": ca_file}
    if text is not None:  # the body must read exactly as httpx read it
        import re

        options["expect"]["body_regex"] = r"\A" + re.escape(text) + r"\Z"
    return options


def of_probe(result: probe.Result) -> Verdict:
    if result.reason in _PROBE_KINDS:
        return Verdict(_PROBE_KINDS[result.reason])
    assert result.reason in (None, "", "status_mismatch"), f"{result.reason}: {result.summary}"
    status = result.measurement("status_code")
    return Verdict("response", int(status.value) if status else 0)


def basic(user: str) -> str:
    return "Basic " + base64.b64encode(user.encode()).decode()


def dumps(value: object) -> str:
    return json.dumps(value, default=str)
