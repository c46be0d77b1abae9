"""The state directory, trusted the way sshd trusts ``~/.ssh`` and postfix its queue: only when no one else can
change it.

probe (often as root) creates, writes and locks files there: the history, the check states and remediation
budgets kept in it, and the agent's lock. Were the directory another user's, or writable by one, they could
plant ``history.sqlite3 -> /etc/shadow`` and root would create or overwrite whatever they name. So before
anything in it is opened:

- the directory must be owned by the agent's user and writable by no one else; every directory above it must
  be owned by root or that user and not writable by others (a root-owned sticky directory, ``/tmp``, is fine:
  others cannot rename what they do not own in it);
- it is created 0700, or 0750 under systemd (``$STATE_DIRECTORY`` set; ``StateDirectoryMode=0750`` lets the
  ``probe`` group read reports), and an existing one with wider modes is narrowed to that;
- a file probe keeps there must be a regular file (never a symlink: ``O_NOFOLLOW``) owned by the agent's user
  with one link, and is created 0600 (0640 under systemd) whatever the umask.

An unsafe state directory is a configuration error (exit 78): the agent refuses to start, naming the path,
what is wrong and the fix, as sshd's StrictModes does. Unlike the StrictModes of the config files this holds
for every user, not only root: a state directory another user can write lets them falsify history and
budgets whoever the agent runs as.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from probe._permissions import describe_user

LOCK_NAME = "probe.lock"
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")
"""Files SQLite keeps beside a database: checked like the database (SQLite opens them by name)."""


class StateDirError(Exception):
    """The state directory (or a file in it) cannot be trusted; the message names the path and the fix."""


class StateLocked(Exception):
    """Another agent holds the state directory's lock (exit 75, EX_TEMPFAIL: try again when it has stopped)."""


@dataclass(frozen=True)
class Modes:
    directory: int
    file: int


def modes(env: Mapping[str, str] | None = None) -> Modes:
    """0700/0600, or 0750/0640 under systemd (its ``StateDirectoryMode=0750`` lets the probe group read)."""
    env = os.environ if env is None else env
    return Modes(0o750, 0o640) if env.get("STATE_DIRECTORY") else Modes(0o700, 0o600)


def prepare(directory: Path, env: Mapping[str, str] | None = None) -> Path:
    """Create ``directory`` if missing (its mode whatever the umask), narrow a wider mode, and check that no
    one but the agent's user can change it or anything above it. Raises :class:`StateDirError`."""
    wanted = modes(env).directory
    directory = Path(directory).absolute()
    directory.parent.mkdir(parents=True, exist_ok=True)  # an OSError (read-only, full) is the caller's to report
    with contextlib.suppress(FileExistsError):
        os.mkdir(directory, wanted)
    st = os.stat(directory)
    if not stat.S_ISDIR(st.st_mode):
        raise NotADirectoryError(errno.ENOTDIR, "the state directory is not a directory", str(directory))
    _judge_directory(directory, st)
    for parent in dict.fromkeys((*directory.resolve().parents, *directory.parents)):
        _judge_parent(directory, parent)
    if st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) & ~wanted:
        os.chmod(directory, stat.S_IMODE(st.st_mode) & wanted)  # the umask or an older probe made it wider
    return directory


def _judge_directory(directory: Path, st: os.stat_result) -> None:
    problems, fixes = [], []
    if st.st_uid != os.geteuid():
        problems.append(f"is owned by {describe_user(st.st_uid)}, not by {describe_user(os.geteuid())} that "
                        "runs the agent")
        fixes.append(f"chown {_name(os.geteuid())} {directory}")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        problems.append(f"is writable by {_who(st.st_mode)} (mode {stat.S_IMODE(st.st_mode):04o})")
        fixes.append(f"chmod go-w {directory}")
    if problems:
        raise StateDirError(f"state directory {directory} {' and '.join(problems)}; probe keeps its history and "
                            f"lock only where no other user can replace them: {' && '.join(fixes)}")


