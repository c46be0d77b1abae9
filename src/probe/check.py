"""The plugin contract: a Check subclass with a strict Options model and a run() method."""

from __future__ import annotations

import builtins
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Generic, TypeVar, get_args

from pydantic import BaseModel, ConfigDict

from probe.model import Ping, Result

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager


def soft_margin(left: float) -> float:
    """How long before its deadline ``Context.time_limit`` ends a check's block, with ``left`` seconds to go:
    5% of them, at most 50 ms."""
    return min(0.05, 0.05 * left)


class Options(BaseModel):
    """Base class for a check type's options: strict (unknown keys rejected) and frozen.

    Field docstrings and ``description=`` are the option reference, so every option a user can set is
    documented where it is declared; ``probe.plugins.optiondocs.option_docs`` reads them for the docs and their
    tests (read on demand, not copied into ``FieldInfo.description`` at every start).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Context:
    """What the core hands a check for one run.

    ``deadline`` is on the ``time.monotonic()`` clock; the core cancels the run there, so a check only
    needs it to size inner timeouts (``ctx.remaining()``).
    """

    name: str
    deadline: float
    logger: logging.Logger
    labels: Mapping[str, str] = field(default_factory=dict)
    pings: Callable[[float], Sequence[Ping]] | None = None
    """For passive checks: ``ctx.pings(since)`` returns the pings jobs sent for this check (``probe ping NAME``)
    since ``since`` (epoch seconds), oldest first. Blocking (it reads the state store): call it from a sync
    ``run``. ``None`` when no state store is available."""

    _limit: Callable[[], AbstractAsyncContextManager[object]] | None = field(default=None, repr=False, compare=False)
    """The core's own ``time_limit`` (the Runner's: no timer of the check's own)."""

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def soft_deadline(self) -> float:
        """Where :meth:`time_limit` ends: shortly before ``deadline`` (5% of what is left, at most 50 ms)."""
        return self.deadline - soft_margin(self.remaining())

    def time_limit(self) -> AbstractAsyncContextManager[object]:
        """``async with ctx.time_limit():`` raises ``TimeoutError`` inside the block at :meth:`soft_deadline`,
        before the core cancels the run, so an async check can say what it was doing when its time ran out
        ("timed out in the TLS handshake") instead of the core's bare "no result within 5s". Like
        ``asyncio.timeout_at(ctx.soft_deadline())``, which it is outside the Runner; under the Runner the run's
        own timer does it, with no timer of the check's."""
        if self._limit is not None:
            return self._limit()
        import asyncio  # an async check has it already; `probe --help` must not pay for it

        return asyncio.timeout_at(self.soft_deadline())


OptionsT = TypeVar("OptionsT", bound=Options)


class Check(Generic[OptionsT]):
    """Base class of every check type, built-in or third-party, generic over its options model.

    ``class RedisCheck(probe.Check[RedisOptions])`` declares the options (``Options`` is set from the type
    argument) and lets a type checker see ``self.options.url`` as a ``str`` and ``self.options.ulr`` as an
    error. A nested ``class Options(probe.Options)`` in an unparameterised ``probe.Check`` still works.

    Subclasses set ``type``, the names of the ``measurements`` they report (so a threshold on a measurement
    the type never reports is a config error; ``None`` means the names depend on the config, as for SQL
    columns), and implement ``run`` as ``async def`` or plain ``def`` (then it runs in a worker thread).
    """

    type: ClassVar[str] = ""
    Options: ClassVar[builtins.type[Options]] = Options
    measurements: ClassVar[frozenset[str] | None] = frozenset({"duration"})
    # Measurements the core forecasts (measurement -> name of the forecast, in seconds): a ratio (unit "1")
    # until it reaches 1.0, an amount left (seconds, bytes) until it reaches 0 (engine/forecast.py).
    capacities: ClassVar[Mapping[str, str]] = {}
    # The unit of each measurement, as its Measurement reports it: "s", "By", "1" (a ratio 0..1), or a count's
    # "{thing}" (OpenTelemetry's annotation: "{process}"). Known before any run, it lets the config refuse
    # ``warning: ">= 80"`` on a ratio (which can never reach 80) and gives every metric its name up front.
    units: ClassVar[Mapping[str, str]] = {"duration": "s"}
    # Modules the type imports when it runs (imported there, so a config that does not use the type never
    # pays for them), each with what to install when it is missing: ``{"websockets": "probe-monitor[websocket]"}``.
    # A missing one makes a config that names the type invalid, with that hint, and ``probe plugins`` shows it.
    requires: ClassVar[Mapping[str, str]] = {}
    # True for a type that reads only this host and is cheap (disk space, memory, a file, processes): the
    # agent starts its runs on whole seconds (or its interval or retry_interval, if shorter), with the other local
    # checks due that second, in one wake-up. A type with a peer (False) starts on a 50 ms grid spread by the
    # check's name, so checks of one target do not arrive at once (engine/scheduler.py).
    local: ClassVar[bool] = False

    def __init__(self, name: str, options: OptionsT) -> None:
        self.name = name
        self.options: OptionsT = options

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "Options" in cls.__dict__:
            return
        for base in cls.__dict__.get("__orig_bases__", ()):
            for arg in get_args(base):
                if isinstance(arg, builtins.type) and issubclass(arg, Options):
                    cls.Options = arg
                    return

    def run(self, ctx: Context) -> Result | Awaitable[Result]:
        raise NotImplementedError(f"{type(self).__name__} does not implement run()")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} type={self.type!r}>"
