"""file: real files on disk, checked through the real config loader and runner."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from probe.config.load import ConfigErrors, load_plan
from probe.engine.interfaces import Outcome
from probe.engine.runner import Runner
from probe.model import Status
from probe.plugins.manager import load_plugins


async def run_once(tmp_path: Path, **check: Any) -> Outcome:
    check.setdefault("name", "file")
    check.setdefault("type", "file")
    config = tmp_path / "checks.yaml"
    config.write_text(yaml.safe_dump({"checks": [check]}))
    registry = load_plugins(use_entry_points=False)
    runner = Runner(registry)
    return await runner.run(load_plan(config, registry, env={}).checks[0])


def config_error(tmp_path: Path, **check: Any) -> str:
    config = tmp_path / "checks.yaml"
    config.write_text(yaml.safe_dump({"checks": [{"name": "f", "type": "file", **check}]}))
    with pytest.raises(ConfigErrors) as info:
        load_plan(config, load_plugins(use_entry_points=False), env={})
    return str(info.value)


def make(path: Path, size: int, age: float) -> Path:
    path.write_bytes(b"x" * size)
    then = time.time() - age
    os.utime(path, (then, then))
    return path


@pytest.fixture
def backups(tmp_path: Path) -> Path:
    d = tmp_path / "backups"
    d.mkdir()
    make(d / "db-1.sql.gz", 5 << 20, 3 * 86400)
    make(d / "db-2.sql.gz", 2 << 20, 86400 + 3600)
    make(d / "db-3.sql.gz", 100, 3600)  # newest, but truncated
    return d


BACKUP_THRESHOLDS = {"age": {"critical": "> 26h"}, "size": {"critical": "< 1MiB"}}


async def test_newest_glob_match_is_checked(tmp_path: Path, backups: Path) -> None:
    out = await run_once(tmp_path, path=str(backups / "db-*.sql.gz"), thresholds=BACKUP_THRESHOLDS)
    assert out.status is Status.CRITICAL
    assert out.result.reason == "threshold"
    assert out.result.summary.startswith("size 100B < 1MiB")
    assert out.result.measurement("count").value == 3  # type: ignore[union-attr]
    assert out.result.measurement("age").value == pytest.approx(3600, abs=60)  # type: ignore[union-attr]
    assert out.result.details["path"] == str(backups / "db-3.sql.gz")


async def test_fresh_big_backup_passes(tmp_path: Path, backups: Path) -> None:
    (backups / "db-3.sql.gz").unlink()
    make(backups / "db-4.sql.gz", 3 << 20, 600)
    out = await run_once(tmp_path, path=str(backups / "db-*.sql.gz"), thresholds=BACKUP_THRESHOLDS)
    assert out.status is Status.OK, out.result.summary
    assert out.result.summary.endswith("3.0MiB (newest of 3)")
    assert out.result.measurement("size").value == 3 << 20  # type: ignore[union-attr]


async def test_stale_backup_is_critical_on_age(tmp_path: Path, backups: Path) -> None:
    for name in ("db-2.sql.gz", "db-3.sql.gz"):
        (backups / name).unlink()
    out = await run_once(tmp_path, path=str(backups / "db-*.sql.gz"), thresholds=BACKUP_THRESHOLDS)
    assert out.status is Status.CRITICAL
    assert out.result.summary.startswith("age 3.0d > 26h")


async def test_missing_file_and_empty_glob(tmp_path: Path) -> None:
    out = await run_once(tmp_path, path=str(tmp_path / "nope.txt"))
    assert (out.status, out.result.reason) == (Status.CRITICAL, "not_found")
    assert out.result.summary == f"{tmp_path / 'nope.txt'}: no such file or directory"
    out = await run_once(tmp_path, path=str(tmp_path / "*.dump"))
    assert out.result.summary == f"{tmp_path / '*.dump'}: no file matches"
    assert out.result.measurement("count").value == 0  # type: ignore[union-attr]


async def test_must_not_exist(tmp_path: Path) -> None:
    lock = tmp_path / "maintenance.flag"
    out = await run_once(tmp_path, path=str(lock), exists=False)
    assert out.status is Status.OK
    lock.touch()
    out = await run_once(tmp_path, path=str(lock), exists=False)
    assert (out.status, out.result.reason) == (Status.CRITICAL, "unexpected_file")


async def test_dangling_symlink_is_not_found(tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to(tmp_path / "gone")
    out = await run_once(tmp_path, path=str(tmp_path / "link"))
    assert (out.status, out.result.reason) == (Status.CRITICAL, "not_found")


async def test_content_regex(tmp_path: Path) -> None:
    f = tmp_path / "status.txt"
    f.write_text("started\nbackup completed OK at 03:00\n")
    assert (await run_once(tmp_path, path=str(f), content=r"^backup completed OK")).status is Status.OK
    out = await run_once(tmp_path, path=str(f), content=r"FAILED|^done$")
    assert (out.status, out.result.reason) == (Status.CRITICAL, "content_mismatch")
    assert out.result.summary.startswith("content does not match /FAILED|^done$/;")


async def test_content_search_is_bounded(tmp_path: Path) -> None:
    f = tmp_path / "big.log"
    f.write_bytes(b"." * 5000 + b"MARKER")
    out = await run_once(tmp_path, path=str(f), content="MARKER", max_read=4096)
    assert out.result.reason == "content_mismatch"
    assert "(first 4.0KiB searched)" in out.result.summary
    assert (await run_once(tmp_path, path=str(f), content="MARKER", max_read=8192)).status is Status.OK


async def test_content_of_binary_file_does_not_crash(tmp_path: Path) -> None:
    f = tmp_path / "blob"
    f.write_bytes(bytes(range(256)) * 4 + b"needle")
    assert (await run_once(tmp_path, path=str(f), content="needle")).status is Status.OK


async def test_content_on_a_directory_is_unknown(tmp_path: Path) -> None:
    out = await run_once(tmp_path, path=str(tmp_path), content="x")
    assert (out.status, out.result.reason) == (Status.UNKNOWN, "not_a_file")


async def test_owner_group_and_mode(tmp_path: Path) -> None:
    f = tmp_path / "secret.key"
    f.write_text("k")
    f.chmod(0o640)
    me, gid = os.getuid(), os.getgid()
    ok = await run_once(tmp_path, path=str(f), owner=str(me), group=str(gid), mode="0640")
    assert ok.status is Status.OK, ok.result.summary
    assert ok.result.details["mode"] == "0640"
    out = await run_once(tmp_path, path=str(f), mode="600")
    assert (out.status, out.result.reason) == (Status.CRITICAL, "mode_mismatch")
    assert out.result.summary.startswith("mode is 0640, expected 0600;")
    out = await run_once(tmp_path, path=str(f), owner="nobody")
    assert (out.status, out.result.reason) == (Status.CRITICAL, "owner_mismatch")
    out = await run_once(tmp_path, path=str(f), group="65534")
    assert (out.status, out.result.reason) == (Status.CRITICAL, "group_mismatch")


async def test_owner_by_name(tmp_path: Path) -> None:
    import pwd

    f = tmp_path / "mine"
    f.touch()
    name = pwd.getpwuid(os.getuid()).pw_name
    assert (await run_once(tmp_path, path=str(f), owner=name)).status is Status.OK


def test_unquoted_mode_is_a_clear_config_error(tmp_path: Path) -> None:
    message = config_error(tmp_path, path="/etc/hosts", mode=640)
    assert "quote the mode" in message


def test_bad_mode_and_regex_are_config_errors(tmp_path: Path) -> None:
    assert "expected octal permission bits" in config_error(tmp_path, path="/etc/hosts", mode="rw-r--r--")
    assert "invalid regular expression" in config_error(tmp_path, path="/etc/hosts", content="(unclosed")


def test_threshold_on_unknown_measurement_is_a_config_error(tmp_path: Path) -> None:
    message = config_error(tmp_path, path="/etc/hosts", thresholds={"ages": {"critical": "> 1h"}})
    assert "did you mean 'age'?" in message
