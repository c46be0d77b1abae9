"""Which results alert and remediate nothing: maintenance windows, silences and down parents.

The agent asks :meth:`Muting.marks` for every result after updating its state. The check still ran and its
result is still recorded, with the marks (docs/maintenance.md):

- **maintenance**: a window from probe.yaml (``cron`` + ``duration`` in a ``timezone``) is open and covers
  the check (by name, by labels, or every check when it names neither);
- **silenced**: a silence from the state store (``probe silence add``) covers it;
- **suppressed_by**: the result is a problem while a ``depends_on`` parent is down (hard non-OK, or its latest
  result a problem not yet confirmed).

Pure but for the clock it is handed: tests drive the windows with any time they like.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import TYPE_CHECKING

from probe.config.incidents import MaintenanceWindow, zone
from probe.config.spec import CheckSpec
from probe.engine.interfaces import NO_MARKS, Marks, Silences
from probe.model import Status

if TYPE_CHECKING:
    from probe.engine.state import CheckState


@dataclass
class Window:
    """One maintenance window, with its latest opening cached (cron arithmetic is not free)."""

    config: MaintenanceWindow
    _zone: tzinfo | None = None
    _open: tuple[float, float] | None = None  # (opened, closes) of the latest opening found, epoch seconds
    _next: float | None = None  # the opening after it: until then, ``_open`` stays the latest

    def __post_init__(self) -> None:
        self._zone = zone(self.config.timezone) if self.config.timezone else None  # type: ignore[assignment]

    def covers(self, spec: CheckSpec) -> bool:
        window = self.config
        if window.checks and spec.name not in window.checks:
            return False
        return all(spec.labels.get(k) == v for k, v in window.labels.items())

    def is_open(self, now: float) -> bool:
        if self._open is None or self._next is None or not self._open[0] <= now < self._next:
            self._find(now)
        return self._open is not None and self._open[0] <= now < self._open[1]

    def closes(self, now: float) -> float | None:
        """When the window open at ``now`` closes (None when it is not open)."""
        return self._open[1] if self.is_open(now) and self._open is not None else None

    def _find(self, now: float) -> None:
        from cronsim import CronSim

        local = datetime.fromtimestamp(now, self._zone).replace(tzinfo=self._zone)
        if self._zone is None:
            local = local.astimezone()  # the host's zone, with its current offset
        start = local + timedelta(seconds=1)  # cronsim's reverse includes the start: a window opening now
        try:
            opened = next(CronSim(self.config.cron, start.replace(microsecond=0), reverse=True)).timestamp()
        except StopIteration:
            opened = None
        try:
            following = next(CronSim(self.config.cron, local.replace(microsecond=0))).timestamp()
        except StopIteration:
            following = float("inf")
        if following <= now:  # cronsim includes a start on a matching second in neither direction the same
            following = now + 1
        self._open = None if opened is None else (opened, opened + self.config.duration)
        self._next = following


def _down(state: CheckState) -> bool:
    """A parent is down when its hard status is a problem, or its latest result is one that is not confirmed yet:
    a parent and a child failing together must not race to decide who alerts."""
    return state.problem or (state.status is not None and state.status is not Status.OK)


@dataclass
class Muting:
    """Marks for a result. ``windows`` come from probe.yaml (replaced on reload); ``silences`` from the store."""

    windows: Sequence[Window] = ()
    silences: Silences | None = None
    clock: Callable[[], float] | None = None
    _by_name: dict[str, Window] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, windows: Sequence[MaintenanceWindow], silences: Silences | None = None,
                      clock: Callable[[], float] | None = None) -> Muting:
        return cls([Window(w) for w in windows], silences, clock)

    def marks(self, spec: CheckSpec, status: Status, states: Mapping[str, CheckState], now: float) -> Marks:
        maintenance = ""
        if self.windows:  # every result comes here, and most agents have no window: no generator then
            maintenance = next((w.config.name for w in self.windows if w.covers(spec) and w.is_open(now)), "")
        silenced = self.silences.matching(spec, now) if self.silences is not None else ""
        parent = ""
        if status is not Status.OK:
            parent = next((p for p in spec.depends_on if (s := states.get(p)) is not None and _down(s)), "")
        if not (maintenance or silenced or parent):
            return NO_MARKS
        return Marks(maintenance, silenced, parent)

    def open_windows(self, now: float) -> list[tuple[str, float]]:
        """(name, closes) of every window open at ``now``: for ``probe status``."""
        return [(w.config.name, closes) for w in self.windows if (closes := w.closes(now)) is not None]
