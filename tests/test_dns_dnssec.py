"""DNSSEC in the dns check, against BIND 9: zones signed by the fixture (tests/bindzones.py) and served by a
private authoritative named, and a private named as a validating resolver in front of it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dns.message
import dns.name
import dns.query
import dns.rdatatype
import dns.rrset
import pytest
from bindzones import VALIDITY, Bind, bind, static_ds
from conftest import require_binary
from dnsservers import DnsServer
from hypothesis import given
from hypothesis import strategies as st

import probe
from probe.checks.net.dnsdenial import nsec3_hash
from probe.config.errors import ConfigErrors
from probe.testing import assert_result, build_spec, run_check

DAY = 86400


@pytest.fixture(scope="module")
def named(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bind]:
    with bind(tmp_path_factory.mktemp("bind")) as server:
        yield server


async def check(**options: Any) -> probe.Result:
    options.setdefault("timeout", "5s")
    return (await run_check({"type": "dns", **options})).result


def validate(named: Bind, query: str, anchor_zone: str = "sec.test", **options: Any) -> Any:
    return check(query=query, server=named.server, dnssec="validate", trust_anchor=named.ds(anchor_zone), **options)


def remaining(result: probe.Result) -> float:
    m = result.measurement("signature_remaining")
    assert m is not None and m.unit == "s", result
    return m.value


# --- a chain that holds ------------------------------------------------------------------------------------

async def test_a_signed_answer_validates_from_a_ds_anchor(named: Bind) -> None:
    result = assert_result(await validate(named, "www.sec.test"), "OK", measurements=["signature_remaining"])
    assert VALIDITY - DAY < remaining(result) <= VALIDITY  # signed for 30 days from (about) now
    assert result.details["answers"] == ["192.0.2.1"]
    assert result.details["dnssec"]["chain"][0].startswith("sec.test. DNSKEY ")
    assert "(trust anchor)" in result.details["dnssec"]["chain"][0]
    assert "DNSSEC validated" in result.summary


async def test_the_chain_crosses_a_zone_cut_through_the_parents_ds(named: Bind) -> None:
    result = assert_result(await validate(named, "www.child.sec.test"), "OK")
    chain = result.details["dnssec"]["chain"]
    assert [step.split()[:2] for step in chain] == [["sec.test.", "DNSKEY"], ["child.sec.test.", "DS"],
                                                    ["child.sec.test.", "DNSKEY"]]


async def test_a_cname_chain_and_a_wildcard_answer_validate(named: Bind) -> None:
    alias = assert_result(await validate(named, "alias.sec.test"), "OK")
    assert alias.details["cnames"] == ["www.sec.test."]
    wild = assert_result(await validate(named, "anything.wild.sec.test", record_type="TXT"), "OK")
    assert wild.details["answers"] == ["wildcard"]


async def test_a_dnskey_anchor_from_a_key_file(named: Bind) -> None:
    result = await check(query="www.sec.test", server=named.server, dnssec="validate",
                         trust_anchor_file=str(named.ksk_file("sec.test")))
    assert_result(result, "OK")


@pytest.mark.parametrize(("query", "zone", "rtype", "expect"), [
    ("gone.sec.test", "sec.test", "A", {"rcode": "NXDOMAIN"}),  # NSEC: name covered, wildcard covered
    ("www.sec.test", "sec.test", "MX", {"answers": []}),  # NSEC at the name without MX
    ("gone.n3.test", "n3.test", "A", {"rcode": "NXDOMAIN"}),  # NSEC3 closest encloser proof
    ("www.n3.test", "n3.test", "MX", {"answers": []}),  # NSEC3 matching the name without MX
])
async def test_denial_of_existence_is_proven(named: Bind, query: str, zone: str, rtype: str,
                                             expect: dict[str, Any]) -> None:
    result = assert_result(await validate(named, query, zone, record_type=rtype, expect=expect), "OK")
    assert remaining(result) > VALIDITY - DAY


async def test_a_threshold_on_signature_remaining(named: Bind) -> None:
    result = await validate(named, "www.sec.test", thresholds={"signature_remaining": {"warning": "< 60d",
                                                                                       "critical": "< 1d"}})
    assert_result(result, "WARNING")


# --- chains that break ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("query", "zone", "reason", "says"), [
    ("www.tampered.test", "tampered.test", "dnssec_bad_signature", "verify failure"),
    ("www.expired.test", "expired.test", "dnssec_signature_expired", "expired 2020-02-01T00:00:00Z"),
    ("www.future.test", "future.test", "dnssec_signature_not_yet_valid", "not yet valid"),
    ("www.nokey.test", "nokey.test", "dnssec_missing_dnskey", "is not among its DNSKEYs"),
    ("www.nods.sec.test", "sec.test", "dnssec_no_ds", "no DS record for nods.sec.test."),
    ("www.badds.sec.test", "sec.test", "dnssec_ds_mismatch", "matches its DS records"),
    ("www.plain.test", "plain.test", "dnssec_unsigned", "carries no RRSIG"),
])
async def test_a_broken_chain_is_critical_with_its_reason(named: Bind, query: str, zone: str, reason: str,
                                                          says: str) -> None:
    anchor = named.ds(zone) if zone != "plain.test" else named.ds("sec.test").replace("sec.test", "plain.test", 1)
    result = await check(query=query, server=named.server, dnssec="validate", trust_anchor=anchor)
    assert_result(result, "CRITICAL", reason=reason, summary_contains=says)
    assert result.measurement("signature_remaining") is None
    assert result.details["dnssec"]["failed"] in result.summary


async def test_a_wrong_trust_anchor(named: Bind) -> None:
    result = await check(query="www.sec.test", server=named.server, dnssec="validate", trust_anchor=named.wrong_ds)
    assert_result(result, "CRITICAL", reason="dnssec_anchor_mismatch", summary_contains="matches the trust anchor")


async def test_validation_through_a_validating_resolver_sees_past_its_servfail(named: Bind) -> None:
    """The CD flag makes the resolver hand over what it rejects, so the reason is the real one."""
    result = await check(query="www.tampered.test", server=named.resolver, dnssec="validate",
                         trust_anchor=named.ds("tampered.test"))
    assert_result(result, "CRITICAL", reason="dnssec_bad_signature")
    good = await check(query="www.child.sec.test", server=named.resolver, dnssec="validate",
                       trust_anchor=named.ds("sec.test"))
    assert_result(good, "OK")


# --- require_ad: the resolver validates ---------------------------------------------------------------------

async def test_require_ad_from_a_validating_resolver(named: Bind) -> None:
    result = await check(query="www.child.sec.test", server=named.resolver, dnssec="require_ad")
    assert_result(result, "OK", measurements=["signature_remaining"])
    assert "ad" in result.details["flags"]
    assert VALIDITY - DAY < remaining(result) <= VALIDITY
    assert "authenticated by the resolver" in result.summary


@pytest.mark.parametrize(("query", "server", "reason"), [
    ("www.tampered.test", "resolver", "servfail"),  # bogus: the resolver refuses it
    ("www.plain.test", "resolver", "not_authenticated"),  # insecure: answered without AD
    ("www.sec.test", "server", "not_authenticated"),  # an authoritative server does not validate
])
async def test_require_ad_fails_without_the_ad_flag(named: Bind, query: str, server: str, reason: str) -> None:
    result = await check(query=query, server=getattr(named, server), dnssec="require_ad")
    assert_result(result, "CRITICAL", reason=reason)
    assert result.measurement("signature_remaining") is None


# --- replies BIND would never send: its real answers, changed on the way -----------------------------------

def tampering(upstream: int, change: Callable[[dns.message.Message], None]) -> Any:
    """A DnsServer ``craft``: ask the real named, change its reply, pass it on."""
    def craft(query: dns.message.Message, transport: str) -> list[bytes]:
        reply = dns.query.tcp(query, "127.0.0.1", port=upstream, timeout=5)
        change(reply)
        return [reply.to_wire()]
    return craft


def drop(section: str, rdtype: int, covers: int = 0) -> Callable[[dns.message.Message], None]:
    def change(reply: dns.message.Message) -> None:
        kept = [r for r in getattr(reply, section) if not (r.rdtype == rdtype and r.covers == covers)]
        setattr(reply, section, kept)
    return change


@pytest.mark.parametrize(("query", "rtype", "expect", "change", "reason"), [
    ("gone.sec.test", "A", {"rcode": "NXDOMAIN"}, drop("authority", dns.rdatatype.NSEC), "dnssec_no_denial"),
    ("gone.n3.test", "A", {"rcode": "NXDOMAIN"}, drop("authority", dns.rdatatype.NSEC3), "dnssec_no_denial"),
    ("anything.wild.sec.test", "TXT", {}, drop("authority", dns.rdatatype.NSEC), "dnssec_no_denial"),
    ("www.sec.test", "A", {}, drop("answer", dns.rdatatype.DNSKEY), "dnssec_missing_dnskey"),
    ("www.sec.test", "A", {}, drop("answer", dns.rdatatype.RRSIG, dns.rdatatype.DNSKEY), "dnssec_unsigned"),
])
async def test_replies_missing_their_proofs(named: Bind, query: str, rtype: str, expect: dict[str, Any],
                                            change: Callable[[dns.message.Message], None], reason: str) -> None:
    proxy = await DnsServer(craft=tampering(named.port, change)).start()
    try:
        zone = "n3.test" if query.endswith("n3.test") else "sec.test"
        result = await check(query=query, record_type=rtype, server=proxy.address, dnssec="validate",
                             trust_anchor=named.ds(zone), expect=expect)
    finally:
        await proxy.stop()
    assert_result(result, "CRITICAL", reason=reason)


async def test_a_signature_by_a_zone_not_above_the_name(named: Bind) -> None:
    def resign(reply: dns.message.Message) -> None:
        other = dns.name.from_text("other.test.")
        reply.answer = [dns.rrset.from_rdata(r.name, r.ttl, *(sig.replace(signer=other) for sig in r))
                        if r.rdtype == dns.rdatatype.RRSIG else r for r in reply.answer]
    proxy = await DnsServer(craft=tampering(named.port, resign)).start()
    try:
        result = await check(query="www.sec.test", server=proxy.address, dnssec="validate",
                             trust_anchor=named.ds("sec.test"))
    finally:
        await proxy.stop()
    assert_result(result, "CRITICAL", reason="dnssec_bad_chain", summary_contains="other.test.")


# --- bad input -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("options", "says"), [
    ({"dnssec": "yes"}, "'validate' or 'require_ad'"),
    ({"dnssec": "validate"}, "needs trust_anchor"),
    ({"dnssec": "require_ad", "trust_anchor": "sec.test. IN DS 1 13 2 " + "00" * 32}, "are for dnssec: validate"),
    ({"trust_anchor_file": "/etc/hostname"}, "are for dnssec: validate"),
    ({"dnssec": "validate", "trust_anchor": "sec.test. IN DS 1 13 2 ABCD"}, "digest length inconsistent"),
    ({"dnssec": "validate", "trust_anchor": "sec.test. IN A 192.0.2.1"}, "a trust anchor is a DS or DNSKEY"),
    ({"dnssec": "validate", "trust_anchor": "not a record at all"}, "not DS or DNSKEY records"),
    ({"dnssec": "validate", "trust_anchor_file": "/nonexistent/root.ds"}, "cannot read trust_anchor_file"),
    ({"dnssec": "validate", "trust_anchor": "other.test. IN DS 1 13 2 " + "00" * 32},
     "not at or below a trust anchor (other.test.)"),
    ({"dnssec": "validate", "trust_anchor": "sec.test. IN DS 1 13 2 " + "00" * 32, "record_class": "CH"},
     "class IN"),
    ({"dnssec": "validate", "trust_anchor": "sec.test. IN DS 1 13 2 " + "00" * 32,
      "expect": {"authenticated": True}}, "use dnssec: require_ad"),
])
def test_bad_dnssec_options_are_config_errors(options: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigErrors) as caught:
        build_spec({"type": "dns", "query": "www.sec.test", "server": "127.0.0.1", **options})
    assert says in str(caught.value)


def test_a_threshold_on_the_forecast_is_allowed_and_one_on_a_typo_is_not() -> None:
    anchor = "sec.test. IN DS 1 13 2 " + "00" * 32
    base = {"type": "dns", "query": "www.sec.test", "dnssec": "validate", "trust_anchor": anchor}
    build_spec({**base, "thresholds": {"signature_time_to_expiry": {"critical": "< 3d"}}})
    with pytest.raises(ConfigErrors, match="did you mean 'signature_remaining'"):
        build_spec({**base, "thresholds": {"signature_remainig": {"critical": "< 3d"}}})


def test_a_trust_anchor_file_changed_after_loading_is_unknown(tmp_path: Path, named: Bind) -> None:
    path = tmp_path / "anchor.ds"
    path.write_text(named.ds("sec.test") + "\n")
    spec = build_spec({"type": "dns", "query": "www.sec.test", "server": named.server, "dnssec": "validate",
                       "trust_anchor_file": str(path)})
    path.unlink()
    result = asyncio.run(run_check(spec)).result
    assert_result(result, "UNKNOWN", reason="bad_trust_anchor", summary_contains="cannot read trust_anchor_file")


# --- the NSEC3 hash is dnspython's -----------------------------------------------------------------------------

@given(labels=st.lists(st.from_regex(r"[a-zA-Z0-9-]{1,20}", fullmatch=True), min_size=0, max_size=4),
       salt=st.binary(max_size=8), iterations=st.integers(0, 20))
def test_nsec3_hash_is_dnspythons(labels: list[str], salt: bytes, iterations: int) -> None:
    import dns.dnssec

    name = dns.name.from_text(".".join(labels) or ".")
    assert nsec3_hash(name, salt, iterations) == dns.dnssec.nsec3_hash(name, salt.hex(), iterations, 1).lower()


# --- delv (BIND's validating lookup tool) as the reference ------------------------------------------------------

DIFFERENTIAL = [  # (query, type, anchored zone, expect)
    ("www.sec.test", "A", "sec.test", {}),
    ("alias.sec.test", "A", "sec.test", {}),
    ("anything.wild.sec.test", "TXT", "sec.test", {}),
    ("www.child.sec.test", "AAAA", "sec.test", {}),
    ("gone.sec.test", "A", "sec.test", {"rcode": "NXDOMAIN"}),
    ("www.sec.test", "MX", "sec.test", {"answers": []}),
    ("gone.n3.test", "A", "n3.test", {"rcode": "NXDOMAIN"}),
    ("www.n3.test", "TXT", "n3.test", {"answers": []}),
    ("www.tampered.test", "A", "tampered.test", {}),
    ("www.expired.test", "A", "expired.test", {}),
    ("www.future.test", "A", "future.test", {}),
    ("www.nokey.test", "A", "nokey.test", {}),
    ("www.nods.sec.test", "A", "sec.test", {}),
    ("www.badds.sec.test", "A", "sec.test", {}),
    ("www.sec.test", "A", "wrong", {}),
]


@pytest.mark.parametrize(("query", "rtype", "zone", "expect"), DIFFERENTIAL)
async def test_the_verdict_is_delvs(named: Bind, tmp_path: Path, query: str, rtype: str, zone: str,
                                    expect: dict[str, Any]) -> None:
    """Secure or not, as ``delv`` (with the same anchor, validating from that zone) says: "fully validated"
    (or "negative response, fully validated") is secure; "unsigned answer", "resolution failed" and a broken
    chain are not."""
    delv = require_binary("delv")
    ds = named.wrong_ds if zone == "wrong" else named.ds(zone)
    anchors = tmp_path / "anchors.conf"
    anchors.write_text(f"trust-anchors {{\n{static_ds(ds)}\n}};\n")
    owner = ds.split()[0]
    process = await asyncio.create_subprocess_exec(
        delv, "@127.0.0.1", "-p", str(named.port), "-a", str(anchors), f"+root={owner}", query, rtype, "+cd",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    said = (await asyncio.wait_for(process.communicate(), 60))[0].decode()
    theirs = "fully validated" in said
    ours = await check(query=query, record_type=rtype, server=named.server, dnssec="validate", trust_anchor=ds,
                       expect=expect)
    assert (ours.status is probe.Status.OK) == theirs, f"{ours.reason}: {ours.summary}\ndelv: {said[:600]}"


# --- the agent's forecast and thresholds on signature_remaining ------------------------------------------------

async def test_the_agent_forecasts_signature_expiry_from_the_falling_remaining_time(named: Bind) -> None:
    """Runs 0.6 s apart with nothing re-signing: signature_remaining falls one second per second, and the
    forecast (when the line reaches 0) is the remaining time itself -- a draining capacity, not a ratio."""
    from probe.engine.forecast import Forecaster, ForecastSettings
    from probe.engine.runner import Runner
    from probe.testing import load_registry

    registry = load_registry(entry_points=False)
    spec = build_spec({"type": "dns", "query": "www.sec.test", "server": named.server, "dnssec": "validate",
                       "trust_anchor": named.ds("sec.test"),
                       "thresholds": {"signature_time_to_expiry": {"warning": "< 60d"}}}, registry=registry)
    runner = Runner(registry, forecaster=Forecaster(ForecastSettings(window=3600, min_samples=3, min_span=0.5)))
    outcomes = []
    for _ in range(4):
        outcomes.append(await runner.run(spec._spec))
        await asyncio.sleep(0.6)
    assert outcomes[0].result.measurement("signature_time_to_expiry") is None  # one sample is no trend
    last = outcomes[-1].result
    forecast, now = last.measurement("signature_time_to_expiry"), last.measurement("signature_remaining")
    assert forecast is not None and now is not None, last
    assert forecast.value == pytest.approx(now.value, rel=0.05)  # the fit over 1.8 s of samples: loose
    assert last.status is probe.Status.WARNING and last.reason == "threshold"


def test_validate_without_cryptography_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "cryptography" else real(name, *a))
    with pytest.raises(ConfigErrors, match=r"pip install 'probe-monitor\[dnssec\]'"):
        build_spec({"type": "dns", "query": "www.sec.test", "dnssec": "validate",
                    "trust_anchor": "sec.test. IN DS 1 13 2 " + "00" * 32})
    build_spec({"type": "dns", "query": "www.sec.test", "dnssec": "require_ad"})  # needs nothing more
