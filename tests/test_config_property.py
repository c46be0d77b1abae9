"""Property: whatever YAML reaches the loader, it returns a Plan or raises ConfigErrors, never anything
else, and every error points into the file it is about."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probe.config.load import ConfigErrors, Plan, load_plan, load_settings
from probe.plugins.manager import load_plugins

REGISTRY = load_plugins(use_entry_points=False)
SHAPE = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+):(?P<col>\d+): \S")

# Words the loader gives meaning to, so generated documents get past the first check often.
KEYS = ["checks", "defaults", "name", "type", "interval", "timeout", "retry_interval", "failure_threshold",
        "success_threshold", "labels", "thresholds", "remediate", "enabled", "timeout_status", "warning",
        "critical", "clear", "on", "run", "cooldown", "max_runs", "window", "path", "include", "exclude",
        "utilization", "available", "duration", "max_read", "<<", "telemetry", "plugins", "history"]
WORDS = ["memory", "disk", "file", "command", "5s", "0s", "-1s", "2m", "1h30m", "10MiB", "90%", ">= 90%", "< 85%",
         "> 2s", "10:20", "@10:20", "~:10", "20:10", "${HOME}", "${UNSET}", "${UNSET:-x}", "${file:/nonexistent}",
         "${file:}", "$$", "${", "critical", "problem", "/", "/nonexistent", "no", "on", "010", "1.10", "~", ""]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(WORDS), st.text(max_size=20),
)
keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=10), st.integers(-3, 3), st.booleans())
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=6)),
    max_leaves=30,
)
check_lists = st.lists(st.dictionaries(st.sampled_from(KEYS), documents, max_size=6), max_size=3)


def _dump(document: Any) -> str:
    return yaml.safe_dump(document, allow_unicode=True, sort_keys=False)


def _located_errors(exc: ConfigErrors, path: Path) -> Iterator[str]:
    for error in exc.errors:
        text = str(error)
        match = SHAPE.match(text)
        if not match or match["file"] != str(path) or int(match["line"]) < 1 or int(match["col"]) < 1:
            yield text


def load_text(directory: Path, text: str | bytes) -> Plan | ConfigErrors:
    path = directory / "checks.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    try:
        return load_plan(path, REGISTRY, env={"HOME": "/root"})
    except ConfigErrors as exc:
        bad = list(_located_errors(exc, path))
        assert not bad, f"errors not located in {path}: {bad}"
        assert exc.errors, "ConfigErrors without errors"
        return exc


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as directory:
        yield Path(directory)


PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@PROPERTY
@given(document=documents)
def test_any_yaml_document_loads_or_reports_config_errors(scratch: Path, document: Any) -> None:
    load_text(scratch, _dump(document))


@PROPERTY
@given(checks=check_lists, defaults=st.dictionaries(st.sampled_from(KEYS), documents, max_size=4))
def test_any_checks_list_loads_or_reports_config_errors(scratch: Path, checks: list[Any],
                                                        defaults: dict[str, Any]) -> None:
    load_text(scratch, _dump({"defaults": defaults, "checks": checks}))


@PROPERTY
@given(data=st.data())
def test_any_edit_of_a_shipped_example_loads_or_reports_config_errors(scratch: Path, data: st.DataObject) -> None:
    example = data.draw(st.sampled_from(sorted((REPO / "checks.d").glob("*.yaml"))), label="example")
    text = example.read_text(encoding="utf-8")
    for _ in range(data.draw(st.integers(1, 4), label="edits")):
        at = data.draw(st.integers(0, len(text)), label="at")
        cut = data.draw(st.integers(0, 8), label="cut")
        insert = data.draw(st.sampled_from(["", " ", "\t", "\n", ":", "- ", "{", "]", "&a ", "*a", "'", '"',
                                            "!!int ", "<<: ", "#", "\x00", "${"]), label="insert")
        text = text[:at] + insert + text[at + cut:]
    load_text(scratch, text)


@PROPERTY
@given(raw=st.binary(max_size=200))
def test_any_bytes_load_or_report_config_errors(scratch: Path, raw: bytes) -> None:
    load_text(scratch, raw)


@PROPERTY
@given(document=documents)
def test_any_probe_yaml_gives_settings_or_located_errors(scratch: Path, document: Any) -> None:
    path = scratch / "probe.yaml"
    path.write_text(_dump(document), encoding="utf-8")
    settings_, errors = load_settings(path, {}, set())
    assert settings_ is not None
    bad = list(_located_errors(ConfigErrors(errors), path))
    assert not bad, bad
