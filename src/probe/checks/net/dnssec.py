"""DNSSEC for the dns check: the chain of trust from a configured anchor down to the answer.

``Validator`` does what a validating resolver does for one answer (RFC 4035 5): every RRset of the answer
(the CNAME chain and the records asked for) or, for a negative answer, the authority section's SOA and
NSEC/NSEC3 records must carry an RRSIG that verifies with a DNSKEY of the zone named as signer; that
zone's DNSKEY RRset must be signed by one of its keys that is trusted -- it matches the trust anchor, or
a DS record of the zone, which in turn is signed by the parent zone's DNSKEYs, up to an anchor. The zone
cuts are found the way the signatures name them (each RRSIG's signer, each DS's signer), so no guessing
where zones start. Every DNSKEY and DS RRset comes from the same server as the answer, asked with DO and
CD set: a validating resolver then passes on even data it rejects, so the check can say what is wrong.

The cryptography (and RRSIG checks of validity times, key tags, labels and original TTL) is dnspython's
``dns.dnssec`` with its default algorithm policy. This module imports it (and so cryptography) at once:
the dns check imports this module only when a check sets ``dnssec``. Denial of existence (NSEC, NSEC3)
is in ``dnsdenial``.

What the chain relies on expiring first is reported: for each RRset the latest expiry among its valid
RRSIGs (one valid signature keeps it valid), the earliest of those over the chain.
"""

from __future__ import annotations

import importlib.util
import time
import warnings
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rrset
import dns.zonefile
from dns.exception import DeniedByPolicy, UnsupportedAlgorithm, ValidationFailure

from probe.checks.net.conn import Failure
from probe.checks.net.dnsdenial import Unproven, denial, expanded

with warnings.catch_warnings():
    # dnspython's DSA support trips cryptography's deprecation warning on import: nothing a check can act on.
    warnings.simplefilter("ignore")
    import dns.dnssec

MAX_CHAIN = 16  # CNAMEs followed, as the check's answer reader (dnsanswer.MAX_CHAIN)
Ask = Callable[[dns.name.Name, dns.rdatatype.RdataType], Awaitable[dns.message.Message]]
"""Ask the server for (name, record type) with DO and CD set; raise the check's Failure when it cannot."""

# When several RRSIGs of one RRset fail, the reason of the most telling failure is reported.
_FAILURES = (("verify failure", "dnssec_bad_signature"), ("expired", "dnssec_signature_expired"),
             ("not yet valid", "dnssec_signature_not_yet_valid"), ("no such key", "dnssec_missing_dnskey"),
             ("unsupported algorithm", "dnssec_unsupported_algorithm"))


