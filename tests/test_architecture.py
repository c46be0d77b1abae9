"""The layout is the design: the import graph of src/probe has no cycles and its arrows run one way.

Read from the source with ``ast`` (nothing is imported). Every ``import`` counts for the layer rules: at module
level, inside functions and under ``TYPE_CHECKING`` (a type is a dependency too). Cycles are looked for among
the imports that run -- module level and inside functions, where a cycle likes to hide -- since an import under
``TYPE_CHECKING`` never executes. ARCHITECTURE.md describes the same layers; change both together.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"

PUBLIC_API = frozenset({
    "probe", "probe.check", "probe.model", "probe.units", "probe.conditions", "probe.hookspecs",
})
"""What a third-party check may import of probe, so what a built-in check may import."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted((SRC / "probe").rglob("*.py"))}


def _resolve(name: str) -> str | None:
    """The probe module an imported dotted name refers to (a module, or the module that defines it)."""
    while name:
        if name in modules():
            return name
        name = name.rpartition(".")[0]
    return None


def _absolute(node: ast.ImportFrom, here: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = here.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _type_checking_only(tree: ast.Module) -> set[int]:
    """ids of the import nodes inside ``if TYPE_CHECKING:`` blocks."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            found.update(id(inner) for stmt in node.body for inner in ast.walk(stmt))
    return found


def imports_of(name: str, *, runtime_only: bool = False) -> Iterator[str]:
    path = modules()[name]
    tree = ast.parse(path.read_text(), str(path))
    skip = _type_checking_only(tree) if runtime_only else set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            origin = _absolute(node, name, path.name == "__init__.py")
            targets = [f"{origin}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            found = _resolve(target) if target.startswith("probe") else None
            if found is not None and found != name:
                yield found


def read_facts() -> dict[str, dict[str, list[str]]]:
    """Per module: what it imports of probe (all, and at run time) and every module it imports at run time.
    Parsed here; :func:`facts` runs this in a fresh interpreter."""
    return {name: {"all": sorted(set(imports_of(name))),
                   "runtime": sorted(set(imports_of(name, runtime_only=True))),
                   "external": sorted(_runtime_imports(path))}
            for name, path in modules().items()}


@cache
def facts() -> dict[str, dict[str, list[str]]]:
    """:func:`read_facts` in a child interpreter. CPython 3.11.7 keeps the AST converter's recursion counter in
    per-interpreter state (gh-106905): an ``ast.parse`` in another thread at the same moment -- option docs
    read by a thread an earlier test left winding down -- makes this one fail with "AST constructor recursion
    depth mismatch" (seen in a full run). A fresh process has no other threads."""
    done = subprocess.run([sys.executable, __file__], capture_output=True, text=True, timeout=120, check=True)
    found: dict[str, dict[str, list[str]]] = json.loads(done.stdout)
    return found


@cache
def graph() -> dict[str, frozenset[str]]:
    return {name: frozenset(f["all"]) for name, f in facts().items()}


@cache
def runtime_graph() -> dict[str, frozenset[str]]:
    return {name: frozenset(f["runtime"]) for name, f in facts().items()}


def cycles() -> list[list[str]]:
    """Every strongly connected component with more than one module among the imports that run (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in runtime_graph()[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in runtime_graph():
        if v not in index:
            visit(v)
    return found


def in_package(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def violations(importer: str, forbidden: tuple[str, ...], allowed: frozenset[str] = frozenset()) -> list[str]:
    return sorted(
        f"{name} imports {target}"
        for name, targets in graph().items() if in_package(name, importer)
        for target in targets
        if target not in allowed and any(in_package(target, f) for f in forbidden)
    )


def test_the_graph_is_read() -> None:
    assert "probe.engine.runner" in graph()
    assert "probe.engine.interfaces" in graph()["probe.engine.runner"]
    assert "probe.model" in graph()["probe.check"]


def test_no_import_cycles() -> None:
    assert cycles() == []


def test_a_cycle_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cycle finder itself: a two-module loop added to the graph is reported."""
    fake = dict(runtime_graph())
    fake["probe.model"] = fake["probe.model"] | {"probe.check"}
    monkeypatch.setattr(sys.modules[__name__], "runtime_graph", lambda: fake)
    assert ["probe.check", "probe.model"] in cycles()


@pytest.mark.parametrize("module", ["probe.model", "probe.units"])
def test_the_model_imports_nothing_of_probe(module: str) -> None:
    assert graph()[module] == frozenset()


INTERNAL = ("probe.config", "probe.plugins", "probe.engine", "probe.sinks", "probe.daemon", "probe.cli", "probe.checks")
"""The layers behind the public contract; a plugin never needs them, so the contract never names them."""


def test_the_public_contract_names_nothing_internal() -> None:
    """What a plugin sees (``probe``, its top-level modules, ``probe.formats``) is typed in public terms only,
    even under TYPE_CHECKING: a format gets a ``CheckRun``, never the engine's ``Outcome``. ``probe.testing``
    is the one facade that reaches inside (so plugin tests never have to); ``probe._entry`` starts the CLI."""
    facades = {"probe.testing", "probe._entry"}
    bad = sorted(
        f"{name} imports {target}"
        for name, targets in graph().items()
        if name not in facades and not any(in_package(name, p) for p in INTERNAL)
        for target in targets if any(in_package(target, p) for p in INTERNAL)
    )
    assert bad == []


def test_formats_see_only_the_public_view() -> None:
    assert violations("probe.formats", INTERNAL) == []


def test_public_contract_stands_on_the_model_only() -> None:
    lower = {"probe.model", "probe.units", "probe.conditions", "probe.check", "probe.hookspecs"}
    for module in lower:
        assert runtime_graph()[module] <= lower, module


def test_builtin_checks_import_only_the_public_api() -> None:
    bad = sorted(
        f"{name} imports {target}"
        for name, targets in graph().items() if in_package(name, "probe.checks")
        for target in targets
        if target not in PUBLIC_API and not in_package(target, "probe.checks")
    )
    assert bad == []


def test_the_engine_knows_no_cli_and_no_daemon() -> None:
    assert violations("probe.engine", ("probe.cli", "probe.daemon")) == []


def test_sinks_never_import_the_engine_but_its_interfaces() -> None:
    assert violations("probe.sinks", ("probe.engine", "probe.daemon", "probe.cli"),
                      allowed=frozenset({"probe.engine.interfaces"})) == []


def test_the_engine_interfaces_stand_alone() -> None:
    """Sinks may import ``probe.engine.interfaces``; it must not pull the rest of the engine in behind it."""
    assert sorted(t for t in graph()["probe.engine.interfaces"] if in_package(t, "probe.engine")) == []


def test_config_is_upstream_of_everything_that_runs() -> None:
    assert violations("probe.config", ("probe.engine", "probe.sinks", "probe.daemon", "probe.cli")) == []


def test_plugins_load_without_config_engine_or_sinks() -> None:
    assert violations("probe.plugins", ("probe.config", "probe.engine", "probe.sinks", "probe.daemon", "probe.cli"),
                      allowed=frozenset({"probe.config.errors"})) == []


def test_the_daemon_knows_no_cli() -> None:
    assert violations("probe.daemon", ("probe.cli",)) == []


def test_nothing_but_the_entry_point_imports_the_cli() -> None:
    importers = sorted(name for name, targets in graph().items()
                       if not in_package(name, "probe.cli") and any(in_package(t, "probe.cli") for t in targets))
    assert importers == ["probe._entry"]


def test_no_module_sits_flat_beside_the_public_contract() -> None:
    """Top-level modules are the public contract, or private (``_``) helpers of it."""
    public = {"probe", "probe.__main__", "probe.check", "probe.model", "probe.units", "probe.conditions",
              "probe.hookspecs", "probe.actions", "probe.testing"}
    flat = sorted(name for name, path in modules().items()
                  if name.count(".") == 1 and path.name != "__init__.py" and name not in public
                  and not name.rpartition(".")[2].startswith("_"))
    assert flat == []


def _runtime_imports(path: Path) -> set[str]:
    """Every module name the file imports at run time, anywhere in it (absolute imports)."""
    tree = ast.parse(path.read_text(), str(path))
    skip = _type_checking_only(tree)
    names: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        names.update([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
    return names


def _imports_module(name: str, wanted: str) -> bool:
    """Whether module ``name`` imports ``wanted`` (or a submodule of it) at run time, anywhere in it."""
    return any(n == wanted or n.startswith(wanted + ".") for n in facts()[name]["external"])


def test_only_the_checks_import_ssl() -> None:
    """probe's own code brings in OpenSSL only where TLS is spoken: never the engine, config, sinks or CLI."""
    importers = sorted(name for name in modules() if _imports_module(name, "ssl"))
    assert importers and all(in_package(name, "probe.checks") for name in importers), importers


def test_architecture_md_names_every_package_and_layer_module() -> None:
    """ARCHITECTURE.md describes the layout the tests enforce: every package, and every module of the layers
    whose modules it lists, appears in it (so a new module gets a line there)."""
    text = (SRC.parent / "ARCHITECTURE.md").read_text(encoding="utf-8")
    packages = sorted(name for name, path in modules().items() if path.name == "__init__.py" and name.count(".") == 1)
    missing = [name for name in packages if f"`{name}`" not in text and f"`{name.rpartition('.')[2]}/`" not in text]
    for layer in ("probe.engine", "probe.config", "probe.plugins", "probe.daemon"):
        missing += [name for name in modules() if name.rpartition(".")[0] == layer
                    and f"`{name.rpartition('.')[2]}`" not in text]
    assert missing == [], f"give each a line in ARCHITECTURE.md's layer table (its job, in backticks): {missing}"


if __name__ == "__main__":
    print(json.dumps(read_facts()))
