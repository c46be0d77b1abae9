"""probe-rabbitmq: the ``rabbitmq`` check type (queue depth and consumers over AMQP 0-9-1)."""

from __future__ import annotations

from collections.abc import Callable

import probe

from probe_rabbitmq.check import RabbitmqCheck

__all__ = ["RabbitmqCheck"]


@probe.hookimpl
def register_checks(register: Callable[[type[probe.Check]], None]) -> None:
    register(RabbitmqCheck)
