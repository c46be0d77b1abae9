"""The tls check: endpoints (direct and SMTP STARTTLS) with trustme certificates, and PEM files on disk."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from netservers import Certs, ThreadedServer, banner_server, closed_port, run_check, smtp_server
from pydantic import ValidationError

import probe
from probe.checks.tls import TlsCheck


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs(tmp_path_factory.mktemp("certs"))


def remaining(result: probe.Result) -> float:
    m = result.measurement("cert_remaining")
    assert m is not None, result
    return m.value


@pytest.fixture(scope="module")
def endpoints(certs: Certs) -> Iterator[dict[str, int]]:
    import contextlib

    with contextlib.ExitStack() as stack:
        yield {variant: stack.enter_context(ThreadedServer(banner_server(b""), tls=certs.server_context(variant))).port
               for variant in ("valid", "expired", "wrong_host", "self_signed", "untrusted", "chain_missing",
                               "chain_complete")}


async def test_endpoint_valid(certs: Certs, endpoints: dict[str, int]) -> None:
    result = await run_check("tls", host="127.0.0.1", port=endpoints["valid"], tls={"ca_file": str(certs.ca_file)})
    assert result.status is probe.Status.OK, result.summary
    assert 29 * 86400 < remaining(result) <= 30 * 86400
    assert result.details["verified"] is True
    assert "DNS:localhost" in result.details["certificate"]["sans"]
    assert result.details["tls_version"].startswith("TLS")
    assert "days left" in result.summary


@pytest.mark.parametrize(("variant", "reason", "text"), [
    ("expired", "certificate_expired", "expired"),
    ("wrong_host", "certificate_invalid", "mismatch"),
    ("self_signed", "certificate_invalid", "self-signed"),
    ("untrusted", "certificate_invalid", "issuer"),
    ("chain_missing", "certificate_invalid", "issuer"),
])
async def test_endpoint_invalid_still_measured(certs: Certs, endpoints: dict[str, int], variant: str, reason: str,
                                               text: str) -> None:
    result = await run_check("tls", host="127.0.0.1", port=endpoints[variant], tls={"ca_file": str(certs.ca_file)})
    assert result.status is probe.Status.CRITICAL
    assert result.reason == reason
    assert text in result.summary.lower()
    assert result.details["verified"] is False
    assert (remaining(result) < 0) is (variant == "expired")


async def test_endpoint_chain_complete(certs: Certs, endpoints: dict[str, int]) -> None:
    result = await run_check("tls", host="127.0.0.1", port=endpoints["chain_complete"],
                             tls={"ca_file": str(certs.ca_file)})
    assert result.status is probe.Status.OK, result.summary


async def test_endpoint_insecure_measures_only(endpoints: dict[str, int]) -> None:
    result = await run_check("tls", host="127.0.0.1", port=endpoints["expired"], tls={"insecure": True})
    assert result.status is probe.Status.OK, result.summary
    assert remaining(result) < 0
    assert "expired" in result.summary


async def test_thresholds_on_remaining(certs: Certs, endpoints: dict[str, int]) -> None:
    from probe.config.spec import CheckSpec, CommonFields
    from probe.config.yamlsource import Location
    from probe.engine.runner import Runner
    from probe.plugins.manager import load_plugins

    options = {"host": "127.0.0.1", "port": endpoints["valid"], "tls": {"ca_file": str(certs.ca_file)}}
    common = CommonFields.model_validate({"name": "t", "type": "tls", "thresholds": {
        "cert_remaining": {"warning": "< 60d", "critical": "< 3d"}}})
    spec = CheckSpec.build(common, TlsCheck.Options.model_validate(options), Location("t", 1, 1), options)
    outcome = await Runner(load_plugins(use_entry_points=False)).run(spec)
    assert outcome.status is probe.Status.WARNING, outcome.result.summary


async def test_not_tls(endpoints: dict[str, int]) -> None:
    with ThreadedServer(banner_server(b"220 plain\r\n")) as server:
        result = await run_check("tls", host="127.0.0.1", port=server.port)
    assert result.reason == "tls_error", result.summary
    assert "cert_remaining" not in {m.name for m in result.measurements}


async def test_refused() -> None:
    result = await run_check("tls", host="127.0.0.1", port=closed_port())
    assert result.reason == "connection_refused"


# --- SMTP STARTTLS -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("variant", "status", "reason"), [
    ("valid", probe.Status.OK, ""), ("expired", probe.Status.CRITICAL, "certificate_expired")])
async def test_smtp_starttls(certs: Certs, variant: str, status: probe.Status, reason: str) -> None:
    with ThreadedServer(smtp_server(certs.server_context(variant))) as server:
        result = await run_check("tls", host="127.0.0.1", port=server.port, starttls="smtp",
                                 tls={"ca_file": str(certs.ca_file), "server_name": "localhost"})
    assert result.status is status, result.summary
    assert result.reason == reason
    assert (remaining(result) < 0) is (variant == "expired")


async def test_smtp_without_starttls(certs: Certs) -> None:
    with ThreadedServer(smtp_server(certs.server_context("valid"), offer_starttls=False)) as server:
        result = await run_check("tls", host="127.0.0.1", port=server.port, starttls="smtp")
    assert result.reason == "starttls_unsupported"


async def test_starttls_against_a_non_smtp_server() -> None:
    with ThreadedServer(banner_server(b"SSH-2.0-OpenSSH_9\r\n")) as server:
        result = await run_check("tls", host="127.0.0.1", port=server.port, starttls="smtp")
    assert result.reason == "starttls_failed"
    assert "SSH-2.0" in result.summary


# --- files -------------------------------------------------------------------------------------------------

def write(path: Path, *pems: bytes) -> str:
    path.write_bytes(b"".join(pems))
    return str(path)


@pytest.fixture(scope="module")
def pki() -> dict[str, Any]:
    root = trustme.CA()
    intermediate = root.create_child_ca()
    return {"root": root, "intermediate": intermediate, "leaf": intermediate.issue_cert("svc.test")}


async def test_file_with_chain_anchored(pki: dict[str, Any], tmp_path: Path) -> None:
    leaf = pki["leaf"]
    chain = write(tmp_path / "chain.pem", *(p.bytes() for p in leaf.cert_chain_pems))
    ca = write(tmp_path / "ca.pem", pki["root"].cert_pem.bytes())
    key = write(tmp_path / "key.pem", leaf.private_key_pem.bytes())
    result = await run_check("tls", file=chain, key_file=key, tls={"ca_file": ca})
    assert result.status is probe.Status.OK, result.summary
    assert len(result.details["chain"]) == 2
    assert remaining(result) > 0


async def test_file_chain_out_of_order(pki: dict[str, Any], tmp_path: Path) -> None:
    leaf_pem, intermediate_pem = (p.bytes() for p in pki["leaf"].cert_chain_pems)
    result = await run_check("tls", file=write(tmp_path / "c.pem", intermediate_pem, leaf_pem))
    assert result.reason == "chain_invalid", result.summary


async def test_file_not_anchored_in_ca_file(pki: dict[str, Any], tmp_path: Path) -> None:
    chain = write(tmp_path / "chain.pem", *(p.bytes() for p in pki["leaf"].cert_chain_pems))
    other = write(tmp_path / "other.pem", trustme.CA().cert_pem.bytes())
    result = await run_check("tls", file=chain, tls={"ca_file": other})
    assert result.reason == "certificate_invalid"
    assert "not issued by a CA" in result.summary


async def test_file_key_mismatch(pki: dict[str, Any], tmp_path: Path) -> None:
    chain = write(tmp_path / "chain.pem", pki["leaf"].cert_chain_pems[0].bytes())
    wrong = write(tmp_path / "wrong.key", pki["root"].issue_cert("x.test").private_key_pem.bytes())
    result = await run_check("tls", file=chain, key_file=wrong)
    assert result.reason == "key_mismatch"


async def test_file_expired(certs: Certs) -> None:
    cert, _ = certs.files["expired"]
    result = await run_check("tls", file=str(cert))
    assert result.reason == "certificate_expired"
    assert remaining(result) < 0


@pytest.mark.parametrize(("content", "reason"), [(None, "file_error"), (b"not a certificate\n", "no_certificate"),
                                                 (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                                                  "no_certificate")])
async def test_file_problems(tmp_path: Path, content: bytes | None, reason: str) -> None:
    path = tmp_path / "cert.pem"
    if content is not None:
        path.write_bytes(content)
    result = await run_check("tls", file=str(path))
    assert result.status is probe.Status.CRITICAL
    assert result.reason == reason, result.summary


@pytest.mark.parametrize(("options", "message"), [
    ({}, "set host"),
    ({"host": "h", "file": "f"}, "set host"),
    ({"host": "h", "key_file": "k"}, "key_file goes with file"),
    ({"file": "f", "starttls": "smtp"}, "starttls needs host"),
    ({"host": "h", "starttls": "ftp"}, "smtp"),
    ({"host": "h", "port": 70000}, "less than or equal to 65535"),
])
def test_bad_options(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        TlsCheck.Options.model_validate(options)
