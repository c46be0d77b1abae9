"""WebSocket (RFC 6455) for the websocket check: the client's upgrade request, the server's answer to it,
and frames. Pure functions over bytes; ``probe.checks.websocket`` moves them over ``conn``'s stream.

Our own rather than the ``websockets`` library's sans-I/O client: that one cost 165 us of CPU per check
for the handshake and close alone, more than the rest of the check (docs/decisions/0030). The rules
follow the library's client where RFC 6455 leaves room (CRLF line ends, header syntax and limits, which
upgrades are valid), and tests/test_websocket_wire.py holds this module to it.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import struct
from dataclasses import dataclass
from typing import NoReturn
from urllib.parse import quote, unquote, urlsplit

from probe.checks.net.conn import Failure

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_LINE = 8192  # a line of the response head, CRLF included (websockets' MAX_LINE_LENGTH)
MAX_HEADERS = 128

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
DATA_OPCODES = frozenset({CONT, TEXT, BINARY})
_OPCODES = frozenset({CONT, TEXT, BINARY, CLOSE, PING, PONG})
# Close codes a peer may send (RFC 6455 7.4.1 and the IANA registry), besides 3000-4999.
CLOSE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})
NO_STATUS = 1005  # a close frame without a code

_DELIMS = ":/?#[]@!$&'()*+,;="
_TOKEN = re.compile(rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+")
_VALUE = re.compile(rb"[\x09\x20-\x7e\x80-\xff]*")
_STATUS = re.compile(rb"HTTP/1\.1 ([0-9]{1,18}) ([\x09\x20-\x7e\x80-\xff]*)")
# A whole, valid head in one match (the common case); anything else goes line by line to find what is wrong.
_HEAD = re.compile(rb"HTTP/1\.1 ([0-9]{1,18}) ([\x09\x20-\x7e\x80-\xff]*)\r\n"
                   rb"((?:[-!#$%&'*+.^_`|~0-9a-zA-Z]+:[\x09\x20-\x7e\x80-\xff]*\r\n)*)\r\n")
_ITEM = re.compile(r"[-!#$%&'*+.^_`|~0-9a-zA-Z]+")
_PROTOCOL = re.compile(r"[-!#$%&'*+.^_`|~0-9a-zA-Z]+(?:/[-!#$%&'*+.^_`|~0-9a-zA-Z]+)?")


# --- the upgrade -------------------------------------------------------------------------------------------

def new_key() -> str:
    return base64.b64encode(os.urandom(16)).decode()


def accept_for(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` a server must answer ``key`` with."""
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def request_target(url: str) -> tuple[str, str, str | None]:
    """The request target, ``Host`` and Basic ``Authorization`` (from ``user:password@``) of a ``ws://``
    URL, made as websockets makes them: an IRI's host IDNA-encoded and its path quoted, the port named only
    when it is not the scheme's."""
    parts = urlsplit(url)
    default = 443 if parts.scheme == "wss" else 80
    host, path, query = parts.hostname or "", parts.path, parts.query
    if not url.isascii():
        host = host.encode("idna").decode()
        path, query = quote(path, safe=_DELIMS), quote(query, safe=_DELIMS)
    shown = f"[{host}]" if ":" in host else host
    if (parts.port or default) != default:
        shown += f":{parts.port}"
    auth = None
    if parts.username is not None:
        pair = f"{unquote(parts.username, errors='strict')}:{unquote(parts.password or '', errors='strict')}"
        auth = "Basic " + base64.b64encode(pair.encode()).decode()
    return (path or "/") + (f"?{query}" if query else ""), shown, auth


class Upgrade:
    """The upgrade request for one URL, made once: only its ``Sec-WebSocket-Key`` changes per connection.
    A header in ``headers`` named like one of ours (``Host``, or one given earlier) replaces it in place."""

    def __init__(self, url: str, subprotocol: str | None, headers: tuple[tuple[str, str], ...]) -> None:
        target, host, authorization = request_target(url)
        own = [("Host", host), ("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Key", ""),
               ("Sec-WebSocket-Version", "13"), *([("Sec-WebSocket-Protocol", subprotocol)] if subprotocol else []),
               *([("Authorization", authorization)] if authorization else [])]
        merged: dict[str, tuple[str, str]] = {}
        for name, value in (*own, *headers):
            merged[name.lower()] = (name, value)
        lines = [f"GET {target} HTTP/1.1", *(f"{name}: {value}" for name, value in merged.values()), "", ""]
        text = "\r\n".join(lines).encode("latin-1")
        if merged["sec-websocket-key"][1]:  # replaced: the key is theirs
            self._before, self._after, self.fixed_key = text, b"", merged["sec-websocket-key"][1]
        else:
            self._before, _, self._after = text.partition(b"Sec-WebSocket-Key: \r\n")
            self._before += b"Sec-WebSocket-Key: "
            self._after = b"\r\n" + self._after
            self.fixed_key = ""
        self.subprotocol = subprotocol

    def request(self, key: str) -> bytes:
        return self._before if self.fixed_key else self._before + key.encode() + self._after


