"""Judging the state database must not disturb the agent's own SQLite connections: closing any descriptor of a
database file drops every POSIX lock the process holds on it, and another process (``probe silence``,
``probe ping``) closing the last connection it can see would then checkpoint and delete the WAL under the
agent's feet ("disk I/O error")."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from probe._statedir import prepare_database
from probe.sinks.history.schema import connect

OTHER_PROCESS = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("PRAGMA journal_mode=WAL")
db.execute("INSERT INTO t VALUES (2)")
db.commit()
db.close()  # the last connection it knows of: with the agent's locks gone, it would delete the WAL
"""


def test_preparing_an_open_database_keeps_this_process_locks(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    path = state / "history.sqlite3"
    prepare_database(path)
    agent = connect(path)
    agent.execute("CREATE TABLE t (v INTEGER)")
    agent.execute("INSERT INTO t VALUES (1)")
    agent.commit()
    assert agent.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 1  # a reader: it holds its locks now
    for _ in range(3):
        prepare_database(path)  # what the CLI, the ping endpoint and the history writer do
    done = subprocess.run([sys.executable, "-c", OTHER_PROCESS, str(path)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert Path(f"{path}-wal").exists()  # the agent's connection is still counted
    agent.execute("INSERT INTO t VALUES (3)")
    agent.commit()
    assert sorted(v for (v,) in agent.execute("SELECT v FROM t")) == [1, 2, 3]
    agent.close()
    assert sorted(v for (v,) in sqlite3.connect(path).execute("SELECT v FROM t")) == [1, 2, 3]
