"""``probe new-plugin NAME``: a plugin package that installs, registers and passes its own tests as generated.

The generated check is a real one (a TCP connect with a latency measurement and reasons) rather than a
stub, so the test it ships exercises the real runner against a real loopback listener and the author
starts from something that already works, then changes what it talks to.
"""

from __future__ import annotations

import keyword
import re
import shlex
import sys
from pathlib import Path

import click

import probe

_NAME = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")


class ScaffoldError(Exception):
    pass


def names(name: str) -> dict[str, str]:
    """Every spelling of NAME the templates use, or ScaffoldError saying what a valid NAME is."""
    if not _NAME.fullmatch(name):
        raise ScaffoldError(f"{name!r} is not a valid plugin name: use lower-case letters, digits and single "
                            "hyphens, starting with a letter (e.g. 'acme-ping')")
    module = "probe_" + name.replace("-", "_")
    if keyword.iskeyword(module):
        raise ScaffoldError(f"{name!r} would make an invalid Python module name")
    major, minor = probe.__version__.split(".")[:2]
    return {
        "name": name,
        "dist": f"probe-{name}",
        "module": module,
        "cls": "".join(part.capitalize() for part in name.split("-")) + "Check",
        "options": "".join(part.capitalize() for part in name.split("-")) + "Options",
        "probe_req": f"probe-monitor>={major}.{minor}",
    }


def generate(name: str, directory: Path, *, builtin_types: frozenset[str] = frozenset()) -> list[Path]:
    """Write the package into ``directory`` (which must not exist or be empty); return the files written."""
    n = names(name)
    if name in builtin_types:
        raise ScaffoldError(f"check type {name!r} is built into probe; pick another name (a second plugin "
                            "registering it would be a conflict)")
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise ScaffoldError(f"{directory} already exists and is not an empty directory; nothing was written")
    files = {
        "pyproject.toml": PYPROJECT,
        "README.md": README,
        f"src/{n['module']}/__init__.py": MODULE,
        f"src/{n['module']}/py.typed": "",
        f"tests/test_{n['module']}.py": TEST,
        f"checks.d/{name}.yaml": EXAMPLE,
        ".gitignore": "__pycache__/\n*.egg-info/\nbuild/\ndist/\n.venv/\n",
    }
    written = []
    for rel, template in files.items():
        path = directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_fill(template, n), encoding="utf-8")
        written.append(path)
    return written


def _fill(template: str, n: dict[str, str]) -> str:
    out = template
    for key, value in n.items():
        out = out.replace("{{" + key + "}}", value)
    return out


@click.command("new-plugin")
@click.argument("name")
@click.option("--directory", "-d", type=click.Path(file_okay=False, path_type=Path),
              help="Where to create the package (default ./probe-NAME).")
def new_plugin(name: str, directory: Path | None) -> None:
    """Create a plugin package for check type NAME that passes its own tests as generated."""
    from probe.plugins.manager import load_plugins

    target = directory or Path(f"probe-{name}")
    builtin = frozenset(load_plugins(use_entry_points=False).checks)
    try:
        written = generate(name, target, builtin_types=builtin)
    except ScaffoldError as exc:
        raise click.UsageError(str(exc)) from None
    n = names(name)
    click.echo(f"created {target}/ ({len(written)} files): check type {name!r} in src/{n['module']}/__init__.py")
    # The plugin goes into the environment probe runs from: probe finds plugins through its own environment's
    # entry points, and the plugin's dependency on probe is satisfied there (a fresh venv has no probe).
    python = shlex.quote(sys.executable)
    click.echo(f"next (install into probe's own environment, {sys.prefix}):")
    click.echo(f"  cd {shlex.quote(str(target))} && {python} -m pip install -e '.[test]' && {python} -m pytest")
    click.echo(f"  probe plugins                  # lists {n['dist']}")
    click.echo(f"  probe --config-dir checks.d/{name}.yaml run --once")


PYPROJECT = '''\
[build-system]
requires = ["setuptools>=77"]
build-backend = "setuptools.build_meta"

[project]
name = "{{dist}}"
version = "0.1.0"
description = "The {{name}} check type for probe"
readme = "README.md"
requires-python = ">=3.11"
# The plugin API of `import probe` is stable within a major version (see probe's compatibility promise).
dependencies = ["{{probe_req}}"]

[project.optional-dependencies]
test = ["pytest>=8", "pytest-asyncio>=0.23"]

# How probe finds the check type: one entry point per type, named like it. probe imports this package
# only when a config uses the type. `plugins.allow` in probe.yaml lists the distribution name, {{dist}}.
[project.entry-points."probe.checks"]
{{name}} = "{{module}}:{{cls}}"

[tool.setuptools.packages.find]
where = ["src"]

[tool.setuptools.package-data]
{{module}} = ["py.typed"]

[tool.pytest.ini_options]
testpaths = ["tests"]
asyncio_mode = "auto"
asyncio_default_fixture_loop_scope = "function"

[tool.ruff]
line-length = 120
'''

