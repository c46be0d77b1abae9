"""Secrets in every form they take, and peer bytes that must not reach a terminal, proven against the real thing.

The secret is chosen to be changed by every encoding (``"``, ``\\``, ``#``, ``<``, ``&``, ``|``, ``'``, a
space and a non-ASCII letter). A real HTTP peer on loopback echoes the request's ``Authorization: Basic``
header, the password URL-encoded and a bearer token in its reason phrase, wrapped in NUL, ESC and BEL; a
command plugin prints the secret cut by its 500-character cap and as a perfdata label. Every output is then
searched for the secret and for each encoding of it, computed here with the standard library (and every
base64-looking word is decoded), never with the redactor under test.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import html
import json
import os
import re
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
from hostfs import probe_cli
from netservers import ThreadedServer

SECRET = f'pw "q\\u#<&>é|\'x {secrets.token_hex(6)}'
TYPED_TOKEN = "typed-bearer-" + secrets.token_hex(8)
FORMATS = ("human", "json", "junit", "tap", "nagios", "prometheus")
CONTROLS = ("\x00", "\x1b", "\x07", "\x9b")


def forms(secret: str) -> list[str]:
    """The secret as each output would encode it, made by the standard library."""
    return [secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1], html.escape(secret),
            html.escape(secret, quote=False), secret.replace("\\", "\\\\").replace("#", "\\#"),
            repr(secret)[1:-1], repr(secret.encode())[2:-1], quote(secret, safe=""), quote_plus(secret),
            " ".join(secret.split()), secret[:8], base64.b64encode(f"admin:{secret}".encode()).decode()]


def assert_clean(text: str, where: str, *, binary: bool = False) -> None:
    for secret in (SECRET, TYPED_TOKEN):
        for form in forms(secret):
            assert form not in text, f"{where}: {form!r} leaked"
    for word in re.findall(r"[A-Za-z0-9+/_-]{12,}={0,2}", text):
        try:
            decoded = base64.b64decode(word + "=" * (-len(word) % 4), altchars=b"-_" if "-" in word or "_" in word
                                       else None).decode("utf-8", "replace")
        except (binascii.Error, ValueError):
            continue
        assert SECRET[:8] not in decoded and SECRET[-8:] not in decoded, f"{where}: base64 {word} leaked"
    for control in () if binary else CONTROLS:
        assert control not in text, f"{where}: control character {control!r} reached the output"


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers 401 with a reason phrase that quotes the request's credentials, in terminal escapes."""
    data = await reader.readuntil(b"\r\n\r\n")
    auth = next((line.split(b":", 1)[1].strip() for line in data.split(b"\r\n")
                 if line.lower().startswith(b"authorization:")), b"")
    reason = (b"Denied\x00\x1b]0;pwned\x07\x1b[2J\xc2\x9b echo=" + auth + b" url=" + quote(SECRET).encode()
              + b" \x1b[31m")
    writer.write(b"HTTP/1.1 401 " + reason + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    await writer.drain()


@pytest.fixture(scope="module")
def peer() -> Iterator[int]:
    with ThreadedServer(_echo) as server:
        yield server.port


PLUGIN = """
import os
pw = os.environ["PW"]
text = pw.replace("|", "/")  # a plugin that keeps to the Nagios rules: no '|' in text, quoted labels
label = "'" + pw.replace("'", "''") + "'"
print("token=" + "x" * 480 + text + " | " + label + "=1 other=2")
print("long text " + text + "\\x1b[31m red")
raise SystemExit(2)
"""

ACTION = """
import os, sys
open(sys.argv[1], "w").write(os.environ["PROBE_SUMMARY"])
"""


@pytest.fixture
def setup(tmp_path: Path, peer: int) -> dict[str, Path]:
    secret_file = tmp_path / "password"
    secret_file.write_text(SECRET + "\n")
    secret_file.chmod(0o600)
    (tmp_path / "plugin.py").write_text(PLUGIN)
    (tmp_path / "action.py").write_text(ACTION)
    ref = f"${{file:{secret_file}}}"
    checks = textwrap.dedent(f"""\
        checks:
          - name: web
            type: http
            url: http://127.0.0.1:{peer}/
            basic_auth: {{username: admin, password: {json.dumps(ref)}}}
            interval: 5s
            timeout: 3s
            remediate:
              - run: [{sys.executable}, {tmp_path / "action.py"}, {tmp_path / "action.out"}]
                on: critical
          - name: bearer
            type: http
            url: http://127.0.0.1:{peer}/
            bearer_token: {TYPED_TOKEN}
            interval: 5s
            timeout: 3s
          - name: plugin
            type: command
            run: [{sys.executable}, {tmp_path / "plugin.py"}]
            env: {{PW: {json.dumps(ref)}}}
            interval: 5s
            timeout: 3s
        """)
    (tmp_path / "checks.yaml").write_text(checks)
    state = tmp_path / "state"
    (tmp_path / "probe.yaml").write_text(json.dumps({"state_dir": str(state), "plugins": {"entry_points": False}}))
    return {"checks": tmp_path / "checks.yaml", "settings": tmp_path / "probe.yaml", "state": state,
            "secret": secret_file, "action_out": tmp_path / "action.out"}


def cli(setup: dict[str, Path], *args: str) -> subprocess.CompletedProcess[str]:
    return probe_cli("--config", setup["settings"], "--config-dir", setup["checks"], *args)


@pytest.mark.parametrize("fmt", FORMATS)
def test_once_formats_mask_every_encoding_and_drop_control_characters(setup: dict[str, Path], fmt: str) -> None:
    proc = cli(setup, "run", "--once", "--format", fmt)
    assert proc.returncode == 2, proc.stderr
    assert "********" in proc.stdout or fmt == "prometheus"  # there was something to mask
    assert_clean(proc.stdout, f"--format {fmt}")
    assert_clean(proc.stderr, f"--format {fmt} stderr")


def test_the_echoed_credentials_were_there_to_leak(setup: dict[str, Path]) -> None:
    """The proof the attack is real: the peer's reason phrase holds the header, and the plugin the secret."""
    proc = cli(setup, "--log-level", "debug", "check", "web")
    assert re.search(r"echo=Basic \S*\*{8}", proc.stdout), proc.stdout
    assert "url=********" in proc.stdout
    assert_clean(proc.stdout + proc.stderr, "probe check web")
    plugin = cli(setup, "check", "plugin")
    assert "token=" + "x" * 400 in plugin.stdout and "x********..." in plugin.stdout, plugin.stdout
    assert_clean(plugin.stdout + plugin.stderr, "probe check plugin")


def test_remediation_runs_despite_a_nul_from_the_peer_and_its_audit_holds_no_secret(setup: dict[str, Path]) -> None:
    from probe.sinks.history import DB_NAME, HistoryStore

    HistoryStore(setup["state"] / DB_NAME).open().close()  # the audit goes where history already is
    proc = cli(setup, "check", "web", "--remediate", "--no-dry-run")
    assert "embedded null byte" not in proc.stdout + proc.stderr
    assert re.search(r"\[0\] not_fixed", proc.stdout), proc.stdout  # it ran: the re-check still fails
    summary = setup["action_out"].read_text()
    assert "Denied" in summary and "\x00" not in summary
    assert_clean(summary, "PROBE_SUMMARY")
    assert_clean(proc.stdout + proc.stderr, "probe check --remediate")
    for path in setup["state"].iterdir():
        assert_clean(path.read_bytes().decode("utf-8", "replace"), path.name, binary=True)


def test_config_errors_mask_the_secret_in_every_form(setup: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"checks:\n  - name: mem\n    type: memory\n    interval: '${{file:{setup['secret']}}}'\n")
    proc = probe_cli("--config-dir", bad, "validate")
    assert proc.returncode == 78 and "interval" in proc.stderr, proc.stderr
    assert_clean(proc.stderr, "validate")


def test_a_secret_in_a_check_name_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("checks:\n  - name: 'web-${API_TOKEN}'\n    type: memory\n")
    proc = probe_cli("--config-dir", bad, "validate", env={"API_TOKEN": "tok-" + secrets.token_hex(8)})
    assert proc.returncode == 78
    assert "name: holds a secret" in proc.stderr and "tok-" not in proc.stderr


def test_a_checks_path_that_is_not_a_checks_file_is_not_echoed(tmp_path: Path) -> None:
    """``probe --config-dir /etc/shadow validate`` as root printed every line of it."""
    shadow = tmp_path / "shadow"
    lines = [f"user{i}:$y$j9T${secrets.token_hex(16)}:19000:0:99999:7:::" for i in range(20)]
    shadow.write_text("\n".join(lines) + "\n")
    shadow.chmod(0o640)
    proc = probe_cli("--config-dir", shadow, "validate")
    assert proc.returncode == 78
    assert "not a checks file: none of its 20 top-level keys" in proc.stderr
    assert all(line.split("$")[3][:6] not in proc.stderr for line in lines)
    assert len(proc.stderr) < 400, proc.stderr
    if Path("/etc/shadow").exists() and os.geteuid() == 0:
        real = probe_cli("--config-dir", "/etc/shadow", "validate")
        assert real.returncode == 78 and real.stderr.count("\n") <= 2, real.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_daemon_keeps_every_form_out_of_metrics_history_and_reload_logs(setup: dict[str, Path]) -> None:
    port = _free_port()
    settings = json.loads(setup["settings"].read_text())
    settings["telemetry"] = {"prometheus": {"enabled": True, "port": port}}
    setup["settings"].write_text(json.dumps(settings))
    proc = subprocess.Popen([sys.executable, "-m", "probe", "--config", str(setup["settings"]), "--config-dir",
                             str(setup["checks"]), "--log-level", "debug", "run"],
                            stderr=subprocess.PIPE, text=True)
    try:
        metrics = ""
        deadline = time.monotonic() + 60
        while "probe_check_status" not in metrics or 'check_name="plugin"' not in metrics:
            assert proc.poll() is None and time.monotonic() < deadline, "the agent did not export results"
            time.sleep(0.5)
            try:
                metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
            except OSError:
                continue
        assert_clean(metrics, "/metrics")
        setup["checks"].write_text(setup["checks"].read_text().replace("interval: 5s", "interval: '"
                                   + f"${{file:{setup['secret']}}}'", 1))
        proc.send_signal(signal.SIGHUP)
        time.sleep(3)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    assert "reload rejected" in stderr
    assert_clean(stderr, "daemon log")
    db = sqlite3.connect(setup["state"] / "history.sqlite3")
    names = {json.dumps(row[0]) for row in db.execute("SELECT measurements FROM results")}
    assert names and any("********" in n for n in names), names  # the label was a secret: masked as a key
    for path in setup["state"].iterdir():
        assert_clean(path.read_bytes().decode("utf-8", "replace"), path.name, binary=True)
