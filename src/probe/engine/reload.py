"""What a reload (SIGHUP) needs besides the agent's own state: loading the configuration off the loop with a
time limit, the settings a reload cannot change, and how a rejected configuration is reported.

``Agent.apply`` switches to what was loaded; everything here works without an agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import threading
from collections.abc import Callable

from probe.config.load import ConfigErrors, Plan
from probe.config.spec import CheckSpec
from probe.plugins.manager import Registry
from probe.units import format_duration

log = logging.getLogger("probe.agent")

RELOAD_TIMEOUT = 30.0
"""Longest a reload may take to read and validate the configuration before it is abandoned."""

# Agent settings read once, when the agent is wired (probe.daemon.wiring): a reload cannot change them. The rest
# apply on reload: plugins and strict_modes when the config is loaded, max_concurrency and shutdown_grace
# where the agent reads them.
WIRED_AT_START = ("state_dir", "telemetry", "history", "remediation", "forecast", "alerting", "pings")

ReloadFn = Callable[[], tuple[Plan, Registry]]


class ReloadStuck(Exception):
    """A reload did not finish in time, or an earlier one still has not."""


class ConfigLoader:
    """Runs ``load()`` (read and validate the configuration) in a daemon thread, for at most ``timeout``.

    A load stuck in a read (a file on a hung network mount) is abandoned: it cannot hold the loop, a later
    reload or the exit (a daemon thread; ``asyncio.to_thread``'s pool is joined at exit), and later loads are
    refused while it is stuck rather than piling up threads behind it."""

    def __init__(self, load: ReloadFn, timeout: float = RELOAD_TIMEOUT) -> None:
        self.load = load
        self.timeout = timeout
        self._stuck: threading.Thread | None = None

    async def __call__(self) -> tuple[Plan, Registry]:
        stuck = self._stuck
        if stuck is not None and stuck.is_alive():
            raise ReloadStuck("an earlier reload is still stuck loading the configuration; fix what blocks it "
                              "(a file that never finishes reading) and restart the agent")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[Plan, Registry]] = loop.create_future()

        def settle(outcome: Callable[[], None]) -> None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits any more
                loop.call_soon_threadsafe(lambda: None if future.done() else outcome())

        def work() -> None:
            try:
                value = self.load()
            except BaseException as exc:
                settle(functools.partial(future.set_exception, exc))
            else:
                settle(functools.partial(future.set_result, value))

        future.add_done_callback(_retrieve)  # an abandoned load that fails later: nobody awaits it any more
        thread = threading.Thread(target=work, name="probe-reload", daemon=True)
        thread.start()
        try:
            return await asyncio.wait_for(asyncio.shield(future), self.timeout)
        except TimeoutError:
            self._stuck = thread
            raise ReloadStuck(f"the configuration did not load within {format_duration(self.timeout)}; "
                              "the reload is abandoned") from None


def rejected(exc: Exception) -> tuple[str, int]:
    """Log why a configuration was rejected; return the one-line summary and the number of errors."""
    if isinstance(exc, ConfigErrors):
        for error in exc.errors:
            log.error("%s", error)
        count = len(exc.errors)
        return f"{count} configuration error{'s' if count != 1 else ''}", count
    log.debug("reload failed", exc_info=exc)
    return f"{type(exc).__name__}: {exc}".splitlines()[0], 1


def keep_wired_settings(running: Plan, plan: Plan) -> Plan:
    """``plan`` with the running values of the settings a reload cannot change (``WIRED_AT_START``), and a
    warning naming those it changed."""
    before, after = running.settings, plan.settings
    pending = [name for name in WIRED_AT_START if getattr(before, name) != getattr(after, name)]
    if not pending:
        return plan
    log.warning("reload: %s changed in the agent settings; the running agent keeps the previous values "
                "until it is restarted", ", ".join(pending))
    kept = after.model_copy(update={name: getattr(before, name) for name in pending})
    return plan._replace(settings=kept)


def same_check(a: CheckSpec, b: CheckSpec) -> bool:
    """The same definition, wherever in its file it sits."""
    return a == dataclasses.replace(b, location=a.location)


def _retrieve(future: asyncio.Future[tuple[Plan, Registry]]) -> None:
    if not future.cancelled():
        future.exception()
