"""http: one request (following redirects), judged on status, body, JSON values and headers.

Each run opens a fresh connection, as an outside user would, and measures its phases. HTTP/1.1 is h11's
framing over probe's own connection (``http1``: a fraction of blackbox_exporter's CPU, docs/performance.md);
HTTP/2 and proxies go through httpx (``httpclient``). URLs and redirects follow curl's and httpx's rules
(``urls``); the body is never read past ``max_body_size`` and is decoded for the assertions (``http_body``).
"""

from __future__ import annotations

import base64
import time
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

import probe
from probe.checks.net import addresses, http1, http_body, urls
from probe.checks.net.addresses import AddressMode
from probe.checks.net.conn import Failure, IpVersion, Peer, TlsOptions, context_for, os_failure
from probe.checks.net.http1 import BodyTooLarge, Hop, Response
from probe.checks.net.http_expect import HttpExpect, problems
from probe.checks.net.stream import Stream
from probe.hookspecs import CheckRegistrar
from probe.units import Size

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_USER_AGENT = f"probe/{probe.__version__}"


class BasicAuth(probe.Options):
    """HTTP basic authentication; write the password as ``${file:/run/secrets/...}`` to keep it out of config."""

    username: str
    """User name."""
    password: SecretStr
    """Password (a secret: never shown in output, logs or history)."""


