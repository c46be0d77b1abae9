"""The seams between the engine and everything downstream of it.

- :class:`Outcome` -- one run of one check, as the engine hands it on (to sinks, ``--once`` and ``probe check``);
  :meth:`Outcome.public` is the stable :class:`~probe.model.CheckRun` that formats and ``probe.testing`` get.
- :class:`Sink` -- anything with ``record(outcome, state, transition)`` (fast, never raises) and
  ``async aclose()`` (flush on exit): metrics, history, remediation, the log. ``state`` and ``transition`` are
  read-only views (:class:`StateView`, :class:`TransitionView`) of the engine's own
  ``probe.engine.state`` objects, so a sink depends on this module only.
- :class:`Marks` -- why a result alerts and remediates nothing: a maintenance window, a silence, a parent
  check that is down (``depends_on``). The result is still recorded, with its marks.
- :class:`Silences` -- where the agent learns of silences (``probe silence add``); the daemon wires the store.
- :class:`Lifecycle` -- ``ready``, ``reloading``, ``reloaded(ok)``, ``stopping``, ``tick(now)``; this base
  does nothing, ``probe.daemon.systemd`` turns it into sd_notify messages. ``tick`` is called by the scheduler
  loop itself on every iteration (at least once a second), so a stalled loop stops the watchdog pings.

Sinks import this module and nothing else of the engine (tests/test_architecture.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple, Protocol

from probe.config.spec import CheckSpec
from probe.model import CheckRun, CheckStateView, Result, Status, Verdict

__all__ = ["NO_MARKS", "CheckStateView", "Lifecycle", "Marks", "Outcome", "Silences", "Sink", "StateView",
           "TransitionView"]


class Marks(NamedTuple):
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


class Outcome(NamedTuple):
    """One run of one check: the final result (after thresholds) and how it was reached. A record made for every
    run; ``outcome._replace(marks=...)`` for a changed copy."""

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

    def public(self) -> CheckRun:
        """The stable view of this run (no spec, no options): what formats and plugin tests are given."""
        labels: Mapping[str, str] = self.spec.labels
        return CheckRun(self.spec.name, self.spec.type, labels, self.result, self.started, self.duration,
                        self.verdicts, self.plugin_result, self.spec.runbook)


class StateView(CheckStateView, Protocol):
    """What a sink reads of a check's state: the public view, a JSON-friendly snapshot for the store, and the
    snapshot's ``revision``: a new one whenever what a restart restores of it changes (``CheckState.revision``)."""

    @property
    def revision(self) -> int: ...

    def to_dict(self) -> dict[str, Any]: ...


class TransitionView(Protocol):
    """A change of a check's status, read-only: ``kind`` is ``"soft"`` (seen, not yet confirmed) or
    ``"hard"`` (the confirmed status changed; remediation and alerts act on these)."""

    @property
    def kind(self) -> str: ...

    @property
    def from_status(self) -> Status: ...

    @property
    def to_status(self) -> Status: ...

    @property
    def at(self) -> float: ...


class Silences(Protocol):
    def matching(self, spec: CheckSpec, now: float) -> str:
        """The id of an active silence covering ``spec`` at ``now`` (epoch seconds), or ``""``. Fast: it is
        called on the loop for every result (the store is read elsewhere)."""
        ...


class Sink(Protocol):
    def record(self, outcome: Outcome, state: StateView | None, transition: TransitionView | None) -> None: ...

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
