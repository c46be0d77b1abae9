"""probe-redis: the ``redis`` check type and the ``redis-command`` remediation action."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import probe

from probe_redis.action import RedisCommandAction
from probe_redis.check import RedisCheck

__all__ = ["RedisCheck", "RedisCommandAction"]


@probe.hookimpl
def register_checks(register: Callable[[type[probe.Check]], None]) -> None:
    register(RedisCheck)


@probe.hookimpl
def register_actions(register: Callable[[type[Any]], None]) -> None:
    register(RedisCommandAction)
