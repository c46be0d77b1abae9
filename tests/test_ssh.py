"""The ssh check against a real OpenSSH sshd on loopback (banner, host key pinning, key login) and against
servers that are not SSH servers or misbehave."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemons import Sshd, sshd
from netservers import ThreadedServer, banner_server, closed_port, run_check, silent
from pydantic import ValidationError

import probe
from probe.checks.ssh import SshCheck

pytest.importorskip("asyncssh")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    with sshd(tmp_path_factory.mktemp("sshd")) as s:
        yield s


async def test_banner(server: Sshd) -> None:
    result = await run_check("ssh", host="127.0.0.1", port=server.port)
    assert result.status is probe.Status.OK, result.summary
    assert result.details["protocol_version"] == "2.0"
    assert result.details["software"].startswith("OpenSSH_")
    assert result.details["banner"].startswith("SSH-2.0-OpenSSH_")
    assert {m.name for m in result.measurements} == {"duration", "connect", "banner"}


async def test_banner_regex(server: Sshd) -> None:
    ok = await run_check("ssh", host="127.0.0.1", port=server.port, banner=r"OpenSSH_(9|[1-9]\d)\.")
    old = await run_check("ssh", host="127.0.0.1", port=server.port, banner="OpenSSH_7")
    assert ok.status is probe.Status.OK, ok.summary
    assert old.reason == "banner_mismatch"


async def test_pinned_host_key(server: Sshd) -> None:
    result = await run_check("ssh", host="127.0.0.1", port=server.port,
                             host_key_sha256=[server.fingerprint("ed25519")], host_key_algorithms=["ssh-ed25519"])
    assert result.status is probe.Status.OK, result.summary
    assert result.details["host_key_sha256"] == server.fingerprint("ed25519")
    assert result.details["host_key_type"] == "ssh-ed25519"
    assert result.measurement("handshake") is not None


async def test_pin_of_another_key_type(server: Sshd) -> None:
    """The RSA key's pin holds when RSA is asked for; with ed25519 negotiated it does not."""
    rsa = server.fingerprint("rsa")
    ok = await run_check("ssh", host="127.0.0.1", port=server.port, host_key_sha256=rsa,
                         host_key_algorithms=["rsa-sha2-512"])
    wrong = await run_check("ssh", host="127.0.0.1", port=server.port, host_key_sha256=rsa,
                            host_key_algorithms=["ssh-ed25519"])
    assert ok.status is probe.Status.OK, ok.summary
    assert wrong.reason == "host_key_mismatch"
    assert server.fingerprint("ed25519") in wrong.summary


async def test_host_key_mismatch(server: Sshd) -> None:
    result = await run_check("ssh", host="127.0.0.1", port=server.port,
                             host_key_sha256="SHA256:" + "A" * 43)
    assert result.status is probe.Status.CRITICAL
    assert result.reason == "host_key_mismatch"
    assert result.details["host_key_sha256"].startswith("SHA256:")


async def test_login(server: Sshd) -> None:
    result = await run_check("ssh", host="127.0.0.1", port=server.port,
                             login={"user": server.user, "key_file": str(server.client_key)},
                             host_key_sha256=[server.fingerprint("ed25519"), server.fingerprint("rsa")])
    assert result.status is probe.Status.OK, result.summary
    assert f"logged in as {server.user}" in result.summary
    assert result.measurement("auth") is not None


async def test_login_without_pins_still_reports_the_key(server: Sshd) -> None:
    result = await run_check("ssh", host="127.0.0.1", port=server.port,
                             login={"user": server.user, "key_file": str(server.client_key)})
    assert result.status is probe.Status.OK, result.summary
    assert result.details["host_key_sha256"] in (server.fingerprint("ed25519"), server.fingerprint("rsa"))


async def test_login_refused(server: Sshd) -> None:
    result = await run_check("ssh", host="127.0.0.1", port=server.port,
                             login={"user": server.user, "key_file": str(server.other_key)})
    assert result.status is probe.Status.CRITICAL
    assert result.reason == "auth_failed", result.summary


