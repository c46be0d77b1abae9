"""Per-check state: soft/hard status, flap detection and staleness. Pure: no I/O, no clock of its own.

The rules (docs/scheduling.md has the operator's view):

- **Soft/hard**, as Nagios with Consul/Kubernetes-style counters. ``failure_threshold`` consecutive
  problems (WARNING, CRITICAL or UNKNOWN, in any mix) make the latest problem the hard status;
  ``success_threshold`` consecutive OKs clear it. An opposite result resets the other counter. While the
  hard status is a problem, a different problem (WARNING -> CRITICAL) is a hard change at once, as in Nagios.
  ``state_type`` is ``"soft"`` while the latest status has not (yet) been confirmed as the hard one.
- **Flapping**: Nagios' weighted algorithm over the last 21 statuses. Each of the 20 changes between
  consecutive samples weighs 0.75 (oldest) .. 1.25 (newest); the percent state change is the weighted sum
  over 20. Flapping starts at ``>= flap_high`` (30%) and stops below ``flap_low`` (20%) -- Nagios'
  defaults for services -- so it does not toggle around one value.
- **Staleness**: no result for ``2 * interval`` makes the check UNKNOWN (reason ``stale``), never OK,
  as a hard status at once: the two missed intervals are the confirmation.

Times are wall-clock epoch seconds, so a state saved before a restart still means something after it.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from probe.model import Result, Status

if TYPE_CHECKING:
    from probe.config.spec import CheckSpec

FLAP_SAMPLES = 21
FLAP_LOW = 0.20
FLAP_HIGH = 0.30
_LOW_WEIGHT, _HIGH_WEIGHT = 0.75, 1.25
STALE_INTERVALS = 2

_revisions = itertools.count()


@dataclass(frozen=True)
class Transition:
    """A change of status: ``soft`` (the latest result differs from the previous one, not yet confirmed)
    or ``hard`` (the confirmed status changed; remediation and alerts act on these)."""

    check: str
    kind: str  # "soft" | "hard"
    from_status: Status
    to_status: Status
    at: float
    reason: str = ""


def flap_percent(history: list[Status] | tuple[Status, ...] | deque[Status]) -> float:
    """Nagios' weighted percent state change (0..1) of up to 21 samples, oldest first.

    Missing samples (fewer than 21) count as no change, so a new check cannot flap on its first results.
    """
    samples = list(history)[-FLAP_SAMPLES:]
    changes = FLAP_SAMPLES - 1
    offset = FLAP_SAMPLES - len(samples)  # the oldest samples are missing: their changes are the light ones
    total = 0.0
    for i in range(1, len(samples)):
        if samples[i] != samples[i - 1]:
            position = offset + i - 1  # 0 = oldest change, 19 = newest
            total += _LOW_WEIGHT + position * (_HIGH_WEIGHT - _LOW_WEIGHT) / (changes - 1)
    return total / changes


class CheckState:
    """One check's state, owned by the scheduler loop (not thread-safe, and needs not be)."""

    def __init__(self, name: str, *, interval: float = 60.0, failure_threshold: int = 3, success_threshold: int = 1,
                 flap_low: float = FLAP_LOW, flap_high: float = FLAP_HIGH) -> None:
        if not 0.0 <= flap_low <= flap_high <= 1.0:
            raise ValueError(f"need 0 <= flap_low <= flap_high <= 1, got {flap_low} and {flap_high}")
        if failure_threshold < 1 or success_threshold < 1:
            raise ValueError("failure_threshold and success_threshold must be at least 1")
        self.name = name
        self.interval = interval
        self.failure_threshold = failure_threshold
        self.success_threshold = success_threshold
        self.flap_low = flap_low
        self.flap_high = flap_high
        self.status: Status | None = None
        self.hard_status: Status = Status.OK
        self.state_type = "hard"
        self.reason = ""
        self.failures = 0  # consecutive problems
        self.successes = 0  # consecutive OKs
        self.flapping = False
        self.flap_percent = 0.0
        self.history: deque[Status] = deque(maxlen=FLAP_SAMPLES)
        self.last_run: float | None = None
        self.last_seen: float | None = None
        """When the last result came, on the monotonic clock: staleness is judged on it, so a wall-clock jump
        makes no check stale (``last_run`` is the wall time, for people and the store)."""
        self.last_change: float | None = None  # last change of status, soft or hard
        self.last_hard_change: float | None = None
        self.revision = next(_revisions)
        """Changes whenever what a restart restores changes (see :meth:`_lasting`); unique across all states, so
        a saved revision never matches another state object. The state store saves on a new revision only."""

    @classmethod
    def for_spec(cls, spec: CheckSpec, *, flap_low: float = FLAP_LOW, flap_high: float = FLAP_HIGH) -> CheckState:
        """A fresh state with the spec's interval and thresholds."""
        state = cls(spec.name, flap_low=flap_low, flap_high=flap_high)
        state.configure(spec)
        return state

    def configure(self, spec: CheckSpec) -> None:
        """Take the interval and thresholds of ``spec``; the counters are kept."""
        before = self._lasting()
        self.interval = float(spec.interval)
        self.failure_threshold = int(spec.failure_threshold)
        self.success_threshold = int(spec.success_threshold)
        if self._lasting() != before:
            self.revision = next(_revisions)

    @property
    def problem(self) -> bool:
        """The hard status is not OK."""
        return self.hard_status is not Status.OK

    @property
    def soft_problem(self) -> bool:
        """A problem seen but not yet confirmed: the scheduler re-checks at ``retry_interval``."""
        return self.state_type == "soft" and self.status is not None and self.status is not Status.OK

    def update(self, result: Result, now: float, *, seen: float | None = None) -> Transition | None:
        """Take one result; return the transition it caused, if any (a hard one wins over a soft one).
        ``now`` is the wall time; ``seen`` the monotonic one (``now`` when not given, as in tests)."""
        status = result.status
        previous, previous_hard = self.status, self.hard_status
        lasting = self._lasting()
        if status is Status.OK:
            self.successes, self.failures = self.successes + 1, 0
        else:
            self.failures, self.successes = self.failures + 1, 0
        self.status, self.reason, self.last_run = status, result.reason, now
        self.last_seen = now if seen is None else seen
        # A full window of this very status stays the same: so do the percent change and the saved history.
        steady = len(self.history) == FLAP_SAMPLES and self.history.count(status) == FLAP_SAMPLES
        self.history.append(status)
        if not steady:
            self.flap_percent = flap_percent(self.history)
        self._update_flapping()
        if status is Status.OK:
            if self.successes >= self.success_threshold:
                self.hard_status = Status.OK
        elif self.failures >= self.failure_threshold or previous_hard is not Status.OK:
            # Confirmed, or already a hard problem: a different problem replaces it at once (Nagios).
            self.hard_status = status
        self.state_type = "hard" if status is self.hard_status else "soft"
        if status is not previous:
            self.last_change = now
        hard_change = self.hard_status is not previous_hard
        if hard_change:
            self.last_hard_change = now
        if not steady or self._lasting() != lasting:
            self.revision = next(_revisions)
        if hard_change:
            return Transition(self.name, "hard", previous_hard, self.hard_status, now, result.reason)
        before = previous if previous is not None else previous_hard  # a new check is presumed OK
        if status is not before:
            return Transition(self.name, "soft", before, status, now, result.reason)
        return None

    def _update_flapping(self) -> None:
        if not self.flapping and self.flap_percent >= self.flap_high:
            self.flapping = True
        elif self.flapping and self.flap_percent < self.flap_low:
            self.flapping = False

    def stale(self, now: float) -> bool:
        """No result for ``2 * interval`` (and not already marked stale); ``now`` on the clock ``update`` was
        given as ``seen`` (the agent's monotonic clock)."""
        if self.last_seen is None or self.reason == "stale":
            return False
        return now - self.last_seen > STALE_INTERVALS * self.interval

    def mark_stale(self, now: float) -> Transition | None:
        """Make the check UNKNOWN (reason ``stale``), hard at once. ``last_run`` is kept: it is when the
        last real result came. Returns the hard transition, if the hard status changed."""
        previous_hard = self.hard_status
        before = self._lasting()
        if self.status is not Status.UNKNOWN:
            self.last_change = now
        self.status, self.hard_status, self.state_type, self.reason = (
            Status.UNKNOWN, Status.UNKNOWN, "hard", "stale")
        self.failures, self.successes = max(self.failures, self.failure_threshold), 0
        if self._lasting() != before:
            self.revision = next(_revisions)
        if previous_hard is Status.UNKNOWN:
            return None
        self.last_hard_change = now
        return Transition(self.name, "hard", previous_hard, Status.UNKNOWN, now, "stale")

    def _lasting(self) -> tuple[object, ...]:
        """What a restart restores (:meth:`to_dict`) but the flap history: not ``last_run`` (a restarted agent
        counts staleness from its own start), and the consecutive counters only up to their thresholds (beyond,
        they decide nothing: :meth:`update` compares them with ``>=``)."""
        return (self.status, self.hard_status, self.state_type, self.reason,
                min(self.failures, self.failure_threshold), min(self.successes, self.success_threshold),
                self.flapping, self.last_change, self.last_hard_change, self.interval, self.failure_threshold,
                self.success_threshold)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly snapshot, for the state store."""
        return {
            "status": None if self.status is None else int(self.status),
            "hard_status": int(self.hard_status),
            "state_type": self.state_type,
            "reason": self.reason,
            "failures": self.failures,
            "successes": self.successes,
            "flapping": self.flapping,
            "flap_percent": self.flap_percent,
            "history": [int(s) for s in self.history],
            "last_run": self.last_run,
            "last_change": self.last_change,
            "last_hard_change": self.last_hard_change,
            "interval": self.interval,
            "failure_threshold": self.failure_threshold,
            "success_threshold": self.success_threshold,
        }

    @classmethod
    def from_dict(cls, name: str, data: Mapping[str, object]) -> CheckState:
        """Restore :meth:`to_dict`'s output. Unknown or malformed fields fall back to a fresh state's
        values rather than raising: a damaged store must not stop the agent."""
        state = cls(name)
        state.interval = _number(data.get("interval"), state.interval, positive=True)
        state.failure_threshold = int(_number(data.get("failure_threshold"), state.failure_threshold, positive=True))
        state.success_threshold = int(_number(data.get("success_threshold"), state.success_threshold, positive=True))
        state.status = _status(data.get("status"), None)
        state.hard_status = _status(data.get("hard_status"), Status.OK) or Status.OK
        state.state_type = "soft" if data.get("state_type") == "soft" else "hard"
        reason = data.get("reason")
        state.reason = reason if isinstance(reason, str) else ""
        state.failures = int(_number(data.get("failures"), 0))
        state.successes = int(_number(data.get("successes"), 0))
        history = data.get("history")
        if isinstance(history, list):
            state.history.extend(s for s in (_status(v, None) for v in history[-FLAP_SAMPLES:]) if s is not None)
        state.flap_percent = flap_percent(state.history)
        state.flapping = data.get("flapping") is True
        state.last_run = _optional_number(data.get("last_run"))
        state.last_change = _optional_number(data.get("last_change"))
        state.last_hard_change = _optional_number(data.get("last_hard_change"))
        return state

    def __repr__(self) -> str:
        status = self.status.name if self.status is not None else "PENDING"
        flap = " flapping" if self.flapping else ""
        return f"<CheckState {self.name!r} {status} hard={self.hard_status.name} {self.state_type}{flap}>"


def _status(value: object, default: Status | None) -> Status | None:
    if isinstance(value, int) and not isinstance(value, bool) and value in (0, 1, 2, 3):
        return Status(value)
    return default


def _number(value: object, default: float, *, positive: bool = False) -> float:
    found = _optional_number(value)
    return found if found is not None and (not positive or found > 0) else float(default)


def _optional_number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value == value:
        return float(value)
    return None