@dataclass
class Head:
    """The server's response head: status, reason and headers (names as sent, in order)."""

    status: int
    reason: str
    headers: list[tuple[str, str]]

    def __post_init__(self) -> None:
        self._by_name: dict[str, list[str]] = {}
        for name, value in self.headers:
            self._by_name.setdefault(name.lower(), []).append(value)

    def values(self, name: str) -> list[str]:
        return self._by_name.get(name.lower(), [])

    def get(self, name: str) -> str | None:
        found = self.values(name)
        return found[0] if found else None


def parse_head(data: bytes) -> tuple[Head, bytes] | None:
    """The response head at the start of ``data`` and what follows it, or None while it is incomplete.
    A malformed head raises ``Failure("protocol_error")`` as soon as its first bad line is complete."""
    fast = _HEAD.match(data)
    if fast is not None and fast.end() <= MAX_LINE:
        status, lines = int(fast[1]), fast[3].split(b"\r\n")
        del lines[-1]  # what follows the last header's CRLF
        if 100 <= status < 600 and len(lines) <= MAX_HEADERS:
            headers = []
            for line in lines:  # _HEAD matched each as ``token:value``: the name ends at the first colon
                name, _, value = line.partition(b":")
                headers.append((name.decode("ascii"), value.strip(b" \t").decode("latin-1")))
            return Head(status, fast[2].decode("latin-1"), headers), data[fast.end():]
    end = data.find(b"\r\n\r\n")
    if end >= 0:
        lines = data[:end].split(b"\r\n")
    else:
        whole = data[:data.rfind(b"\n") + 1]
        if len(data) - len(whole) > MAX_LINE - 2:
            _not_upgrade("a line longer than 8192 bytes")
        if whole and not whole.endswith(b"\r\n"):
            _not_upgrade(f"a line without CRLF: {whole[-60:]!r}")
        lines = whole[:-2].split(b"\r\n") if whole else []
    if len(lines) > MAX_HEADERS + 1:
        _not_upgrade(f"more than {MAX_HEADERS} headers")
    status, reason, headers = _lines(lines)
    if end < 0:
        return None
    return Head(status, reason, headers), data[end + 4:]


def _lines(lines: list[bytes]) -> tuple[int, str, list[tuple[str, str]]]:
    """The status line's code and reason and the headers of these complete lines (the status line first)."""
    status, reason, headers = 0, "", []
    for number, line in enumerate(lines):
        if len(line) > MAX_LINE - 2 or b"\n" in line:
            _not_upgrade(f"a line without CRLF: {line[:60]!r}" if b"\n" in line else "a line longer than 8192 bytes")
        if number == 0:
            match = _STATUS.fullmatch(line)
            if match is None or not 100 <= int(match[1]) < 600:
                _not_upgrade(f"not an HTTP/1.1 status line: {line[:80]!r}")
            status, reason = int(match[1]), match[2].decode("latin-1")
            continue
        name, colon, value = line.partition(b":")
        value = value.strip(b" \t")
        if not colon or not _TOKEN.fullmatch(name) or not _VALUE.fullmatch(value):
            _not_upgrade(f"a bad header line {line[:80]!r}")
        headers.append((name.decode("ascii"), value.decode("latin-1")))
    return status, reason, headers


def check_upgrade(head: Head, key: str, offered: str | None) -> str | None:
    """The subprotocol the server selected, once its answer is a valid upgrade for ``key``; raises
    ``Failure`` with reason ``upgrade_refused``, ``subprotocol_mismatch`` or ``protocol_error``."""
    if head.status != 101:
        where = head.get("Location")
        raise Failure("upgrade_refused", f"HTTP {head.status} {head.reason} instead of 101 Switching Protocols"
                                         + (f" (Location: {where})" if where else ""))
    connection = _items(head, "Connection", _ITEM)
    if not any(option.lower() == "upgrade" for option in connection):
        _not_upgrade(f"Connection: {', '.join(connection) or 'missing'}")
    upgrade = _items(head, "Upgrade", _PROTOCOL)
    if len(upgrade) != 1 or upgrade[0].lower() != "websocket":
        _not_upgrade(f"Upgrade: {', '.join(upgrade) or 'missing'}")
    accept = head.values("Sec-WebSocket-Accept")
    if len(accept) != 1 or accept[0] != accept_for(key):
        _not_upgrade(f"Sec-WebSocket-Accept: {', '.join(accept) or 'missing'} (expected {accept_for(key)})")
    if head.values("Sec-WebSocket-Extensions"):  # none offered, none may be used
        _not_upgrade(f"the server chose extensions we did not offer ({head.get('Sec-WebSocket-Extensions')})")
    chosen = head.values("Sec-WebSocket-Protocol")
    if not chosen:
        return None
    if offered is None:
        raise Failure("subprotocol_mismatch", f"not a WebSocket upgrade: the server selected subprotocol "
                                              f"{', '.join(chosen)}, none was offered")
    selected = _items(head, "Sec-WebSocket-Protocol", _ITEM)
    if len(selected) > 1:
        _not_upgrade(f"Sec-WebSocket-Protocol: more than one ({', '.join(selected)})")
    if selected[0] != offered:
        raise Failure("subprotocol_mismatch", f"not a WebSocket upgrade: the server selected subprotocol "
                                              f"{selected[0]}, offered: {offered}")
    return selected[0]


