"""The sql check's PostgreSQL timings are the server's round trips (``net.pgclock``), not the time its worker
thread waited for the GIL: against the real PostgreSQL on loopback, with another thread holding the GIL for a
known time while the server's answer comes in."""

from __future__ import annotations

import socket
import sys
import threading
import time

import pytest
from conftest import require

from probe.checks.net import sqldrivers

PG = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture(scope="module", autouse=True)
def postgres() -> None:
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=2).close()
    except OSError:
        require(False, "PostgreSQL on 127.0.0.1:5432 is not reachable")
    sqldrivers.load_driver(PG)  # as the check's constructor does: no import inside a fetch


def hold_the_gil(seconds: float) -> float:
    """Keep the GIL for ``seconds`` (busy, never blocking): another thread that wants it waits. CPython hands
    it over between bytecodes once the switch interval has passed; a longer interval, for this call only,
    keeps it here. Returns when it was let go."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(seconds + 1)
    try:
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            sum(range(1000))
        return time.monotonic()
    finally:
        sys.setswitchinterval(interval)


def test_durations_are_the_servers_not_the_wait_for_the_gil() -> None:
    """The server answers ``pg_sleep(0.3)`` about 0.3 s after the query; from 0.1 s on this thread holds
    the GIL for about 0.5 s, so the worker reads the answer about 0.3 s late. The query's duration is the
    server's 0.3 s (the kernel's arrival stamp), not the 0.5 s the worker was away."""
    server = 0.3
    fetched: list[sqldrivers.Fetched] = []
    ended: list[float] = []

    def run() -> None:
        fetched.append(sqldrivers.fetch(PG, None, f"SELECT pg_sleep({server})", time.monotonic() + 10))
        ended.append(time.monotonic())

    started = time.monotonic()
    worker = threading.Thread(target=run)
    worker.start()
    time.sleep(0.1)  # connected (a few ms), the query sent, the server sleeping
    released = hold_the_gil(0.5)
    worker.join(10)
    assert fetched, "the fetch did not finish"
    # the premise: the answer (due about 0.3 s after the start) came while the GIL was held, and the worker
    # could read it only once the GIL was let go
    # (``released`` is read just before the hold ends: 10 ms of slack)
    assert ended[0] >= released - 0.01 and released > started + server + 0.15, (started, released, ended)
    query, connect = fetched[0].query_duration, fetched[0].connect_duration
    assert server <= query < server + 0.1, (query, ended[0] - started)
    assert 0 < connect < 0.1


def test_without_contention_the_round_trips_are_most_of_the_wall_time() -> None:
    """With nothing else running, the round trips are most of the wall time: the segments leave out only
    the client's own steps (parsing, building the next message), not the server's work."""
    started = time.monotonic()
    fetched = sqldrivers.fetch(PG, None, "SELECT pg_sleep(0.05)", time.monotonic() + 10)
    wall = time.monotonic() - started
    total = fetched.connect_duration + fetched.query_duration
    assert 0.05 <= total <= wall
    assert fetched.query_duration >= 0.05
