"""The disk check on real filesystems: small tmpfs mounts we fill, and read-only bind mounts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Awaitable, Iterator
from pathlib import Path

import pytest
from hostfs import config_errors, fill, read_only_bind, run_checks, tmpfs

from probe import Status
from probe.checks.disk import mounts


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs with 64 inodes."""
    with tmpfs(tmp_path / "small") as where:
        yield where


def _df(path: Path) -> dict[str, int]:
    """What coreutils df says, as an independent reference."""
    out = subprocess.run(["df", "-B1", "--output=size,used,avail,itotal,iused,iavail", str(path)],
                         capture_output=True, text=True, check=True).stdout.splitlines()[1].split()
    return dict(zip(["size", "used", "avail", "itotal", "iused", "iavail"], map(int, out), strict=True))


async def test_path_measurements_match_df(tmp_path: Path, small_fs: Path) -> None:
    fill(small_fs, 300 * 1024)
    outcome = (await run_checks(tmp_path, f"""
        checks:
          - name: small
            type: disk
            path: {small_fs}
    """))["small"]
    df = _df(small_fs)
    r = outcome.result
    assert r.status is Status.OK and r.reason == ""
    values = {m.name: (m.value, m.unit) for m in r.measurements}
    assert values["total"] == (df["size"], "By")
    assert values["used"] == (df["used"], "By")
    assert values["free"] == (df["avail"], "By")
    assert values["utilization"][1] == "1"
    assert values["utilization"][0] == pytest.approx(df["used"] / (df["used"] + df["avail"]))
    assert values["inode_utilization"][0] == pytest.approx(df["iused"] / df["itotal"])
    assert values["inodes_free"] == (df["iavail"], "{inode}")
    assert f"{small_fs} " in r.summary and "free" in r.summary
    assert "tmpfs" in r.details[str(small_fs)]


async def test_a_path_below_the_mount_measures_its_filesystem(tmp_path: Path, small_fs: Path) -> None:
    (small_fs / "a" / "b").mkdir(parents=True)
    outcome = (await run_checks(tmp_path, f"""
        checks:
          - name: deep
            type: disk
            path: {small_fs / "a" / "b"}
    """))["deep"]
    assert outcome.result.summary.startswith(f"{small_fs} ")
    assert outcome.result.measurement("total").value == _df(small_fs)["size"]  # type: ignore[union-attr]


@pytest.mark.parametrize(("kib", "status"), [(100, Status.OK), (600, Status.WARNING), (900, Status.CRITICAL)])
async def test_filling_the_disk_crosses_thresholds(tmp_path: Path, small_fs: Path, kib: int, status: Status) -> None:
    fill(small_fs, kib * 1024)
    outcome = (await run_checks(tmp_path, f"""
        checks:
          - name: small
            type: disk
            path: {small_fs}
            thresholds:
              utilization: {{warning: ">= 50%", critical: ">= 80%"}}
              free: {{critical: "< 1KiB"}}
    """))["small"]
    assert outcome.status is status
    if status is not Status.OK:
        assert outcome.result.reason == "threshold"
        assert outcome.result.summary.startswith("utilization ")
        verdict = next(v for v in outcome.verdicts if v.measurement == "utilization")
        assert verdict.status is status


async def test_running_out_of_inodes_crosses_inode_thresholds(tmp_path: Path, small_fs: Path) -> None:
    for i in range(50):
        (small_fs / f"f{i}").touch()
    outcome = (await run_checks(tmp_path, f"""
        checks:
          - name: small
            type: disk
            path: {small_fs}
            thresholds:
              inode_utilization: {{warning: ">= 75%", critical: ">= 95%"}}
              inodes_free: {{critical: "< 5"}}
    """))["small"]
    assert outcome.status is Status.WARNING, outcome.result
    assert outcome.result.measurement("inodes_free").value == 64 - 51  # type: ignore[union-attr]


async def test_read_only_filesystem_is_a_problem_unless_expected(tmp_path: Path, small_fs: Path) -> None:
    with tmpfs(tmp_path / "ro", read_only=True) as ro:
        outcomes = await run_checks(tmp_path, f"""
            checks:
              - {{name: default, type: disk, path: {ro}}}
              - {{name: lenient, type: disk, path: {ro}, read_only: warning}}
              - {{name: expected, type: disk, path: {ro}, expect_read_only: true}}
              - {{name: writable, type: disk, path: {small_fs}}}
        """)
    assert outcomes["default"].status is Status.CRITICAL
    assert outcomes["default"].result.reason == "read_only"
    assert outcomes["default"].result.summary.startswith(f"mounted read-only: {ro};")
    assert outcomes["default"].result.measurement("utilization") is not None  # numbers are still reported
    assert outcomes["lenient"].status is Status.WARNING and outcomes["lenient"].result.reason == "read_only"
    assert outcomes["expected"].status is Status.OK
    assert outcomes["writable"].status is Status.OK


async def test_all_mounts_with_include_exclude_and_fs_types(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "m" / "one") as one, tmpfs(tmp_path / "m" / "two with space") as two:
        fill(two, 700 * 1024)
        outcomes = await run_checks(tmp_path, f"""
            checks:
              - name: both
                type: disk
                include: ["{tmp_path}/m/*"]
                thresholds: {{utilization: {{warning: ">= 50%"}}}}
              - {{name: only-one, type: disk, include: ["{tmp_path}/m/*"], exclude: ["*space"]}}
              - {{name: by-type, type: disk, include: ["{tmp_path}/m/*"], include_fs: [tmpfs]}}
              - {{name: none, type: disk, include: ["{tmp_path}/m/*"], exclude_fs: [tmpfs]}}
        """)
    both = outcomes["both"].result
    assert set(both.details) == {str(one), str(two)}
    assert f"— {two} " in both.summary and both.summary.endswith("(fullest of 2 mounts)")
    assert outcomes["both"].status is Status.WARNING  # the fullest mount decides
    assert set(outcomes["only-one"].result.details) == {str(one)}
    assert set(outcomes["by-type"].result.details) == {str(one), str(two)}
    assert outcomes["none"].status is Status.UNKNOWN and outcomes["none"].result.reason == "no_match"
    assert outcomes["none"].result.measurements == (outcomes["none"].result.measurement("duration"),)


