"""Docs that cannot drift: every registered check type has docs/checks/<type>.md naming every option
(nested ones too, as ``parent.child``) and every measurement it reports (``duration``, which the core
adds to every check, excepted)."""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Iterator

import pytest
from conftest import REPO
from pydantic import BaseModel

from probe.check import Check
from probe.plugins.manager import load_plugins
from probe.plugins.optiondocs import option_docs

REGISTRY = load_plugins(use_entry_points=False)
TYPES = sorted(REGISTRY.checks)


def option_names(model: type[BaseModel], prefix: str = "") -> Iterator[str]:
    """Every field of ``model`` as a dotted path, descending into nested option models."""
    for name, info in model.model_fields.items():
        key = info.alias or name
        yield prefix + key
        for nested in _models_in(info.annotation):
            yield from option_names(nested, f"{prefix}{key}.")


def _models_in(annotation: object) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
        return
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is not None:
        for arg in typing.get_args(annotation):
            yield from _models_in(arg)


def missing_from(text: str, names: list[str]) -> list[str]:
    """Names not mentioned as a word; a nested option counts when its last part is mentioned."""
    return [n for n in names if not re.search(rf"(?<![\w-]){re.escape(n.rsplit('.', 1)[-1])}(?![\w-])", text)]


def test_there_are_builtin_check_types() -> None:
    assert {"disk", "memory", "process"} <= set(TYPES)
    assert not REGISTRY.failures, REGISTRY.failures


@pytest.mark.parametrize("check_type", TYPES)
def test_check_type_has_a_docs_page_naming_every_option_and_measurement(check_type: str) -> None:
    cls: type[Check] = REGISTRY.checks[check_type]
    page = REPO / "docs" / "checks" / f"{check_type}.md"
    assert page.is_file(), f"check type {check_type!r} ({cls.__module__}) has no docs page: create {page}"
    text = page.read_text(encoding="utf-8")
    options = missing_from(text, list(option_names(cls.Options)))
    # duration is the core's, reported for every check alike; a page need not repeat it.
    measurements = missing_from(text, sorted(set(cls.measurements or ()) - set(Check.measurements or ())))
    problems = [f"option {o!r}" for o in options] + [f"measurement {m!r}" for m in measurements]
    assert not problems, f"{page.relative_to(REPO)} does not mention: {', '.join(problems)}"


@pytest.mark.parametrize("check_type", TYPES)
def test_every_option_has_a_docstring(check_type: str) -> None:
    """The Options class is the single source of the reference: each field says what it means."""
    cls = REGISTRY.checks[check_type]
    documented = option_docs(cls.Options)
    undocumented = [name for name in cls.Options.model_fields if not documented.get(name)]
    assert not undocumented, (f"{cls.__module__}.{cls.__name__}.Options: add a docstring under "
                              f"{', '.join(undocumented)}")


def test_helpers_find_nested_options() -> None:
    class Inner(BaseModel):
        server_name: str = ""

    class Outer(BaseModel):
        url: str = ""
        tls: Inner | None = None
        many: list[Inner] = []

    assert list(option_names(Outer)) == ["url", "tls", "tls.server_name", "many", "many.server_name"]
    assert missing_from("set `url` and `server_name`", ["url", "tls.server_name", "many"]) == ["many"]
    assert missing_from("the max_count option", ["count"]) == ["count"]  # words, not substrings


def test_cli_reference_names_every_command_option_exit_code_and_format() -> None:
    import click

    from probe.cli.commands import cli

    text = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
    missing = []
    context = click.Context(cli)
    for name in cli.list_commands(context):
        command = cli.get_command(context, name)
        assert command is not None, name
        if f"probe {name}" not in text:
            missing.append(f"command 'probe {name}'")
        for param in command.params:
            if isinstance(param, click.Option):
                missing += [f"option {o} of probe {name}" for o in param.opts if o not in text]
    for param in cli.params:
        if isinstance(param, click.Option):
            missing += [f"global option {o}" for o in param.opts if o not in text]
    missing += [f"format {f!r}" for f in REGISTRY.formats if f"`{f}`" not in text]
    missing += [f"exit code {c}" for c in (0, 1, 2, 3, 64, 74, 78) if f"| {c} |" not in text]
    assert not missing, f"docs/cli.md does not mention: {', '.join(missing)}"


def test_every_decision_record_is_in_the_index() -> None:
    """docs/decisions/README.md lists every record, so a reader finds the one for the module they are in."""
    folder = REPO / "docs" / "decisions"
    index = (folder / "README.md").read_text(encoding="utf-8")
    records = sorted(p.name for p in folder.glob("[0-9][0-9][0-9][0-9]-*.md"))
    assert records, "no decision records"
    missing = [name for name in records if f"({name})" not in index]
    assert missing == [], f"add a row for each to docs/decisions/README.md: {missing}"


def test_decision_records_have_one_number_each() -> None:
    """Two records under one number (two sessions writing in parallel) make "see decision 0003" ambiguous;
    each record's title carries its own number, so a link and the page it opens agree."""
    folder = REPO / "docs" / "decisions"
    records = sorted(folder.glob("[0-9][0-9][0-9][0-9]-*.md"))
    numbers = [p.name[:4] for p in records]
    assert sorted(n for n in set(numbers) if numbers.count(n) > 1) == [], "renumber the later record"
    wrong = [p.name for p in records if not p.read_text(encoding="utf-8").startswith(f"# {p.name[:4]}: ")]
    assert wrong == [], f"a record's title starts with '# NNNN: ' of its own number: {wrong}"
