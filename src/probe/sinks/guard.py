"""What every sink shares: a ``record`` that never raises (a failure is logged once, then counted) and a
tolerant reading of the status fields of the state objects it is handed."""

from __future__ import annotations

import logging
from typing import Any

from probe.model import Status

log = logging.getLogger("probe.sinks")


def status_of(value: Any) -> Status | None:
    if value is None:
        return None
    try:
        return value if isinstance(value, Status) else Status(int(value))
    except (TypeError, ValueError):
        return None


class Guard:
    """Logs the first failure of a sink method (with its traceback at debug), counts the rest."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.failures = 0

    def failed(self, exc: BaseException) -> None:
        self.failures += 1
        if self.failures == 1:
            log.error("%s failed: %s: %s (further failures are counted, not logged)", self.what,
                      type(exc).__name__, exc)
        log.debug("%s failed", self.what, exc_info=exc)