async def test_read_only_filesystem_among_all_mounts_is_named(tmp_path: Path, small_fs: Path) -> None:
    with tmpfs(tmp_path / "ro", read_only=True) as ro:
        outcome = (await run_checks(tmp_path, f"""
            checks:
              - {{name: all, type: disk, include: ["{tmp_path}/*"]}}
        """))["all"]
    assert outcome.status is Status.CRITICAL and outcome.result.reason == "read_only"
    assert outcome.result.summary.startswith(f"mounted read-only: {ro};")
    assert "read-only" in outcome.result.details[str(ro)]


async def test_read_only_view_of_a_writable_filesystem_is_not_read_only(tmp_path: Path, small_fs: Path) -> None:
    """What systemd's ProtectSystem=strict does to / inside the service: statvfs says ST_RDONLY, the
    filesystem is writable (issue 21 item 1; tests/systemd runs the packaged root-disk check under the unit)."""
    with read_only_bind(small_fs, tmp_path / "view") as view:
        assert os.statvfs(view).f_flag & os.ST_RDONLY
        outcomes = await run_checks(tmp_path, f"""
            checks:
              - {{name: one, type: disk, path: {view}}}
              - {{name: all, type: disk, include: ["{view}"]}}
        """)
        assert mounts()[str(view)].read_only is False
    for outcome in outcomes.values():
        assert outcome.status is Status.OK, outcome.result
        assert "read-only" not in outcome.result.summary


def test_mount_table_unescapes_spaces(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "a b\tc") as where:
        table = mounts()
    assert table[str(where)].fstype == "tmpfs"
    assert table[str(where)].read_only is False


async def test_missing_path_is_not_found(tmp_path: Path) -> None:
    outcome = (await run_checks(tmp_path, f"""
        checks:
          - {{name: gone, type: disk, path: {tmp_path}/does/not/exist}}
    """))["gone"]
    assert outcome.status is Status.CRITICAL and outcome.result.reason == "not_found"
    assert outcome.result.summary == f"{tmp_path}/does/not/exist: no such file or directory"


def test_unreadable_path_is_permission_denied(tmp_path: Path) -> None:
    """Runs the check as nobody against a path under a root-only directory."""
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to an unprivileged user")
    secret = tmp_path / "private"
    secret.mkdir(mode=0o700)
    code = (
        "import json, os, time, logging\n"
        "from probe.checks.disk import DiskCheck\n"
        "from probe.check import Context\n"
        "os.setgid(65534); os.setuid(65534)\n"
        f"check = DiskCheck('x', DiskCheck.Options(path={str(secret / 'inner')!r}))\n"
        "r = check.run(Context('x', time.monotonic() + 5, logging.getLogger('t')))\n"
        "print(json.dumps([r.status.name, r.reason, r.summary]))\n"
    )
    os.chmod(tmp_path, 0o711)  # nobody may pass through tmp_path but not into private/
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, cwd="/")
    assert proc.returncode == 0, proc.stderr
    status, reason, summary = json.loads(proc.stdout)
    assert (status, reason) == ("UNKNOWN", "permission_denied")
    assert summary.endswith("Permission denied")


@pytest.mark.parametrize(("options", "message"), [
    ("path: /, include: [/]", "set either 'path' or 'include'/'exclude'/'include_fs'/'exclude_fs', not both"),
    ("path: /, exclude_fs: [tmpfs]", "set either 'path' or 'include'/'exclude'/'include_fs'/'exclude_fs', not both"),
    ("path: ''", "'path' must not be empty"),
    ("path: /, read_only: sometimes", "unknown status 'sometimes'; expected ok, warning, critical or unknown"),
    ("path: /, mountpoint: /", "unknown key 'mountpoint'"),
    ("path: /, include_fs: ext4", "input should be a valid list, got 'ext4'"),
])
def test_bad_options_are_config_errors(tmp_path: Path, options: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    errors = config_errors(path, f"checks:\n  - {{name: d, type: disk, {options}}}\n")
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"{path}:2:") and "check 'd'" in errors[0]
    assert message in errors[0]


def test_a_new_mount_on_the_path_is_seen_by_the_same_check_object(tmp_path: Path) -> None:
    """The filesystem type is remembered per (mount point, device): a mount over the path is noticed."""
    import logging
    import time

    from probe.check import Context
    from probe.checks.disk import DiskCheck

    where = tmp_path / "spot"
    where.mkdir()
    parent = _mount_point(where)
    check = DiskCheck("spot", DiskCheck.Options(path=str(where)))
    ctx = Context("spot", time.monotonic() + 10, logging.getLogger("test"))

    def details() -> dict[str, str]:
        result = check.run(ctx)
        assert not isinstance(result, Awaitable)
        return dict(result.details)

    before = details()
    with tmpfs(where):
        during = details()
    after = details()
    assert list(before) == [parent] and f"({mounts()[parent].fstype}" in before[parent]
    assert list(during) == [str(where)] and "(tmpfs" in during[str(where)]
    assert after == before


def _mount_point(path: Path) -> str:
    while not os.path.ismount(path):
        path = path.parent
    return str(path)
