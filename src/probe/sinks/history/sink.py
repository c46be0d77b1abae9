"""The history sink: every result (with the hard status and state type), every transition, and each check's
state (with its remediation budgets) go to the store; :func:`saved_states` reads them back at start."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from probe.config.spec import CheckSpec
from probe.engine.interfaces import Outcome, StateView, TransitionView
from probe.sinks.guard import Guard
from probe.sinks.history.reader import HistoryReader
from probe.sinks.history.store import Health, HistoryStore
from probe.sinks.remediation.remediator import Remediator

log = logging.getLogger("probe.sinks")

REMEDIATION_KEY = "remediation"
"""Where the remediation budgets live inside a saved check state."""


class HistorySink:
    """Every result (with the hard status and state type), every transition, and the check's state.

    ``capacities`` maps a check type to its capacity measurements (``Check.capacities``); their values are
    also kept as samples, which seed the forecaster after a restart. ``budgets`` returns a check's
    remediation budgets, saved inside its state so a restart never re-fires an action that is cooling down.
    """

    def __init__(self, store: HistoryStore, *, capacities: Mapping[str, Mapping[str, str]] | None = None,
                 budgets: Callable[[str], Mapping[str, Any]] | None = None) -> None:
        self.store = store
        self.capacities = {} if capacities is None else capacities  # may resolve types lazily: no copy
        self.budgets = budgets
        self._guard = Guard("history sink")
        self._saved: dict[str, tuple[int, dict[str, Any] | None]] = {}  # (revision, budgets) last saved, by check
        self._samples: dict[str, tuple[CheckSpec, tuple[str, ...]]] = {}  # see _samples_of

    def record(self, outcome: Outcome, state: StateView | None = None,
               transition: TransitionView | None = None) -> None:
        try:
            self._record(outcome, state, transition)
        except Exception as exc:  # the store itself never raises; a sink never raises either
            self._guard.failed(exc)

    def _record(self, outcome: Outcome, state: StateView | None, transition: TransitionView | None) -> None:
        spec, r = outcome.spec, outcome.result
        self.store.record_result(
            outcome.started, spec.name, spec.type, int(r.status), duration=outcome.duration, reason=r.reason,
            summary=r.summary, hard_status=None if state is None else int(state.hard_status),
            state_type=None if state is None else state.state_type,
            measurements={m.name: m.value for m in r.measurements}, samples=self._samples_of(spec),
            maintenance=outcome.marks.maintenance, silenced=outcome.marks.silenced,
            suppressed_by=outcome.marks.suppressed_by)
        if transition is not None:
            self.store.record_transition(transition.at, spec.name, transition.kind, int(transition.from_status),
                                         int(transition.to_status), r.summary)
        if state is not None:
            self.save_state(spec.name, state, unless_unchanged=True)

    def _samples_of(self, spec: CheckSpec) -> tuple[str, ...]:
        """The capacity measurements of ``spec``'s type, looked up once per check (per spec object: a reload
        makes new ones) rather than once per run."""
        known = self._samples.get(spec.name)
        if known is None or known[0] is not spec:
            known = self._samples[spec.name] = (spec, tuple(self.capacities.get(spec.type, {})))
        return known[1]

    def save_state(self, name: str, state: StateView, *, unless_unchanged: bool = False) -> None:
        """Save ``state`` with the check's remediation budgets; with ``unless_unchanged``, only when what a
        restart restores differs from what was saved last: a new ``state.revision``, or other budgets (a steady
        check's state is the same run after run: serialising it every run just to compare was a fifth of the
        history sink's cost)."""
        try:
            budgets = None if self.budgets is None else dict(self.budgets(name))
            saved = (state.revision, budgets)
            if unless_unchanged and self._saved.get(name) == saved:
                return
            data = dict(state.to_dict())
            if budgets is not None:
                data[REMEDIATION_KEY] = budgets
            self._saved[name] = saved
            self.store.save_state(name, data)
        except Exception as exc:
            self._guard.failed(exc)

    def forget(self, keep: Iterable[str]) -> None:
        names = set(keep)
        for name in [n for n in self._saved if n not in names]:
            del self._saved[name]
        for name in [n for n in self._samples if n not in names]:
            del self._samples[name]

    def health(self) -> Health:
        return self.store.health()

    async def aclose(self) -> None:
        await asyncio.to_thread(self.store.close)


def saved_states(reader: HistoryReader, names: Iterable[str],
                 remediator: Remediator | None = None) -> dict[str, dict[str, Any]]:
    """The saved state of each of ``names`` that has one (for ``CheckState.from_dict``), with the
    remediation budgets handed to ``remediator``. An unreadable store means no saved state (logged)."""
    wanted = set(names)
    try:
        saved = {name: dict(data) for name, (_, data) in reader.states().items() if name in wanted}
    except Exception as exc:  # a corrupt or missing store must not stop the agent from starting
        log.warning("cannot restore check state from %s: %s", reader.path, exc)
        return {}
    for name, data in saved.items():
        budgets = data.pop(REMEDIATION_KEY, None)
        if remediator is not None and isinstance(budgets, Mapping):
            remediator.restore_budgets(name, budgets)
    return saved
