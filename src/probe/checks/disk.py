"""disk: space and inode usage of one path, or of every mount matching include/exclude."""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, replace

from pydantic import model_validator

import probe
from probe.hookspecs import CheckRegistrar
from probe.units import format_size

# Pseudo and virtual filesystems that have no capacity to run out of.
PSEUDO_FS = frozenset({
    "proc", "sysfs", "devtmpfs", "devpts", "cgroup", "cgroup2", "securityfs", "pstore", "bpf", "debugfs",
    "tracefs", "configfs", "fusectl", "mqueue", "hugetlbfs", "autofs", "binfmt_misc", "rpc_pipefs", "nsfs",
    "efivarfs", "ramfs", "squashfs", "overlay", "fuse.lxcfs", "selinuxfs", "nfsd",
})


@dataclass(frozen=True)
class Mount:
    """One line of /proc/self/mounts."""

    point: str
    fstype: str
    read_only: bool


@dataclass(frozen=True)
class Usage:
    mount: str
    fstype: str
    total: float
    used: float
    free: float
    utilization: float
    inode_utilization: float | None
    inodes_free: float | None
    read_only: bool


class DiskOptions(probe.Options):
    path: str | None = None
    """A path on the filesystem to check (any path; the filesystem it lives on is measured)."""
    include: list[str] = []
    """Mount points to check, as shell globs (``/``, ``/srv/*``). Used when ``path`` is not set; empty
    means every mounted real filesystem."""
    exclude: list[str] = []
    """Mount points to skip, as shell globs."""
    include_fs: list[str] = []
    """Filesystem types to check (``ext4``, ``xfs``); empty means every real (non-pseudo) filesystem."""
    exclude_fs: list[str] = []
    """Filesystem types to skip."""
    read_only: str = "critical"
    """Status when a mount that should be writable is mounted read-only: ``ok``, ``warning``, ``critical``."""
    expect_read_only: bool = False
    """Set when the mount is read-only on purpose; then read-only is never a problem."""

    @model_validator(mode="after")
    def _path_or_mounts(self) -> DiskOptions:
        if self.path is not None and (self.include or self.exclude or self.include_fs or self.exclude_fs):
            raise ValueError("set either 'path' or 'include'/'exclude'/'include_fs'/'exclude_fs', not both")
        if self.path == "":
            raise ValueError("'path' must not be empty")
        probe.Status.parse(self.read_only)
        return self


class DiskCheck(probe.Check[DiskOptions]):
    """Space and inode use. With several mounts the fullest one is reported (each is in details)."""

    type = "disk"
    # time_to_full and inode_time_to_full are not measured here: the core forecasts them from history
    # (see ``capacities``); they are listed so thresholds may name them.
    measurements = frozenset({"duration", "utilization", "used", "free", "total", "inode_utilization",
                              "inodes_free", "time_to_full", "inode_time_to_full"})
    capacities = {"utilization": "time_to_full", "inode_utilization": "inode_time_to_full"}

    _fstype: tuple[tuple[str, int], str] | None = None  # ((mount point, device id), fstype) of the last run

    def run(self, ctx: probe.Context) -> probe.Result:
        path = self.options.path
        try:
            usages = [self._one(path)] if path is not None else self._all_mounts()
        except FileNotFoundError:
            return probe.Result.critical(f"{path}: no such file or directory", reason="not_found")
        except PermissionError as exc:
            return probe.Result.unknown(f"{path}: {exc.strerror or 'permission denied'}", reason="permission_denied")
        if not usages:
            return probe.Result.unknown("no mounted filesystem matches include/exclude", reason="no_match")
        return self._result(usages)

    def _result(self, usages: list[Usage]) -> probe.Result:
        worst = max(usages, key=lambda u: u.utilization)
        measurements = [
            probe.Measurement("utilization", worst.utilization, "1"),
            probe.Measurement("used", worst.used, "By"),
            probe.Measurement("free", worst.free, "By"),
            probe.Measurement("total", worst.total, "By"),
        ]
        with_inodes = [u for u in usages if u.inode_utilization is not None]
        if with_inodes:  # btrfs and some network filesystems report no inode counts
            fullest = max(with_inodes, key=lambda u: u.inode_utilization or 0.0)
            measurements.append(probe.Measurement("inode_utilization", fullest.inode_utilization or 0.0, "1"))
            measurements.append(probe.Measurement("inodes_free", fullest.inodes_free or 0.0))
        details = {u.mount: _describe(u) for u in usages}
        summary = (f"{worst.mount} {worst.utilization:.1%} used, {format_size(worst.free)} free"
                   + (f" (fullest of {len(usages)} mounts)" if len(usages) > 1 else ""))
        read_only = [u.mount for u in usages if u.read_only]
        if read_only and not self.options.expect_read_only:
            status = probe.Status.parse(self.options.read_only)
            return probe.Result(status, f"mounted read-only: {', '.join(read_only)}; {summary}", "read_only",
                                tuple(measurements), details)
        return probe.Result.ok(summary, *measurements, details=details)

    def _one(self, path: str) -> Usage:
        usage = measure(path)
        # The filesystem type of a mount point changes only with what is mounted there (a new device id):
        # /proc/self/mounts is read again then, not on every run (reading it is most of this check's CPU).
        key = (usage.mount, os.stat(usage.mount).st_dev)
        if self._fstype is None or self._fstype[0] != key:
            self._fstype = (key, fstype_of(usage.mount))
        return replace(usage, fstype=self._fstype[1])

    def _all_mounts(self) -> list[Usage]:
        o = self.options
        out = []
        for m in mounts().values():
            if m.fstype in PSEUDO_FS and not o.include_fs:
                continue
            if o.include and not any(fnmatch.fnmatch(m.point, g) for g in o.include):
                continue
            if any(fnmatch.fnmatch(m.point, g) for g in o.exclude):
                continue
            if (o.include_fs and m.fstype not in o.include_fs) or m.fstype in o.exclude_fs:
                continue
            try:
                usage = measure(m.point, m.fstype, m.read_only)
            except OSError:
                continue  # a stale NFS mount or one we may not read; not this check's verdict
            if usage.total > 0:
                out.append(usage)
        return out


