"""The sql check's PostgreSQL timings are the server's round trips (``net.pgclock``), not the time its worker
thread waited for the GIL: against the real PostgreSQL on loopback, with another thread holding the GIL for a
known time while the server's answer comes in."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

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


def gil_holder(seconds: float) -> Callable[[], float]:
    """A call that holds the GIL for about ``seconds``: ``sum`` over a range runs in C and never lets
    another thread in (CPython drops the GIL between bytecodes, not inside one C call). Returns the time
    it held it."""
    n = 1_000_000
    started = time.monotonic()
    sum(range(n))
    per_item = max(time.monotonic() - started, 1e-6) / n

    def hold() -> float:
        began = time.monotonic()
        sum(range(int(seconds / per_item)))
        return time.monotonic() - began
    return hold


def test_durations_are_the_servers_not_the_wait_for_the_gil() -> None:
    """The server answers ``pg_sleep(0.3)`` about 0.3 s after the query; from 0.1 s on this thread holds
    the GIL for about 0.5 s, so the worker reads the answer about 0.3 s late. The query's duration is the
    server's 0.3 s (the kernel's arrival stamp), not the 0.5 s the worker was away."""
    server, hold = 0.3, gil_holder(0.5)
    fetched: list[sqldrivers.Fetched] = []
    took: list[float] = []

    def run() -> None:
        started = time.monotonic()
        fetched.append(sqldrivers.fetch(PG, None, f"SELECT pg_sleep({server})", time.monotonic() + 10))
        took.append(time.monotonic() - started)

    worker = threading.Thread(target=run)
    worker.start()
    time.sleep(0.1)  # connected (a few ms), the query sent, the server sleeping
    held = hold()
    worker.join(10)
    assert fetched, "the fetch did not finish"
    assert took[0] >= 0.1 + held > server + 0.15, "the premise: the worker was held up past the answer"
    query, connect = fetched[0].query_duration, fetched[0].connect_duration
    assert server <= query < server + 0.1, (query, took[0])
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
