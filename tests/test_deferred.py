"""probe._deferred: the command line loads OpenSSL only for a check that uses it, and nothing else changes.

Every test runs a fresh interpreter: what is imported, and when, is the point.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from netservers import Certs, ThreadedServer, banner_server, closed_port, http_server

OPENSSL = {"_ssl", "_hashlib"}


def imported(stderr: str) -> set[str]:
    """Module names from ``python -X importtime`` output."""
    return {line.rsplit("|", 1)[1].strip() for line in stderr.splitlines() if line.startswith("import time:")}


def run_once(config: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, dict[str, object]]]:
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "probe", "--config-dir", str(config), "run",
                           "--once", "--format", "json", *args], capture_output=True, text=True, timeout=60)
    checks = {c["name"]: c for c in json.loads(proc.stdout)["checks"]} if proc.stdout else {}
    return proc, checks


def python(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(code))
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=tmp_path)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def servers(certs: Certs) -> Iterator[dict[str, int]]:
    with (ThreadedServer(http_server()) as web,
          ThreadedServer(http_server(), tls=certs.server_context("valid")) as tls,
          ThreadedServer(banner_server(b""), tls=certs.server_context("expired")) as expired):
        yield {"web": web.port, "tls": tls.port, "expired": expired.port}


def test_checks_without_tls_never_load_openssl(tmp_path: Path, servers: dict[str, int]) -> None:
    (tmp_path / "plain.yaml").write_text(textwrap.dedent(f"""\
        checks:
          - {{name: web, type: http, url: 'http://127.0.0.1:{servers["web"]}/health'}}
          - {{name: port, type: tcp, host: 127.0.0.1, port: {servers["web"]}}}
          - {{name: refused, type: tcp, host: 127.0.0.1, port: {closed_port()}}}
          - {{name: root, type: disk, path: /}}
        """))
    proc, checks = run_once(tmp_path / "plain.yaml")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert {name: c["status"] for name, c in checks.items()} == {
        "web": "ok", "port": "ok", "refused": "critical", "root": checks["root"]["status"]}
    assert checks["refused"]["reason"] == "connection_refused"
    modules = imported(proc.stderr)
    assert "asyncio" in modules and "pydantic" in modules  # the importtime output is what it should be
    assert not modules & OPENSSL, "a run without TLS loaded OpenSSL"


def test_tls_checks_load_ssl_on_first_use_and_work(tmp_path: Path, certs: Certs, servers: dict[str, int]) -> None:
    ca = certs.ca_file
    (tmp_path / "tls.yaml").write_text(textwrap.dedent(f"""\
        checks:
          - {{name: site, type: http, url: 'https://127.0.0.1:{servers["tls"]}/health', tls: {{ca_file: '{ca}'}}}}
          - {{name: cert, type: tls, host: 127.0.0.1, port: {servers["tls"]}, tls: {{ca_file: '{ca}'}}}}
          - {{name: old, type: tls, host: 127.0.0.1, port: {servers["expired"]}, tls: {{ca_file: '{ca}'}}}}
        """))
    proc, checks = run_once(tmp_path / "tls.yaml")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert checks["site"]["status"] == "ok", checks["site"]["summary"]
    assert checks["cert"]["status"] == "ok", checks["cert"]["summary"]
    assert (checks["old"]["status"], checks["old"]["reason"]) == ("critical", "certificate_expired")
    assert "_ssl" in imported(proc.stderr)


def test_a_deferred_module_is_the_real_module_once_used(tmp_path: Path) -> None:
    proc = python("""
        import sys
        from probe import _deferred
        assert _deferred.install() == ["ssl", "asyncio.sslproto", "secrets", "hashlib", "hmac"]
        import asyncio, socket, ssl
        from ssl import SSLSocket as early  # the class stand-in, taken before ssl is loaded
        plain = socket.socket()
        assert not isinstance(plain, ssl.SSLSocket) and not isinstance(plain, early)
        assert not issubclass(socket.socket, early)
        assert not {"_ssl", "_hashlib"} & set(sys.modules) and not _deferred.loaded("ssl")

        context = ssl.create_default_context()  # the first real use loads it
        assert _deferred.loaded("ssl") and "_ssl" in sys.modules
        assert ssl.SSLContext is sys.modules["ssl"].SSLContext and type(context) is ssl.SSLContext
        wrapped = context.wrap_socket(socket.socket(), server_hostname="localhost", do_handshake_on_connect=False)
        assert isinstance(wrapped, ssl.SSLSocket) and isinstance(wrapped, early) and issubclass(type(wrapped), early)
        assert early.__name__ == "SSLSocket" and early.sendfile is sys.modules["ssl"].SSLSocket.sendfile
        wrapped.close(), plain.close()

        import hashlib, hmac, secrets
        digest = "ba9c736f19e7f60b7f6764adb0b7908c0a2b394e09b6c09863528c7f2bc86095"
        assert hashlib.sha256(b"probe").hexdigest() == digest
        assert hmac.new(b"k", b"m", "sha256").hexdigest() == hmac.new(b"k", b"m", hashlib.sha256).hexdigest()
        assert len(secrets.token_hex(4)) == 8 and secrets.compare_digest("a", "a")
        assert "_hashlib" in sys.modules and _deferred.loaded("secrets")
        assert not hasattr(ssl, "no_such_name")
        print("ok")
    """, tmp_path)
    assert proc.stdout == "ok\n", proc.stderr


def test_nothing_is_deferred_once_imported_or_when_missing(tmp_path: Path) -> None:
    proc = python("""
        import asyncio, ssl
        from probe import _deferred
        assert _deferred.install(("ssl", "asyncio.sslproto", "no_such_module", "no_such.sub")) == []
        assert _deferred.loaded("ssl") and type(__import__("sys").modules["ssl"]) is type(asyncio)
        print("ok")
    """, tmp_path)
    assert proc.stdout == "ok\n", proc.stderr


def test_a_module_that_fails_to_import_fails_where_it_is_used_every_time(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("raise RuntimeError('broken at import')\n")
    proc = python("""
        import sys
        sys.path.insert(0, ".")
        from probe import _deferred
        assert _deferred.install(("broken",)) == ["broken"]
        import broken  # binds the stand-in: nothing runs yet
        for attempt in range(2):
            try:
                broken.anything
            except RuntimeError as exc:
                assert str(exc) == "broken at import", exc
            else:
                raise AssertionError("no error")
            assert isinstance(sys.modules["broken"], _deferred._Deferred)  # still deferred, still failing
        print("ok")
    """, tmp_path)
    assert proc.stdout == "ok\n", proc.stderr
