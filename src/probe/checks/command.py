"""command: run any Nagios/Icinga/Sensu-compatible plugin and read its exit code, summary and perfdata.

The plugin runs without a shell, in its own session (so its process group can be killed whole), with an
explicit environment and capped output. When the core cancels the run at the deadline the group gets
SIGTERM, then SIGKILL; when the plugin exits, anything it left behind in its group is killed too (a
forgotten child holding stdout open would otherwise hang every later read).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field, field_validator

import probe
from probe.checks._perfdata import parse_output
from probe.hookspecs import CheckRegistrar
from probe.units import Duration, Size

PLUGIN_DIRS = "/usr/lib/nagios/plugins:/usr/lib/monitoring-plugins"
DEFAULT_PATH = f"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:{PLUGIN_DIRS}"
STDERR_CAP = 8192
SUMMARY_CAP = 500
_CHUNK = 65536


class CommandOptions(probe.Options):
    run: list[str] = Field(min_length=1)
    """The plugin and its arguments, as an argv list (never passed to a shell). A bare name is looked
    up in the ``PATH`` of the plugin's environment, which includes the monitoring-plugins directories."""
    env: dict[str, str] = {}
    """Extra environment variables for the plugin, on top of the minimal default environment."""
    pass_env: list[str] = []
    """Names of variables to copy from probe's own environment (``HOME``, ``http_proxy``)."""
    cwd: str | None = None
    """Working directory of the plugin (default: probe's)."""
    max_output: Size = 65536
    """Most stdout kept (further output is read and discarded, so the plugin never blocks on it)."""
    kill_grace: Duration = 1.0
    """After the timeout, how long the process group has between SIGTERM and SIGKILL."""
    linger: Duration = 0.5
    """After the plugin exits, how long to wait for children still holding its output before they
    are killed."""

    @field_validator("run")
    @classmethod
    def _no_empty_program(cls, value: list[str]) -> list[str]:
        if not value[0]:
            raise ValueError("the program (first item) must not be empty")
        return value


class CommandCheck(probe.Check[CommandOptions]):
    """Runs a monitoring plugin: exit code 0..3 is the status, the first line the summary, perfdata the
    measurements (names are the perfdata labels, so they depend on the plugin: ``measurements = None``)."""

    type = "command"
    measurements = None

    async def run(self, ctx: probe.Context) -> probe.Result:
        o = self.options
        try:
            proc = await asyncio.create_subprocess_exec(
                *o.run, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, env=self.environment(ctx), cwd=o.cwd, start_new_session=True,
            )
        except FileNotFoundError as exc:
            missing = o.cwd if exc.filename == o.cwd and o.cwd else o.run[0]
            return probe.Result.unknown(f"{missing}: not found", reason="not_found")
        except PermissionError:
            return probe.Result.unknown(f"{o.run[0]}: permission denied", reason="permission_denied")
        except OSError as exc:
            return probe.Result.unknown(f"{o.run[0]}: cannot execute: {exc.strerror or exc}", reason="exec_failed")
        # Stop the plugin ourselves just before the deadline, so the whole group is gone by the time the
        # core reports the timeout (a cancelled task gets no second chance to SIGKILL anything).
        grace = min(o.kill_grace, ctx.remaining() / 4)
        stop_at = ctx.deadline - grace - 0.05
        try:
            output = await _collect(proc, int(o.max_output), o.linger, stop_at, grace)
        except BaseException:
            _signal(proc.pid, signal.SIGKILL)
            # Let asyncio's child watcher reap it before the transport is closed: closing an unreaped
            # process reaps it itself, and the watcher then logs "exit status already read" (Python 3.12+).
            with contextlib.suppress(BaseException):
                await _exit_code(proc, time.monotonic() + 1.0)
            _kill_now(proc)
            raise
        if output.returncode is None:
            # The verdict is the core's (it applies the check's timeout_status): wait to be cancelled.
            await asyncio.sleep(ctx.remaining() + 1.0)
            return probe.Result.critical("plugin did not finish before the deadline; killed", reason="timeout")
        return _result(output)

    def environment(self, ctx: probe.Context) -> dict[str, str]:
        env = {"PATH": DEFAULT_PATH, "LC_ALL": "C", "PROBE_CHECK": ctx.name}
        env.update({k: os.environ[k] for k in self.options.pass_env if k in os.environ})
        env.update(self.options.env)
        return env


@dataclass
class _Buffer:
    cap: int
    data: bytearray = field(default_factory=bytearray)
    truncated: bool = False

    def add(self, chunk: bytes) -> None:
        room = self.cap - len(self.data)
        if len(chunk) > room:
            self.truncated = True
        self.data += chunk[:max(room, 0)]


@dataclass(frozen=True)
class _Output:
    returncode: int | None  # None: stopped at the deadline
    stdout: str
    stderr: str
    truncated: bool


