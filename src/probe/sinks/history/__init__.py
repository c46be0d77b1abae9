"""The history store: results, transitions, remediation audit and check state in SQLite.

Writes never happen on the event loop: ``record_*`` only appends to a queue, and one writer thread
commits batches. A full disk, a locked or a corrupt database never stops the checks: the writer keeps
what it could not write in memory (bounded, oldest dropped first and counted), reports itself unhealthy
through ``health()`` (a self-metric), and retries until it can write again.
"""

from probe.sinks.history.reader import HistoryReader, RemediationRow, ResultRow, TransitionRow
from probe.sinks.history.schema import (
    DB_NAME,
    MIGRATIONS,
    SCHEMA_VERSION,
    HistoryError,
    connect,
    default_state_dir,
    migrate,
    prune,
)
from probe.sinks.history.store import Health, HistoryStore

__all__ = ["DB_NAME", "MIGRATIONS", "SCHEMA_VERSION", "Health", "HistoryError", "HistoryReader", "HistoryStore",
           "RemediationRow", "ResultRow", "TransitionRow", "connect", "default_state_dir", "migrate", "prune"]
