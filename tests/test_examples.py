"""The shipped checks.d/ examples: one per check type, each valid, none aimed at a real third party, and
local.yaml runs offline on any Linux machine."""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from conftest import REPO
from hostfs import probe_cli

from probe.config.load import ConfigErrors, load_plan
from probe.plugins.manager import load_plugins

REGISTRY = load_plugins(use_entry_points=False)
EXAMPLES = sorted((REPO / "checks.d").glob("*.y*ml"))
DOC_DOMAINS = ("example.com", "example.org", "example.net", "localhost")
RESERVED_TLDS = ("test", "invalid", "example", "localhost")  # RFC 2606
HOST_KEYS = {"host", "server", "url", "endpoint", "dsn", "address"}


def test_there_are_examples() -> None:
    assert REPO / "checks.d" / "local.yaml" in EXAMPLES


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_validates(example: Path) -> None:
    try:
        plan = load_plan(example, REGISTRY, env={})
    except ConfigErrors as exc:
        pytest.fail(f"checks.d/{example.name} does not validate with the built-in plugins:\n{exc}")
    assert plan.checks, f"checks.d/{example.name} defines no enabled checks"


@pytest.mark.parametrize("check_type", sorted(REGISTRY.checks))
def test_every_check_type_has_an_example(check_type: str) -> None:
    example = REPO / "checks.d" / f"{check_type}.yaml"
    assert example.is_file(), f"check type {check_type!r} has no example: create {example.relative_to(REPO)}"
    data = yaml.safe_load(example.read_text()) or {}
    default = (data.get("defaults") or {}).get("type")
    types = {c.get("type", default) for c in data.get("checks") or [] if isinstance(c, dict)}
    assert check_type in types, f"{example.relative_to(REPO)} has no check of type {check_type!r}"


def _strings(node: Any, key: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _strings(v, str(k))
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item, key)
    elif isinstance(node, str):
        yield key, node


def _host_of(key: str, value: str) -> str | None:
    value = re.sub(r"\$\{[^}:]*:-([^}]*)\}", r"\1", value)  # ${VAR:-default} -> default
    if key == "dsn" and "://" not in value:
        libpq = re.search(r"\bhost=(\S+)", value)
        return libpq.group(1) if libpq else None
    if "://" in value:
        return urlsplit(value).hostname
    if key in HOST_KEYS:
        return re.sub(r":\d+$", "", value.strip("[]")).strip("[]") or None
    return None


def _allowed(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return (host in DOC_DOMAINS or host.endswith(tuple(f".{d}" for d in DOC_DOMAINS))
                or host.rsplit(".", 1)[-1] in RESERVED_TLDS)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_examples_target_only_loopback_or_documentation_hosts(example: Path) -> None:
    data = yaml.safe_load(example.read_text())
    bad = sorted({f"{key}: {value}" for key, value in _strings(data)
                  if (host := _host_of(key, value)) is not None and not _allowed(host)})
    assert not bad, (f"checks.d/{example.name} must target loopback or example.com-style hosts, "
                     f"not: {'; '.join(bad)}")


def test_host_filter_itself() -> None:
    assert _allowed("127.0.0.1") and _allowed("::1") and _allowed("shop.example.com") and _allowed("localhost")
    assert not _allowed("8.8.8.8") and not _allowed("google.com") and not _allowed("example.com.evil.net")
    assert not _allowed("notexample.com") and _allowed("db.test")
    assert _host_of("url", "https://shop.example.com:8443/health") == "shop.example.com"
    assert _host_of("server", "127.0.0.1:5353") == "127.0.0.1"
    assert _host_of("summary", "just text") is None
    assert _host_of("dsn", "host=127.0.0.1 dbname=test") == "127.0.0.1"
    assert _host_of("url", "${URL:-http://127.0.0.1:8080/}") == "127.0.0.1"


def test_local_example_runs_offline_and_is_not_critical() -> None:
    proc = probe_cli("--config-dir", REPO / "checks.d" / "local.yaml", "run", "--once", "--format", "json")
    assert proc.returncode in (0, 1), f"local.yaml exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    doc = json.loads(proc.stdout)
    assert {c["type"] for c in doc["checks"]} >= {"disk", "memory", "process"}
    assert all(c["status"] in ("ok", "warning") for c in doc["checks"]), doc


def _shipped_sets() -> list[tuple[str, list[Path]]]:
    """Every set of checks files that is shipped to be used together, as the directory it lands in: the
    repository's checks.d (``probe run --once`` in a checkout reads all of it), the package's
    /etc/probe/checks.d (packaging/nfpm.yaml), and the documentation examples the package installs."""
    nfpm = yaml.safe_load((REPO / "packaging" / "nfpm.yaml").read_text())
    etc = [REPO / c["src"] for c in nfpm["contents"]
           if str(c.get("dst", "")).startswith("/etc/probe/checks.d/") and c.get("src")]
    return [("checks.d", EXAMPLES), ("/etc/probe/checks.d (package)", etc)]


@pytest.mark.parametrize(("where", "files"), _shipped_sets(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_shipped_set_validates_as_the_directory_it_is_shipped_in(where: str, files: list[Path],
                                                                        tmp_path: Path) -> None:
    assert files, f"nothing shipped to {where}?"
    directory = tmp_path / "checks.d"
    directory.mkdir()
    for file in files:
        (directory / file.name).write_bytes(file.read_bytes())
    try:
        plan = load_plan(directory, REGISTRY, env={})
    except ConfigErrors as exc:
        pytest.fail(f"{where} does not validate as one directory (as `probe validate` reads it):\n{exc}")
    assert len(plan.checks) >= len(files)


def test_probe_validate_in_a_checkout_reads_checks_d_and_passes(tmp_path: Path) -> None:
    settings = tmp_path / "probe.yaml"  # only the built-in plugins, whatever this venv holds
    settings.write_text("plugins: {entry_points: false}\n")
    proc = probe_cli("validate", "--config", settings, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("configuration OK: ") and "checks.d/local.yaml" in proc.stdout
