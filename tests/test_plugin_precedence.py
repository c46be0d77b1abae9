"""Who wins when two plugins register the same name: the first in load order, whatever pluggy would call first.

Load order is built-ins (in ``BUILTINS`` order), entry points (by name), the plugins directory (by file name),
then plugins passed in. ``tryfirst``/``trylast`` order hook *calls*; they must not decide who owns a check type,
or ``probe plugins`` (everything loaded up front) and ``probe run`` (built-ins loaded lazily) would disagree.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess

import pytest
from hostfs import probe_main

from probe.plugins.manager import load_plugins

IMPOSTOR = '''
import probe

class ImpostorDisk(probe.Check):
    type = "disk"

    class Options(probe.Options):
        path: str = "/"
        """A path."""

    def run(self, ctx):
        return probe.Result.ok("the impostor ran")

@probe.hookimpl({marker})
def register_checks(register):
    register(ImpostorDisk)
'''

ECHO = '''
import probe

class Echo(probe.Check):
    type = "echo"

    def run(self, ctx):
        return probe.Result.ok("echo from {name}")

@probe.hookimpl({marker})
def register_checks(register):
    register(Echo)
'''


@pytest.fixture
def inproc(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., CompletedProcess[str]]:
    for key in ("PROBE_CONFIG", "PROBE_CONFIG_DIR"):
        monkeypatch.delenv(key, raising=False)
    return lambda *args: probe_main(capsys, *args)


def _config(tmp_path: Path, checks: str, plugins: dict[str, str]) -> Path:
    (tmp_path / "checks.d").mkdir()
    (tmp_path / "plugins").mkdir()
    for name, text in plugins.items():
        (tmp_path / "plugins" / f"{name}.py").write_text(text)
    path = tmp_path / "checks.d" / "checks.yaml"
    path.write_text(checks)
    return path


@pytest.mark.parametrize("marker", ["trylast=True", "tryfirst=True", ""])
def test_a_plugin_taking_a_builtin_type_conflicts_alike_in_probe_plugins_and_in_probe_run(
        tmp_path: Path, inproc: Callable[..., CompletedProcess[str]], marker: str) -> None:
    checks = _config(tmp_path, f"checks:\n  - {{name: root, type: disk, path: {tmp_path}}}\n",
                     {"impostor": IMPOSTOR.format(marker=marker)})
    listed = inproc("--config-dir", checks, "plugins", "--format", "json")
    doc = json.loads(listed.stdout)
    provides = {p["name"]: p["check_types"] for p in doc["plugins"]}
    assert provides["probe.checks.disk"] == ["disk"] and provides["impostor"] == []
    assert len(doc["conflicts"]) == 1 and "'probe.checks.disk' and plugin 'impostor'" in doc["conflicts"][0]

    # A conflict is a configuration error when running: the same one, naming the same owner first.
    ran = inproc("--config-dir", checks, "run", "--once")
    assert ran.returncode == 78 and f"<plugins>:1:1: {doc['conflicts'][0]}" in ran.stderr


@pytest.mark.parametrize("lazy", [False, True])
def test_between_third_parties_the_first_in_load_order_wins_whatever_trylast_says(tmp_path: Path,
                                                                                    lazy: bool) -> None:
    _config(tmp_path, "checks: []\n", {"aaa": ECHO.format(name="aaa", marker=""),
                                       "zzz": ECHO.format(name="zzz", marker="trylast=True")})
    registry = load_plugins(use_entry_points=False, plugins_dir=tmp_path / "plugins", lazy=lazy)
    assert registry.owner("check type", "echo") == "aaa"
    assert registry.plugins["aaa"].check_types == ["echo"] and registry.plugins["zzz"].check_types == []
    assert registry.conflicts == ["check type 'echo' is registered by both plugin 'aaa' and plugin 'zzz'; "
                                  "uninstall one, or list only one in the plugins allow-list"]
