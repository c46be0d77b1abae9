"""The ``probe`` command leaves the standard library as it is: one ``ssl`` module, the real one, so that a
plugin which patches it (truststore's ``inject_into_ssl()``, a test's ``mock.patch("ssl....")``) patches what
probe's TLS checks use."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from netservers import Certs, ThreadedServer, http_server

# What truststore.inject_into_ssl() does in spirit: every default context trusts one more CA, here the
# test's own, so an https check with no ca_file succeeds only if the patched module is the one probe uses.
INJECT = """\
import ssl
import sys
import types

assert type(sys.modules["ssl"]) is types.ModuleType, type(sys.modules["ssl"])
_original = ssl.create_default_context

def _trusting(*args, **kwargs):
    context = _original(*args, **kwargs)
    context.load_verify_locations(cafile={ca!r})
    return context

ssl.create_default_context = _trusting
"""


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def tls_port(certs: Certs) -> Iterator[int]:
    with ThreadedServer(http_server(), tls=certs.server_context("valid")) as server:
        yield server.port


def run_once(tmp_path: Path, port: int, plugin: str | None) -> dict[str, object]:
    plugins = tmp_path / "plugins"
    plugins.mkdir(exist_ok=True)
    for old in plugins.glob("*.py"):
        old.unlink()
    if plugin is not None:
        (plugins / "trust_test_ca.py").write_text(plugin)
    (tmp_path / "probe.yaml").write_text(f"plugins: {{dir: '{plugins}', entry_points: false}}\n"
                                         f"state_dir: '{tmp_path / 'state'}'\n")
    (tmp_path / "checks.yaml").write_text(textwrap.dedent(f"""\
        checks:
          - {{name: site, type: http, url: 'https://127.0.0.1:{port}/health'}}
        """))
    proc = subprocess.run([sys.executable, "-m", "probe", "--config", str(tmp_path / "probe.yaml"),
                           "--config-dir", str(tmp_path / "checks.yaml"), "run", "--once", "--format", "json"],
                          capture_output=True, text=True, timeout=60)
    assert proc.stdout, proc.stderr[-2000:]
    check: dict[str, object] = json.loads(proc.stdout)["checks"][0]
    return check


def test_a_plugin_that_patches_ssl_patches_what_the_checks_use(tmp_path: Path, certs: Certs, tls_port: int) -> None:
    untrusted = run_once(tmp_path, tls_port, None)
    assert (untrusted["status"], untrusted["reason"]) == ("critical", "certificate_invalid")  # the CA is not trusted
    trusted = run_once(tmp_path, tls_port, INJECT.format(ca=str(certs.ca_file)))
    assert trusted["status"] == "ok", trusted["summary"]
