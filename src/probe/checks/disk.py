"""disk: space and inode usage of one path, or of every mount matching include/exclude."""

from __future__ import annotations

import fnmatch
import os
from typing import NamedTuple

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


class Mount(NamedTuple):
    """One line of /proc/self/mountinfo. ``read_only`` is the filesystem's own flag (its superblock
    options, after `` - ``), not the mount point's: a read-only view of a writable filesystem (a read-only
    bind mount, systemd's ``ProtectSystem=strict``) is not a read-only disk."""

    point: str
    fstype: str
    read_only: bool


class Usage(NamedTuple):
    """What statvfs says of one filesystem: bytes, utilization (used / (used + available), as df), inodes."""

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
    local = True  # reads this host only: runs start on whole seconds with the other local checks
    # time_to_full and inode_time_to_full are not measured here: the core forecasts them from history
    # (see ``capacities``); they are listed so thresholds may name them.
    measurements = frozenset({"duration", "utilization", "used", "free", "total", "inode_utilization",
                              "inodes_free", "time_to_full", "inode_time_to_full"})
    units = {"duration": "s", "utilization": "1", "used": "By", "free": "By", "total": "By", "inode_utilization": "1",
             "inodes_free": "{inode}", "time_to_full": "s", "inode_time_to_full": "s"}
    capacities = {"utilization": "time_to_full", "inode_utilization": "inode_time_to_full"}

    _mount: tuple[tuple[str, int], Mount | None] | None = None  # ((mount point, device id), its entry)

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
            measurements.append(probe.Measurement("inodes_free", fullest.inodes_free or 0.0, "{inode}"))
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
        usage, view_read_only = measure(path)
        # The filesystem type of a mount point changes only with what is mounted there (a new device id):
        # the mount table is read again then, not on every run (reading it is most of this check's CPU).
        key = (usage.mount, os.stat(usage.mount).st_dev)
        if self._mount is None or self._mount[0] != key or view_read_only:
            # statvfs says read-only for the filesystem *or* the view: only the table tells which, and the
            # filesystem may have been remounted read-only since the last run (errors=remount-ro).
            self._mount = (key, mount_at(usage.mount))
        entry = self._mount[1]
        read_only = view_read_only and (entry is None or entry.read_only)
        return usage._replace(fstype=entry.fstype if entry else "", read_only=read_only)

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
                usage = measure(m.point)[0]._replace(fstype=m.fstype, read_only=m.read_only)
            except OSError:
                continue  # a stale NFS mount or one we may not read; not this check's verdict
            if usage.total > 0:
                out.append(usage)
        return out


def measure(path: str) -> tuple[Usage, bool]:
    """The usage of the filesystem ``path`` is on, and whether statvfs says it is read-only there (which is
    true of a read-only view of a writable filesystem too; ``Usage.read_only`` is left False)."""
    st = os.statvfs(path)
    total = st.f_blocks * st.f_frsize
    free = st.f_bavail * st.f_frsize
    # Like df: used excludes root-reserved blocks, utilization is used / (used + available).
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    utilization = used / (used + free) if used + free else 0.0
    inode_utilization = (st.f_files - st.f_ffree) / st.f_files if st.f_files else None
    inodes_free = float(st.f_favail) if st.f_files else None
    usage = Usage(_mount_of(path), "", float(total), float(used), float(free), utilization,
                  inode_utilization, inodes_free, False)
    return usage, bool(st.f_flag & os.ST_RDONLY)


def mounts() -> dict[str, Mount]:
    """Mount points in /proc/self/mountinfo order; a later mount on the same point hides an earlier one."""
    out: dict[str, Mount] = {}
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
        for line in f:
            mount = _parse(line)
            if mount is not None:
                out.pop(mount.point, None)
                out[mount.point] = mount
    return out


def mount_at(point: str) -> Mount | None:
    """What ``mounts().get(point)`` says, without building the whole table (this runs again whenever
    a single-path check finds its mount read-only)."""
    found = None
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
        for line in f:
            fields = line.split(None, 5)
            if len(fields) >= 5 and (fields[4] == point or ("\\" in fields[4] and _unescape(fields[4]) == point)):
                found = _parse(line) or found  # a later mount on the same point hides an earlier one
    return found


def _parse(line: str) -> Mount | None:
    """``36 35 98:0 /root /mnt rw,noatime master:1 - ext4 /dev/sda1 rw,errors=remount-ro``: the mount
    point is field 5, the filesystem type and its own options follow the `` - `` separator (the optional
    fields before it vary in number)."""
    view, sep, fs = line.partition(" - ")
    fields, fs_fields = view.split(), fs.split()
    if not sep or len(fields) < 5 or len(fs_fields) < 3:
        return None
    return Mount(_unescape(fields[4]), fs_fields[0], "ro" in fs_fields[2].split(","))


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
