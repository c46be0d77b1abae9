"""The http check's path through httpx, for what ``http1`` does not do: HTTP/2 and proxies.

httpx is imported here only, on the first such request. Phase timings come from httpcore's trace hook.
"""

from __future__ import annotations

import ssl
import time
from typing import Any

from probe.checks.net.certs import peer_facts
from probe.checks.net.conn import Failure, Peer, os_failure
from probe.checks.net.http1 import BodyTooLarge, Hop, Response

_EVENTS = {  # httpcore trace event -> the phase it ends
    "connection.connect_tcp.complete": "connect",
    "connection.start_tls.complete": "tls",
}


async def fetch(hop: Hop, url: str, method: str, headers: list[tuple[str, str]], body: bytes, *,
                context: ssl.SSLContext, http2: bool, proxy: str | None, server_name: str | None,
                max_body: int) -> Response:
    import httpx

    marks: dict[str, float] = {"start": time.monotonic()}

    async def trace(event: str, info: dict[str, Any]) -> None:
        now = time.monotonic()
        if event.endswith(".started"):
            marks.setdefault(event, now)
        phase = _EVENTS.get(event)
        if phase is not None:
            marks[phase] = now - marks.get(event.replace(".complete", ".started"), now)
            stream = info.get("return_value")
            if phase == "connect" and stream is not None:
                sock = stream.get_extra_info("socket")
                if sock is not None:
                    hop.peer = Peer(sock.family, sock.getpeername())
            elif phase == "tls" and stream is not None:
                hop.ssl_object = stream.get_extra_info("ssl_object")
        if event.endswith("receive_response_headers.complete"):
            marks["headers"] = now
        if event.endswith("send_request_headers.started"):
            marks["sent"] = now

    extensions: dict[str, Any] = {"trace": trace}
    if server_name:
        extensions["sni_hostname"] = server_name
    try:
        async with httpx.AsyncClient(http2=http2, verify=context, proxy=proxy, trust_env=False,
                                     follow_redirects=False, timeout=None) as client:
            request = client.build_request(method, url, headers=headers, content=body or None,
                                           extensions=extensions)
            if not any(k.lower() == "accept-encoding" for k, _ in headers):
                del request.headers["accept-encoding"]  # httpx's default: asked for only with compressed: true
            hop.phase = "waiting for the response"
            response = await client.send(request, stream=True)
            try:
                return await _read(hop, response, marks, max_body)
            finally:
                await response.aclose()
    except httpx.HTTPError as exc:
        raise _failure(exc) from None
    finally:
        hop.timings.connect = marks.get("connect")
        hop.timings.tls = marks.get("tls")


async def _read(hop: Hop, response: Any, marks: dict[str, float], max_body: int) -> Response:
    hop.phase = "reading the body"
    version = "HTTP/2" if response.http_version == "HTTP/2" else response.http_version
    result = Response(response.status_code, response.reason_phrase, version, list(response.headers.items()))
    if hop.ssl_object is not None:
        hop.cert = peer_facts(hop.ssl_object)
    headers_at = marks.get("headers", time.monotonic())
    body = bytearray()
    async for chunk in response.aiter_raw():
        body += chunk
        if len(body) > max_body:
            result.body = bytes(body[:max_body])
            raise BodyTooLarge(f"body over the limit of {max_body} bytes (max_body_size)", result)
    result.body = bytes(body)
    result.phases = {"first_byte": headers_at - marks.get("sent", marks["start"]),
                     "transfer": time.monotonic() - headers_at}
    return result


def _failure(exc: BaseException) -> Failure:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError):
            return os_failure(cause, "request")
        cause = cause.__cause__ or cause.__context__
    import httpx

    if isinstance(exc, httpx.ProxyError):
        return Failure("proxy_error", f"proxy: {exc}")
    if isinstance(exc, httpx.RemoteProtocolError):
        return Failure("malformed_response", f"protocol error: {exc}")
    return Failure("network_error", f"{type(exc).__name__}: {exc}")
