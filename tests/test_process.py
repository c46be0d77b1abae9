"""The process check against real subprocesses: sleepers, a busy one, an unreaped zombie, pidfiles."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from hostfs import config_errors, run_checks

from probe import Status

Spawn = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def sleeper() -> Iterator[Path]:
    """A copy of sleep under a name no other process on this machine has, executable by every user."""
    directory = Path(tempfile.mkdtemp(prefix="probe-test-"))
    directory.chmod(0o755)
    path = directory / f"pts{secrets.token_hex(5)}"
    shutil.copy(shutil.which("sleep") or "/bin/sleep", path)
    yield path
    shutil.rmtree(directory)


@pytest.fixture
def spawn() -> Iterator[Spawn]:
    started: list[subprocess.Popen[bytes]] = []

    def start(*argv: str | Path, **kwargs: object) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([str(a) for a in argv], **kwargs)  # type: ignore[call-overload]
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()
        proc.wait(timeout=10)


def wait_for_status(pid: int, status: str) -> None:
    deadline = time.monotonic() + 10
    while psutil.Process(pid).status() != status:
        assert time.monotonic() < deadline, f"pid {pid} never became {status}"
        time.sleep(0.01)


def values(outcome: object) -> dict[str, float]:
    return {m.name: m.value for m in outcome.result.measurements}  # type: ignore[attr-defined]


async def test_counts_by_name_with_rss_from_proc(tmp_path: Path, sleeper: Path, spawn: Spawn) -> None:
    procs = [spawn(sleeper, "60") for _ in range(3)]
    outcome = (await run_checks(tmp_path, f"checks: [{{name: p, type: process, process_name: {sleeper.name}}}]"))["p"]
    assert outcome.status is Status.OK, outcome.result
    v = values(outcome)
    assert v["count"] == 3 and v["zombies"] == 0
    rss = 0
    for proc in procs:
        status = Path(f"/proc/{proc.pid}/status").read_text()
        rss += int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1]) * 1024
    assert v["rss"] == pytest.approx(rss, rel=0.1)
    assert sorted(outcome.result.details["pids"]) == sorted(p.pid for p in procs)
    assert outcome.result.summary.startswith(f"3 processes named {sleeper.name!r}, RSS ")


async def test_cmdline_regex_and_cpu_time(tmp_path: Path, spawn: Spawn) -> None:
    token = secrets.token_hex(6)
    busy = ("import sys, time\nstart = time.process_time()\nwhile time.process_time() - start < 0.3: pass\n"
            "print('ready', flush=True)\ntime.sleep(60)\n")
    proc = spawn(sys.executable, "-c", busy, token, stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    outcome = (await run_checks(tmp_path, f"""
        checks:
          - {{name: busy, type: process, cmdline: 'python.* {token}$'}}
          - {{name: nomatch, type: process, cmdline: '{token}-other'}}
    """))
    v = values(outcome["busy"])
    assert v["count"] == 1
    times = psutil.Process(proc.pid).cpu_times()
    assert 0.25 <= v["cpu_time"] <= times.user + times.system + 0.05
    assert outcome["busy"].result.measurement("cpu_time").unit == "s"  # type: ignore[union-attr]
    assert outcome["nomatch"].status is Status.CRITICAL and outcome["nomatch"].result.reason == "not_running"
    # The config (and so probe's own command line in other runs) contains the token: never counted.
    assert values(outcome["nomatch"])["count"] == 0


async def test_user_by_name_and_uid(tmp_path: Path, sleeper: Path, spawn: Spawn) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to start a process as nobody")
    spawn(sleeper, "60", user=65534)
    spawn(sleeper, "60")
    outcomes = await run_checks(tmp_path, f"""
        checks:
          - {{name: nobody, type: process, process_name: {sleeper.name}, user: nobody}}
          - {{name: uid, type: process, process_name: {sleeper.name}, user: "65534"}}
          - {{name: root, type: process, process_name: {sleeper.name}, user: root}}
          - {{name: daemon, type: process, process_name: {sleeper.name}, user: daemon}}
          - {{name: nosuch, type: process, process_name: {sleeper.name}, user: no-such-user-here}}
    """)
    assert [values(outcomes[n])["count"] for n in ("nobody", "uid", "root", "daemon", "nosuch")] == [1, 1, 1, 0, 0]
    assert values(outcomes["nobody"])["rss"] > 0 and values(outcomes["root"])["cpu_time"] >= 0
    assert outcomes["daemon"].result.reason == "not_running"
    assert outcomes["daemon"].result.summary == (f"0 processes named {sleeper.name!r} of user daemon, "
                                                 "expected at least 1")


async def test_min_and_max_count(tmp_path: Path, sleeper: Path, spawn: Spawn) -> None:
    for _ in range(3):
        spawn(sleeper, "60")
    outcomes = await run_checks(tmp_path, f"""
        checks:
          - {{name: few, type: process, process_name: {sleeper.name}, min_count: 4}}
          - {{name: many, type: process, process_name: {sleeper.name}, max_count: 2}}
          - {{name: fits, type: process, process_name: {sleeper.name}, min_count: 3, max_count: 3}}
          - {{name: optional, type: process, process_name: {sleeper.name}-x, min_count: 0}}
    """)
    assert (outcomes["few"].status, outcomes["few"].result.reason) == (Status.CRITICAL, "too_few")
    assert outcomes["few"].result.summary == f"3 processes named {sleeper.name!r}, expected at least 4"
    assert (outcomes["many"].status, outcomes["many"].result.reason) == (Status.CRITICAL, "too_many")
    assert outcomes["fits"].status is Status.OK
    assert outcomes["optional"].status is Status.OK


async def test_an_unreaped_zombie_is_not_running(tmp_path: Path, sleeper: Path, spawn: Spawn) -> None:
    zombie = spawn(sleeper, "0")  # exits at once; we never wait() until teardown, so it stays a zombie
    wait_for_status(zombie.pid, psutil.STATUS_ZOMBIE)
    outcome = (await run_checks(tmp_path, f"checks: [{{name: z, type: process, process_name: {sleeper.name}}}]"))["z"]
    assert (outcome.status, outcome.result.reason) == (Status.CRITICAL, "zombie")
    assert values(outcome)["count"] == 0 and values(outcome)["zombies"] == 1
    assert outcome.result.details["zombie_pids"] == [zombie.pid]
    assert "(1 zombie not counted)" in outcome.result.summary


async def test_zombies_beside_running_processes_are_measured(tmp_path: Path, sleeper: Path, spawn: Spawn) -> None:
    spawn(sleeper, "60")
    zombie = spawn(sleeper, "0")
    wait_for_status(zombie.pid, psutil.STATUS_ZOMBIE)
    outcomes = await run_checks(tmp_path, f"""
        checks:
          - {{name: plain, type: process, process_name: {sleeper.name}}}
          - {{name: strict, type: process, process_name: {sleeper.name}, thresholds: {{zombies: {{warning: "> 0"}}}}}}
    """)
    assert outcomes["plain"].status is Status.OK
    assert values(outcomes["plain"]) | {"rss": 0, "cpu_time": 0, "duration": 0} == {
        "count": 1, "zombies": 1, "rss": 0, "cpu_time": 0, "duration": 0}
    assert outcomes["strict"].status is Status.WARNING


async def test_pidfiles(tmp_path: Path, sleeper: Path, spawn: Spawn) -> None:
    alive = spawn(sleeper, "60")
    dead = spawn(sleeper, "0")
    dead.wait()
    zombie = spawn(sleeper, "0")
    wait_for_status(zombie.pid, psutil.STATUS_ZOMBIE)
    files = {
        "alive": f"{alive.pid}\n", "dead": f"{dead.pid}\n", "zombie": str(zombie.pid), "garbage": "nginx\x00\n",
        "empty": "", "negative": "-5", "huge": "99999999999", "reused": str(os.getpid()),
    }
    for name, content in files.items():
        (tmp_path / f"{name}.pid").write_text(content)
    checks = "\n".join(
        f"  - {{name: {n}, type: process, pidfile: {tmp_path}/{n}.pid"
        + (f", process_name: {sleeper.name}}}" if n == "reused" else "}")
        for n in [*files, "missing"]
    )
    outcomes = await run_checks(tmp_path, f"checks:\n{checks}\n")
    got = {n: (o.status.name, o.result.reason) for n, o in outcomes.items()}
    assert got == {
        "alive": ("OK", ""),
        "dead": ("CRITICAL", "stale_pidfile"),
        "zombie": ("CRITICAL", "zombie"),
        "garbage": ("CRITICAL", "invalid_pidfile"),
        "empty": ("CRITICAL", "invalid_pidfile"),
        "negative": ("CRITICAL", "invalid_pidfile"),
        "huge": ("CRITICAL", "invalid_pidfile"),
        "reused": ("CRITICAL", "stale_pidfile"),
        "missing": ("CRITICAL", "not_running"),
    }
    assert values(outcomes["alive"])["count"] == 1
    assert outcomes["dead"].result.summary == f"pid {dead.pid} from {tmp_path}/dead.pid is not running (stale pidfile)"
    assert outcomes["garbage"].result.summary == f"pidfile {tmp_path}/garbage.pid does not hold a pid: 'nginx\\x00'"
    assert outcomes["missing"].result.summary == f"pidfile {tmp_path}/missing.pid does not exist"
    assert "does not match ('python" in outcomes["reused"].result.summary or "pytest" in \
        outcomes["reused"].result.summary


@pytest.mark.parametrize(("options", "message"), [
    ("min_count: 1", "set at least one of process_name, cmdline, user or pidfile ('name' is the check's own name)"),
    ("cmdline: '(unclosed'", "cmdline is not a valid regular expression: missing ), unterminated subpattern"),
    ("process_name: x, min_count: 3, max_count: 2", "max_count (2) is less than min_count (3)"),
    ("process_name: x, min_count: -1", "min_count: input should be greater than or equal to 0"),
    ("process_name: x, max_count: 0", "max_count: input should be greater than or equal to 1"),
    ("process_name: x, pid: 3", "pid: unknown key 'pid'; did you mean 'pidfile'?"),
])
def test_bad_options_are_config_errors(tmp_path: Path, options: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    errors = config_errors(path, f"checks:\n  - {{name: p, type: process, {options}}}\n")
    assert len(errors) == 1 and errors[0].startswith(f"{path}:2:") and message in errors[0], errors


def test_unreadable_pidfile_is_permission_denied(tmp_path: Path) -> None:
    """Runs the check as nobody against a pidfile only root may read."""
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to an unprivileged user")
    pidfile = tmp_path / "root-only.pid"
    pidfile.write_text(f"{os.getpid()}\n")
    pidfile.chmod(0o600)
    tmp_path.chmod(0o755)
    code = (
        "import json, os, time, logging\n"
        "from probe.checks.process import ProcessCheck\n"
        "from probe.check import Context\n"
        "os.setgid(65534); os.setuid(65534)\n"
        f"check = ProcessCheck('x', ProcessCheck.Options(pidfile={str(pidfile)!r}))\n"
        "r = check.run(Context('x', time.monotonic() + 5, logging.getLogger('t')))\n"
        "print(json.dumps([r.status.name, r.reason, r.summary]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, cwd="/")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == ["UNKNOWN", "permission_denied", f"pidfile {pidfile}: permission denied"]


def test_the_scan_reads_proc_as_psutil_does(tmp_path: Path, spawn: Spawn) -> None:
    """The check's own /proc scan (not psutil.process_iter, for speed: docs/performance.md) against psutil on
    every process of this machine plus awkward ones: a name past the kernel's 15 characters, one with spaces
    and a parenthesis, argv with spaces, newlines and an empty argument, a process that rewrote its argv
    into one space-separated string (as setproctitle does), a zombie, and one running as nobody."""
    from probe.checks.process import _scan

    long_name = tmp_path / "a-process-name-longer-than-15"
    shutil.copy(shutil.which("sleep") or "/bin/sleep", long_name)
    odd_name = tmp_path / "odd (name) x"
    shutil.copy(shutil.which("sleep") or "/bin/sleep", odd_name)
    spawn(long_name, "60")
    spawn(odd_name, "60")
    spawn(sys.executable, "-c", "import time; time.sleep(60)", "two words", "line\nbreak", "")
    spawn("perl", "-e", '$0 = "rewritten title with spaces"; sleep 60')  # perl rewrites argv in place
    zombie = spawn(sys.executable, "-c", "pass")
    wait_for_status(zombie.pid, psutil.STATUS_ZOMBIE)
    if os.geteuid() == 0:
        spawn("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "sleep", "60")
    time.sleep(0.2)

    ours = {info["pid"]: info for info in _scan(name=True, cmdline=True, uid=True)}
    theirs = {p.pid: p.info for p in psutil.process_iter(["name", "cmdline", "uids", "status"])}
    both = sorted(set(ours) & set(theirs))
    assert len(both) > 20 and zombie.pid in both
    def fields(mine: dict[str, object], ref: dict[str, object]) -> dict[str, tuple[object, object]]:
        uids = ref["uids"]
        # psutil says None where it cannot read argv (a zombie's); the filter joins None and [] alike
        return {"name": (mine["name"], ref["name"]), "cmdline": (mine["cmdline"] or [], ref["cmdline"] or []),
                "uid": (mine["uid"], uids.real if uids else None),  # type: ignore[attr-defined]
                "zombie": (mine["status"] == psutil.STATUS_ZOMBIE, ref["status"] == psutil.STATUS_ZOMBIE)}

    differ = []
    for pid in both:
        for attempt in range(3):  # a kernel worker renames itself as it works: read both sides again
            try:
                mine = ours[pid] if attempt == 0 else next(
                    i for i in _scan(name=True, cmdline=True, uid=True) if i["pid"] == pid)
                ref = theirs[pid] if attempt == 0 else psutil.Process(pid).as_dict(
                    ["name", "cmdline", "uids", "status"])
            except (StopIteration, psutil.NoSuchProcess):  # exited between the reads
                wrong = []
                break
            wrong = [(pid, field, a, b) for field, (a, b) in fields(mine, ref).items() if a != b]
            if not wrong:
                break
        differ += wrong
    assert differ == []
    assert os.getpid() not in ours  # the agent itself is never a candidate
    names = {info["name"] for info in ours.values()}
    assert {long_name.name, odd_name.name} <= names
    assert ["rewritten", "title", "with", "spaces"] in [info["cmdline"] for info in ours.values()]


def test_memory_and_cpu_read_from_the_scan_are_psutils(spawn: Spawn) -> None:
    """A match's RSS and CPU time come from statm and the /proc/PID/stat the scan already read, not from
    psutil's three reads: the same numbers as its memory_info().rss and cpu_times() for processes that are
    not running at the moment (a sleeper, and one that used CPU and holds 20 MB)."""
    from probe.checks.process import _scan, _usage

    busy = ("import sys, time\nstart = time.process_time()\nwhile time.process_time() - start < 0.2: pass\n"
            "data = bytearray(20_000_000)\nprint('ready', flush=True)\ntime.sleep(60)\n")
    procs = [spawn(sys.executable, "-c", busy, stdout=subprocess.PIPE), spawn("sleep", "60")]
    for proc in procs[:1]:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    time.sleep(0.1)
    ours = {info["pid"]: _usage(info["pid"], info["stat"]) for info in _scan(name=False, cmdline=False, uid=False)
            if info["pid"] in {p.pid for p in procs}}
    for proc in procs:
        ref = psutil.Process(proc.pid)
        times = ref.cpu_times()
        assert ours[proc.pid] == {"rss": ref.memory_info().rss,
                                  "cpu": pytest.approx(times.user + times.system, abs=1e-9)}
    assert ours[procs[0].pid]["rss"] > 20_000_000 and ours[procs[0].pid]["cpu"] >= 0.2