async def _collect(proc: asyncio.subprocess.Process, cap: int, linger: float, stop_at: float,
                   grace: float) -> _Output:
    """Read capped output until the plugin exits, or stop it at ``stop_at`` (then returncode is None)."""
    assert proc.stdout is not None and proc.stderr is not None
    out, err = _Buffer(cap), _Buffer(STDERR_CAP)
    readers = {asyncio.ensure_future(_drain(proc.stdout, out)), asyncio.ensure_future(_drain(proc.stderr, err))}
    returncode: int | None = None
    try:
        returncode = await _exit_code(proc, stop_at)
        if returncode is None:
            await _stop(proc, grace)
        _, pending = await asyncio.wait(readers, timeout=linger)
        if pending:
            _signal(proc.pid, signal.SIGKILL)  # leftovers of the plugin still hold its output open
            _, pending = await asyncio.wait(pending, timeout=linger)
        if pending:
            _kill_now(proc)  # a child in a session of its own holds the pipes: stop reading them
    finally:
        for reader in readers:
            reader.cancel()
    _signal(proc.pid, signal.SIGKILL)  # children that outlived the plugin without holding its output
    return _Output(returncode, _text(out.data), _text(err.data), out.truncated)


async def _drain(stream: asyncio.StreamReader, buffer: _Buffer) -> None:
    while chunk := await stream.read(_CHUNK):
        buffer.add(chunk)


async def _stop(proc: asyncio.subprocess.Process, grace: float) -> None:
    """SIGTERM the group, give it ``grace`` to exit (the whole group, not only the leader), then SIGKILL."""
    _signal(proc.pid, signal.SIGTERM)
    loop_time = asyncio.get_running_loop().time
    until = loop_time() + grace
    while _alive(proc.pid) and loop_time() < until:
        await asyncio.sleep(0.02)
    _signal(proc.pid, signal.SIGKILL)
    await _exit_code(proc, time.monotonic() + 1.0)


async def _exit_code(proc: asyncio.subprocess.Process, until: float) -> int | None:
    """The exit code once the plugin exits, or None at ``until``.

    Polled, because ``Process.wait()`` also waits for the pipes to close, and a child the plugin left
    behind may hold them open for ever."""
    pause = 0.001
    while proc.returncode is None and time.monotonic() < until:
        await asyncio.sleep(min(pause, max(0.0, until - time.monotonic())))
        pause = min(pause * 2, 0.05)
    return proc.returncode


def _kill_now(proc: asyncio.subprocess.Process) -> None:
    """Cancelled from outside (shutdown): no time for grace, and the loop may close before we run again."""
    _signal(proc.pid, signal.SIGKILL)
    # Close the transport now; left to the garbage collector it would try to use a closed loop.
    transport = getattr(proc, "_transport", None)
    if transport is not None:
        transport.close()


def _alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _signal(pgid: int, sig: signal.Signals) -> None:
    # The group may be gone already, which is what we want.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _text(data: bytes | bytearray) -> str:
    # Control characters (NULs, escape sequences) are the runner's to remove, as for every check's result.
    return data.decode("utf-8", errors="replace")


_STATUS_REASON = {probe.Status.OK: "", probe.Status.WARNING: "plugin_warning",
                  probe.Status.CRITICAL: "plugin_critical", probe.Status.UNKNOWN: "plugin_unknown"}


def _result(output: _Output) -> probe.Result:
    parsed = parse_output(output.stdout)
    code = output.returncode
    assert code is not None
    details: dict[str, Any] = {"exit_code": code}
    if parsed.long_text:
        details["long_text"] = parsed.long_text[:4000]
    if output.stderr.strip():
        details["stderr"] = output.stderr.strip()[:2000]
    if parsed.perfdata.errors:
        details["perfdata_errors"] = list(parsed.perfdata.errors[:20])
    if output.truncated:
        details["output_truncated"] = True
    measurements = [probe.Measurement(v.label, v.value, v.unit) for v in parsed.perfdata.values]
    summary = parsed.summary or _no_output(output)
    if len(summary) > SUMMARY_CAP:
        summary = summary[:SUMMARY_CAP - 3] + "..."
    if code < 0:
        name = _signal_name(-code)
        return probe.Result.unknown(f"plugin killed by {name}: {summary}", *measurements,
                                    reason="killed_by_signal", details=details)
    if code > 3:
        return probe.Result.unknown(f"plugin exited {code} (not a Nagios status 0..3): {summary}", *measurements,
                                    reason="invalid_exit_code", details=details)
    status = probe.Status(code)
    reason = "no_output" if not parsed.summary else _STATUS_REASON[status]
    return probe.Result(status, summary, reason, tuple(measurements), details)


def _no_output(output: _Output) -> str:
    first = next((line.strip() for line in output.stderr.splitlines() if line.strip()), "")
    return "(no output on stdout)" + (f"; stderr: {first}" if first else "")


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


@probe.hookimpl
def register_checks(register: CheckRegistrar) -> None:
    register(CommandCheck)