def measure(path: str, fstype: str = "", read_only: bool | None = None) -> Usage:
    st = os.statvfs(path)
    total = st.f_blocks * st.f_frsize
    free = st.f_bavail * st.f_frsize
    # Like df: used excludes root-reserved blocks, utilization is used / (used + available).
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    utilization = used / (used + free) if used + free else 0.0
    inode_utilization = (st.f_files - st.f_ffree) / st.f_files if st.f_files else None
    inodes_free = float(st.f_favail) if st.f_files else None
    if read_only is None:
        read_only = bool(st.f_flag & os.ST_RDONLY)
    return Usage(_mount_of(path), fstype, float(total), float(used), float(free), utilization,
                 inode_utilization, inodes_free, read_only)


def mounts() -> dict[str, Mount]:
    """Mount points in /proc/self/mounts order; a later mount on the same point hides an earlier one."""
    out: dict[str, Mount] = {}
    with open("/proc/self/mounts", encoding="utf-8", errors="replace") as f:
        for line in f:
            fields = line.split()
            if len(fields) < 4:
                continue
            point = _unescape(fields[1])
            out.pop(point, None)
            out[point] = Mount(point, fields[2], "ro" in fields[3].split(","))
    return out


def fstype_of(point: str) -> str:
    """The filesystem type mounted at ``point`` ("" if none): what ``mounts()[point].fstype`` says, without
    building the whole table (this runs on every check of one path)."""
    found = ""
    with open("/proc/self/mounts", encoding="utf-8", errors="replace") as f:
        for line in f:
            fields = line.split(None, 3)
            if len(fields) >= 3 and (fields[1] == point or ("\\" in fields[1] and _unescape(fields[1]) == point)):
                found = fields[2]  # a later mount on the same point hides an earlier one
    return found


def _unescape(field: str) -> str:
    """/proc/mounts writes space, tab, newline and backslash in mount points as octal escapes."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def _mount_of(path: str) -> str:
    path = os.path.realpath(path)
    while not os.path.ismount(path):
        path = os.path.dirname(path)
    return path


def _describe(u: Usage) -> str:
    inodes = f", inodes {u.inode_utilization:.1%}" if u.inode_utilization is not None else ""
    flags = ", read-only" if u.read_only else ""
    return f"{u.utilization:.1%} of {format_size(u.total)} ({u.fstype or 'unknown fs'}{inodes}{flags})"


@probe.hookimpl
def register_checks(register: CheckRegistrar) -> None:
    register(DiskCheck)