class Bogus(Exception):
    """The answer is not provably secure: ``reason`` is the check's machine reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message
        self.chain: list[str] = []  # what was proven before it failed

    def details(self) -> dict[str, object]:
        return {"dnssec": {"mode": "validate", "chain": self.chain, "failed": self.message}}


@dataclass
class Found:
    """A reply that passed: when its first relevant signature expires, and how it was proven."""

    mode: str  # "validate" or "require_ad"
    remaining: float | None  # seconds; None when the reply carries no RRSIG (require_ad only)
    expires_first: str = ""
    chain: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        return "validated" if self.mode == "validate" else "authenticated by the resolver"

    def details(self) -> dict[str, object]:
        shown: dict[str, object] = {"mode": self.mode, "chain": self.chain, "expires_first": self.expires_first}
        return {key: value for key, value in shown.items() if value}


async def check(mode: str, wire: bytes, anchors: Anchors | None, ask: Ask, now: float | None = None) -> Found:
    """The DNSSEC verdict on a reply (its wire form): ``validate`` proves it from ``anchors``, asking for keys
    with ``ask``; ``require_ad`` (the AD flag already checked) reads when its signatures expire. Raises
    ``Bogus``, or the ``Failure`` of a key lookup."""
    message = read_message(wire)
    now = time.time() if now is None else now
    if mode == "require_ad":
        expiry = signature_expiries(message, now)
        return Found(mode, None) if expiry is None else Found(mode, *expiry)
    assert anchors is not None
    validator = Validator(anchors, ask, now)
    question = message.question[0]
    try:
        return await validator.reply(message, question.name, question.rdtype)
    except Bogus as exc:
        exc.chain = validator.chain
        raise


def read_message(wire: bytes) -> dns.message.Message:
    try:
        return dns.message.from_wire(wire)
    except dns.exception.DNSException as exc:
        raise Failure("malformed_response", f"cannot read the reply for DNSSEC: {exc}") from None


@dataclass(frozen=True)
class Anchors:
    """Trust anchors by zone: the DS and the DNSKEY records configured for each."""

    ds: dict[dns.name.Name, list[Any]] = field(default_factory=dict)  # DS rdata
    keys: dict[dns.name.Name, list[Any]] = field(default_factory=dict)  # DNSKEY rdata

    @property
    def zones(self) -> set[dns.name.Name]:
        return set(self.ds) | set(self.keys)

    def covering(self, name: dns.name.Name) -> dns.name.Name | None:
        """The closest anchored zone at or above ``name``."""
        found = [zone for zone in self.zones if name.is_subdomain(zone)]
        return max(found, key=len) if found else None


def load_anchors(query: str, lines: Iterable[str], file: str | None) -> Anchors:
    """The anchors of a check that validates ``query``; ValueError for anything that could never work."""
    if importlib.util.find_spec("cryptography") is None:
        raise ValueError("dnssec: validate needs the cryptography package: pip install 'probe-monitor[dnssec]'")
    lines = list(lines)
    if not lines and file is None:
        raise ValueError("dnssec: validate needs trust_anchor (DS or DNSKEY records) or trust_anchor_file")
    anchors = parse_anchors(lines, file)
    if anchors.covering(dns.name.from_text(query)) is None:
        zones = ", ".join(sorted(str(zone) for zone in anchors.zones))
        raise ValueError(f"query {query} is not at or below a trust anchor ({zones}): it could never validate")
    return anchors


def parse_anchors(lines: Iterable[str], file: str | None) -> Anchors:
    """Trust anchors from zone-file lines and/or a file of them (dnssec-keygen's ``.key``, dnssec-dsfromkey's
    output, ``/usr/share/dns/root.ds``); comments allowed. Raises ValueError saying what is wrong."""
    texts = [("trust_anchor", "\n".join(lines))]
    if file is not None:
        try:
            texts.append((file, Path(file).read_text()))
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"cannot read trust_anchor_file {file}: {getattr(exc, 'strerror', None) or exc}") from None
    anchors = Anchors()
    for where, text in texts:
        try:
            rrsets = dns.zonefile.read_rrsets(text, rdclass=None, default_ttl=0, relativize=False)
        except dns.exception.DNSException as exc:
            raise ValueError(f"{where}: not DS or DNSKEY records in zone-file form: {exc}") from None
        for rrset in rrsets:
            table = {dns.rdatatype.DS: anchors.ds, dns.rdatatype.DNSKEY: anchors.keys}.get(rrset.rdtype)
            if table is None:
                raise ValueError(f"{where}: {rrset.name} {dns.rdatatype.to_text(rrset.rdtype)}: a trust anchor is "
                                 "a DS or DNSKEY record")
            table.setdefault(rrset.name, []).extend(rrset)
    if not anchors.zones:
        raise ValueError("trust_anchor and trust_anchor_file hold no DS or DNSKEY record")
    return anchors


class Validator:
    """Validates one reply (one check run): DNSKEY and DS RRsets are asked once per zone and kept for the run."""

    def __init__(self, anchors: Anchors, ask: Ask, now: float | None = None) -> None:
        self.anchors, self.ask = anchors, ask
        self.now = time.time() if now is None else now
        self._trusted: dict[dns.name.Name, Any] = {}  # DNSKEY RRsets
        self._expiries: list[tuple[int, str]] = []
        self.chain: list[str] = []  # what was proven, top-down, for details

    def result(self) -> Found:
        expiration, what = min(self._expiries)
        return Found("validate", expiration - self.now, f"{what} at {_utc(expiration)}", self.chain)

    async def reply(self, message: dns.message.Message, qname: dns.name.Name,
                    qtype: dns.rdatatype.RdataType) -> Found:
        """Validate what answers the question: the CNAME chain from ``qname`` and the records of ``qtype`` at
        its end, or the proof that they do not exist."""
        name = qname
        for _ in range(MAX_CHAIN + 1):
            if qtype == dns.rdatatype.ANY:
                found = [r for r in message.answer if r.name == name and r.rdtype != dns.rdatatype.RRSIG]
            else:
                found = [r for r in (message.get_rrset(message.answer, name, dns.rdataclass.IN, qtype),) if r]
            if found:
                for rrset in found:
                    await self.rrset(rrset, _sigs(message.answer, rrset), message)
                return self.result()
            alias = message.get_rrset(message.answer, name, dns.rdataclass.IN, dns.rdatatype.CNAME)
            if alias is None or qtype == dns.rdatatype.CNAME:
                break
            await self.rrset(alias, _sigs(message.answer, alias), message)
            name = alias[0].target
        try:
            proof = denial(message, name, qtype)
        except Unproven as exc:
            raise Bogus("dnssec_no_denial", str(exc)) from None
        for rrset in proof:
            await self.rrset(rrset, _sigs(message.authority, rrset), message)
        return self.result()

    async def rrset(self, rrset: dns.rrset.RRset, sigs: dns.rrset.RRset | None,
                    message: dns.message.Message | None = None) -> None:
        """Verify ``rrset`` with its RRSIGs and the chain of keys above the zone that signed it."""
        what = f"{rrset.name} {dns.rdatatype.to_text(rrset.rdtype)}"
        if not sigs:
            raise Bogus("dnssec_unsigned", f"{what} carries no RRSIG (unsigned zone, or a server that strips them)")
        signers = [s.signer for s in sigs if rrset.name.is_subdomain(s.signer)]
        if not signers:
            raise Bogus("dnssec_bad_chain", f"{what} is signed by {sigs[0].signer}, which is not a zone above it")
        signer = min(signers, key=len)
        await self._verify(rrset, sigs, signer, await self._keys(signer))
        labels = min(s.labels for s in sigs if s.signer == signer)
        if message is not None and labels < len(rrset.name) - 1 - rrset.name.is_wild():
            try:  # expanded from a wildcard: the name itself must be proven not to exist
                for proof in expanded(message, rrset.name, labels):
                    await self.rrset(proof, _sigs(message.authority, proof))
            except Unproven as exc:
                raise Bogus("dnssec_no_denial", str(exc)) from None

    async def _keys(self, zone: dns.name.Name) -> Any:
        """The zone's DNSKEY RRset, proven by an anchor or by a DS chain from one."""
        if zone in self._trusted:
            return self._trusted[zone]
        if self.anchors.covering(zone) is None:
            anchored = ", ".join(sorted(str(z) for z in self.anchors.zones))
            raise Bogus("dnssec_no_trust_anchor", f"{zone} is not at or below the trust anchor ({anchored})")
        dnskeys, sigs = await self._fetch(zone, dns.rdatatype.DNSKEY)
        if not dnskeys:
            raise Bogus("dnssec_missing_dnskey", f"{zone} has no DNSKEY record")
        if zone in self.anchors.zones:
            trusted = self._anchored(zone, dnskeys)
            step = "trust anchor"
        else:
            trusted, step = await self._delegated(zone, dnskeys)
        await self._verify(dnskeys, sigs, zone, trusted)
        self._trusted[zone] = dnskeys
        self.chain.append(f"{zone} DNSKEY {_tags(trusted)} ({step})")
        return dnskeys

    def _anchored(self, zone: dns.name.Name, dnskeys: dns.rdataset.Rdataset) -> list[Any]:
        configured = self.anchors.keys.get(zone)
        trusted = [k for k in dnskeys if configured is not None and k in configured]
        trusted += _matching_ds(zone, dnskeys, self.anchors.ds.get(zone) or ())
        if not trusted:
            raise Bogus("dnssec_anchor_mismatch", f"no DNSKEY of {zone} ({_tags(dnskeys)}) matches the "
                                                  f"trust anchor ({_anchor_tags(self.anchors, zone)})")
        return trusted

    async def _delegated(self, zone: dns.name.Name, dnskeys: dns.rdataset.Rdataset) -> tuple[list[Any], str]:
        ds, ds_sigs = await self._fetch(zone, dns.rdatatype.DS)
        if not ds:
            raise Bogus("dnssec_no_ds", f"no DS record for {zone} at its parent: the chain of trust is broken there "
                                        "(an unsigned delegation?)")
        parents = [s.signer for s in ds_sigs or () if zone.is_subdomain(s.signer) and zone != s.signer]
        if not parents:
            raise Bogus("dnssec_unsigned" if not ds_sigs else "dnssec_bad_chain",
                        f"the DS RRset of {zone} is not signed by a zone above it")
        parent = min(parents, key=len)
        await self._verify(ds, ds_sigs, parent, await self._keys(parent))
        trusted = _matching_ds(zone, dnskeys, ds)
        if not trusted:
            raise Bogus("dnssec_ds_mismatch", f"no DNSKEY of {zone} ({_tags(dnskeys)}) matches its DS records "
                                              f"({', '.join(str(d.key_tag) for d in ds)})")
        self.chain.append(f"{zone} DS {', '.join(str(d.key_tag) for d in ds)} (signed by {parent})")
        return trusted, f"DS at {parent}"

    async def _fetch(self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> tuple[Any, Any]:
        reply = await self.ask(name, rdtype)
        what = dns.rdatatype.to_text(rdtype)
        if reply.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            raise Bogus(f"dnssec_no_{what.lower()}", f"{what} query for {name}: {dns.rcode.to_text(reply.rcode())}")
        found = reply.get_rrset(reply.answer, name, dns.rdataclass.IN, rdtype)
        sigs = reply.get_rrset(reply.answer, name, dns.rdataclass.IN, dns.rdatatype.RRSIG, rdtype)
        return found, sigs

    async def _verify(self, rrset: Any, sigs: Any, signer: dns.name.Name, keys: Any) -> None:
        """At least one RRSIG by ``signer`` must verify; remember when the latest valid one expires."""
        what = f"{rrset.name} {dns.rdatatype.to_text(rrset.rdtype)}"
        if not sigs:
            raise Bogus("dnssec_unsigned", f"{what} carries no RRSIG")
        valid, failures = [], []
        for sig in sigs:
            if sig.signer != signer:
                continue
            if not any(k.algorithm == sig.algorithm and dns.dnssec.key_id(k) == sig.key_tag for k in keys):
                failures.append(("no such key", sig))  # a key removed too early, or never published
                continue
            try:
                dns.dnssec.validate_rrsig(rrset, sig, {signer: keys}, now=self.now)
            except ValidationFailure as exc:
                failures.append((str(exc), sig))
            except UnsupportedAlgorithm:
                failures.append(("unsupported algorithm", sig))
            else:
                valid.append(sig)
        if not valid:
            raise _failure(what, signer, failures)
        best = max(valid, key=lambda s: s.expiration)
        self._expiries.append((best.expiration, f"RRSIG {what} (key {best.key_tag} of {signer})"))


def _sigs(section: list[dns.rrset.RRset], rrset: dns.rrset.RRset) -> dns.rrset.RRset | None:
    for found in section:
        if found.name == rrset.name and found.rdtype == dns.rdatatype.RRSIG and found.covers == rrset.rdtype:
            return found
    return None


def _failure(what: str, signer: dns.name.Name, failures: list[tuple[str, Any]]) -> Bogus:
    texts = [f"key {sig.key_tag}: {text}" if text != "no such key" else
             f"key {sig.key_tag} (algorithm {sig.algorithm}) is not among its DNSKEYs" for text, sig in failures]
    reason = next((r for text, r in _FAILURES if any(t == text for t, _ in failures)), "dnssec_bad_signature")
    if reason == "dnssec_signature_expired":
        when = max(sig.expiration for _, sig in failures)
        texts = [f"expired {_utc(when)}"]
    return Bogus(reason, f"{what} signed by {signer}: {'; '.join(texts)}")


def _matching_ds(zone: dns.name.Name, dnskeys: Iterable[Any], ds_set: Iterable[Any]) -> list[Any]:
    """The DNSKEYs some DS record describes (same tag, algorithm and digest); unsupported digests are skipped."""
    matched = []
    for key in dnskeys:
        tag = dns.dnssec.key_id(key)
        for ds in ds_set:
            if ds.key_tag != tag or ds.algorithm != key.algorithm:
                continue
            try:
                made = dns.dnssec.make_ds(zone, key, ds.digest_type)
            except (UnsupportedAlgorithm, DeniedByPolicy):
                continue
            if made == ds:
                matched.append(key)
                break
    return matched


def _tags(keys: Iterable[Any]) -> str:
    return ", ".join(f"{dns.dnssec.key_id(k)}/{int(k.algorithm)}" for k in keys) or "none"


def _anchor_tags(anchors: Anchors, zone: dns.name.Name) -> str:
    tags = [f"DS {d.key_tag}/{int(d.algorithm)}" for d in anchors.ds.get(zone) or ()]
    tags += [f"DNSKEY {dns.dnssec.key_id(k)}/{int(k.algorithm)}" for k in anchors.keys.get(zone) or ()]
    return ", ".join(tags)


def signature_expiries(message: dns.message.Message, now: float) -> tuple[float, str] | None:
    """For ``require_ad``: seconds until the earliest RRSIG of the answer (of the authority section for a
    negative answer) expires -- each RRset's latest -- as the resolver passed them on, and which; None when
    the reply carries none. Not verified here: the resolver vouched for them with AD."""
    section = message.answer or message.authority
    found = []
    for rrset in section:
        sigs = _sigs(section, rrset) if rrset.rdtype != dns.rdatatype.RRSIG else None
        if sigs:
            best = max(sigs, key=lambda s: s.expiration)
            what = f"RRSIG {rrset.name} {dns.rdatatype.to_text(rrset.rdtype)} (key {best.key_tag} of {best.signer})"
            found.append((best.expiration, what))
    if not found:
        return None
    expiration, what = min(found)
    return expiration - now, f"{what} at {_utc(expiration)}"


def _utc(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
