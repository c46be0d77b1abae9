"""The state directory under attack, for real: another user's directory with a planted symlink, a symlink
planted before the directory was locked down, a umask of 022, and a second agent on the same directory.
Attacks that need a second user run as root with ``nobody``; the rest run as any user."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hostfs import probe_cli

from probe._statedir import StateDirError, StateLock, StateLocked, check_file, prepare, prepare_database
from probe.sinks.history import DB_NAME, HistoryStore

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="the attacker is another user (nobody): needs root to make one")
CHECKS = "checks:\n  - name: mem\n    type: memory\n    interval: 2s\n    timeout: 1s\n"
REMEDIATE = ("checks:\n  - name: gone\n    type: file\n    path: {missing}\n    interval: 2s\n    timeout: 1s\n"
             "    remediate:\n      - run: [/bin/true]\n        on: critical\n")


def as_nobody(command: str) -> None:
    """Run a shell command as the unprivileged attacker."""
    subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "/bin/sh", "-c", command],
                   check=True, timeout=30)


@pytest.fixture
def reachable(tmp_path: Path) -> Iterator[Path]:
    """A root-owned 0755 directory the attacker can reach (pytest's own tmp dirs are 0700)."""
    path = Path(tempfile.mkdtemp(prefix="probe-statedir-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A root-owned file the attacker wants root to overwrite."""
    path = tmp_path / "victim"
    path.write_text("root's precious data\n")
    path.chmod(0o644)
    return path


def config(tmp_path: Path, state: Path, checks: str = CHECKS) -> list[str]:
    (tmp_path / "checks.yaml").write_text(checks)
    (tmp_path / "probe.yaml").write_text(json.dumps({"state_dir": str(state), "plugins": {"entry_points": False}}))
    return ["--config", str(tmp_path / "probe.yaml"), "--config-dir", str(tmp_path / "checks.yaml")]


def outside_systemd() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "STATE_DIRECTORY"}


@needs_root
def test_root_refuses_a_state_dir_owned_by_another_user_and_follows_none_of_its_symlinks(
        tmp_path: Path, reachable: Path, victim: Path) -> None:
    state = reachable / "state"
    state.mkdir(mode=0o755)
    os.chown(state, pwd.getpwnam("nobody").pw_uid, -1)
    as_nobody(f"ln -s {victim} {state / DB_NAME}")
    args = config(tmp_path, state)
    proc = probe_cli(*args, "run", timeout=60)
    assert proc.returncode == 78, proc.stderr
    assert f"state directory {state} is owned by user nobody" in proc.stderr
    assert "chown root" in proc.stderr
    assert victim.read_text() == "root's precious data\n"
    assert (state / DB_NAME).is_symlink() and not (state / "probe.lock").exists()


@needs_root
def test_probe_check_remediate_never_writes_its_audit_through_a_planted_symlink(
        tmp_path: Path, reachable: Path, victim: Path) -> None:
    state = reachable / "state"
    state.mkdir()
    state.chmod(0o777)  # once open to everyone: nobody planted the link, then root locked the directory down
    as_nobody(f"ln -s {victim} {state / DB_NAME}")
    state.chmod(0o700)
    args = config(tmp_path, state, REMEDIATE.format(missing=tmp_path / "missing"))
    proc = probe_cli(*args, "check", "gone", "--remediate", "--no-dry-run")
    assert proc.returncode == 78, proc.stderr
    assert f"{state / DB_NAME} is a symlink" in proc.stderr
    assert victim.read_text() == "root's precious data\n"


@needs_root
def test_a_state_dir_others_can_write_is_refused_even_when_root_owns_it(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(0o1777)  # sticky does not help: the agent's own files would sit beside an attacker's
    with pytest.raises(StateDirError, match=r"writable by group and others \(mode 1777\).*chmod go-w"):
        prepare(state)


@needs_root
def test_a_parent_directory_another_user_owns_is_refused(tmp_path: Path) -> None:
    parent = tmp_path / "theirs"
    parent.mkdir(mode=0o755)
    os.chown(parent, pwd.getpwnam("nobody").pw_uid, -1)
    with pytest.raises(StateDirError, match=f"directory {parent} above it is owned by user nobody"):
        prepare(parent / "state")


@pytest.mark.parametrize("kind", ["fifo", "hardlink", "symlink"])
def test_files_in_the_state_dir_must_be_plain_files_of_ours(tmp_path: Path, kind: str) -> None:
    state = prepare(tmp_path / "state")
    target = state / DB_NAME
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "hardlink":
        (tmp_path / "elsewhere").write_text("")
        os.link(tmp_path / "elsewhere", target)
    else:
        target.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(StateDirError, match={"fifo": "not a regular file", "hardlink": "2 hard links",
                                             "symlink": "is a symlink"}[kind]):
        HistoryStore(target).open()


def test_a_planted_wal_symlink_is_refused_before_sqlite_opens_anything(tmp_path: Path) -> None:
    state = prepare(tmp_path / "state")
    (state / f"{DB_NAME}-wal").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(StateDirError, match="-wal is a symlink"):
        prepare_database(state / DB_NAME)
    assert not (state / DB_NAME).exists() and not (tmp_path / "elsewhere").exists()


@pytest.mark.parametrize(("systemd", "dir_mode", "file_mode"), [(False, 0o700, 0o600), (True, 0o750, 0o640)])
def test_modes_hold_whatever_the_umask(tmp_path: Path, systemd: bool, dir_mode: int, file_mode: int) -> None:
    """The Low finding: as root outside systemd (umask 022) the state dir was 0755 and the database 0644."""
    state = tmp_path / "state"
    env = outside_systemd() | ({"STATE_DIRECTORY": str(state)} if systemd else {})
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    code = ("import os, sys; os.umask(0o022); from pathlib import Path; from probe.sinks.history import "
            "HistoryStore; s = HistoryStore(Path(sys.argv[1])).open(); s.record_transition(1.0, 'a', 'hard', 0, 2);"
            "s.flush(); from probe._statedir import StateLock; StateLock(Path(sys.argv[1]).parent).acquire();"
            "s.close()")
    subprocess.run([sys.executable, "-c", code, str(state / DB_NAME)], env=env, check=True, timeout=60)
    assert stat.S_IMODE(state.stat().st_mode) == dir_mode
    for name in (DB_NAME, "probe.lock"):
        assert stat.S_IMODE((state / name).stat().st_mode) == file_mode, name


def test_an_existing_wide_state_dir_and_database_are_narrowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    monkeypatch.delenv("STATE_DIRECTORY")
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(0o755)
    (state / DB_NAME).write_bytes(b"")
    (state / DB_NAME).chmod(0o644)
    prepare_database(state / DB_NAME)
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE((state / DB_NAME).stat().st_mode) == 0o600


def test_a_lock_held_by_another_process_is_refused_with_its_pid(tmp_path: Path) -> None:
    state = prepare(tmp_path / "state")
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                               "from probe._statedir import StateLock; StateLock(Path(sys.argv[1])).acquire(); "
                               "print('held', flush=True); time.sleep(60)", str(state)],
                              stdout=subprocess.PIPE, text=True,
                              env=os.environ | {"PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(StateLocked, match=f"pid {holder.pid}"):
            StateLock(state).acquire()
    finally:
        holder.kill()
        holder.wait()
    StateLock(state).acquire().release()  # the kernel dropped the dead holder's lock


def test_check_file_leaves_a_missing_file_alone(tmp_path: Path) -> None:
    check_file(tmp_path / "absent")


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[list[str], Path, subprocess.Popen[str]]]:
    state = tmp_path / "state"
    args = config(tmp_path, state)
    proc = subprocess.Popen([sys.executable, "-m", "probe", *args, "run"], stderr=subprocess.PIPE, text=True,
                            env=outside_systemd())
    deadline = time.monotonic() + 60
    while not (state / DB_NAME).exists() or not (state / "probe.lock").read_text().strip():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "the agent did not start"
        time.sleep(0.1)
    try:
        yield args, state, proc
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)


def test_a_second_agent_on_the_same_state_dir_exits_75_and_read_only_commands_still_work(
        daemon: tuple[list[str], Path, subprocess.Popen[str]]) -> None:
    args, state, first = daemon
    second = probe_cli(*args, "run", env=outside_systemd())
    assert second.returncode == 75, second.stderr
    assert f"another probe agent (pid {first.pid}) is running on the state directory {state}" in second.stderr
    deadline = time.monotonic() + 30
    while True:  # status reads the store the first agent is writing
        status = probe_cli(*args, "status", "--state-dir", state, "--format", "json", env=outside_systemd())
        if (status.returncode in (0, 1, 2, 3) and '"mem"' in status.stdout) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert '"mem"' in status.stdout, status.stderr
    report = probe_cli(*args, "report", "--state-dir", state, "--since", "1h", env=outside_systemd())
    assert report.returncode == 0, report.stderr
    assert first.poll() is None


def test_remediation_by_hand_beside_the_agent_exits_75_and_runs_nothing(
        tmp_path: Path, daemon: tuple[list[str], Path, subprocess.Popen[str]]) -> None:
    """`probe check --remediate --no-dry-run` and `run --once --remediate` next to a running agent would run
    an action the agent may run too, each counting max_runs on its own: they take the agent's lock, so they
    exit 75 and run nothing; once the agent has stopped they run."""
    _, state, first = daemon
    marker = tmp_path / "remediated"
    checks = REMEDIATE.format(missing=tmp_path / "missing").replace("[/bin/true]", f"[/usr/bin/touch, {marker}]")
    by_hand = tmp_path / "by-hand"
    by_hand.mkdir()
    args = config(by_hand, state, checks)
    for command in (["check", "gone", "--remediate", "--no-dry-run"], ["run", "--once", "--remediate"]):
        proc = probe_cli(*args, *command, env=outside_systemd())
        assert proc.returncode == 75, proc.stderr
        assert f"remediation not run: another probe agent (pid {first.pid})" in proc.stderr
        assert not marker.exists()
    dry = probe_cli(*args, "check", "gone", "--remediate", env=outside_systemd())
    assert dry.returncode == 2 and "fires" in dry.stdout, dry.stderr  # the dry run only reads: allowed
    first.send_signal(signal.SIGTERM)
    first.communicate(timeout=60)
    proc = probe_cli(*args, "check", "gone", "--remediate", "--no-dry-run", env=outside_systemd())
    assert marker.exists(), proc.stdout + proc.stderr
