"""probe-mqtt: the ``mqtt`` check type (publish/subscribe round trip through a broker)."""

from __future__ import annotations

from collections.abc import Callable

import probe

from probe_mqtt.check import MqttCheck

__all__ = ["MqttCheck"]


@probe.hookimpl
def register_checks(register: Callable[[type[probe.Check]], None]) -> None:
    register(MqttCheck)
