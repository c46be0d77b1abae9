"""Every hook in probe.hookspecs is exercised here end to end, through a local plugin file and the real CLI,
and documented in docs/plugins/hooks.md with its exact signature. Adding a hook without both fails."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import REPO

from probe.plugins.contract import hook_signatures

PLUGIN = '''
import json, os
from pathlib import Path

import probe
from probe.actions import Action, ActionResult
from probe.formats import Format

LOG = Path(os.environ["HOOK_LOG"])


def note(**event):
    with LOG.open("a") as f:
        f.write(json.dumps(event) + "\\n")


class TallyCheck(probe.Check):
    type = "tally"
    measurements = frozenset({"duration", "count"})

    class Options(probe.Options):
        marker: str
        """A file: CRITICAL until it exists."""
        token: str = ""
        """A secret the check_result hook must never see."""

    def run(self, ctx):
        fixed = Path(self.options.marker).exists()
        m = probe.Measurement("count", 1.0 if fixed else 0.0)
        return probe.Result.ok("fixed", m) if fixed else probe.Result.critical("broken", m, reason="missing")


class TouchAction(Action):
    name = "touch"

    class Options(probe.Options):
        path: str
        """File to create."""

    async def run(self, ctx):
        Path(self.options.path).touch()
        note(hook="action", check=ctx.check, status=ctx.status.label)
        return ActionResult(True, "touched " + self.options.path)


def csv(report):
    return "".join(f"{o.name},{o.status.label},{o.result.summary}\\n" for o in report.outcomes)


@probe.hookimpl
def register_checks(register):
    register(TallyCheck)


@probe.hookimpl
def register_actions(register):
    register(TouchAction)


@probe.hookimpl
def register_formats(register):
    register(Format("tally-csv", csv, "one CSV line per check"))


@probe.hookimpl
def check_result(check, result, state):
    note(hook="check_result", check=check.name, type=check.type, status=result.status.label,
         options=dict(check.options))
'''


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], list[dict[str, str]]]:
    root = tmp_path_factory.mktemp("hooks")
    (root / "plugins").mkdir()
    (root / "plugins" / "tally.py").write_text(PLUGIN)
    (root / "checks.d").mkdir()
    (root / "secret").write_text("hunter2-token")
    (root / "checks.d" / "t.yaml").write_text(textwrap.dedent(f"""
        checks:
          - name: tallied
            type: tally
            marker: {root / 'marker'}
            token: "${{file:{root / 'secret'}}}"
            remediate:
              - on: critical
                action: touch
                with: {{path: {root / 'marker'}}}
                cooldown: 0s
    """))
    log = root / "hooks.jsonl"
    env = {"HOOK_LOG": str(log), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "probe", "--config-dir", str(root / "checks.d"), "run", "--once",
                           "--remediate", "--format", "tally-csv"], capture_output=True, text=True, timeout=120,
                          env=env)
    events = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return done, events


def exercise_register_checks(run: tuple[subprocess.CompletedProcess[str], list[dict[str, str]]]) -> None:
    done, _ = run
    assert "tallied," in done.stdout, done.stdout + done.stderr


def exercise_register_actions(run: tuple[subprocess.CompletedProcess[str], list[dict[str, str]]]) -> None:
    done, events = run
    assert {"hook": "action", "check": "tallied", "status": "critical"} in events, done.stderr
    assert done.stdout == "tallied,ok,fixed\n"  # the re-run after the action is the reported result
    assert done.returncode == 0


def exercise_register_formats(run: tuple[subprocess.CompletedProcess[str], list[dict[str, str]]]) -> None:
    done, _ = run
    assert done.stdout.splitlines() == ["tallied,ok,fixed"], done.stdout + done.stderr


def exercise_check_result(run: tuple[subprocess.CompletedProcess[str], list[dict[str, str]]]) -> None:
    _, events = run
    seen = [e for e in events if e["hook"] == "check_result"]
    assert [e["status"] for e in seen] == ["critical", "ok"]  # the first run, then the re-run after the action
    assert all(e["type"] == "tally" for e in seen)
    assert "hunter2" not in json.dumps(seen)  # observers get the options with secrets masked


EXERCISES = {name.removeprefix("exercise_"): fn for name, fn in dict(globals()).items()
             if name.startswith("exercise_")}


@pytest.mark.parametrize("hook", sorted(hook_signatures()))
def test_every_hook_is_exercised(hook: str, run: tuple[subprocess.CompletedProcess[str], list[dict[str, str]]]
                                 ) -> None:
    assert hook in EXERCISES, f"hook {hook!r} has no exercise_{hook}() in tests/test_hooks.py"
    EXERCISES[hook](run)


@pytest.mark.parametrize("hook", sorted(hook_signatures()))
def test_every_hook_is_documented_with_its_signature(hook: str) -> None:
    text = (REPO / "docs" / "plugins" / "hooks.md").read_text(encoding="utf-8")
    signature = f"{hook}({', '.join(hook_signatures()[hook].parameters)})"
    assert f"## `{signature}`" in text, f"docs/plugins/hooks.md needs a section '## `{signature}`'"
    section = text.split(f"## `{signature}`", 1)[1].split("\n## ", 1)[0]
    assert "```python" in section, f"the {hook} section needs an example"
    for arg in hook_signatures()[hook].parameters:
        assert f"`{arg}`" in section, f"the {hook} section must describe argument `{arg}`"


def test_no_exercise_for_a_hook_that_does_not_exist() -> None:
    assert set(EXERCISES) == set(hook_signatures())


def test_hook_specs_have_docstrings() -> None:
    from probe import hookspecs

    for name in hook_signatures():
        assert inspect.getdoc(getattr(hookspecs, name)), name


@pytest.mark.parametrize("page", sorted((REPO / "docs" / "plugins").glob("*.md")), ids=lambda p: p.name)
def test_python_examples_in_the_plugin_docs_compile(page: Path) -> None:
    import ast

    blocks = page.read_text(encoding="utf-8").split("```python\n")[1:]
    for block in blocks:
        ast.parse(block.split("```", 1)[0], filename=str(page))


@pytest.mark.parametrize(("module", "names"), [
    ("probe", __import__("probe").__all__),
    ("probe.testing", __import__("probe.testing", fromlist=["__all__"]).__all__),
    ("probe.model", __import__("probe.model", fromlist=["__all__"]).__all__),
    ("probe.formats", __import__("probe.formats", fromlist=["__all__"]).__all__),
    ("probe.units", __import__("probe.units", fromlist=["__all__"]).__all__),
    ("probe.conditions", __import__("probe.conditions", fromlist=["__all__"]).__all__),
])
def test_the_compatibility_promise_names_every_public_name(module: str, names: list[str]) -> None:
    text = (REPO / "docs" / "plugins" / "compatibility.md").read_text(encoding="utf-8")
    missing = [n for n in names if f"`{n}`" not in text]
    assert not missing, f"docs/plugins/compatibility.md does not name {module}.{', '.join(missing)}"


def test_options_example_validates() -> None:
    import probe

    class Options(probe.Options):
        idle: probe.Duration = 300.0

    assert Options.model_validate({"idle": "5m"}).idle == 300.0
