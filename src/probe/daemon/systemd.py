"""The systemd notify protocol, spoken directly (no libsystemd): readiness, reload, stop and watchdog.

systemd passes ``$NOTIFY_SOCKET`` (a path, or ``@name`` in the abstract namespace) to a ``Type=notify``
service; each message is one datagram of ``KEY=VALUE`` lines. ``$WATCHDOG_USEC`` (with ``$WATCHDOG_PID``
naming the process it is meant for) asks for ``WATCHDOG=1`` at least that often; like sd_watchdog_enabled()
we ping at half the interval. The pings come from :meth:`SystemdLifecycle.tick`, which the scheduler loop
calls on every iteration: a loop that stalls stops pinging, and systemd restarts the service.

Outside systemd (no ``$NOTIFY_SOCKET``) every call is a cheap no-op. Sending never raises: a daemon must not
die because its supervisor went away.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping, MutableMapping

from probe.engine.interfaces import Lifecycle

log = logging.getLogger("probe.systemd")

NOTIFY_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
SEND_TIMEOUT = 0.5
"""Seconds a notification may wait for room in a full socket buffer before it is dropped (and logged)."""


class NotifySocketError(ValueError):
    """``$NOTIFY_SOCKET`` names an address this implementation cannot send to."""


def socket_address(value: str) -> str:
    """The AF_UNIX address for a ``$NOTIFY_SOCKET`` value: ``@name`` is the abstract ``\\0name``."""
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        if len(os.fsencode(value)) >= 108:  # sizeof(sun_path), with its NUL
            raise NotifySocketError(f"NOTIFY_SOCKET path is too long for AF_UNIX: {value!r}")
        return value
    # systemd >= 254 may also pass vsock:CID:PORT (VMs); probe runs on the host it monitors.
    raise NotifySocketError(f"unsupported NOTIFY_SOCKET {value!r}: expected an absolute path or @name")


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds, as systemd reads MONOTONIC_USEC= (not Python's monotonic())."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def watchdog_interval(environ: Mapping[str, str], pid: int | None = None) -> float | None:
    """Seconds between pings (half of ``$WATCHDOG_USEC``), or None when no watchdog is asked of this process."""
    usec = environ.get("WATCHDOG_USEC", "")
    if not usec:
        return None
    target = environ.get("WATCHDOG_PID", "")
    if target and target != str(os.getpid() if pid is None else pid):
        return None  # meant for another process (we were started by the service, not as it)
    try:
        value = int(usec)
    except ValueError:
        log.warning("ignoring WATCHDOG_USEC=%r: not an integer", usec)
        return None
    if value <= 0:
        log.warning("ignoring WATCHDOG_USEC=%r: not positive", usec)
        return None
    return value / 2 / 1_000_000


class Notifier:
    """Sends notify messages to one socket. ``address`` None: every send is a no-op."""

    def __init__(self, address: str | None) -> None:
        self.address = address
        self._sock: socket.socket | None = None
        self._failed = False

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Notifier:
        """The notifier ``$NOTIFY_SOCKET`` asks for; a no-op one when it is unset or unusable (logged)."""
        value = environ.get("NOTIFY_SOCKET", "")
        if not value:
            return cls(None)
        try:
            return cls(socket_address(value))
        except NotifySocketError as exc:
            log.warning("%s; systemd notifications are off", exc)
            return cls(None)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *fields: str) -> bool:
        """Send ``fields`` (``KEY=VALUE`` each) as one datagram; False (logged once) when it could not be sent."""
        if self.address is None:
            return False
        message = "\n".join(fields) + "\n"
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                # Called from the event loop: a supervisor that stopped reading must not hold it for long.
                self._sock.settimeout(SEND_TIMEOUT)
            self._sock.sendto(message.encode("utf-8"), self.address)
        except OSError as exc:
            if not self._failed:
                log.warning("cannot notify systemd at %r: %s", self.address.replace("\0", "@"),
                            exc.strerror or exc)
                self._failed = True
            return False
        self._failed = False
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _status(text: str) -> str:
    # One field per line: a newline inside STATUS= would start a new (bogus) field.
    return "STATUS=" + " ".join(text.split())


class SystemdLifecycle(Lifecycle):
    """The agent's Lifecycle seam, told to systemd.

    ``ready()`` once the first schedule runs; ``reloading()`` / ``reloaded(ok)`` around a SIGHUP reload
    (``Type=notify-reload`` holds ``systemctl reload`` open between them); ``stopping()`` on SIGTERM;
    ``tick(now)`` from every scheduler-loop iteration (``now`` in ``time.monotonic()`` seconds).

    The agent's loop ticks at least once a second (``probe.engine.agent.TICK``), so pings are at most half of
    ``WatchdogSec`` plus a second apart while the loop runs: any ``WatchdogSec`` of 3 s or more holds.
    """

    def __init__(self, notifier: Notifier, watchdog: float | None = None) -> None:
        self.notifier = notifier
        self.watchdog = watchdog if notifier.enabled else None
        self.pings = 0
        self._last_ping: float | None = None

    @classmethod
    def from_environ(cls, environ: MutableMapping[str, str] | None = None) -> SystemdLifecycle:
        """Reads and removes ``NOTIFY_SOCKET``/``WATCHDOG_*`` from the environment (children must not ping)."""
        env = os.environ if environ is None else environ
        watchdog = watchdog_interval(env)
        notifier = Notifier.from_environ(env)
        for name in NOTIFY_VARIABLES:  # as sd_notify(unset_environment=1)
            env.pop(name, None)
        if watchdog is not None and notifier.enabled:
            log.info("systemd watchdog: pinging every %.3gs", watchdog)
        return cls(notifier, watchdog)

    def ready(self, status: str = "running") -> None:
        self.notifier.send("READY=1", _status(status))

    def reloading(self) -> None:
        self.notifier.send("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec()}", _status("reloading configuration"))

    def reloaded(self, ok: bool, status: str | None = None) -> None:
        # READY=1 either way: it ends the reload job. The notify protocol has no "reload failed"; a rejected
        # config shows in STATUS=, the log and the probe.agent.reloads{result="failed"} metric.
        text = status or ("configuration reloaded" if ok else "reload rejected: the previous configuration is running")
        self.notifier.send("READY=1", _status(text))

    def stopping(self) -> None:
        self.notifier.send("STOPPING=1", _status("stopping"))

    def tick(self, now: float) -> None:
        if self.watchdog is None:
            return
        if self._last_ping is not None and now - self._last_ping < self.watchdog:
            return
        if self.notifier.send("WATCHDOG=1"):  # a failed ping is tried again on the next tick
            self.pings += 1
            self._last_ping = now

    def close(self) -> None:
        self.notifier.close()
