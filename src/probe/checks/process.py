"""process: is a process running, how many, and what do they use.

A zombie has exited and only waits for its parent to reap it, and a pidfile naming a dead pid is left
over from a crash: neither counts as running, and each has its own reason.
"""

from __future__ import annotations

import os
import pwd
import re
from collections.abc import Iterator
from typing import Any, NamedTuple

import psutil
from pydantic import Field, model_validator

import probe
from probe.hookspecs import CheckRegistrar
from probe.units import format_duration, format_size

_PID_MAX = 2**22  # the kernel's limit for /proc/sys/kernel/pid_max
_ATTRS = ["pid", "name", "cmdline", "uids", "status", "memory_info", "cpu_times"]
_TICKS = os.sysconf("SC_CLK_TCK")  # psutil's CLOCK_TICKS
_PAGE = os.sysconf("SC_PAGE_SIZE")


class Problem(Exception):
    """The pidfile says no matching process can be running; carries the ready Result."""

    def __init__(self, result: probe.Result) -> None:
        super().__init__(result.summary)
        self.result = result


class Matches(NamedTuple):
    running: list[dict[str, Any]]
    zombies: list[int]


class ProcessOptions(probe.Options):
    process_name: str | None = None
    """Process name, exact match (as ``pgrep -x`` and ``ps -o comm`` see it). Not ``name``, which every
    check has for its own name."""
    cmdline: str | None = None
    """Regular expression searched anywhere in the full command line (arguments joined by spaces; ``.``
    also matches newlines inside arguments)."""
    user: str | None = None
    """Only processes whose real user is this (a user name or a numeric uid)."""
    pidfile: str | None = None
    """Path of a pidfile: the process it names must be alive (and match the other criteria, if given).
    A pidfile naming a dead pid is ``stale_pidfile``; one that names a zombie is ``zombie``."""
    min_count: int = Field(1, ge=0)
    """Fewer running (non-zombie) matching processes than this is CRITICAL."""
    max_count: int | None = Field(None, ge=1)
    """More matching processes than this is CRITICAL (a fork bomb, a duplicate daemon)."""

    @model_validator(mode="after")
    def _something_to_match(self) -> ProcessOptions:
        if not (self.process_name or self.cmdline or self.pidfile or self.user):
            raise ValueError("set at least one of process_name, cmdline, user or pidfile "
                             "('name' is the check's own name)")
        if self.cmdline:
            try:
                re.compile(self.cmdline)
            except re.error as exc:
                raise ValueError(f"cmdline is not a valid regular expression: {exc}") from None
        if self.max_count is not None and self.max_count < self.min_count:
            raise ValueError(f"max_count ({self.max_count}) is less than min_count ({self.min_count})")
        return self


