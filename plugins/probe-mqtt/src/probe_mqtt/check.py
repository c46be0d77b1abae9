"""mqtt: connect, subscribe to a fresh topic, publish to it, and time the message coming back.

This is the path every real client takes through the broker (auth, subscription matching, delivery),
so a broker that accepts connections but no longer routes messages is caught. The check drives the
paho client's network loop itself, in the worker thread the core gives a sync check, and stops at the
deadline on its own: no background thread is left behind.
"""

from __future__ import annotations

import secrets
import time
from typing import Any, Literal

import probe
from pydantic import Field

_CONNACK_REASONS = {
    "Bad user name or password": "auth_failed",
    "Not authorized": "auth_failed",
}


class MqttOptions(probe.Options):
    host: str = "127.0.0.1"
    """Broker host name or address."""
    port: int = Field(1883, ge=1, le=65535)
    """Broker port (1883 plain, 8883 usually TLS)."""
    tls: bool = False
    """Connect with TLS, verifying the broker's certificate."""
    ca_file: str | None = None
    """CA bundle for TLS (default: the system's)."""
    username: str | None = None
    """User name, when the broker requires one."""
    password: str | None = None
    """Password; write ``${file:/run/secrets/mqtt}``, never inline (it is redacted everywhere)."""
    topic_prefix: str = "probe/roundtrip"
    """The check publishes to ``<topic_prefix>/<random>``; the user needs publish and subscribe rights there."""
    qos: Literal[0, 1, 2] = 1
    """QoS of the subscription and the message."""
    protocol: Literal["3.1.1", "5"] = "3.1.1"
    """MQTT protocol version."""


class MqttCheck(probe.Check[MqttOptions]):
    """Publish/subscribe round trip through an MQTT broker."""

    type = "mqtt"
    measurements = frozenset({"duration", "connect", "subscribe", "round_trip"})

    def run(self, ctx: probe.Context) -> probe.Result:
        return _RoundTrip(self.options, ctx).run()


class _RoundTrip:
    def __init__(self, options: Any, ctx: probe.Context) -> None:
        self.o = options
        self.ctx = ctx
        self.topic = f"{options.topic_prefix.rstrip('/')}/{secrets.token_hex(8)}"
        self.payload = secrets.token_bytes(16)
        self.connack: Any = None
        self.subscribed = False
        self.received: float | None = None
        self.disconnected: str | None = None

    def run(self) -> probe.Result:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        protocol = mqtt.MQTTv5 if self.o.protocol == "5" else mqtt.MQTTv311
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"probe-{secrets.token_hex(6)}",
                             protocol=protocol)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        if self.o.username is not None:
            client.username_pw_set(self.o.username, self.o.password)
        if self.o.tls:
            client.tls_set(ca_certs=self.o.ca_file)
        # The TCP connect blocks this thread: bound it by the deadline so the thread ends with the run.
        client.connect_timeout = max(self.ctx.remaining(), 0.001)
        target = f"{self.o.host}:{self.o.port}"
        started = time.perf_counter()
        try:
            client.connect(self.o.host, self.o.port, keepalive=max(5, int(self.ctx.remaining()) + 5))
            return self._exchange(client, target, started)
        except ConnectionRefusedError:
            return probe.Result.critical(f"{target}: connection refused", reason="connection_refused")
        except OSError as exc:
            return probe.Result.critical(f"{target}: {exc.strerror or exc}", reason="connection_failed")
        finally:
            client.disconnect()

    def _exchange(self, client: Any, target: str, started: float) -> probe.Result:
        if not self._loop_until(client, lambda: self.connack is not None):
            return self._stalled(target, "no CONNACK")
        if self.connack.is_failure:
            text = str(self.connack)
            return probe.Result.critical(f"{target}: broker refused the connection: {text}",
                                         reason=_CONNACK_REASONS.get(text, "connection_rejected"))
        connected = time.perf_counter()
        client.subscribe(self.topic, qos=self.o.qos)
        if not self._loop_until(client, lambda: self.subscribed):
            return self._stalled(target, "no SUBACK")
        subscribed = time.perf_counter()
        client.publish(self.topic, self.payload, qos=self.o.qos)
        if not self._loop_until(client, lambda: self.received is not None):
            return self._stalled(target, f"message published to {self.topic} never came back", "no_message")
        assert self.received is not None
        m = (probe.Measurement("connect", connected - started, "s"),
             probe.Measurement("subscribe", subscribed - connected, "s"),
             probe.Measurement("round_trip", self.received - subscribed, "s"))
        return probe.Result.ok(f"{target}: round trip in {(self.received - subscribed) * 1000:.1f}ms "
                               f"(QoS {self.o.qos})", *m, details={"topic": self.topic})

    def _loop_until(self, client: Any, done: Any) -> bool:
        # Until the soft deadline, not the core's own: the result (and the DISCONNECT after it) must be handed
        # in before the core ends the run, or the run reads "no result within" instead of what was missing.
        end = self.ctx.soft_deadline()
        while not done():
            if self.disconnected is not None:
                return False
            left = end - time.monotonic()
            if left <= 0:
                return False
            client.loop(timeout=min(0.1, left))
        return True

    def _stalled(self, target: str, what: str, reason: str = "timeout") -> probe.Result:
        if self.disconnected is not None:
            return probe.Result.critical(f"{target}: {self.disconnected}; {what}", reason="disconnected")
        return probe.Result.critical(f"{target}: {what} before the deadline", reason=reason)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self.connack = reason

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reasons: Any, properties: Any) -> None:
        if all(not r.is_failure for r in reasons):
            self.subscribed = True
        else:
            self.disconnected = f"broker refused the subscription ({', '.join(str(r) for r in reasons)})"

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        if message.topic == self.topic and message.payload == self.payload:
            self.received = time.perf_counter()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if self.connack is not None and self.received is None:
            self.disconnected = f"broker closed the connection ({reason})"
