"""What the http check's assertions read: the body decoded from its Content-Encoding, as text in its charset.

``body_bytes`` stays what came over the wire (after chunked framing); the decoded body is what
``body_contains``, ``body_regex`` and ``json`` see, measured as ``body_decoded_bytes``. gzip and deflate
are decoded with zlib (deflate with or without its zlib header, as curl and httpx take it); ``br`` and
``zstd`` when the ``brotli`` and ``zstandard`` packages are installed (``pip install 'probe-monitor[compression]'``).
A decoded body is held to ``max_body_size`` too, so a small compressed bomb cannot fill the memory.
"""

from __future__ import annotations

import codecs
import zlib
from collections.abc import Callable
from typing import Any

from probe.checks.net.conn import Failure


class DecodedTooLarge(Failure):
    def __init__(self, message: str) -> None:
        super().__init__("body_too_large", message)


def accept_encoding() -> str:
    """What ``compressed: true`` asks for: the codings this process can decode."""
    return ", ".join(["gzip", "deflate", *(name for name in ("br", "zstd") if _decoder(name) is not None)])


def decode(body: bytes, content_encoding: str | None, limit: int) -> tuple[bytes, list[str]]:
    """The body with its content codings undone (last applied first), and the codings left undone
    because this process cannot decode them (the body then stays as it is from there on)."""
    codings = [c.strip().lower() for c in (content_encoding or "").split(",") if c.strip()]
    if not body:  # HEAD, 204, 304, or an empty body: nothing to decode
        return body, []
    for position in range(len(codings) - 1, -1, -1):
        coding = codings[position]
        if coding == "identity":
            continue
        decoder = _decoder(coding)
        if decoder is None:
            return body, codings[:position + 1]
        try:
            body = decoder(body, limit)
        except DecodedTooLarge:
            raise
        except Exception as exc:  # every codec has its own error class: each is a malformed body
            raise Failure("malformed_response", f"cannot decode the {coding} body: {exc}") from None
    return body, []


def _decoder(coding: str) -> Callable[[bytes, int], bytes] | None:
    if coding in ("gzip", "x-gzip"):
        return lambda data, limit: _zlib(data, limit, 16 + zlib.MAX_WBITS, coding)
    if coding == "deflate":
        return _deflate
    if coding == "br":
        try:
            import brotli
        except ImportError:
            return None
        return lambda data, limit: _brotli(brotli, data, limit)
    if coding == "zstd":
        try:
            import zstandard
        except ImportError:
            return None
        return lambda data, limit: _zstd(zstandard, data, limit)
    return None


def _zlib(data: bytes, limit: int, wbits: int, coding: str) -> bytes:
    decompressor = zlib.decompressobj(wbits)
    out = decompressor.decompress(data, limit + 1)
    if len(out) > limit:
        raise DecodedTooLarge(f"decoded {coding} body over the limit of {limit} bytes (max_body_size)")
    if not decompressor.eof:
        raise zlib.error("the compressed data ends early")
    return out


def _deflate(data: bytes, limit: int) -> bytes:
    try:
        return _zlib(data, limit, zlib.MAX_WBITS, "deflate")
    except zlib.error:  # raw deflate without the zlib header, as some servers send it
        return _zlib(data, limit, -zlib.MAX_WBITS, "deflate")


def _brotli(brotli: Any, data: bytes, limit: int) -> bytes:
    decompressor = brotli.Decompressor()
    out = decompressor.process(data, output_buffer_limit=limit + 1)  # never more than one byte past the limit
    if len(out) > limit:
        raise DecodedTooLarge(f"decoded br body over the limit of {limit} bytes (max_body_size)")
    if not decompressor.is_finished():
        raise ValueError("the compressed data ends early")
    return bytes(out)


def _zstd(zstandard: Any, data: bytes, limit: int) -> bytes:
    out = zstandard.ZstdDecompressor().stream_reader(data).read(limit + 1)
    return _bounded(out, limit, "zstd")


def _bounded(data: bytes, limit: int, coding: str) -> bytes:
    if len(data) > limit:
        raise DecodedTooLarge(f"decoded {coding} body over the limit of {limit} bytes (max_body_size)")
    return data


def charset(content_type: str | None) -> str:
    """The ``charset`` parameter of a Content-Type when Python knows it, else UTF-8 (JSON's and the web's
    default; httpx does the same)."""
    for parameter in (content_type or "").split(";")[1:]:
        key, _, value = parameter.partition("=")
        if key.strip().lower() == "charset":
            try:
                return codecs.lookup(value.strip().strip('"').strip()).name
            except LookupError:
                return "utf-8"
    return "utf-8"


def text(body: bytes, content_type: str | None) -> str:
    try:
        return body.decode(charset(content_type), "replace")
    except (LookupError, ValueError):  # a codec that is not a text encoding (charset=base64, charset=idna)
        return body.decode("utf-8", "replace")
