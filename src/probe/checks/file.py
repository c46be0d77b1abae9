"""file: a path or glob (the newest match is checked): existence, age, size, content, owner and mode."""

from __future__ import annotations

import glob
import grp
import os
import pwd
import re
import stat
import time
from collections.abc import Callable
from typing import Any

from pydantic import field_validator

import probe
from probe.hookspecs import CheckRegistrar
from probe.units import Size, format_duration, format_size

_GLOB_CHARS = frozenset("*?[")


class FileOptions(probe.Options):
    path: str
    """A path, or a glob (``/var/backups/db-*.sql.gz``, ``**`` recurses): the newest match is checked."""
    exists: bool = True
    """Set to false to require that nothing matches (a stale lock file, a maintenance flag)."""
    content: str | None = None
    """A regular expression that must occur in the file (searched in the first ``max_read`` bytes)."""
    max_read: Size = 1024 * 1024
    """How much of the file ``content`` is searched in."""
    owner: str | None = None
    """Required owner, as a user name or numeric uid."""
    group: str | None = None
    """Required group, as a group name or numeric gid."""
    mode: str | None = None
    """Required permission bits, in octal (``"0640"``); quote it in YAML so it stays a string."""

    @field_validator("content")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression: {exc}") from None
        return value

    @field_validator("mode", mode="before")
    @classmethod
    def _octal(cls, value: object) -> object:
        if isinstance(value, int) and not isinstance(value, bool):
            # YAML read 0640 as decimal 640 or octal 416; only the written digits are meaningful.
            raise ValueError(f"quote the mode so YAML keeps it octal, e.g. mode: \"0{value:o}\" or \"{value}\"")
        if isinstance(value, str) and not re.fullmatch(r"0?[0-7]{3,4}", value):
            raise ValueError(f"expected octal permission bits like \"0640\", got {value!r}")
        return value


class FileCheck(probe.Check[FileOptions]):
    """Checks one file, or the newest of the files a glob matches (backups, dumps, rotated exports).

    Age and size are measurements, so "newer than 26h" and "bigger than 1MiB" are thresholds."""

    type = "file"
    local = True  # reads this host only: runs start on whole seconds with the other local checks
    measurements = frozenset({"duration", "age", "size", "count"})
    units = {"duration": "s", "age": "s", "size": "By", "count": "{file}"}

    def run(self, ctx: probe.Context) -> probe.Result:
        o = self.options
        matches = _matches(o.path)
        count = probe.Measurement("count", float(len(matches)), "{file}")
        if not o.exists:
            if matches:
                return probe.Result.critical(f"{matches[0]} exists but should not", count,
                                             reason="unexpected_file", details={"matches": matches[:20]})
            return probe.Result.ok(f"{o.path}: absent, as expected", count)
        if not matches:
            return probe.Result.critical(f"{o.path}: {_nothing(o.path)}", count, reason="not_found")
        try:
            path, st = _newest(matches)
        except PermissionError as exc:
            return probe.Result.unknown(f"{exc.filename}: permission denied", count, reason="permission_denied")
        if path is None or st is None:
            return probe.Result.critical(f"{o.path}: only dangling symlinks match", count, reason="not_found")
        age = time.time() - st.st_mtime
        measurements = (probe.Measurement("age", age, "s"), probe.Measurement("size", float(st.st_size), "By"),
                        count)
        details: dict[str, Any] = {"path": path, "mode": f"{stat.S_IMODE(st.st_mode):04o}",
                                   "owner": _user(st.st_uid), "group": _group(st.st_gid)}
        problem = self._problem(path, st)
        summary = f"{path}: modified {format_duration(max(age, 0))} ago, {format_size(st.st_size)}"
        if len(matches) > 1:
            summary += f" (newest of {len(matches)})"
        if problem is not None:
            status, reason, text = problem
            return probe.Result(status, f"{text}; {summary}", reason, measurements, details)
        return probe.Result.ok(summary, *measurements, details=details)

    def _problem(self, path: str, st: os.stat_result) -> tuple[probe.Status, str, str] | None:
        o = self.options
        crit = probe.Status.CRITICAL
        if o.owner is not None and not _same(o.owner, st.st_uid, _user):
            return crit, "owner_mismatch", f"owner is {_user(st.st_uid)}, expected {o.owner}"
        if o.group is not None and not _same(o.group, st.st_gid, _group):
            return crit, "group_mismatch", f"group is {_group(st.st_gid)}, expected {o.group}"
        if o.mode is not None and stat.S_IMODE(st.st_mode) != int(o.mode, 8):
            return crit, "mode_mismatch", f"mode is {stat.S_IMODE(st.st_mode):04o}, expected {int(o.mode, 8):04o}"
        if o.content is not None:
            return _content_problem(path, st, o.content, int(o.max_read))
        return None


def _content_problem(path: str, st: os.stat_result, pattern: str, limit: int) -> tuple[probe.Status, str, str] | None:
    if not stat.S_ISREG(st.st_mode):
        return probe.Status.UNKNOWN, "not_a_file", "not a regular file, cannot search its content"
    try:
        with open(path, "rb") as f:
            data = f.read(limit)
    except PermissionError:
        return probe.Status.UNKNOWN, "permission_denied", "permission denied reading the content"
    except OSError as exc:
        return probe.Status.UNKNOWN, "read_error", f"cannot read the content: {exc.strerror or exc}"
    if re.search(pattern, data.decode("utf-8", errors="replace"), re.MULTILINE):
        return None
    where = "" if st.st_size <= limit else f" (first {format_size(limit)} searched)"
    return probe.Status.CRITICAL, "content_mismatch", f"content does not match /{pattern}/{where}"


def _matches(pattern: str) -> list[str]:
    if not _GLOB_CHARS & set(pattern):
        return [pattern] if os.path.lexists(pattern) else []
    return sorted(glob.glob(pattern, recursive=True))


def _newest(paths: list[str]) -> tuple[str | None, os.stat_result | None]:
    best: tuple[str | None, os.stat_result | None] = (None, None)
    for path in paths:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            continue  # a dangling symlink, or removed since the glob ran (rotation in progress)
        if best[1] is None or st.st_mtime > best[1].st_mtime:
            best = (path, st)
    return best


def _nothing(pattern: str) -> str:
    return "no file matches" if _GLOB_CHARS & set(pattern) else "no such file or directory"


def _same(expected: str, actual_id: int, name_of: Callable[[int], str]) -> bool:
    return expected == str(actual_id) or expected == name_of(actual_id)


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


@probe.hookimpl
def register_checks(register: CheckRegistrar) -> None:
    register(FileCheck)