def _judge_parent(directory: Path, parent: Path) -> None:
    try:
        st = os.stat(parent)
    except OSError:
        return
    problems, fixes = [], []
    if st.st_uid not in (0, os.geteuid()):
        problems.append(f"is owned by {describe_user(st.st_uid)}")
        fixes.append(f"chown root {parent}")
    writable = st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    if writable and not (st.st_mode & stat.S_ISVTX and st.st_uid == 0):
        problems.append(f"is writable by {_who(st.st_mode)} (mode {stat.S_IMODE(st.st_mode):04o})")
        fixes.append(f"chmod go-w {parent}")
    if problems:
        raise StateDirError(f"state directory {directory}: directory {parent} above it {' and '.join(problems)}; "
                            f"another user could swap the state directory: {' && '.join(fixes)}")


def check_file(path: Path) -> None:
    """A file in the state directory, if it exists, must be a regular file (not a symlink, FIFO or device)
    owned by the agent's user, with one link and no write bit for others. A wider read mode is narrowed."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StateDirError(f"{path}: {exc.strerror or exc}") from exc
    what = None
    if stat.S_ISLNK(st.st_mode):
        what = f"is a symlink (to {os.readlink(path)!r}); probe never follows links in its state directory"
    elif not stat.S_ISREG(st.st_mode):
        what = "is not a regular file"
    elif st.st_uid != os.geteuid():
        what = f"is owned by {describe_user(st.st_uid)}, not by the agent's user"
    elif st.st_nlink != 1:
        what = f"has {st.st_nlink} hard links; another name for it could be anywhere"
    elif st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        what = f"is writable by {_who(st.st_mode)} (mode {stat.S_IMODE(st.st_mode):04o})"
    if what is not None:
        raise StateDirError(f"{path} {what}; remove it (probe recreates it) or fix it by hand")
    wanted = modes().file
    if stat.S_IMODE(st.st_mode) & ~wanted:
        os.chmod(path, stat.S_IMODE(st.st_mode) & wanted, follow_symlinks=False)


def open_file(path: Path, flags: int = os.O_RDWR) -> int:
    """Open (creating it if missing) a file in the prepared state directory: never through a symlink, only a
    regular file of ours, created with the state file mode whatever the umask. Returns the fd."""
    check_file(path)
    wanted = modes().file
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, wanted)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise StateDirError(f"{path} is a symlink; probe never follows links in its state directory") from exc
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_nlink != 1:
            raise StateDirError(f"{path} changed while it was opened; refusing it")
        if stat.S_IMODE(st.st_mode) != wanted and st.st_size == 0:
            os.fchmod(fd, wanted)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def prepare_database(path: Path) -> None:
    """The state directory and an SQLite database in it, made safe before SQLite opens them by name: the
    database is created here (SQLite gives its WAL and shared-memory files the database's mode)."""
    prepare(path.parent)
    for suffix in SQLITE_COMPANIONS:
        check_file(Path(f"{path}{suffix}"))
    if os.path.lexists(path):
        # Judged without opening it: closing any descriptor of a database file drops every POSIX lock this
        # process holds on it, SQLite's included (the agent keeps connections open while the CLI, the ping
        # endpoint and the history writer come and go). In a safe directory nobody can swap it afterwards.
        check_file(path)
        return
    try:
        os.close(open_file(path))
    except StateDirError:
        raise
    except OSError:
        pass  # a read-only or full disk: SQLite meets the same and reports it (the history then degrades)


class StateLock:
    """The agent's exclusive hold on its state directory: an ``flock`` on ``probe.lock``, which also holds the
    holder's pid (for the message a second agent prints). Released when the process ends, however it ends."""

    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> StateLock:
        fd = open_file(self.path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_pid(fd)
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise StateDirError(f"cannot lock {self.path}: {exc.strerror or exc}") from exc
            who = f"pid {holder}" if holder else "another process"
            raise StateLocked(f"another probe agent ({who}) is running on the state directory {self.path.parent} "
                              f"(it holds {self.path}); stop it first, or give this one another state_dir") \
                from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing the last fd drops the flock
            self._fd = None

    def __enter__(self) -> StateLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_pid(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return ""
    return text if text.isdigit() else ""


def _who(mode: int) -> str:
    return " and ".join(w for w, bit in (("group", stat.S_IWGRP), ("others", stat.S_IWOTH)) if mode & bit)


def _name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)
