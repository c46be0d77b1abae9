"""One place that opens a client, so the check and the action agree on URL, password and timeouts."""

from __future__ import annotations

from typing import Any

import probe
from pydantic import field_validator


class ConnectionOptions(probe.Options):
    url: str = "redis://127.0.0.1:6379/0"
    """Server URL: ``redis://host:port/db``, ``rediss://`` for TLS, or ``unix:///path/redis.sock``.
    Put the password in ``password``, not in the URL, so it is redacted everywhere."""
    username: str | None = None
    """ACL user name (Redis 6+); unset means the default user."""
    password: str | None = None
    """Password; write it as ``${file:/run/secrets/redis}`` or ``${REDIS_PASSWORD}``, never inline."""

    @field_validator("url")
    @classmethod
    def _scheme(cls, url: str) -> str:
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"must start with redis://, rediss:// or unix://, got {url.split(':', 1)[0]!r}")
        return url


def client(options: ConnectionOptions, timeout: float) -> Any:
    import redis.asyncio  # imported here: probe's start-up stays fast when no redis check runs

    return redis.asyncio.from_url(
        options.url, username=options.username, password=options.password,
        socket_timeout=max(timeout, 0.001), socket_connect_timeout=max(timeout, 0.001),
        decode_responses=True, retry_on_timeout=False,
    )


def where(url: str) -> str:
    """host:port (or the socket path) for summaries; never user info from the URL."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    return f"{parts.hostname or '127.0.0.1'}:{parts.port or 6379}"


def failure(exc: BaseException, url: str) -> probe.Result:
    """A connection-level error as a Result with a machine reason (telegraf-style)."""
    import redis.exceptions as rx

    target = where(url)
    if isinstance(exc, rx.AuthenticationError | rx.AuthorizationError) or "NOAUTH" in str(exc) \
            or "WRONGPASS" in str(exc):
        return probe.Result.critical(f"{target}: authentication failed", reason="auth_failed")
    if isinstance(exc, rx.TimeoutError | TimeoutError):
        return probe.Result.critical(f"{target}: timed out", reason="timeout")
    if isinstance(exc, rx.ConnectionError | OSError):
        if _refused(exc):
            return probe.Result.critical(f"{target}: connection refused", reason="connection_refused")
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return probe.Result.critical(f"{target}: {text}", reason="connection_failed")
    if isinstance(exc, rx.ResponseError):
        return probe.Result.critical(f"{target}: server error: {exc}", reason="server_error")
    raise exc


def _refused(exc: BaseException | None) -> bool:
    import errno

    while exc is not None:
        if isinstance(exc, ConnectionRefusedError) or getattr(exc, "errno", None) == errno.ECONNREFUSED \
                or f"Error {errno.ECONNREFUSED} " in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False