class HttpOptions(probe.Options):
    url: str
    """``http://`` or ``https://`` URL. ``user:password@`` in it becomes ``basic_auth`` (and is never shown)."""
    method: str = "GET"
    """Request method."""
    headers: dict[str, str] = {}
    """Request headers (they replace the defaults of the same name); CR, LF and NUL are refused."""
    body: str | None = None
    """Request body, sent as UTF-8."""
    basic_auth: BasicAuth | None = None
    """``{username, password}`` for HTTP basic authentication."""
    bearer_token: SecretStr | None = None
    """Sent as ``Authorization: Bearer TOKEN`` (a secret: never shown in output, logs or history)."""
    compressed: bool = False
    """Ask for a compressed body (``Accept-Encoding: gzip, deflate``, plus ``br``/``zstd`` when installed),
    as curl's ``--compressed``. A compressed body is decoded for ``expect`` whether asked for or not."""
    follow_redirects: bool = True
    """Follow 301, 302, 303, 307 and 308 responses; the final response is judged."""
    max_redirects: int = Field(10, ge=0)
    """Most redirects followed; one more is a failure (``too_many_redirects``)."""
    expect: HttpExpect = HttpExpect()
    """Conditions on the response (see below)."""
    http2: bool = False
    """Use HTTP/2 (through httpx; needs the ``http2`` extra). Over https the server must agree (ALPN)."""
    proxy: str | None = None
    """Proxy URL (``http://proxy.example.com:3128``); the request then goes through httpx."""
    tls: TlsOptions = TlsOptions()
    """Certificate settings for https (see below)."""
    ip_version: IpVersion = "any"
    """``any``, ``ipv4``, ``ipv6``, ``prefer_ipv4`` or ``prefer_ipv6``: which addresses of the host to use."""
    addresses: AddressMode = "first"
    """``first``: the first address of the url's host that accepts, as a browser would; ``all``: the whole
    request against every address, OK only when each passes; ``any``: every address, OK when one passes
    (per-address results in details, ``addresses_ok``/``addresses_total`` per family). Redirects to
    another host or port use that host's first address."""
    happy_eyeballs: bool = False
    """With ``addresses: first``: race the addresses (RFC 8305): the next one is tried when the last has
    not connected within 250 ms, the first connection wins."""
    max_body_size: Size = Field(1024 * 1024, gt=0)
    """Most body bytes read (default 1MiB); a larger body fails with ``body_too_large``."""

    @model_validator(mode="before")
    @classmethod
    def _credentials_from_url(cls, data: Any) -> Any:
        """``user:password@`` leaves the URL for ``basic_auth``, so the URL can be shown anywhere."""
        if not isinstance(data, dict) or not isinstance(data.get("url"), str):
            return data
        try:
            parsed = urls.parse(data["url"])
        except urls.BadUrl:
            return data  # the url validator says why
        if parsed.username is None:
            return data
        if data.get("basic_auth") is not None or data.get("bearer_token") is not None:
            raise ValueError("credentials in the url and in basic_auth/bearer_token: give them once")
        return {**data, "url": urls.without_userinfo(data["url"]),
                "basic_auth": {"username": parsed.username, "password": parsed.password or ""}}

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        try:
            urls.parse(value)
        except urls.BadUrl as exc:  # shown without user:password@, which is a secret
            raise ValueError(f"{urls.without_userinfo(value)!r}: {exc}") from None
        return value.strip()

    @field_validator("headers")
    @classmethod
    def _header_lines(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            http1.validate_header(name, text)
        return value

    @field_validator("bearer_token")
    @classmethod
    def _token_line(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and any(c in value.get_secret_value() for c in "\r\n\0"):
            raise ValueError("the token has CR, LF or NUL, which would break the request")
        return value

    @field_validator("method")
    @classmethod
    def _token(cls, value: str) -> str:
        if not value.isalpha():
            raise ValueError(f"{value!r} is not an HTTP method")
        return value.upper()

    @field_validator("proxy")
    @classmethod
    def _proxy_url(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("http", "https", "socks5"):
            raise ValueError(f"{value!r}: expected an http://, https:// or socks5:// proxy URL")
        return value

    @model_validator(mode="after")
    def _one_auth(self) -> HttpOptions:
        if self.basic_auth is not None and self.bearer_token is not None:
            raise ValueError("set basic_auth or bearer_token, not both")
        return self

    @model_validator(mode="after")
    def _address_modes(self) -> HttpOptions:
        addresses.check_modes(self.addresses, self.happy_eyeballs)
        if (self.addresses != "first" or self.happy_eyeballs) and (self.http2 or self.proxy is not None):
            raise ValueError("addresses and happy_eyeballs work with the built-in HTTP/1.1 client, not with "
                             "http2 or proxy (httpx connects by itself)")
        return self


class HttpCheck(probe.Check[HttpOptions]):
    """Fetch a URL and judge the response."""

    type = "http"
    measurements = frozenset({*addresses.MEASUREMENTS, "duration", "dns", "connect", "tls", "first_byte",
                              "transfer", "status_code",
                              "body_bytes", "body_decoded_bytes", "tls_cert_remaining", "redirects"})
    units = {"duration": "s", "dns": "s", "connect": "s", "tls": "s", "first_byte": "s", "transfer": "s",
             "status_code": "", "body_bytes": "By", "body_decoded_bytes": "By", "tls_cert_remaining": "s",
             "redirects": "{redirect}", **addresses.UNITS}

    def __init__(self, name: str, options: HttpOptions) -> None:
        super().__init__(name, options)
        self._url = urls.parse(options.url)
        self._headers = _request_headers(options)
        self._body = options.body.encode() if options.body is not None else b""
        self._via_httpx = options.http2 or options.proxy is not None

    async def run(self, ctx: probe.Context) -> probe.Result:
        o = self.options
        if o.addresses == "first":
            return await self._run(ctx, None)
        return await addresses.each(self._url.host, self._url.port, o.ip_version, o.addresses,
                                    f"{o.method} {self._url}", lambda peer: self._run(ctx, peer),
                                    worse=addresses.expiring_first("tls_cert_remaining"))

    async def _run(self, ctx: probe.Context, pin: Peer | None) -> probe.Result:
        """The request, to the url's host or to one of its addresses (``pin``, kept for same-host redirects)."""
        started = time.monotonic()
        hops = [Hop(str(self._url))]
        try:
            # Stop a little before the core's deadline so our own reason (and the phase) gets reported.
            async with ctx.time_limit():
                response, failure = await self._follow(hops, pin), None
        except TimeoutError:
            response, failure = None, Failure("timeout", f"timed out {hops[-1].phase}")
        except BodyTooLarge as exc:
            response, failure = exc.response, exc
        except Failure as exc:
            response, failure = None, exc
        except OSError as exc:
            response, failure = None, os_failure(exc, hops[-1].phase)
        took = time.monotonic() - started
        if failure is None and not self._via_httpx:
            # The target's time (conn.Timings: connect, TLS, request to the answer's last arrival) of each hop,
            # not a loop's busy with other checks; httpx's path and a failure are timed by the wall.
            took = sum(hop.timings.target() for hop in hops)
        duration = probe.Measurement("duration", took, "s")
        return judge(self.options, hops, response, failure, duration)

    async def _follow(self, hops: list[Hop], pin: Peer | None) -> Response:
        o = self.options
        url, method, body, headers = self._url, o.method, self._body, self._headers
        while True:
            same = pin is not None and (url.host, url.port) == (self._url.host, self._url.port)
            response = await self._fetch(hops[-1], url, method, headers, body, pin if same else None)
            location = response.header("location")
            if not (o.follow_redirects and response.status in _REDIRECTS and location):
                return response
            if len(hops) > o.max_redirects:
                raise Failure("too_many_redirects", f"more than {o.max_redirects} redirects (max_redirects)")
            try:
                target = urls.join(url, location)
            except urls.BadUrl as exc:
                raise Failure("bad_redirect", f"redirect to {_shown(location)}: {exc}") from None
            if response.status == 303 or (response.status in (301, 302) and method == "POST"):
                method, body = ("HEAD" if method == "HEAD" else "GET"), b""
                headers = [(k, v) for k, v in headers if k.lower() not in ("content-length", "content-type")]
            if target.origin != url.origin:  # credentials stay with their scheme, host and port (as curl)
                headers = [(k, v) for k, v in headers if k.lower() not in _CREDENTIALS]
            if target.username is not None:
                headers = [*(h for h in headers if h[0].lower() != "authorization"),
                           _basic(target.username, target.password or "")]
            url = target
            hops.append(Hop(str(url)))

    async def _fetch(self, hop: Hop, url: urls.Url, method: str, headers: list[tuple[str, str]],
                     body: bytes, pin: Peer | None) -> Response:
        o = self.options
        if body:
            headers = [*headers, ("Content-Length", str(len(body)))]
        try:
            if self._via_httpx:
                from probe.checks.net import httpclient

                context = context_for(o.tls, ("http/1.1", "h2") if o.http2 else ("http/1.1",))
                return await httpclient.fetch(hop, str(url), method, headers, body, context=context,
                                              http2=o.http2, proxy=o.proxy, server_name=o.tls.server_name,
                                              max_body=int(o.max_body_size))
            return await self._fetch_http1(hop, url, method, [("Host", url.authority), *headers], body, pin)
        except Failure as failure:
            if failure.reason.startswith("certificate_") and hop.peer is not None and o.proxy is None:
                from probe.checks.net.certs import fetch_unverified

                failure.facts = await fetch_unverified(hop.peer, o.tls.server_name or url.host, o.tls)
            raise

    async def _fetch_http1(self, hop: Hop, url: urls.Url, method: str, headers: list[tuple[str, str]],
                           body: bytes, pin: Peer | None) -> Response:
        o = self.options
        stream = await Stream.open(url.host, url.port, o.ip_version, hop.timings, happy_eyeballs=o.happy_eyeballs,
                                   peer=pin)
        hop.peer = stream.peer
        try:
            if url.scheme == "https":
                await self._start_tls(hop, stream, url.host)
            return await http1.exchange(hop, stream, method, url.target, headers, body, int(o.max_body_size))
        finally:
            stream.close()

    async def _start_tls(self, hop: Hop, stream: Stream, host: str) -> None:
        from probe.checks.net.certs import peer_facts  # TLS only: plain http imports no certificate code

        tls = self.options.tls
        hop.phase = "in the TLS handshake"
        server_name = tls.server_name or host
        try:
            await stream.start_tls(context_for(tls, ("http/1.1",)), server_name, hop.timings)
        except OSError as exc:
            raise os_failure(exc, "TLS handshake") from None
        hop.ssl_object = stream.ssl_object
        hop.cert = peer_facts(hop.ssl_object)


_CREDENTIALS = frozenset({"authorization", "cookie", "proxy-authorization"})


def _request_headers(o: HttpOptions) -> list[tuple[str, str]]:
    defaults = {"user-agent": ("User-Agent", _USER_AGENT), "accept": ("Accept", "*/*"),
                "connection": ("Connection", "close")}
    if o.compressed:
        defaults["accept-encoding"] = ("Accept-Encoding", http_body.accept_encoding())
    if o.basic_auth is not None:
        defaults["authorization"] = _basic(o.basic_auth.username, o.basic_auth.password.get_secret_value())
    elif o.bearer_token is not None:
        defaults["authorization"] = ("Authorization", f"Bearer {o.bearer_token.get_secret_value()}")
    for name, value in o.headers.items():
        defaults[name.lower()] = (name, value)
    defaults.pop("host", None)  # always from the URL, also after a redirect
    return list(defaults.values())


def _basic(username: str, password: str) -> tuple[str, str]:
    return "Authorization", "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def _shown(location: str) -> str:
    """A Location as it may be shown: its raw bytes escaped, at most 100 characters."""
    text = location.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return repr(text if len(text) <= 100 else text[:100] + "...")


def judge(o: HttpOptions, hops: list[Hop], response: Response | None, failure: Failure | None,
          duration: probe.Measurement) -> probe.Result:
    hop = hops[-1]
    measurements = [duration, *hop.timings.measurements()]
    details: dict[str, Any] = {"url": hop.url}
    if hop.peer is not None:
        details.update(hop.peer.details())
    if hop.ssl_object is not None:
        details["tls_version"] = hop.ssl_object.version()
    certificate = hop.cert or (failure.facts if failure is not None else None)
    if certificate is not None:
        measurements.append(probe.Measurement("tls_cert_remaining", certificate.remaining(), "s"))
        details["certificate"] = certificate.details()
    if len(hops) > 1:
        details["redirects"] = [h.url for h in hops[:-1]]
        measurements.append(probe.Measurement("redirects", len(hops) - 1, "{redirect}"))
    if response is not None:
        measurements += [probe.Measurement(k, v, "s") for k, v in response.phases.items()]
        measurements += [probe.Measurement("status_code", response.status),
                         probe.Measurement("body_bytes", len(response.body), "By")]
        details.update(status=response.status, http_version=response.version)
    if failure is not None:
        return probe.Result.critical(f"{o.method} {hop.url}: {failure.message}", *measurements,
                                     reason=failure.reason, details=details)
    assert response is not None
    what = f"{o.method} {hop.url}: {response.status} {response.reason}".rstrip()
    try:
        body, undone = http_body.decode(response.body, response.header("content-encoding"), int(o.max_body_size))
    except Failure as exc:
        return probe.Result.critical(f"{what}: {exc.message}", *measurements, reason=exc.reason, details=details)
    measurements.append(probe.Measurement("body_decoded_bytes", len(body), "By"))
    if undone:
        details["content_encoding_not_decoded"] = undone
    problem = problems(o.expect, response, lambda: http_body.text(body, response.header("content-type")))
    if problem is not None:
        reason, text = problem
        return probe.Result.critical(f"{what}: {text}", *measurements, reason=reason, details=details)
    size = f"{len(response.body)} bytes"
    return probe.Result.ok(f"{what}, {size} in {duration.value * 1000:.1f}ms", *measurements, details=details)


@probe.hookimpl
def register_checks(register: CheckRegistrar) -> None:
    register(HttpCheck)
