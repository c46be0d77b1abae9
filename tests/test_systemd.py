"""The notify protocol against a real AF_UNIX datagram socket (what systemd listens on)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import require_binary
from notifysocket import NotifySocket

from probe.daemon.systemd import (
    Notifier,
    NotifySocketError,
    SystemdLifecycle,
    monotonic_usec,
    socket_address,
    watchdog_interval,
)


@pytest.fixture(params=["path", "abstract"])
def notify(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[NotifySocket]:
    sock = NotifySocket(tmp_path, abstract=request.param == "abstract")
    yield sock
    sock.close()


def lifecycle(notify: NotifySocket, **extra: str) -> SystemdLifecycle:
    return SystemdLifecycle.from_environ({**notify.env, **extra})


def test_ready_reload_and_stop_messages(notify: NotifySocket) -> None:
    life = lifecycle(notify)
    life.ready("3 checks scheduled")
    assert notify.receive() == {"READY": "1", "STATUS": "3 checks scheduled"}

    before = monotonic_usec()
    life.reloading()
    message = notify.receive()
    assert message is not None and message["RELOADING"] == "1"
    # systemd compares MONOTONIC_USEC with its own CLOCK_MONOTONIC: it must be that clock, in µs.
    assert before <= int(message["MONOTONIC_USEC"]) <= monotonic_usec()

    life.reloaded(True)
    assert notify.receive() == {"READY": "1", "STATUS": "configuration reloaded"}
    life.reloading()
    notify.receive()
    life.reloaded(False)
    message = notify.receive()
    assert message is not None and message["READY"] == "1" and "rejected" in message["STATUS"]

    life.stopping()
    assert notify.receive() == {"STOPPING": "1", "STATUS": "stopping"}


def test_status_is_one_line(notify: NotifySocket) -> None:
    life = lifecycle(notify)
    life.ready("reload rejected:\nchecks.d/web.yaml:3:1: bad\nSTOPPING=1")
    assert notify.receive() == {"READY": "1", "STATUS": "reload rejected: checks.d/web.yaml:3:1: bad STOPPING=1"}


def test_watchdog_pings_at_half_the_interval_as_the_loop_ticks(notify: NotifySocket) -> None:
    life = lifecycle(notify, WATCHDOG_USEC="2000000", WATCHDOG_PID=str(os.getpid()))
    assert life.watchdog == 1.0
    life.tick(100.0)
    life.tick(100.4)
    life.tick(100.99)
    life.tick(101.0)
    life.tick(101.5)
    life.tick(102.1)
    assert [m for m in notify.drain()] == [{"WATCHDOG": "1"}] * 3
    assert life.pings == 3


def test_no_watchdog_for_another_pid_or_without_usec(notify: NotifySocket) -> None:
    other = lifecycle(notify, WATCHDOG_USEC="2000000", WATCHDOG_PID=str(os.getpid() + 1))
    none = lifecycle(notify)
    for life in (other, none):
        assert life.watchdog is None
        life.tick(1.0)
        life.tick(1000.0)
    assert notify.drain() == []


@pytest.mark.parametrize("usec", ["soon", "0", "-5"])
def test_bad_watchdog_usec_is_ignored_with_a_warning(usec: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "probe.systemd"):
        assert watchdog_interval({"WATCHDOG_USEC": usec}) is None
    assert f"WATCHDOG_USEC={usec!r}" in caplog.text


def test_from_environ_takes_the_variables_away_from_children(notify: NotifySocket) -> None:
    env = {**notify.env, "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid()), "PATH": "/bin"}
    life = SystemdLifecycle.from_environ(env)
    assert env == {"PATH": "/bin"}
    assert life.notifier.enabled and life.watchdog == 0.5


def test_without_notify_socket_everything_is_a_no_op() -> None:
    life = SystemdLifecycle.from_environ({"WATCHDOG_USEC": "1000000"})
    assert not life.notifier.enabled and life.watchdog is None
    life.ready()
    life.reloading()
    life.reloaded(True)
    life.tick(time.monotonic())
    life.stopping()
    assert life.pings == 0


def test_addresses() -> None:
    assert socket_address("@probe/notify") == "\0probe/notify"
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    with pytest.raises(NotifySocketError, match="unsupported NOTIFY_SOCKET 'vsock:2:1234'"):
        socket_address("vsock:2:1234")
    with pytest.raises(NotifySocketError, match="too long"):
        socket_address("/" + "x" * 120)


def test_unusable_notify_socket_is_logged_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "probe.systemd"):
        notifier = Notifier.from_environ({"NOTIFY_SOCKET": "relative/path"})
    assert not notifier.enabled
    assert "unsupported NOTIFY_SOCKET 'relative/path'" in caplog.text


def test_a_gone_supervisor_is_logged_once_and_never_raises(tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier(str(tmp_path / "notify.sock"))
    with caplog.at_level(logging.WARNING, "probe.systemd"):
        assert notifier.send("READY=1") is False
        assert notifier.send("WATCHDOG=1") is False
    assert caplog.text.count("cannot notify systemd") == 1
    assert "notify.sock" in caplog.text
    back = NotifySocket(tmp_path)  # the same path, listening again
    try:
        assert notifier.send("WATCHDOG=1") is True
        assert back.receive() == {"WATCHDOG": "1"}
    finally:
        back.close()
        notifier.close()


def test_systemd_notify_and_probe_agree_on_the_wire(notify: NotifySocket) -> None:
    """Differential: systemd's own systemd-notify sends the same datagram for the same fields."""
    import subprocess

    binary = require_binary("systemd-notify")  # Debian's systemd package, in .ci/apt-packages
    subprocess.run([binary, "--no-block", "--status=checking", "WATCHDOG=1"], env=notify.env, check=True,
                   timeout=30)
    theirs = notify.receive()
    Notifier.from_environ(notify.env).send("STATUS=checking", "WATCHDOG=1")
    ours = notify.receive()
    assert theirs is not None and ours is not None
    assert {k: v for k, v in theirs.items() if k != "MAINPID"} == ours


def test_a_failed_ping_is_tried_again_on_the_next_tick(tmp_path: Path) -> None:
    life = SystemdLifecycle(Notifier(str(tmp_path / "notify.sock")), watchdog=10.0)
    life.tick(100.0)  # nobody listens yet
    back = NotifySocket(tmp_path)
    try:
        life.tick(100.1)  # not 10 s later: the missed ping is owed
        assert back.receive() == {"WATCHDOG": "1"} and life.pings == 1
        life.tick(100.2)
        assert back.drain() == []
    finally:
        back.close()
        life.close()


def test_a_supervisor_that_stopped_reading_does_not_hold_the_loop(notify: NotifySocket,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    """The socket's queue fills (net.unix.max_dgram_qlen); then a send gives up instead of blocking."""
    notifier = Notifier.from_environ(notify.env)
    with caplog.at_level(logging.WARNING, "probe.systemd"):
        sent = 0
        while notifier.send("WATCHDOG=1"):
            sent += 1
            assert sent < 1_000_000, "the queue never filled"
    notifier.close()
    assert sent > 0 and "cannot notify systemd" in caplog.text
