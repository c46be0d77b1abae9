"""Loop-stall detector: names the check that blocks the event loop.

A plugin whose ``async def run`` calls blocking code (``time.sleep``, ``requests.get``, a synchronous
database driver) stops every other check, the watchdog pings and the metrics endpoint with it. The loop
bumps a heartbeat a few times a second; a watcher thread that sees no beat for ``threshold`` seconds reads
the loop thread's stack (``sys._current_frames()``), finds the plugin code on it and the check whose task
is running, and logs one WARNING per stall, naming them::

    level=warning logger=probe.stall msg="event loop blocked for 1.0s by check 'slow-api' in plugin module
    probe_local_plugins.slowapi (slowapi.py:21 in run); every check, the metrics endpoint and the systemd
    watchdog wait for it" check=slow-api module=probe_local_plugins.slowapi blocked=1.0

When the loop runs again it logs how long it was blocked in all. ``stalls`` counts stalls (a self-metric).
The fix for the plugin author is ``def run`` (the core runs it in a worker thread) or an async library.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import types
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("probe.stall")

THRESHOLD = 1.0
"""Seconds without a heartbeat after which the loop counts as blocked."""
TASK_PREFIX = "probe-check-"
"""Tasks that run a check are named ``probe-check-<check name>``."""

# The loop's own machinery and probe's core: never the one to blame while plugin code is on the stack.
_INFRASTRUCTURE = frozenset(sys.stdlib_module_names) | {"probe", "click", "pluggy", "_pytest", "pytest"}


@dataclass(frozen=True)
class Stall:
    """What the loop thread was doing once it had been blocked for ``blocked`` seconds."""

    blocked: float
    check: str | None  # the check whose task was running, from the task name
    module: str | None  # the plugin module on the stack (else the innermost non-stdlib one)
    where: str  # "file.py:LINE in function" of the innermost frame of ``module``
    stack: tuple[str, ...]  # innermost last, for --log-level debug

    def describe(self) -> str:
        culprit = f"check {self.check!r}" if self.check else "code outside any check"
        module = f" in plugin module {self.module}" if self.module else ""
        where = f" ({self.where})" if self.where else ""
        return f"{culprit}{module}{where}"


def _module(frame: types.FrameType) -> str:
    return str(frame.f_globals.get("__name__", "?"))


def _is_infrastructure(module: str) -> bool:
    top = module.partition(".")[0]
    if module.startswith("probe.checks."):
        return False  # built-in checks are plugins too
    return top in _INFRASTRUCTURE or module == "__main__"


def _where(frame: types.FrameType) -> str:
    filename = frame.f_code.co_filename.rsplit("/", 1)[-1]
    return f"{filename}:{frame.f_lineno} in {frame.f_code.co_name}"


def inspect_stack(frame: types.FrameType | None) -> tuple[str | None, str, tuple[str, ...]]:
    """(module to blame, where in it, the stack) for the loop thread's current ``frame``.

    The blame goes to the outermost frame that is not the event loop, the standard library or probe's
    core: that is the plugin's own code, even when it blocks deep inside a library it calls.
    """
    frames: list[types.FrameType] = []
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back
    frames.reverse()  # outermost first
    stack = tuple(f"{_module(f)} {_where(f)}" for f in frames)
    outside = [f for f in frames if not _is_infrastructure(_module(f))]
    if outside:
        module = _module(outside[0])
        innermost = [f for f in frames if _module(f) == module][-1]
        return module, _where(innermost), stack
    # Blocked in probe's core (a sink writing history...): the innermost probe frame, else the innermost one.
    core = [f for f in frames if _module(f).partition(".")[0] == "probe"] or frames
    if core:
        return _module(core[-1]), _where(core[-1]), stack
    return None, "", stack


class StallDetector:
    """Watches one event loop from a thread. Start it from the loop (``start``), stop it before the loop
    closes (``stop``); ``on_stall`` is called from the watcher thread once per stall."""

    def __init__(self, threshold: float = THRESHOLD, *, on_stall: Callable[[Stall], None] | None = None) -> None:
        if threshold <= 0:
            raise ValueError(f"stall threshold must be positive, got {threshold!r}")
        self.threshold = threshold
        self.on_stall = on_stall
        self.stalls = 0
        self.blocked_total = 0.0
        self._interval = threshold / 4
        self._beat = time.monotonic()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._handle: asyncio.TimerHandle | None = None
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Start watching ``loop`` (default: the running one); call it from the loop's thread."""
        self._loop = loop or asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._stopped.clear()
        self._heartbeat()
        self._thread = threading.Thread(target=self._watch, name="probe-stall-detector", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._thread = None

    def _heartbeat(self) -> None:
        self._beat = time.monotonic()
        if not self._stopped.is_set() and self._loop is not None:
            self._handle = self._loop.call_later(self._interval, self._heartbeat)

    def _watch(self) -> None:
        reported: Stall | None = None
        since = 0.0  # the last beat before the stall
        while not self._stopped.wait(self._interval):
            beat = self._beat
            silent = time.monotonic() - beat
            if silent <= self.threshold:
                if reported is not None:
                    # The next beat was due one interval after the last one; it came at ``beat``.
                    self._resumed(reported, max(reported.blocked, beat - since - self._interval))
                    reported = None
                continue
            if reported is None:
                since = beat
                reported = self._report(silent)

    def _report(self, blocked: float) -> Stall:
        frame = sys._current_frames().get(self._loop_thread)
        module, where, stack = inspect_stack(frame)
        stall = Stall(blocked, self._running_check(), module, where, stack)
        self.stalls += 1
        log.warning("event loop blocked for %.1fs by %s; every check, the metrics endpoint and the systemd "
                    "watchdog wait for it", blocked, stall.describe(),
                    extra={"check": stall.check, "plugin": stall.module, "blocked": round(blocked, 3)})
        log.debug("stack of the blocked event loop:\n  %s", "\n  ".join(stack))
        if self.on_stall is not None:
            try:
                self.on_stall(stall)
            except Exception:
                log.exception("stall callback failed")
        return stall

    def _resumed(self, stall: Stall, blocked: float) -> None:
        self.blocked_total += blocked
        log.info("event loop running again after %.1fs blocked by %s", blocked, stall.describe(),
                 extra={"check": stall.check, "plugin": stall.module, "blocked": round(blocked, 3)})

    def _running_check(self) -> str | None:
        if self._loop is None:
            return None
        try:
            task = asyncio.current_task(self._loop)  # a dict lookup; safe from another thread
        except RuntimeError:
            return None
        name = task.get_name() if task is not None else ""
        return name[len(TASK_PREFIX):] if name.startswith(TASK_PREFIX) else None
