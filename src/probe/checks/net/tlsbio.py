"""TLS for ``stream.Stream`` over its own socket, through memory BIOs (``ssl.SSLObject``).

asyncio's TLS transport reads the socket itself, so what came over TLS was timed when the event loop got
round to it, and the handshake from its start to when a loop busy with other checks resumed the caller.
Here the stream's own reads (``recvmsg`` with the kernel's receive stamps) and sends feed OpenSSL's memory
BIOs: each flight of the handshake is a segment of ``conn.Timings`` (sent to the arrival of the answer), as
every request over a plain connection is (docs/decisions/0031-the-targets-time-in-segments.md). The client's
own work in between (verifying the certificate chain) is not the target's.
"""

from __future__ import annotations

import contextlib
import ssl
from typing import Protocol

_RECV = 65536


class Wire(Protocol):
    """The stream's socket, plain: what the TLS records travel over."""

    async def recv_raw(self, size: int) -> bytes: ...
    async def send_raw(self, data: bytes, *, asks: bool) -> None: ...


class Tls:
    """One client-side TLS session on a connected ``Wire``."""

    def __init__(self, context: ssl.SSLContext, server_name: str | None) -> None:
        self._incoming, self._outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = context.wrap_bio(self._incoming, self._outgoing, server_hostname=server_name)

    async def handshake(self, wire: Wire) -> None:
        """Raises what ``SSLObject.do_handshake`` raises (``ssl.SSLCertVerificationError``, ...)."""
        while True:
            try:
                self.obj.do_handshake()
            except ssl.SSLWantReadError:
                if self._incoming.eof:
                    raise ConnectionResetError("the server closed the connection in the TLS handshake") from None
                await self._flush(wire, asks=True)  # a flight the server answers
                await self._fill(wire)
                continue
            await self._flush(wire, asks=True)  # TLS 1.3: our Finished (the server may answer with tickets)
            return

    async def read(self, wire: Wire, size: int) -> bytes:
        """Up to ``size`` bytes of application data; b"" once the server has closed (cleanly or not)."""
        while True:
            try:
                data = self.obj.read(size)
            except ssl.SSLWantReadError:
                if self._incoming.eof:
                    return b""
                await self._flush(wire, asks=False)  # a key update's answer, within the exchange
                await self._fill(wire)
                continue
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""
            await self._flush(wire, asks=False)
            return data

    async def write(self, wire: Wire, data: bytes, *, asks: bool = True) -> None:
        self.obj.write(data)
        await self._flush(wire, asks=asks)

    def close_notify(self) -> bytes:
        """The close_notify alert to send before closing, as asyncio's transport sends it (b"" if none)."""
        # SSLWantReadError: ours is queued, the server's is not awaited; ValueError: the session never started
        with contextlib.suppress(ssl.SSLError, ValueError):
            self.obj.unwrap()
        return self._outgoing.read()

    async def _flush(self, wire: Wire, *, asks: bool) -> None:
        if self._outgoing.pending:
            await wire.send_raw(self._outgoing.read(), asks=asks)

    async def _fill(self, wire: Wire) -> None:
        data = await wire.recv_raw(_RECV)
        if data:
            self._incoming.write(data)
        else:
            self._incoming.write_eof()
