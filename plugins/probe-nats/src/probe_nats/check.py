"""jetstream: how far a JetStream consumer is behind its stream, and how close it is to stalling.

``pending`` (messages in the stream the consumer has not yet been sent) is the backlog; ``ack_pending``
against the consumer's ``max_ack_pending`` is a capacity too: at the limit the server stops delivering.
"""

from __future__ import annotations

import time
from typing import Any

import probe
from pydantic import Field


class JetStreamOptions(probe.Options):
    url: str = "nats://127.0.0.1:4222"
    """Server URL (``nats://`` or ``tls://``), without credentials."""
    stream: str = Field(min_length=1)
    """The stream."""
    consumer: str = Field(min_length=1)
    """The durable consumer on that stream."""
    user: str | None = None
    """User name, when the server requires one."""
    password: str | None = None
    """Password; write ``${file:/run/secrets/nats}``, never inline (it is redacted everywhere)."""
    token: str | None = None
    """Auth token instead of user/password; also a secret."""
    capacity: int | None = Field(None, ge=1)
    """The most pending messages acceptable (what the consumer can catch up with); enables the
    ``utilization`` ratio and its ``time_to_full`` forecast."""


class JetStreamCheck(probe.Check[JetStreamOptions]):
    """Backlog and in-flight messages of one durable JetStream consumer."""

    type = "jetstream"
    measurements = frozenset({"duration", "connect", "pending", "ack_pending", "redelivered", "waiting",
                              "utilization", "time_to_full", "ack_pending_utilization"})
    capacities = {"utilization": "time_to_full"}

    async def run(self, ctx: probe.Context) -> probe.Result:
        import nats
        import nats.errors
        import nats.js.errors

        o = self.options
        seen: list[Exception] = []

        async def collect(exc: Exception) -> None:
            seen.append(exc)  # nats-py reports the real cause here and raises a generic NoServersError

        started = time.perf_counter()
        try:
            # max_reconnect_attempts=0 would mean "retry forever" on the first connect; 1 is one try.
            nc = await nats.connect(o.url, user=o.user, password=o.password, token=o.token,
                                    connect_timeout=max(ctx.remaining(), 0.001), allow_reconnect=False,
                                    max_reconnect_attempts=1, reconnect_time_wait=0, error_cb=collect,
                                    name="probe")
        except Exception as exc:  # nats-py raises a range of types for one failed connect
            return _connect_failure(o.url, seen[-1] if seen else exc)
        connected = time.perf_counter() - started
        try:
            info = await nc.jetstream(timeout=max(ctx.remaining(), 0.001)).consumer_info(o.stream, o.consumer)
        except nats.js.errors.NotFoundError as exc:
            return probe.Result.critical(f"{o.stream}/{o.consumer}: {exc.description or 'not found'}",
                                         reason="not_found")
        except nats.js.errors.ServiceUnavailableError:
            return probe.Result.critical("JetStream is not enabled on the server", reason="jetstream_unavailable")
        except nats.errors.NoRespondersError:
            return probe.Result.critical("JetStream is not enabled on the server", reason="jetstream_unavailable")
        finally:
            await nc.close()
        return self._result(info, connected)

    def _result(self, info: Any, connected: float) -> probe.Result:
        pending, acking = int(info.num_pending or 0), int(info.num_ack_pending or 0)
        m = [probe.Measurement("connect", connected, "s"), probe.Measurement("pending", pending),
             probe.Measurement("ack_pending", acking),
             probe.Measurement("redelivered", int(info.num_redelivered or 0)),
             probe.Measurement("waiting", int(info.num_waiting or 0))]
        summary = f"{self.options.stream}/{self.options.consumer}: {pending} pending, {acking} awaiting ack"
        if self.options.capacity is not None:
            m.append(probe.Measurement("utilization", pending / self.options.capacity, "1"))
            summary += f" ({pending / self.options.capacity:.1%} of capacity {self.options.capacity})"
        limit = getattr(info.config, "max_ack_pending", None)
        if limit and limit > 0:
            m.append(probe.Measurement("ack_pending_utilization", acking / limit, "1"))
        return probe.Result.ok(summary, *m, details={"stream": self.options.stream,
                                                     "consumer": self.options.consumer})


def _connect_failure(url: str, exc: BaseException) -> probe.Result:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    target = f"{parts.hostname}:{parts.port or 4222}"
    text = f"{type(exc).__name__}: {exc}"
    if "Authorization" in text or "authorization" in text:
        return probe.Result.critical(f"{target}: authorization failed", reason="auth_failed")
    if isinstance(exc, TimeoutError) or "timeout" in text.lower():
        return probe.Result.critical(f"{target}: timed out connecting", reason="timeout")
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError) or "refused" in str(cause).lower() \
                or type(cause).__name__ == "NoServersError":
            return probe.Result.critical(f"{target}: connection refused", reason="connection_refused")
        cause = cause.__cause__ or cause.__context__
    return probe.Result.critical(f"{target}: {text[:200]}", reason="connection_failed")