async def test_login_to_a_wrong_host_key_never_authenticates(server: Sshd) -> None:
    result = await run_check("ssh", host="127.0.0.1", port=server.port, host_key_sha256="SHA256:" + "B" * 43,
                             login={"user": server.user, "key_file": str(server.client_key)})
    assert result.reason == "host_key_mismatch", result.summary
    assert result.measurement("auth") is None


@pytest.mark.parametrize("content", [None, b"not a key\n"])
async def test_unusable_key_file(server: Sshd, tmp_path: Path, content: bytes | None) -> None:
    key = tmp_path / "key"
    if content is not None:
        key.write_bytes(content)
    result = await run_check("ssh", host="127.0.0.1", port=server.port,
                             login={"user": server.user, "key_file": str(key)})
    assert result.reason == "login_config", result.summary


# --- not SSH, or misbehaving -------------------------------------------------------------------------------

@pytest.mark.parametrize(("greeting", "reason", "words"), [
    (b"220 mail.test ESMTP\r\n", "timeout", "waiting for the SSH identification"),
    (b"SSH-1.5-OldServer\r\n", "protocol_mismatch", "SSH 1.5 only"),
    (b"SSH-2.0-\r\n", "protocol_error", "not an SSH identification"),
    (b"hello\r\nSSH-2.0-Prelude_1.0 after a prelude\r\n", "", ""),
    (b"x" * 400, "protocol_error", "longer than 255"),
])
async def test_odd_servers(greeting: bytes, reason: str, words: str) -> None:
    async def handle(reader: Any, writer: Any) -> None:
        writer.write(greeting)
        await writer.drain()
        await reader.read(100)

    with ThreadedServer(handle) as s:
        result = await run_check("ssh", timeout=1.0, host="127.0.0.1", port=s.port)
    assert result.reason == reason, result.summary
    assert words in result.summary
    if not reason:
        assert result.details["software"] == "Prelude_1.0"
        assert result.details["comments"] == "after a prelude"


async def test_not_ssh_during_key_exchange() -> None:
    with ThreadedServer(banner_server(b"SSH-2.0-Fake_1.0\r\n")) as s:
        result = await run_check("ssh", timeout=3.0, host="127.0.0.1", port=s.port,
                                 host_key_sha256="SHA256:" + "A" * 43)
    assert result.status is probe.Status.CRITICAL
    assert result.reason in ("protocol_error", "connection_reset", "timeout"), result.summary


async def test_silent_server_times_out() -> None:
    with ThreadedServer(silent) as s:
        result = await run_check("ssh", timeout=1.0, host="127.0.0.1", port=s.port)
    assert result.reason == "timeout"
    assert "waiting for the SSH identification" in result.summary


async def test_refused() -> None:
    result = await run_check("ssh", host="127.0.0.1", port=closed_port())
    assert result.reason == "connection_refused"


def test_pinning_without_asyncssh_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "asyncssh", None)
    with pytest.raises(ValidationError, match=r"pip install 'probe-monitor\[ssh\]'"):
        SshCheck.Options.model_validate({"host": "h", "host_key_sha256": "SHA256:" + "A" * 43})
    SshCheck.Options.model_validate({"host": "h"})  # the banner needs nothing


@pytest.mark.parametrize(("options", "message"), [
    ({"host": "h", "host_key_sha256": "md5:aa:bb"}, "not a SHA256 fingerprint"),
    ({"host": "h", "port": 0}, "greater than or equal to 1"),
    ({"host": "h", "banner": "("}, "invalid regular expression"),
    ({"host": "h", "login": {"user": "u"}}, "key_file"),
])
def test_bad_options(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SshCheck.Options.model_validate(options)


def test_fingerprints_are_normalised() -> None:
    bare = "A" * 43
    options = SshCheck.Options.model_validate({"host": "h", "host_key_sha256": [bare, f"SHA256:{bare}="]})
    assert options.host_key_sha256 == [f"SHA256:{bare}"] * 2
