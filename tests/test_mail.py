"""The smtp, imap and pop3 checks: SMTP against aiosmtpd (STARTTLS, implicit TLS, AUTH), IMAP and POP3
against a real Dovecot (plain, STARTTLS/STLS, implicit TLS, login), and servers that misbehave."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from daemons import Dovecot, dovecot
from netservers import Certs, ThreadedServer, banner_server, closed_port, free_port, run_check, silent
from pydantic import ValidationError

import probe
from probe.checks.smtp import SmtpCheck

aiosmtpd = pytest.importorskip("aiosmtpd")
from aiosmtpd.controller import Controller  # noqa: E402
from aiosmtpd.smtp import AuthResult, LoginPassword  # noqa: E402


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs(tmp_path_factory.mktemp("certs"))


def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (b"bob", b"pw-smtp")
    # handled=False: aiosmtpd then answers a failure itself (535). Its default, handled=True, means "the
    # authenticator already sent the reply", so a refused login got no answer at all.
    return AuthResult(success=ok, handled=False)


class Sink:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 OK"


@contextlib.contextmanager
def smtp_server(certs: Certs, *, implicit_tls: bool = False, **options: Any) -> Iterator[int]:
    """aiosmtpd as ``mail.test`` on a loopback port, with the valid certificate for STARTTLS (AUTH only after
    it) or for implicit TLS, taking bob/pw-smtp; ``options`` go to its Controller. Yields the port."""
    context = certs.server_context("valid")
    tls: dict[str, Any] = ({"ssl_context": context, "auth_require_tls": False} if implicit_tls
                           else {"tls_context": context, "auth_require_tls": True})
    controller = Controller(Sink(), hostname="127.0.0.1", port=free_port(), authenticator=authenticator,
                            server_hostname="mail.test", **tls, **options)
    controller.start()
    try:
        yield controller.port
    finally:
        controller.stop()


@pytest.fixture(scope="module")
def smtp(certs: Certs) -> Iterator[int]:
    with smtp_server(certs) as port:
        yield port


@pytest.fixture(scope="module")
def smtps(certs: Certs) -> Iterator[int]:
    with smtp_server(certs, implicit_tls=True) as port:
        yield port


@pytest.fixture(scope="module")
def imap_pop(certs: Certs) -> Iterator[Dovecot]:
    with dovecot(*certs.files["valid"]) as server:
        yield server


async def test_smtp_greeting_and_capabilities(smtp: int) -> None:
    result = await run_check("smtp", host="127.0.0.1", port=smtp, capabilities=["STARTTLS", "8BITMIME"])
    assert result.status is probe.Status.OK, result.summary
    assert result.details["greeting"].startswith("220 mail.test")
    assert "STARTTLS" in result.details["capabilities"]
    assert result.measurement("greeting") is not None


async def test_smtp_starttls_and_auth(smtp: int, certs: Certs) -> None:
    result = await run_check("smtp", host="127.0.0.1", port=smtp, starttls=True, tls={"ca_file": str(certs.ca_file)},
                             login={"user": "bob", "password": "pw-smtp"}, capabilities=["AUTH=PLAIN"])
    assert result.status is probe.Status.OK, result.summary
    assert "with STARTTLS, logged in as bob" in result.summary
    assert result.details["tls_version"].startswith("TLS")
    assert result.measurement("tls_cert_remaining") is not None and result.measurement("login") is not None


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
async def test_smtp_wrong_password(certs: Certs, mechanism: str) -> None:
    """aiosmtpd answers 535; with PLAIN left out of EHLO the check uses AUTH LOGIN's two challenges."""
    with smtp_server(certs, auth_exclude_mechanism=["PLAIN"] if mechanism == "LOGIN" else []) as port:
        options = {"host": "127.0.0.1", "port": port, "starttls": True, "tls": {"ca_file": str(certs.ca_file)},
                   "capabilities": [f"AUTH={mechanism}"]}
        good = await run_check("smtp", **options, login={"user": "bob", "password": "pw-smtp"})
        bad = await run_check("smtp", **options, login={"user": "bob", "password": "wrong-one"})
    assert good.status is probe.Status.OK, good.summary
    offered = next(c for c in good.details["capabilities"] if c.upper().startswith("AUTH"))
    assert ("PLAIN" in offered.upper().split()) == (mechanism == "PLAIN"), offered
    assert bad.reason == "auth_failed", bad.summary
    assert "535" in bad.summary and "wrong-one" not in bad.summary


async def test_smtp_implicit_tls(smtps: int, certs: Certs) -> None:
    result = await run_check("smtp", host="127.0.0.1", port=smtps, tls={"ca_file": str(certs.ca_file)},
                             login={"user": "bob", "password": "pw-smtp"})
    assert result.status is probe.Status.OK, result.summary
    assert "over TLS" in result.summary