def _items(head: Head, name: str, item: re.Pattern[str]) -> list[str]:
    """A comma-separated header (all its lines), empty elements dropped; every element must match ``item``."""
    out = []
    for value in head.values(name):
        if item.fullmatch(value):  # one element, the common case
            out.append(value)
            continue
        parts = [part.strip(" \t") for part in value.split(",")]
        if not any(parts) or not all(item.fullmatch(part) for part in parts if part):
            _not_upgrade(f"{name}: {value!r} is not a list of tokens")
        out += [part for part in parts if part]
    return out


def _not_upgrade(what: str) -> NoReturn:
    raise Failure("protocol_error", f"not a WebSocket upgrade: {what}")


# --- frames ------------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Frame:
    opcode: int
    data: bytes
    fin: bool = True


def encode(opcode: int, data: bytes, fin: bool = True, mask: bytes | None = None) -> bytes:
    """A client frame: always masked (RFC 6455 5.3), with a random key unless ``mask`` is given."""
    key = os.urandom(4) if mask is None else mask
    size = len(data)
    first = (0x80 if fin else 0) | opcode
    if size < 126:
        head = struct.pack("!BB", first, 0x80 | size)
    elif size < 65536:
        head = struct.pack("!BBH", first, 0xFE, size)
    else:
        head = struct.pack("!BBQ", first, 0xFF, size)
    return head + key + apply_mask(data, key)


def apply_mask(data: bytes, key: bytes) -> bytes:
    if not data:
        return b""
    size = len(data)
    stream = (key * (size // 4 + 1))[:size]
    return (int.from_bytes(data, "big") ^ int.from_bytes(stream, "big")).to_bytes(size, "big")


def close_frame(code: int, reason: str = "") -> bytes:
    return encode(CLOSE, struct.pack("!H", code) + reason.encode())


def decode(data: bytes, max_size: int) -> tuple[Frame, bytes] | None:
    """The server frame at the start of ``data`` and the bytes after it, or None while it is incomplete.
    Raises ``Failure``: ``message_too_big`` for a payload over ``max_size`` (known from its header, before
    it is read), ``protocol_error`` for a frame a server may not send (checked in websockets' order)."""
    if len(data) < 2:
        return None
    first, second = data[0], data[1]
    opcode, size, at = first & 0x0F, second & 0x7F, 2
    if opcode not in _OPCODES:
        _bad_frame(f"unknown opcode {opcode:#x}")
    if second & 0x80:
        _bad_frame("a masked frame from the server")
    if size == 126:
        if len(data) < 4:
            return None
        size, at = struct.unpack_from("!H", data, 2)[0], 4
    elif size == 127:
        if len(data) < 10:
            return None
        size, at = struct.unpack_from("!Q", data, 2)[0], 10
    if size > max_size:
        raise Failure("message_too_big", f"the server sent a frame of {size} bytes, more than max_bytes")
    if len(data) < at + size:
        return None
    if first & 0x70:
        _bad_frame("reserved bits set (no extension was negotiated)")
    if opcode >= CLOSE and (size > 125 or not first & 0x80):
        _bad_frame("a control frame longer than 125 bytes or fragmented")
    return Frame(opcode, bytes(data[at:at + size]), bool(first & 0x80)), data[at + size:]


def parse_close(data: bytes) -> tuple[int, str]:
    """A close frame's code and reason (1005 when it has none)."""
    if not data:
        return NO_STATUS, ""
    if len(data) < 2:
        _bad_frame("a close frame of one byte")
    code = struct.unpack_from("!H", data)[0]
    if code not in CLOSE_CODES and not 3000 <= code < 5000:
        _bad_frame(f"close code {code}, which a server may not send")
    try:
        return code, data[2:].decode()
    except UnicodeDecodeError:
        _bad_frame("a close reason that is not UTF-8")


def _bad_frame(what: str) -> NoReturn:
    raise Failure("protocol_error", f"not WebSocket: {what}")
