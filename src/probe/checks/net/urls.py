"""URLs as curl and httpx put them on the wire: the http check's request targets and redirects.

The rules (RFC 3986 with the WHATWG URL Standard's percent-encode sets, which both follow):

- scheme and host lowercased; a non-ASCII host IDNA-encoded (UTS #46, non-transitional: libidn2's and the
  ``idna`` package's default), ``café.test`` -> ``xn--caf-dma.test``;
- the port 1 to 65535 (default 80/443), anything else an error;
- path and query percent-encoded as UTF-8 (a space is ``%20``, ``é`` is ``%C3%A9``, ``"<>`` and in the
  path ``` ` ``` ``{}`` too), ``%`` left as it is, dot segments removed (``/a/./b/../c`` -> ``/a/c``), the
  fragment never sent;
- ``user:password@`` taken out of the URL (the http check sends it as Basic authentication);
- control characters (CR, LF, NUL, ...) anywhere are an error, never sent.

A redirect's ``Location`` is resolved against the URL it came from (RFC 3986 5.2) and then goes through
the same rules; its bytes are taken as UTF-8 where they are, and percent-encoded as they are otherwise.
"""

from __future__ import annotations

import re
from typing import NamedTuple
from urllib.parse import unquote, urljoin

DEFAULT_PORTS = {"http": 80, "https": 443}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# The WHATWG URL Standard's percent-encode sets, as httpx applies them: printable ASCII stays, except these
# (and "%" stays too: an existing escape, or a lone "%" that curl and httpx also send as it is).
_PRINTABLE = frozenset(range(0x21, 0x7F))
_PATH_SAFE = _PRINTABLE - frozenset(b'"#<>?`{}')
_QUERY_SAFE = _PRINTABLE - frozenset(b'"#<>')
_HOST_FORBIDDEN = re.compile(r"[\s#%/:<>?@\[\\\]^|\"`{}]")


class BadUrl(ValueError):
    """A URL that cannot be requested; the message says why."""


class Url(NamedTuple):
    scheme: str  # "http" or "https"
    host: str  # ASCII, lowercase; an IPv6 literal without brackets
    port: int
    target: str  # the request target: percent-encoded path and query
    username: str | None = None  # percent-decoded userinfo, when the URL had one
    password: str | None = None

    @property
    def authority(self) -> str:
        """``host[:port]`` as the Host header and the shown URL write it (the port only when not the default)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if DEFAULT_PORTS[self.scheme] == self.port else f"{host}:{self.port}"

    @property
    def origin(self) -> tuple[str, str, int]:
        """What credentials are bound to: any change of scheme, host or port drops them."""
        return self.scheme, self.host, self.port

    def __str__(self) -> str:
        """The URL without its userinfo: safe to show in summaries, details and logs."""
        return f"{self.scheme}://{self.authority}{self.target}"


def parse(text: str) -> Url:
    """``text`` as a requestable http(s) URL; raises ``BadUrl``."""
    text = text.strip(" ")
    if _CONTROL.search(text):
        raise BadUrl("control characters (CR, LF, tab, ...) are not allowed in a URL")
    scheme, sep, rest = text.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in DEFAULT_PORTS:
        raise BadUrl("expected an http:// or https:// URL")
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, rest = rest[:end], rest[end:]
    userinfo, at, hostport = authority.rpartition("@")
    host, port = _host_port(hostport, scheme)
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username, password = unquote(user), (unquote(secret) if colon else None)
    path_query = rest.partition("#")[0]
    path, question, query = path_query.partition("?")
    target = _encode(remove_dot_segments(path or "/"), _PATH_SAFE)
    if question:
        target += "?" + _encode(query, _QUERY_SAFE)
    return Url(scheme, host, port, target, username, password)


def without_userinfo(text: str) -> str:
    """``text`` with its ``user:password@`` taken out (the rest as written)."""
    scheme, sep, rest = text.strip(" ").partition("://")
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    return scheme + sep + rest[:end].rpartition("@")[2] + rest[end:]


def join(base: Url, location: str) -> Url:
    """A redirect's ``Location`` resolved against ``base`` (RFC 3986 5.2); raises ``BadUrl``."""
    location = location.strip(" \t")
    if _CONTROL.search(location):
        raise BadUrl("control characters in the Location")
    try:
        joined = urljoin(str(base), location)
    except ValueError as exc:  # urllib's own complaints: "Invalid IPv6 URL"
        raise BadUrl(str(exc)) from None
    return parse(joined)


def _host_port(hostport: str, scheme: str) -> tuple[str, int]:
    if hostport.startswith("["):
        host, bracket, port_text = hostport[1:].partition("]")
        if not bracket or (port_text and not port_text.startswith(":")):
            raise BadUrl("an IPv6 address is written [address]:port")
        port_text = port_text[1:]
        _check_ipv6(host)
    else:
        host, _, port_text = hostport.partition(":")
        host = _ascii_host(host)
    if not host:
        raise BadUrl("expected a URL with a host")
    if not port_text:
        return host.lower(), DEFAULT_PORTS[scheme]
    if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
        raise BadUrl(f"port {port_text[:12]!r} is out of range (1 to 65535)")
    return host.lower(), int(port_text)


def _check_ipv6(host: str) -> None:
    import ipaddress

    try:
        ipaddress.IPv6Address(host.partition("%")[0])
    except ValueError:
        raise BadUrl(f"[{host}] is not an IPv6 address") from None


def _ascii_host(host: str) -> str:
    if host.isascii():
        if _HOST_FORBIDDEN.search(host):
            raise BadUrl(f"host {host!r} has a character a host name cannot have")
        return host.lower()
    import idna  # only for a non-ASCII host name

    try:
        return str(idna.encode(host, uts46=True).decode("ascii"))
    except (idna.IDNAError, UnicodeError) as exc:
        raise BadUrl(f"host {host!r} is not a valid international domain name: {exc}") from None


def remove_dot_segments(path: str) -> str:
    """RFC 3986 5.2.4: ``/a/./b/../c`` -> ``/a/c``; never above the root."""
    if "." not in path:
        return path
    output: list[str] = []
    segments = path.split("/")
    for i, segment in enumerate(segments):
        last = i == len(segments) - 1
        if segment == ".":
            if last:
                output.append("")
        elif segment == "..":
            if len(output) > 1:
                output.pop()
            if last:
                output.append("")
        else:
            output.append(segment)
    result = "/".join(output)
    return result if result.startswith("/") else "/" + result


def _encode(text: str, safe: frozenset[int]) -> str:
    """Percent-encode what ``safe`` does not allow, as UTF-8 (raw bytes of a Location kept as they came)."""
    data = text.encode("utf-8", "surrogateescape")
    if all(b in safe for b in data):
        return text
    return "".join(chr(b) if b in safe else f"%{b:02X}" for b in data)
