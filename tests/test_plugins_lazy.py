"""Lazy built-ins: a config imports only the check modules it uses, and nothing else can tell the difference."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import types
from pathlib import Path
from typing import Any

import pytest

import probe
from probe.config.load import ConfigErrors, load
from probe.daemon.wiring import capacities
from probe.plugins.manager import BUILTINS, CHECKS_PACKAGE, load_plugins

CHECK_MODULES = [m for m in BUILTINS if m.startswith(CHECKS_PACKAGE)]


class ImpostorDisk(probe.Check):
    type = "disk"

    class Options(probe.Options):
        path: str = "/"
        """A path."""

    def run(self, ctx: probe.Context) -> probe.Result:
        return probe.Result.ok("not really")


def impostor_plugin() -> types.ModuleType:
    module = types.ModuleType("impostor")

    @probe.hookimpl
    def register_checks(register: Any) -> None:
        register(ImpostorDisk)

    module.register_checks = register_checks  # type: ignore[attr-defined]
    return module


@pytest.mark.parametrize("module", CHECK_MODULES)
def test_each_builtin_check_module_registers_the_type_named_like_it(module: str) -> None:
    registry = load_plugins(builtins=(module,), use_entry_points=False)
    assert not registry.failures, registry.failures
    assert registry.plugins[module].check_types == [module.removeprefix(CHECKS_PACKAGE)]


def test_lazy_registry_imports_a_type_when_asked_and_knows_every_name() -> None:
    eager = load_plugins(use_entry_points=False)
    lazy = load_plugins(use_entry_points=False, lazy=True)
    assert not set(lazy.checks) & set(lazy.deferred)
    assert lazy.check_type_names() == sorted(eager.checks)
    assert set(lazy.formats) == set(eager.formats) and lazy.action_type_names() == sorted(eager.actions)
    assert "probe.actions" not in lazy.plugins and lazy.action_type("run") is eager.actions["run"]
    assert lazy.plugins["probe.actions"].action_types == ["run"]
    disk = lazy.check_type("disk")
    assert disk is eager.checks["disk"]
    assert "disk" in lazy.checks and "disk" not in lazy.deferred
    info = lazy.plugins["probe.checks.disk"]
    assert (info.source, info.check_types) == ("builtin", ["disk"])
    assert lazy.owner("check type", "disk") == "probe.checks.disk"
    assert lazy.check_type("no-such-type") is None
    assert lazy.load_all().checks == eager.checks and not lazy.deferred


def test_a_plugin_that_takes_a_builtin_type_conflicts_as_it_does_when_loaded_eagerly() -> None:
    eager = load_plugins(use_entry_points=False, extra=[impostor_plugin()])
    lazy = load_plugins(use_entry_points=False, extra=[impostor_plugin()], lazy=True)
    assert lazy.conflicts == eager.conflicts
    assert len(lazy.conflicts) == 1 and "'probe.checks.disk' and plugin 'impostor'" in lazy.conflicts[0]
    assert "disk" not in lazy.checks  # the built-in wins without being imported for it
    assert lazy.check_type("disk") is eager.checks["disk"] is not ImpostorDisk
    assert lazy.plugins["impostor"].check_types == eager.plugins["impostor"].check_types == []


def test_a_deferred_builtin_that_fails_to_import_is_a_recorded_failure() -> None:
    registry = load_plugins(builtins=(f"{CHECKS_PACKAGE}missing",), use_entry_points=False, lazy=True)
    assert registry.check_type_names() == ["missing"] and not registry.failures
    assert registry.check_type("missing") is None
    [failure] = registry.failures
    assert (failure.plugin, failure.source) == (f"{CHECKS_PACKAGE}missing", "builtin")
    assert "ModuleNotFoundError" in failure.error


def test_a_config_loads_only_the_check_modules_it_names(tmp_path: Path) -> None:
    config = tmp_path / "checks.yaml"
    config.write_text("checks:\n  - {name: root, type: disk, path: /}\n")
    code = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from probe.config.load import load
        registry, plan = load(Path({str(config)!r}), env={{}})
        print(sorted(m for m in sys.modules if m.startswith("probe.checks.") and not m.split(".")[-1][0] == "_"))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "['probe.checks.disk']"


def test_an_unknown_type_still_gets_a_did_you_mean_from_unloaded_types(tmp_path: Path) -> None:
    config = tmp_path / "checks.yaml"
    config.write_text("checks:\n  - {name: q, type: dnss, query: example.com}\n")
    with pytest.raises(ConfigErrors) as raised:
        load(config, env={})
    assert "unknown check type 'dnss'; did you mean 'dns'?" in str(raised.value.errors[0])


def test_capacities_resolve_types_on_demand() -> None:
    registry = load_plugins(use_entry_points=False, lazy=True)
    caps = capacities(registry)
    assert "disk" not in registry.checks
    assert caps.get("disk") == {"utilization": "time_to_full", "inode_utilization": "inode_time_to_full"}
    assert caps.get("tcp") is None and "tcp" not in caps
    assert "memory" in dict(caps)  # iterating knows every type

