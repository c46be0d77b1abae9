"""run_argv against real processes: no shell, explicit env, bounded output, the whole group killed."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import require

from probe._subprocesses import base_env, run_argv

PY = sys.executable


async def test_exit_code_and_output_are_captured() -> None:
    done = await run_argv([PY, "-c", "import sys; print('hello'); sys.exit(3)"], timeout=10, env=base_env())
    assert (done.exit_code, done.output.strip(), done.timed_out, done.ok) == (3, "hello", False, False)


async def test_arguments_never_reach_a_shell(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    done = await run_argv(["/bin/echo", f"$(touch {marker}); `touch {marker}`"], timeout=10)
    assert done.output.strip() == f"$(touch {marker}); `touch {marker}`"
    assert not marker.exists()


async def test_environment_is_explicit_and_stdin_is_delivered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROBE_TEST_LEAK", "agent-secret")
    script = "import json, os, sys; print(json.dumps({'env': dict(os.environ), 'stdin': sys.stdin.read()}))"
    done = await run_argv([PY, "-c", script], timeout=10, env=base_env({"PROBE_CHECK": "disk"}),
                          stdin=b'{"status": "critical"}')
    seen = json.loads(done.output)
    assert "PROBE_TEST_LEAK" not in seen["env"]
    assert seen["env"]["PROBE_CHECK"] == "disk"
    assert json.loads(seen["stdin"]) == {"status": "critical"}


async def test_timeout_kills_the_whole_process_group_even_when_sigterm_is_ignored(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    script = (
        "import os, signal, time, sys\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "    time.sleep(300)\n"
        f"open({str(pidfile)!r}, 'w').write(str(pid))\n"
        "time.sleep(300)\n"
    )
    started = time.monotonic()
    done = await run_argv([PY, "-c", script], timeout=0.5)
    assert done.timed_out and done.exit_code is None
    assert time.monotonic() - started < 10
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while psutil.pid_exists(child) and psutil.Process(child).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "forked child outlived the timeout"
        time.sleep(0.05)


async def test_a_flood_of_output_is_bounded_and_never_blocks_the_child() -> None:
    script = "import sys\nfor _ in range(2000): sys.stdout.write('x' * 8192)\nsys.stdout.flush()"
    done = await run_argv([PY, "-c", script], timeout=30, output_limit=1000)
    assert done.exit_code == 0
    assert len(done.output) == 1000 and done.truncated


async def test_a_grandchild_holding_the_pipe_does_not_hang_us() -> None:
    script = "import os, time\nif os.fork() == 0:\n    time.sleep(30)\nprint('parent done')"
    started = time.monotonic()
    done = await run_argv([PY, "-c", script], timeout=20)
    assert done.exit_code == 0
    assert time.monotonic() - started < 10


async def test_missing_program_is_an_error_not_an_exception() -> None:
    done = await run_argv(["/nonexistent/purge-logs"], timeout=5)
    assert done.error == "/nonexistent/purge-logs: no such file" and not done.ok


async def test_run_as_switches_user() -> None:
    require(os.geteuid() == 0, "run_as needs root")
    done = await run_argv(["/usr/bin/id", "-u"], timeout=10, run_as="nobody")
    import pwd

    nobody = pwd.getpwnam("nobody")
    assert (done.exit_code, done.output.split()) == (0, [str(nobody.pw_uid)])


async def test_run_as_unknown_user_is_a_clear_error() -> None:
    done = await run_argv(["/bin/true"], timeout=5, run_as="no-such-user-here")
    assert done.error == "run_as user 'no-such-user-here' does not exist"
