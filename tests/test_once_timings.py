"""``probe run --once`` reports the target's timings, not its own queueing: a check's duration with 20 mixed
checks started at once stays within 2x + 2 ms (PostgreSQL 3x + 5 ms) of the same check run alone. Real
Redis and PostgreSQL, a loopback HTTP server, local checks, a process scan and subprocesses, all in one run.

Both sides are the best of several rounds, interleaved, so a busy machine (other suites on the same two
CPUs) moves both alike; docs/performance.md has the figures."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import require
from netservers import ThreadedServer, http_server

ROUNDS = 7
WATCHED = ("redis-ping-1", "root-disk", "hosts-file", "postgres-1")  # one per way a check is timed (see below)
# The rule, 2x + 2 ms, which the bench's row `once` judges by too. Best of 7 on 2026-12-07, three runs
# of this test at load ~1.5 (checks timed in segments at their I/O events, decision 0031): Redis 0.08-0.09 ms
# among 20 against 0.07-0.08 alone, disk 0.30-0.37 against 0.32-0.34, file 0.17-0.19 against 0.20-0.22; the
# constant is 5x the worst of them. The inflation this test is for was 30-68 ms (Redis) and 131-175 ms (disk).
# PostgreSQL: its segments are the server's, and three backends starting at once on a busy 2-CPU machine take
# longer than one: 5.9-8.7 ms among 20 against 2.6-3.0 alone in the same runs (2.0-2.9x). Held to 3x + 5 ms,
# which the wall-timed check (4-6x) failed.
RULE = {"postgres-1": (3.0, 5.0)}
DEFAULT_RULE = (2.0, 2.0)  # (factor, margin in ms)


def reachable(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    require(reachable(6379), "Redis on 127.0.0.1:6379 is not reachable")
    require(reachable(5432), "PostgreSQL on 127.0.0.1:5432 is not reachable")
    path = tmp_path_factory.mktemp("once") / "checks.yaml"
    with ThreadedServer(http_server()) as web:
        redis = "{type: tcp, host: 127.0.0.1, port: 6379, send: \"PING\\r\\n\", expect: ['\\+PONG']}"
        checks = [f"{{name: redis-ping-{i}, {redis[1:]}" for i in (1, 2, 3)]
        checks += ["{name: redis-port, type: tcp, host: 127.0.0.1, port: 6379}"]
        checks += [f"{{name: postgres-{i}, type: sql, dsn: 'postgresql://postgres@127.0.0.1:5432/test', "
                   "query: 'SELECT 1'}" for i in (1, 2, 3)]
        checks += [f"{{name: web-{i}, type: http, url: 'http://127.0.0.1:{web.port}/health'}}" for i in (1, 2, 3, 4, 5)]
        checks += ["{name: root-disk, type: disk, path: /}", "{name: tmp-disk, type: disk, path: /tmp}",
                   "{name: memory, type: memory}", "{name: hosts-file, type: file, path: /etc/hosts}",
                   "{name: passwd-file, type: file, path: /etc/passwd}",
                   "{name: redis-process, type: process, process_name: redis-server, min_count: 1}",
                   "{name: true-1, type: command, run: [/bin/true]}", "{name: true-2, type: command, run: [/bin/true]}"]
        assert len(checks) == 20
        path.write_text("checks:\n" + textwrap.indent("\n".join(f"- {c}" for c in checks), "  ") + "\n")
        yield path


def durations(config: Path, *args: str) -> dict[str, float]:
    proc = subprocess.run([sys.executable, "-m", "probe", "--config-dir", str(config), "run", "--once",
                           "--format", "json", *args], capture_output=True, text=True, timeout=120)
    assert proc.stdout, proc.stderr[-2000:]
    checks = json.loads(proc.stdout)["checks"]
    bad = {c["name"]: c["summary"] for c in checks if c["status"] != "ok"}
    assert not bad, bad
    return {c["name"]: float(c["duration"]) for c in checks}


def test_durations_with_twenty_checks_at_once_are_the_targets(config: Path) -> None:
    mixed: dict[str, list[float]] = {name: [] for name in WATCHED}
    alone: dict[str, list[float]] = {name: [] for name in WATCHED}
    for _ in range(ROUNDS):
        everything = durations(config)
        assert len(everything) == 20
        for name in WATCHED:
            mixed[name].append(everything[name])
            alone[name].append(durations(config, "--check", name)[name])
    report = {name: (min(mixed[name]) * 1000, min(alone[name]) * 1000) for name in WATCHED}
    # A Redis ping over tcp is timed at its I/O events (its send to the reply's kernel arrival stamp); the disk
    # and file checks are sync checks timed in their worker thread; the sql check drives psycopg in its worker
    # thread and times each round trip at the socket: none waits for a loop or a thread busy with the others.
    for name, (together, by_itself) in report.items():
        factor, margin = RULE.get(name, DEFAULT_RULE)
        assert together <= factor * by_itself + margin, \
            f"{name}: {together:.2f} ms with 20 checks, {by_itself:.2f} ms alone (rule: {factor:g}x + {margin:g} ms)"