class ProcessCheck(probe.Check[ProcessOptions]):
    """Counts the processes that match every criterion given (process_name, cmdline, user, pidfile) and sums
    their resident memory and CPU time. ``cpu_time`` is the user + system CPU seconds the matched
    processes have used since they started: it means something after one run (a value that keeps rising
    between runs is a busy process; Prometheus' ``rate()`` turns it into a utilization)."""

    type = "process"
    local = True  # reads this host only: runs start on whole seconds with the other local checks
    measurements = frozenset({"duration", "count", "rss", "cpu_time", "zombies"})
    units = {"duration": "s", "count": "{process}", "rss": "By", "cpu_time": "s", "zombies": "{process}"}

    def run(self, ctx: probe.Context) -> probe.Result:
        try:
            pid = read_pidfile(self.options.pidfile) if self.options.pidfile else None
            found = self._match(pid)
        except Problem as problem:
            return problem.result
        running, zombies = found.running, found.zombies
        rss = float(sum(p["rss"] for p in running if p["rss"] is not None))
        cpu = float(sum(p["cpu"] for p in running if p["cpu"] is not None))
        measurements = (probe.Measurement("count", float(len(running)), "{process}"),
                        probe.Measurement("rss", rss, "By"), probe.Measurement("cpu_time", cpu, "s"),
                        probe.Measurement("zombies", float(len(zombies)), "{process}"))
        details: dict[str, Any] = {"pids": [p["pid"] for p in running][:20]}
        if zombies:
            details["zombie_pids"] = zombies[:20]
        status, reason, summary = self._verdict(pid, len(running), len(zombies))
        if status is probe.Status.OK:
            summary += f", RSS {format_size(rss)}, CPU {format_duration(cpu)}"
        return probe.Result(status, summary + _zombie_note(len(zombies)) * (pid is None), reason, measurements,
                            details)

    def _verdict(self, pid: int | None, running: int, zombies: int) -> tuple[probe.Status, str, str]:
        o = self.options
        count = f"{running} process{'es' * (running != 1)} {_describe(o)}"
        if pid is not None and zombies:
            return probe.Status.CRITICAL, "zombie", f"pid {pid} from {o.pidfile} is a zombie (exited, not reaped)"
        if running < o.min_count:
            reason = "zombie" if zombies else "not_running" if not running else "too_few"
            return probe.Status.CRITICAL, reason, f"{count}, expected at least {o.min_count}"
        if o.max_count is not None and running > o.max_count:
            return probe.Status.CRITICAL, "too_many", f"{count}, expected at most {o.max_count}"
        return probe.Status.OK, "", count

    def _match(self, pid: int | None) -> Matches:
        o = self.options
        pattern = re.compile(o.cmdline, re.DOTALL) if o.cmdline else None  # argv may hold newlines
        uid = _uid(o.user) if o.user else None
        if pid is not None:
            candidates = [_one(pid, o.pidfile or "")]
        else:
            candidates = list(_scan(name=bool(o.process_name), cmdline=bool(pattern), uid=bool(o.user)))
        found = Matches([], [])
        for info in candidates:
            if o.process_name and info["name"] != o.process_name:
                continue
            if o.user and (info["uid"] is None or info["uid"] != uid):
                continue
            if pattern and not pattern.search(" ".join(info["cmdline"] or [])):
                continue
            if info["status"] == psutil.STATUS_ZOMBIE:
                found.zombies.append(info["pid"])
            elif pid is not None:
                found.running.append(info)
            else:
                try:
                    found.running.append(info | _usage(info["pid"], info["stat"]))
                except (FileNotFoundError, ProcessLookupError):  # exited since it was matched: not running
                    continue
        if pid is not None and not (found.running or found.zombies):
            raise Problem(probe.Result.critical(
                f"pid {pid} from {o.pidfile} is alive but does not match ({candidates[0]['name']!r}); "
                "the pidfile is stale and the pid was reused", reason="stale_pidfile", details={"pid": pid}))
        return found


def read_pidfile(path: str) -> int:
    """The pid in ``path``; a missing, unreadable or garbled pidfile raises Problem with its reason."""
    try:
        with open(path, "rb") as f:
            raw = f.read(64)
    except FileNotFoundError:
        raise Problem(probe.Result.critical(f"pidfile {path} does not exist", reason="not_running")) from None
    except PermissionError:
        raise Problem(probe.Result.unknown(f"pidfile {path}: permission denied",
                                           reason="permission_denied")) from None
    except OSError as exc:
        raise Problem(probe.Result.unknown(f"pidfile {path}: {exc.strerror or exc}",
                                           reason="invalid_pidfile")) from None
    text = raw.decode("ascii", errors="replace").strip()
    if not text.isdigit() or not 0 < int(text) <= _PID_MAX:
        shown = text[:20] + ("..." if len(text) > 20 else "")
        raise Problem(probe.Result.critical(f"pidfile {path} does not hold a pid: {shown!r}",
                                            reason="invalid_pidfile"))
    return int(text)


def _one(pid: int, pidfile: str) -> dict[str, Any]:
    try:
        info = psutil.Process(pid).as_dict(_ATTRS)
    except psutil.NoSuchProcess:
        raise Problem(probe.Result.critical(f"pid {pid} from {pidfile} is not running (stale pidfile)",
                                            reason="stale_pidfile", details={"pid": pid})) from None
    memory, times = info["memory_info"], info["cpu_times"]
    return info | {"uid": info["uids"].real if info["uids"] else None, "rss": memory.rss if memory else None,
                   "cpu": times.user + times.system if times else None}


