"""disk: space and inode usage of one path, or of every mount matching include/exclude."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable
from dataclasses import dataclass

import psutil
from pydantic import model_validator

import probe
from probe.units import format_size

# Pseudo and virtual filesystems that have no capacity to run out of.
PSEUDO_FS = frozenset({
    "proc", "sysfs", "devtmpfs", "devpts", "cgroup", "cgroup2", "securityfs", "pstore", "bpf", "debugfs",
    "tracefs", "configfs", "fusectl", "mqueue", "hugetlbfs", "autofs", "binfmt_misc", "rpc_pipefs", "nsfs",
    "efivarfs", "ramfs", "squashfs", "overlay", "fuse.lxcfs", "selinuxfs", "nfsd",
})


@dataclass(frozen=True)
class Usage:
    mount: str
    fstype: str
    total: float
    used: float
    free: float
    utilization: float
    inode_utilization: float | None
    read_only: bool


class DiskCheck(probe.Check):
    """Space and inode use. With several mounts the worst one is reported (each is in details)."""

    type = "disk"
    measurements = frozenset({"duration", "utilization", "used", "free", "total", "inode_utilization"})
    capacities = {"utilization": "time_to_full", "inode_utilization": "inode_time_to_full"}

    class Options(probe.Options):
        path: str | None = None
        """A path on the filesystem to check (any path; its mount is measured)."""
        include: list[str] = []
        """Mount points to check, as globs (``/``, ``/srv/*``). Used when ``path`` is not set."""
        exclude: list[str] = []
        """Mount points to skip, as globs."""
        include_fs: list[str] = []
        """Filesystem types to check (``ext4``, ``xfs``); empty means every real filesystem."""
        exclude_fs: list[str] = []
        """Filesystem types to skip."""
        read_only: str = "critical"
        """Status when a mount that should be writable is mounted read-only: ``ok``, ``warning``, ``critical``."""
        expect_read_only: bool = False
        """Set when the mount is read-only on purpose."""

        @model_validator(mode="after")
        def _path_or_mounts(self) -> DiskCheck.Options:
            if self.path and (self.include or self.exclude):
                raise ValueError("set either 'path' or 'include'/'exclude', not both")
            probe.Status.parse(self.read_only)
            return self

    def run(self, ctx: probe.Context) -> probe.Result:
        try:
            usages = [measure(self.options.path)] if self.options.path else self._all_mounts()
        except FileNotFoundError:
            return probe.Result.critical(f"{self.options.path}: no such file or directory", reason="not_found")
        except PermissionError as exc:
            return probe.Result.unknown(f"{self.options.path}: {exc.strerror}", reason="permission_denied")
        if not usages:
            return probe.Result.unknown("no mounted filesystem matches include/exclude", reason="no_match")
        worst = max(usages, key=lambda u: u.utilization)
        measurements = [
            probe.Measurement("utilization", worst.utilization, "1"),
            probe.Measurement("used", worst.used, "By"),
            probe.Measurement("free", worst.free, "By"),
            probe.Measurement("total", worst.total, "By"),
        ]
        inodes = [u.inode_utilization for u in usages if u.inode_utilization is not None]
        if inodes:
            measurements.append(probe.Measurement("inode_utilization", max(inodes), "1"))
        details = {u.mount: f"{u.utilization:.1%} of {format_size(u.total)} ({u.fstype})" for u in usages}
        summary = (f"{worst.mount} {worst.utilization:.1%} used, {format_size(worst.free)} free"
                   + (f" (worst of {len(usages)} mounts)" if len(usages) > 1 else ""))
        read_only = [u.mount for u in usages if u.read_only]
        if read_only and not self.options.expect_read_only:
            status = probe.Status.parse(self.options.read_only)
            return probe.Result(status, f"mounted read-only: {', '.join(read_only)}; {summary}", "read_only",
                                tuple(measurements), details)
        return probe.Result.ok(summary, *measurements, details=details)

    def _all_mounts(self) -> list[Usage]:
        o = self.options
        out = []
        for part in psutil.disk_partitions(all=True):
            if part.fstype in PSEUDO_FS and not o.include_fs:
                continue
            if o.include and not any(fnmatch.fnmatch(part.mountpoint, g) for g in o.include):
                continue
            if any(fnmatch.fnmatch(part.mountpoint, g) for g in o.exclude):
                continue
            if (o.include_fs and part.fstype not in o.include_fs) or part.fstype in o.exclude_fs:
                continue
            try:
                usage = measure(part.mountpoint, part.fstype, "ro" in part.opts.split(","))
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
    if read_only is None:
        read_only = bool(st.f_flag & os.ST_RDONLY)
    return Usage(_mount_of(path), fstype, float(total), float(used), float(free), utilization,
                 inode_utilization, read_only)


def _mount_of(path: str) -> str:
    path = os.path.realpath(path)
    while not os.path.ismount(path):
        path = os.path.dirname(path)
    return path


@probe.hookimpl
def register_checks(register: Callable[[type[probe.Check]], None]) -> None:
    register(DiskCheck)
