"""docs/configuration.md cannot drift: its marked examples load (or fail exactly as shown) and it names
every setting and every common check field."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO
from hostfs import probe_main
from pydantic import BaseModel

from probe._permissions import unsafe_file
from probe.config.load import ConfigErrors, load_plan, load_settings
from probe.config.settings import AgentSettings
from probe.config.spec import CommonFields, RemediationSpec
from probe.plugins.manager import load_plugins

PAGE = REPO / "docs" / "configuration.md"
TEXT = PAGE.read_text(encoding="utf-8")
REGISTRY = load_plugins(use_entry_points=False)
BLOCK = re.compile(r"<!-- (?P<kind>[\w-]+)(?:: (?P<arg>\S+))? -->\n```yaml\n(?P<body>.*?)```", re.DOTALL)


def blocks(kind: str) -> list[tuple[str | None, str]]:
    return [(m["arg"], m["body"]) for m in BLOCK.finditer(TEXT) if m["kind"] == kind]


def with_secrets(body: str, tmp_path: Path) -> str:
    """``/run/secrets/...`` files referenced by an example are made for real, in a temporary directory."""
    secrets = tmp_path / "secrets"
    secrets.mkdir(exist_ok=True)
    for name in re.findall(r"\$\{file:/run/secrets/([\w.-]+)\}", body):
        (secrets / name).write_text("example-secret\n")
    return body.replace("/run/secrets/", f"{secrets}/")


def test_the_page_has_examples_of_each_kind() -> None:
    assert len(blocks("checks-file")) >= 6
    assert len(blocks("settings-file")) == 1
    assert len(blocks("invalid-checks-file")) == 1


@pytest.mark.parametrize("index", range(len(blocks("checks-file"))))
def test_every_checks_file_example_loads(index: int, tmp_path: Path) -> None:
    _, body = blocks("checks-file")[index]
    path = tmp_path / "example.yaml"
    path.write_text(with_secrets(body, tmp_path), encoding="utf-8")
    try:
        plan = load_plan(path, REGISTRY, env={})
    except ConfigErrors as exc:
        pytest.fail(f"example {index + 1} in docs/configuration.md does not load:\n{body}\n{exc}")
    assert plan.checks


def test_the_settings_example_loads_and_means_what_it_says(tmp_path: Path) -> None:
    ((_, body),) = blocks("settings-file")
    path = tmp_path / "probe.yaml"
    path.write_text(body, encoding="utf-8")
    settings, errors = load_settings(path, {}, set())
    assert not errors, "\n".join(map(str, errors))
    assert settings.telemetry.otlp.headers == {"x-scope-orgid": "ops"}
    assert settings.history.retention == 30 * 86400 and settings.shutdown_grace == 10


def test_the_invalid_example_fails_exactly_as_shown(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    ((relative, body),) = blocks("invalid-checks-file")
    assert relative is not None
    shown = re.search(r"`probe --config-dir (\S+) validate` prints, and exits 78:\n\n```text\n(.*?)```", TEXT,
                      re.DOTALL)
    assert shown, "the page must show the output of probe validate for the invalid example"
    (tmp_path / relative).parent.mkdir(parents=True)
    (tmp_path / relative).write_text(body, encoding="utf-8")
    (tmp_path / "probe.yaml").write_text("plugins: {entry_points: false}\n")
    for key in [k for k in os.environ if k.startswith("PROBE_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    proc = probe_main(capsys, "--config", "probe.yaml", "--config-dir", shown[1], "validate")
    assert proc.returncode == 78
    assert proc.stderr == shown[2]


def test_the_strict_modes_example_is_what_probe_prints(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("StrictModes apply to root")
    shown = re.search(r"^(/etc/probe/checks.d/web.yaml):1:1: (.*)$", TEXT, re.MULTILINE)
    assert shown
    path = tmp_path / "web.yaml"
    path.write_text("checks: []\n")
    path.chmod(0o666)
    assert unsafe_file(path) == shown[2].replace(shown[1], str(path))


def dotted(model: type[BaseModel], prefix: str = "") -> Iterator[str]:
    for name, info in model.model_fields.items():
        key = info.alias or name
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            yield from dotted(info.annotation, f"{prefix}{key}.")
        else:
            yield prefix + key


def _mentioned(name: str) -> bool:
    """``a.b.c`` is mentioned as itself, or as ``a.b.x`` / ``c`` in a row that lists siblings."""
    parent, _, last = name.rpartition(".")
    return f"`{name}`" in TEXT or (bool(parent) and f"`{parent}." in TEXT and f"`{last}`" in TEXT) \
        or (not parent and f"`{last}`" in TEXT)


@pytest.mark.parametrize(("model", "what"), [(AgentSettings, "setting"), (CommonFields, "common check field"),
                                             (RemediationSpec, "remediate field")])
def test_every_setting_and_common_field_is_documented(model: type[BaseModel], what: str) -> None:
    missing = [name for name in dotted(model) if not _mentioned(name)]
    assert not missing, f"docs/configuration.md does not mention the {what}s: {', '.join(missing)}"


def test_the_page_keeps_its_promise_about_the_invalid_corpus() -> None:
    cases = [p for p in (REPO / "tests" / "invalid").iterdir() if p.suffix == ".yaml" or p.is_dir()]
    assert "more than forty" in TEXT and len(cases) > 40