def _scan(*, name: bool, cmdline: bool, uid: bool) -> Iterator[dict[str, Any]]:
    """Every process but this one, with what the filters ask for, read from /proc as psutil reads it (name,
    command line, real uid; ``status`` is only ever compared with zombie). psutil's process_iter builds an
    object per process and parses fields no filter reads: 12 ms of CPU for 130 processes on the test machine,
    all of it holding the GIL while every other check of a ``run --once`` wanted it, against 4 ms spent
    mostly in the kernel. ``stat`` keeps the fields after the name, which hold a match's memory and CPU."""
    me = os.getpid()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            yield _read(int(entry.name), name=name, cmdline=cmdline, uid=uid)
        except (FileNotFoundError, ProcessLookupError):  # exited since the listing: not running
            continue


def _read(pid: int, *, name: bool, cmdline: bool, uid: bool) -> dict[str, Any]:
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    end = stat.rindex(b")")  # the name is in parentheses and may itself hold any character
    info: dict[str, Any] = {"pid": pid, "status": psutil.STATUS_ZOMBIE if stat[end + 2:end + 3] == b"Z" else "",
                            "stat": stat[end + 2:]}
    argv = _cmdline(pid) if cmdline else None
    if name:
        comm = os.fsdecode(stat[stat.index(b"(") + 1:end])
        if len(comm) >= 15:  # the kernel cuts names to 15 characters; psutil completes them from argv[0]
            argv = _cmdline(pid) if argv is None else argv
            full = os.path.basename(argv[0]) if argv else ""
            comm = full if full.startswith(comm) else comm
        info["name"] = comm
    if cmdline:
        info["cmdline"] = argv
    if uid:
        info["uid"] = _real_uid(pid)
    return info


def _usage(pid: int, stat: bytes) -> dict[str, float]:
    """RSS (bytes) and user + system CPU seconds of a match, as psutil's memory_info and cpu_times read them:
    the resident count of /proc/PID/statm (stat's ``rss`` is the kernel's cheaper, approximate count) and the
    CPU ticks of the ``stat`` the scan read. One read more per match instead of a psutil.Process and its reads: a
    ``user: root`` check matches most processes. Raises FileNotFoundError when the process has gone."""
    with open(f"/proc/{pid}/statm", "rb") as f:
        resident = int(f.read().split()[1])
    values = stat.split()  # the fields after the name: values[0] is field 3 (state), utime field 14, stime 15
    return {"rss": resident * _PAGE, "cpu": (int(values[11]) + int(values[12])) / _TICKS}


def _cmdline(pid: int) -> list[str] | None:
    """argv as psutil splits it (a process that rewrote its argv may separate it by spaces); None if unreadable."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            data = os.fsdecode(f.read())
    except PermissionError:
        return None
    if not data:
        return []
    sep = "\0" if data.endswith("\0") else " "
    parts = data.removesuffix(sep).split(sep)
    return data.removesuffix(sep).split(" ") if sep == "\0" and len(parts) == 1 and " " in data else parts


def _real_uid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"Uid:"):
                    return int(line.split()[1])
    except PermissionError:
        return None
    return None


def _uid(user: str) -> int | None:
    """The uid ``user`` names (a number, or a name looked up once per run); None when no such user exists."""
    if user.isdigit():
        return int(user)
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        return None


def _zombie_note(zombies: int) -> str:
    return f" ({zombies} zombie{'s' * (zombies != 1)} not counted)" if zombies else ""


def _describe(o: ProcessOptions) -> str:
    parts = [f"named {o.process_name!r}"] * bool(o.process_name) + [f"matching /{o.cmdline}/"] * bool(o.cmdline)
    parts += [f"of user {o.user}"] * bool(o.user) + [f"from {o.pidfile}"] * bool(o.pidfile)
    return " ".join(parts)


@probe.hookimpl
def register_checks(register: CheckRegistrar) -> None:
    register(ProcessCheck)
