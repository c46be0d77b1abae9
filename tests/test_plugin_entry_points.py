"""Entry-point groups ``probe.checks`` and ``probe.actions``: one entry point per type, named like it, so a plugin
package is imported only when a config uses one of its types. Group ``probe`` (a module with hooks) still works.

Each test installs a real distribution (a ``.dist-info`` with ``entry_points.txt``) on ``sys.path``, which is
all ``importlib.metadata`` needs to find it, as it finds one pip installed.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from probe.config.load import ConfigErrors, load
from probe.plugins.manager import load_plugins

CHECK = '''
import probe


class PingOptions(probe.Options):
    target: str = "here"
    """What to ping."""


class PingCheck(probe.Check[PingOptions]):
    type = "{type}"

    def run(self, ctx: probe.Context) -> probe.Result:
        return probe.Result.ok(f"pong from {{self.options.target}}")
'''

ACTION = '''
from probe.actions import Action, ActionResult


class Nudge(Action):
    name = "nudge"

    async def run(self, ctx):
        return ActionResult(True, "nudged")
'''


def install(root: Path, dist: str, groups: dict[str, dict[str, str]], files: dict[str, str]) -> None:
    """A distribution as pip leaves it: the code, and a .dist-info naming its entry points."""
    info = root / f"{dist.replace('-', '_')}-1.2.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2\n")
    (info / "entry_points.txt").write_text("".join(
        f"[{group}]\n" + "".join(f"{name} = {value}\n" for name, value in entries.items()) + "\n"
        for group, entries in groups.items()))
    for relative, text in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(textwrap.dedent(text))


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    return root


@pytest.fixture
def acme(site: Path) -> str:
    """A plugin distribution ``acme-probe`` with one check type and one action, by entry point per type; the
    module name is unique to the test, so whether it was imported can be read from ``sys.modules``."""
    module = f"acme_{uuid.uuid4().hex[:8]}"
    install(site, "acme-probe", {
        "probe.checks": {"acme-ping": f"{module}.check:PingCheck"},
        "probe.actions": {"nudge": f"{module}.action:Nudge"},
    }, {f"{module}/__init__.py": "", f"{module}/check.py": CHECK.format(type="acme-ping"),
        f"{module}/action.py": ACTION})
    return module


def test_types_are_listed_under_their_distribution_with_its_version(acme: str) -> None:
    registry = load_plugins(builtins=(), lazy=False)
    info = registry.plugins["acme-probe"]
    assert (info.source, info.version, info.check_types, info.action_types) == \
        ("entry point", "1.2", ["acme-ping"], ["nudge"])
    assert not registry.failures and not registry.conflicts
    assert registry.owner("check type", "acme-ping") == "acme-probe"


def test_the_package_is_imported_only_when_a_config_uses_one_of_its_types(acme: str, tmp_path: Path) -> None:
    config = tmp_path / "checks.yaml"
    config.write_text("checks:\n  - {name: m, type: memory}\n")
    registry, plan = load(config, env={})
    assert acme not in sys.modules
    assert registry.check_type_names().count("acme-ping") == 1 and "nudge" in registry.action_type_names()

    config.write_text("checks:\n  - name: p\n    type: acme-ping\n    target: there\n"
                      "    remediate: [{on: critical, action: nudge}]\n")
    registry, plan = load(config, env={})
    assert f"{acme}.check" in sys.modules and f"{acme}.action" in sys.modules
    assert plan.checks[0].options.target == "there"


async def test_a_declared_type_runs_and_its_action_is_found_by_the_remediator(acme: str) -> None:
    from probe.testing import run_action, run_check

    outcome = await run_check({"type": "acme-ping", "target": "x"}, registry=load_plugins(builtins=(), lazy=True))
    assert outcome.result.summary == "pong from x"
    registry = load_plugins(lazy=True)
    assert (await run_action("nudge", {}, registry=registry)).summary == "nudged"
    assert registry.action_types["nudge"].__name__ == "Nudge" and "nudge" in list(registry.action_types)


def test_an_entry_point_named_unlike_its_type_is_a_failure_naming_both(site: Path, tmp_path: Path) -> None:
    module = f"odd_{uuid.uuid4().hex[:8]}"
    install(site, "odd-probe", {"probe.checks": {"ping": f"{module}:PingCheck"}},
            {f"{module}.py": CHECK.format(type="pong")})
    config = tmp_path / "checks.yaml"
    config.write_text("checks:\n  - {name: p, type: ping}\n")
    with pytest.raises(ConfigErrors) as raised:
        load(config, env={})
    [error] = raised.value.errors
    assert "unknown check type 'ping'" in error.message
    assert ("odd-probe (entry point 'ping' in group 'probe.checks' names " f"{module}:PingCheck, whose check type "
            "is 'pong'; name the entry point like the type it provides)") in error.message


def test_an_entry_point_that_fails_to_import_fails_only_the_checks_of_its_type(site: Path, tmp_path: Path) -> None:
    install(site, "gone-probe", {"probe.checks": {"gone": "no_such_module_anywhere:GoneCheck"}}, {})
    registry = load_plugins(builtins=(), lazy=True)
    assert not registry.failures  # nothing asked for it yet
    assert registry.check_type("gone") is None
    [failure] = registry.failures
    assert (failure.plugin, failure.source) == ("gone-probe", "entry point")
    assert failure.error == "ModuleNotFoundError: No module named 'no_such_module_anywhere'"


def test_a_declared_type_that_a_builtin_owns_conflicts_and_is_never_imported(site: Path) -> None:
    module = f"disk_{uuid.uuid4().hex[:8]}"
    install(site, "disk-too", {"probe.checks": {"disk": f"{module}:PingCheck"}},
            {f"{module}.py": CHECK.format(type="disk")})
    for lazy in (True, False):
        registry = load_plugins(lazy=lazy)
        assert registry.conflicts == ["check type 'disk' is registered by both plugin 'probe.checks.disk' and plugin "
                                      "'disk-too'; uninstall one, or list only one in the plugins allow-list"]
        assert registry.check_type("disk").__module__ == "probe.checks.disk"  # type: ignore[union-attr]
    assert module not in sys.modules


def test_two_distributions_declaring_one_type_conflict_and_the_first_by_name_owns_it(site: Path) -> None:
    for dist in ("zeta-probe", "alpha-probe"):
        module = f"{dist.partition('-')[0]}_{uuid.uuid4().hex[:8]}"
        install(site, dist, {"probe.checks": {"twin": f"{module}:PingCheck"}},
                {f"{module}.py": CHECK.format(type="twin")})
    registry = load_plugins(builtins=(), lazy=True)
    assert registry.owner("check type", "twin") == "alpha-probe"
    assert registry.conflicts == ["check type 'twin' is registered by both plugin 'alpha-probe' and plugin "
                                  "'zeta-probe'; uninstall one, or list only one in the plugins allow-list"]


def test_the_allow_list_names_the_distribution(acme: str) -> None:
    assert "acme-ping" not in load_plugins(builtins=(), allow=["other"], lazy=True).check_type_names()
    assert "acme-ping" in load_plugins(builtins=(), allow=["acme-probe"], lazy=True).check_type_names()


def test_a_distribution_may_keep_group_probe_for_hooks_beside_its_types(site: Path) -> None:
    module = f"both_{uuid.uuid4().hex[:8]}"
    install(site, "both-probe", {
        "probe": {"both-probe": f"{module}.hooks"},
        "probe.checks": {"both-ping": f"{module}.check:PingCheck"},
    }, {f"{module}/__init__.py": "", f"{module}/check.py": CHECK.format(type="both-ping"),
        f"{module}/hooks.py": """
            import probe
            from probe.formats import Format

            @probe.hookimpl
            def register_formats(register):
                register(Format("both", lambda report: "both\\n"))
        """})
    registry = load_plugins(builtins=(), lazy=True)
    info = registry.plugins["both-probe"]
    assert (info.formats, info.check_types) == (["both"], [])
    assert f"{module}.check" not in sys.modules
    assert registry.check_type("both-ping") is not None and info.check_types == ["both-ping"]
    assert not registry.failures and not registry.conflicts


def test_probe_plugins_lists_a_per_type_distribution(acme: str, site: Path, tmp_path: Path) -> None:
    """End to end: the real command in a fresh interpreter finds the distribution on its path."""
    import os

    (tmp_path / "checks.d").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROBE_")}
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")])
    listed = subprocess.run([sys.executable, "-m", "probe", "--config-dir", str(tmp_path / "checks.d"), "plugins"],
                            capture_output=True, text=True, timeout=120, env=env)
    row = next(line for line in listed.stdout.splitlines() if line.startswith("acme-probe"))
    assert row.split()[1:4] == ["1.2", "entry", "point"] and row.endswith("checks: acme-ping; actions: nudge")
    assert listed.returncode == 0, listed.stdout + listed.stderr
