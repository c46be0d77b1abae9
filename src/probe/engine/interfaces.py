"""The seams between the engine and everything downstream of it.

- :class:`Outcome` -- one run of one check, as the engine hands it on (to sinks, formats and ``--once``).
- :class:`Sink` -- anything with ``record(outcome, state, transition)`` (fast, never raises) and
  ``async aclose()`` (flush on exit): metrics, history, remediation, the log.
- :class:`Marks` -- why a result alerts and remediates nothing: a maintenance window, a silence, a parent
  check that is down (``depends_on``). The result is still recorded, with its marks.
- :class:`Silences` -- where the agent learns of silences (``probe silence add``); the daemon wires the store.
- :class:`Lifecycle` -- ``ready``, ``reloading``, ``reloaded(ok)``, ``stopping``, ``tick(now)``; this base
  does nothing, ``probe.daemon.systemd`` turns it into sd_notify messages. ``tick`` is called by the scheduler
  loop itself on every iteration (at least once a second), so a stalled loop stops the watchdog pings.

Sinks import this module and nothing else of the engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from probe.config.spec import CheckSpec
from probe.config.thresholds import Verdict
from probe.model import Result, Status

if TYPE_CHECKING:
    from probe.engine.state import CheckState, Transition


@dataclass(frozen=True)
class Marks:
    """Why a result is muted: no alert, no remediation. Empty strings when not."""

    maintenance: str = ""  # the maintenance window's name
    silenced: str = ""  # the silence's id
    suppressed_by: str = ""  # the parent check that is hard non-OK

    @property
    def muted(self) -> bool:
        return bool(self.maintenance or self.silenced or self.suppressed_by)

    def describe(self) -> str:
        """``maintenance sunday-patching``, ``silenced 3f2a``, ``suppressed by db``; several joined by ", "."""
        parts = [f"maintenance {self.maintenance}" if self.maintenance else "",
                 f"silenced {self.silenced}" if self.silenced else "",
                 f"suppressed by {self.suppressed_by}" if self.suppressed_by else ""]
        return ", ".join(p for p in parts if p)


NO_MARKS = Marks()


@dataclass(frozen=True)
class Outcome:
    """One run of one check: the final result (after thresholds) and how it was reached."""

    spec: CheckSpec
    result: Result
    started: float  # wall clock, epoch seconds
    duration: float  # seconds, monotonic
    verdicts: tuple[Verdict, ...] = ()
    plugin_result: Result | None = None
    marks: Marks = NO_MARKS

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def status(self) -> Status:
        return self.result.status



class Silences(Protocol):
    def matching(self, spec: CheckSpec, now: float) -> str:
        """The id of an active silence covering ``spec`` at ``now`` (epoch seconds), or ``""``. Fast: it is
        called on the loop for every result (the store is read elsewhere)."""
        ...


class Sink(Protocol):
    def record(self, outcome: Outcome, state: CheckState, transition: Transition | None) -> None: ...

    async def aclose(self) -> None: ...


class Lifecycle:
    """Hooks on the agent's life; this base does nothing (see ``probe.daemon.systemd``)."""

    wake_interval: float | None = None
    """Longest the loop may go between ``tick`` calls, when it must be shorter than a second (watchdog)."""

    def ready(self) -> None:
        """Every check is scheduled and the loop is running."""

    def reloading(self) -> None:
        """SIGHUP received; the new config is being loaded."""

    def reloaded(self, ok: bool) -> None:
        """The reload finished: applied (``ok``) or rejected (the old config keeps running)."""

    def stopping(self) -> None:
        """SIGTERM/SIGINT received; in-flight checks are finishing."""

    def tick(self, now: float) -> None:
        """One iteration of the scheduler loop (``now`` on the monotonic clock)."""


