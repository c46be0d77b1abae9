"""Running an argv list safely: no shell, its own process group, a hard timeout, bounded output.

Used by remediation actions (and usable by any check that runs a program). On timeout the whole
process group gets SIGTERM, then SIGKILL after a grace period, so children that the program forked
die with it. Output beyond ``output_limit`` is read and discarded, so a flooding child can never
block on a full pipe nor fill our memory. When the program exits, anything it left running in its
process group is killed too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
KILL_GRACE = 2.0


@dataclass(frozen=True)
class Completed:
    argv: tuple[str, ...]
    exit_code: int | None  # None when it did not exit by itself (timed out) or never started
    output: str
    truncated: bool
    duration: float
    timed_out: bool = False
    error: str = ""  # why it could not start

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and not self.error


def base_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """An explicit, minimal environment: nothing of the agent's own environment leaks into a child."""
    env = {"PATH": SAFE_PATH, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    env.update(extra or {})
    return env


async def run_argv(
    argv: Sequence[str],
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    stdin: bytes = b"",
    output_limit: int = 64 * 1024,
    run_as: str | None = None,
    cwd: str = "/",
) -> Completed:
    """Run ``argv`` (never through a shell) and return how it ended. Never raises for the child's faults."""
    started = time.monotonic()
    argv = tuple(argv)
    try:
        user_kwargs = _user_kwargs(run_as)
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=dict(env) if env is not None else base_env(),
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
            **user_kwargs,
        )
    except (OSError, ValueError, KeyError, PermissionError) as exc:
        return Completed(argv, None, "", False, time.monotonic() - started, error=_start_error(argv, exc, run_as))
    reader = asyncio.ensure_future(_read_bounded(proc, output_limit))
    feeder = asyncio.ensure_future(_feed(proc, stdin))
    timed_out = False
    try:
        await asyncio.wait_for(_exited(proc), timeout)
    except TimeoutError:
        timed_out = True
        await _kill_group(proc)
    except asyncio.CancelledError:
        # Whoever awaited us is gone (the agent is stopping): the action must not outlive it.
        reader.cancel()
        await _kill_group(proc)
        raise
    finally:
        feeder.cancel()
    # A grandchild still holding the pipe must not keep us reading forever: it is part of the action's
    # process group (a real daemon detaches with setsid), so it goes the way of a timed-out action.
    output, truncated = b"", True
    for last_resort in (False, True):
        try:
            output, truncated = await asyncio.wait_for(asyncio.shield(reader), 1.0)
            break
        except TimeoutError:
            if last_resort:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    output, truncated = await reader
                _close_transport(proc)
            else:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
    # Whatever the program left behind in its group goes with it, as for a command check: an action that
    # means to leave a process running detaches it (setsid, systemd-run).
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    exit_code = None if timed_out else proc.returncode
    return Completed(argv, exit_code, output.decode("utf-8", "replace"), truncated, time.monotonic() - started,
                     timed_out=timed_out)


async def _exited(proc: asyncio.subprocess.Process) -> None:
    """Wait for the process itself to exit. ``proc.wait()`` also waits for every holder of its pipes to
    close them, so a forked grandchild would hold us hostage; the return code is set at exit."""
    delay = 0.002
    while proc.returncode is None:
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.05)


async def _feed(proc: asyncio.subprocess.Process, data: bytes) -> None:
    assert proc.stdin is not None
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        if data:
            proc.stdin.write(data)
            await proc.stdin.drain()
        proc.stdin.close()


async def _read_bounded(proc: asyncio.subprocess.Process, limit: int) -> tuple[bytes, bool]:
    assert proc.stdout is not None
    kept = bytearray()
    truncated = False
    try:
        while chunk := await proc.stdout.read(65536):
            room = limit - len(kept)
            if room > 0:
                kept += chunk[:room]
            if len(chunk) > room:
                truncated = True
    except asyncio.CancelledError:
        return bytes(kept), True
    return bytes(kept), truncated


async def _kill_group(proc: asyncio.subprocess.Process) -> None:
    for sig, wait in ((signal.SIGTERM, KILL_GRACE), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            await asyncio.wait_for(_exited(proc), wait)
            if sig == signal.SIGTERM:
                # The leader is gone; anything it forked into the group still gets SIGKILL.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
            return
        except TimeoutError:
            continue


def _close_transport(proc: asyncio.subprocess.Process) -> None:
    transport = getattr(proc, "_transport", None)  # no public way to drop pipes a stranger still holds
    if transport is not None:
        transport.close()


def _user_kwargs(run_as: str | None) -> dict[str, Any]:
    if not run_as:
        return {}
    entry = pwd.getpwnam(run_as)  # KeyError for an unknown user: reported as a start error
    if os.geteuid() != 0 and entry.pw_uid != os.geteuid():
        raise PermissionError(f"run_as {run_as!r} needs root (probe runs as uid {os.geteuid()})")
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _start_error(argv: Sequence[str], exc: BaseException, run_as: str | None) -> str:
    if isinstance(exc, KeyError) and run_as:
        return f"run_as user {run_as!r} does not exist"
    if isinstance(exc, FileNotFoundError):
        return f"{argv[0]}: no such file"
    if isinstance(exc, PermissionError):
        return f"{argv[0]}: permission denied" if not str(exc).startswith("run_as") else str(exc)
    return f"{argv[0]}: {exc}"
