"""The daemon's log of state changes: a sink like the others, wired by ``probe.daemon.run``.

Its lines go to the ``probe.agent`` logger, the name operators filter on (docs/deployment.md), although the
sink lives here.
"""

from __future__ import annotations

import logging

from probe.engine.interfaces import Outcome, StateView, TransitionView
from probe.model import Status

log = logging.getLogger("probe.agent")


class LogSink:
    """Logs state changes: hard problems at WARNING, recoveries and soft changes at INFO."""

    def record(self, outcome: Outcome, state: StateView | None, transition: TransitionView | None) -> None:
        if log.isEnabledFor(logging.DEBUG):  # the arguments cost more than the call when it logs nothing
            log.debug("check %s: %s %s (%.3fs)", outcome.name, outcome.status.name, outcome.result.summary,
                      outcome.duration)
        if transition is None:
            return
        level = logging.WARNING if transition.kind == "hard" and transition.to_status is not Status.OK \
            else logging.INFO
        log.log(level, "check %s: %s %s -> %s: %s", outcome.name, transition.kind, transition.from_status.name,
                transition.to_status.name, outcome.result.summary)

    async def aclose(self) -> None:
        return None