MODULE = '''\
"""{{name}}: a probe check type.

Generated by `probe new-plugin {{name}}`: it opens a TCP connection and reports how long that took.
Change `run` to talk to what you monitor; keep returning a probe.Result (failures are data, not exceptions).
"""

from __future__ import annotations

import asyncio
import time

import probe
from probe.hookspecs import CheckRegistrar
from pydantic import Field


class {{options}}(probe.Options):
    """Options of the {{name}} check type: strict (unknown keys are errors) and frozen; the docstrings are the
    reference users read."""

    host: str = "127.0.0.1"
    """Host name or address to connect to."""
    port: int = Field(ge=1, le=65535)
    """TCP port."""


class {{cls}}(probe.Check[{{options}}]):
    """Connects to host:port and reports the connect time."""

    type = "{{name}}"
    # Every measurement this type may report: a threshold on any other name is a config error.
    measurements = frozenset({"duration", "connect"})
    # A check with a peer across the network: False (the default) spreads its runs on a 50 ms grid. A type that
    # reads only this host (a sensor, a queue directory) sets True and runs on whole seconds with the others.
    local = False

    async def run(self, ctx: probe.Context) -> probe.Result:
        # The core cancels this coroutine at the check's timeout and reports it; no timeout code needed here.
        target = f"{self.options.host}:{self.options.port}"
        started = time.perf_counter()
        try:
            _, writer = await asyncio.open_connection(self.options.host, self.options.port)
        except ConnectionRefusedError:
            return probe.Result.critical(f"{target}: connection refused", reason="connection_refused")
        except OSError as exc:
            return probe.Result.critical(f"{target}: {exc.strerror or exc}", reason="connection_failed")
        connect = time.perf_counter() - started
        writer.close()
        await writer.wait_closed()
        return probe.Result.ok(f"{target}: connected in {connect * 1000:.1f}ms",
                               probe.Measurement("connect", connect, "s"))


# An installed package is found through its entry point (pyproject.toml). This hook is for the same file
# dropped into probe's plugins directory, and for temporary_plugin(module) in tests.
@probe.hookimpl
def register_checks(register: CheckRegistrar) -> None:
    register({{cls}})
'''

TEST = '''\
"""Tests for the {{name}} check: real loopback sockets, the real probe runner, through probe.testing."""

from __future__ import annotations

import asyncio
import socket
import tomllib
from collections.abc import AsyncIterator
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import probe
import pytest
from probe.config import ConfigErrors
from probe.testing import assert_result, build_spec, run_check, temporary_plugin, validate_file

from {{module}} import {{cls}}

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def plugin() -> object:
    with temporary_plugin({{cls}}) as registry:
        yield registry


@pytest.fixture
async def listening_port() -> AsyncIterator[int]:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_connects(listening_port: int) -> None:
    outcome = await run_check({"type": "{{name}}", "port": listening_port})
    assert_result(outcome, probe.Status.OK, summary_contains="connected in", measurements=["connect"],
                  units={"connect": "s"})


async def test_thresholds_apply(listening_port: int) -> None:
    outcome = await run_check({"type": "{{name}}", "port": listening_port,
                               "thresholds": {"connect": {"warning": ">= 0s"}}})
    assert_result(outcome, "warning", reason="threshold")


async def test_refused_is_critical() -> None:
    outcome = await run_check({"type": "{{name}}", "port": closed_port()})
    assert_result(outcome, "critical", reason="connection_refused")


def test_options_are_validated() -> None:
    with pytest.raises(ConfigErrors, match="unknown key 'prot'; did you mean 'port'"):
        build_spec({"type": "{{name}}", "prot": 80})


def test_example_config_validates() -> None:
    specs = validate_file(ROOT / "checks.d" / "{{name}}.yaml")
    assert [s.type for s in specs] == ["{{name}}"]


def test_entry_point_declares_the_type() -> None:
    """One entry point per check type, named like it; once installed, probe finds the type through it."""
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["probe.checks"]
    assert declared == {"{{name}}": "{{module}}:{{cls}}"}
    try:
        installed = distribution("{{dist}}").entry_points.select(group="probe.checks")
    except PackageNotFoundError:
        pytest.fail("install the package first: pip install -e '.[test]'")
    assert {ep.name: ep.value for ep in installed} == declared, "reinstall: pip install -e '.[test]'"
'''

EXAMPLE = '''\
# Example checks.d entry for the {{name}} check type (validated by tests/test_{{module}}.py).
checks:
  - name: {{name}}-example
    type: {{name}}
    host: 127.0.0.1
    port: 22
    interval: 30s
    timeout: 5s
    thresholds:
      connect: {warning: "> 100ms", critical: "> 1s"}
'''

README = '''\
# {{dist}}

A [probe](https://pypi.org/project/probe-monitor/) plugin providing the `{{name}}` check type.

## Install and try

Into the Python environment probe is installed in (its `python -m pip`), not a new one: probe loads plugins
from its own environment.

```
python -m pip install -e '.[test]'
pytest                                   # the generated tests pass as generated
probe plugins                            # lists {{dist}} with check type {{name}}
probe --config-dir checks.d/{{name}}.yaml run --once
```

## Options

| option | default | meaning |
| --- | --- | --- |
| `host` | `127.0.0.1` | host name or address to connect to |
| `port` | (required) | TCP port |

## Measurements

| name | unit | meaning |
| --- | --- | --- |
| `connect` | s | time to establish the TCP connection |
| `duration` | s | the whole run (added by probe) |

Reasons: `connection_refused`, `connection_failed`, and probe's own `timeout` and `threshold`.

## Publish

`python -m build && twine upload dist/*`. Users install it next to probe (`pip install {{dist}}`, or into
the same venv/package as the agent) and list `{{dist}}` in `plugins.allow` when they use an allow-list.
'''
