"""What every sink shares: a ``record`` that never raises (a failure is logged once, then counted)."""

from __future__ import annotations

import logging

log = logging.getLogger("probe.sinks")


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
