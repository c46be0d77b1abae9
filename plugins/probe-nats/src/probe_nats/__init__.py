"""probe-nats: the ``jetstream`` check type (a JetStream consumer's backlog)."""

from __future__ import annotations

from collections.abc import Callable

import probe

from probe_nats.check import JetStreamCheck

__all__ = ["JetStreamCheck"]


@probe.hookimpl
def register_checks(register: Callable[[type[probe.Check]], None]) -> None:
    register(JetStreamCheck)
