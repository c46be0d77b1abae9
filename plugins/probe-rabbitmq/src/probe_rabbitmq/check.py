"""rabbitmq: how many messages wait in one queue, and how many consumers drain it, over plain AMQP.

A passive ``queue.declare`` returns both counts without touching the queue, so the check needs no
management plugin and only the ``configure``-free read permission every consumer already has. A backlog
is a capacity: with ``capacity`` set, ``utilization`` is the fraction used and the core forecasts
``time_to_full`` from its history, as it does for disks.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import probe
from pydantic import Field

# pika logs every failed connection attempt at ERROR; the Result already says it, once.
logging.getLogger("pika").setLevel(logging.CRITICAL)


class RabbitmqOptions(probe.Options):
    queue: str = Field(min_length=1)
    """The queue to measure."""
    host: str = "127.0.0.1"
    """Broker host."""
    port: int = Field(5672, ge=1, le=65535)
    """AMQP port (5672, or 5671 with TLS)."""
    vhost: str = "/"
    """Virtual host of the queue."""
    username: str = "guest"
    """User name (RabbitMQ's default ``guest`` only works from localhost)."""
    password: str = "guest"
    """Password; write ``${file:/run/secrets/rabbitmq}``, never inline (it is redacted everywhere)."""
    tls: bool = False
    """Connect with TLS, verifying the broker's certificate."""
    capacity: int | None = Field(None, ge=1)
    """The most messages the queue should ever hold (its ``x-max-length``, or what the consumers can
    catch up with); enables the ``utilization`` ratio and the ``time_to_full`` forecast."""


class RabbitmqCheck(probe.Check[RabbitmqOptions]):
    """Messages ready in a queue and consumers attached to it."""

    type = "rabbitmq"
    measurements = frozenset({"duration", "connect", "messages", "consumers", "utilization", "time_to_full"})
    capacities = {"utilization": "time_to_full"}

    def run(self, ctx: probe.Context) -> probe.Result:
        import pika
        import pika.exceptions as px

        o = self.options
        target = f"{o.host}:{o.port}"
        budget = max(ctx.remaining(), 0.001)
        params = pika.ConnectionParameters(
            host=o.host, port=o.port, virtual_host=o.vhost,
            credentials=pika.PlainCredentials(o.username, o.password, erase_on_connect=True),
            ssl_options=pika.SSLOptions(_tls_context(), o.host) if o.tls else None,
            connection_attempts=1, socket_timeout=budget, stack_timeout=budget,
            blocked_connection_timeout=budget,
        )
        started = time.perf_counter()
        try:
            connection = pika.BlockingConnection(params)
        except px.ProbableAuthenticationError:
            return probe.Result.critical(f"{target}: authentication failed for {o.username!r}", reason="auth_failed")
        except px.ProbableAccessDeniedError:
            return probe.Result.critical(f"{target}: user {o.username!r} may not use vhost {o.vhost!r}",
                                         reason="access_denied")
        except px.AMQPConnectionError as exc:
            return _connection_failure(target, exc)
        connected = time.perf_counter() - started
        try:
            declared = connection.channel().queue_declare(o.queue, passive=True)
        except px.ChannelClosedByBroker as exc:
            if exc.reply_code == 404:
                return probe.Result.critical(f"queue {o.queue!r} does not exist in vhost {o.vhost!r}",
                                             reason="not_found")
            return probe.Result.critical(f"queue {o.queue!r}: {exc.reply_code} {exc.reply_text}",
                                         reason="access_denied" if exc.reply_code == 403 else "channel_error")
        finally:
            _close(connection)
        return self._result(declared.method.message_count, declared.method.consumer_count, connected)

    def _result(self, messages: int, consumers: int, connected: float) -> probe.Result:
        m = [probe.Measurement("connect", connected, "s"), probe.Measurement("messages", messages),
             probe.Measurement("consumers", consumers)]
        summary = f"queue {self.options.queue!r}: {messages} messages ready, {consumers} consumers"
        if self.options.capacity is not None:
            ratio = messages / self.options.capacity
            m.append(probe.Measurement("utilization", ratio, "1"))
            summary += f" ({ratio:.1%} of capacity {self.options.capacity})"
        return probe.Result.ok(summary, *m, details={"vhost": self.options.vhost})


def _connection_failure(target: str, exc: BaseException) -> probe.Result:
    # pika nests the socket error inside workflow errors; their text carries it reliably.
    text = repr(exc)
    if "refused" in text.lower():
        return probe.Result.critical(f"{target}: connection refused", reason="connection_refused")
    if "timeout" in text.lower() or "timed out" in text.lower():
        return probe.Result.critical(f"{target}: timed out", reason="timeout")
    detail = repr(exc.args[0]) if exc.args else type(exc).__name__
    return probe.Result.critical(f"{target}: {detail[:200]}", reason="connection_failed")


def _tls_context() -> Any:
    import ssl

    return ssl.create_default_context()


def _close(connection: Any) -> None:
    import pika.exceptions as px

    with contextlib.suppress(px.AMQPError):  # already closed by the broker; nothing left to release
        connection.close()