async def test_smtp_starttls_untrusted_still_measures(smtp: int) -> None:
    result = await run_check("smtp", host="127.0.0.1", port=smtp, starttls=True)
    assert result.reason == "certificate_invalid", result.summary


async def test_smtp_capability_missing(smtp: int) -> None:
    result = await run_check("smtp", host="127.0.0.1", port=smtp, capabilities=["CHUNKING"])
    assert result.reason == "capability_missing"


async def test_smtp_without_starttls() -> None:
    with ThreadedServer(banner_server(b"220 plain.test ESMTP\r\n")) as s:
        result = await run_check("smtp", timeout=2.0, host="127.0.0.1", port=s.port, starttls=True)
    assert result.reason in ("protocol_error", "starttls_unsupported"), result.summary


async def test_smtp_busy_server() -> None:
    with ThreadedServer(banner_server(b"554 go away\r\n")) as s:
        result = await run_check("smtp", host="127.0.0.1", port=s.port)
    assert result.reason == "service_unavailable"
    assert "554 go away" in result.summary


async def test_starttls_injection_is_refused() -> None:
    """Plaintext sent after the 220 to STARTTLS must never be read as part of the TLS session."""
    async def handle(reader: Any, writer: Any) -> None:
        writer.write(b"220 evil.test ESMTP\r\n")
        await reader.readline()
        writer.write(b"250-evil.test\r\n250 STARTTLS\r\n")
        await reader.readline()
        writer.write(b"220 go ahead\r\n250 injected\r\n")
        await writer.drain()
        await reader.read(100)

    with ThreadedServer(handle) as s:
        result = await run_check("smtp", host="127.0.0.1", port=s.port, starttls=True, tls={"insecure": True})
    assert result.reason == "starttls_failed", result.summary
    assert "in clear after agreeing" in result.summary


# --- IMAP and POP3 against Dovecot -------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["imap", "pop3"])
async def test_plain_greeting(imap_pop: Dovecot, kind: str) -> None:
    result = await run_check(kind, host="127.0.0.1", port=imap_pop.ports[kind])
    assert result.status is probe.Status.OK, result.summary
    assert ("STARTTLS" if kind == "imap" else "STLS") in result.details["capabilities"]


@pytest.mark.parametrize("kind", ["imap", "pop3"])
async def test_starttls_and_login(imap_pop: Dovecot, certs: Certs, kind: str) -> None:
    result = await run_check(kind, host="127.0.0.1", port=imap_pop.ports[kind], starttls=True,
                             tls={"ca_file": str(certs.ca_file)},
                             login={"user": imap_pop.user, "password": imap_pop.password})
    assert result.status is probe.Status.OK, result.summary
    assert result.measurement("tls_cert_remaining") is not None


@pytest.mark.parametrize("kind", ["imap", "pop3"])
async def test_implicit_tls_and_wrong_password(imap_pop: Dovecot, certs: Certs, kind: str) -> None:
    tls = {"ca_file": str(certs.ca_file)}
    ok = await run_check(kind, host="127.0.0.1", port=imap_pop.ports[kind + "s"], tls=tls,
                         login={"user": imap_pop.user, "password": imap_pop.password}, capabilities=["AUTH=PLAIN"]
                         if kind == "imap" else ["SASL=PLAIN"])
    bad = await run_check(kind, host="127.0.0.1", port=imap_pop.ports[kind + "s"], tls=tls,
                          login={"user": imap_pop.user, "password": "wrong-one"})
    assert ok.status is probe.Status.OK, ok.summary
    assert bad.reason == "auth_failed", bad.summary
    assert "wrong-one" not in bad.summary


@pytest.mark.parametrize("kind", ["imap", "pop3"])
async def test_smtp_server_is_not_imap_or_pop3(smtp: int, kind: str) -> None:
    result = await run_check(kind, host="127.0.0.1", port=smtp)
    assert result.reason in ("protocol_error", "service_unavailable"), result.summary


@pytest.mark.parametrize("kind", ["smtp", "imap", "pop3"])
async def test_silent_and_refused(kind: str) -> None:
    with ThreadedServer(silent) as s:
        quiet = await run_check(kind, timeout=1.0, host="127.0.0.1", port=s.port)
    refused = await run_check(kind, host="127.0.0.1", port=closed_port())
    assert quiet.reason == "timeout" and "waiting for the greeting" in quiet.summary
    assert refused.reason == "connection_refused"


@pytest.mark.parametrize(("options", "message"), [
    ({"host": "h", "login": {"user": "u", "password": "p"}}, "never sent in clear"),
    ({"host": "h", "port": 0}, "greater than or equal to 1"),
    ({"host": "h", "login": {"user": "u"}}, "password"),
])
def test_bad_options(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SmtpCheck.Options.model_validate(options)
