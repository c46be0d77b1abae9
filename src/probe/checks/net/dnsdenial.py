"""DNSSEC denial of existence for the dns check: which NSEC or NSEC3 records of a reply prove that a name
or a record type does not exist (RFC 4035 5.4, RFC 5155 8), or that a wildcard answer was right to be one.

Each function returns the authority-section RRsets the proof rests on, for ``dnssec.Validator`` to verify
their signatures, or raises ``Unproven`` saying what the reply fails to prove.
Not covered: NSEC3 opt-out spans (an unsigned delegation is reported as ``dnssec_no_ds`` by the chain
anyway) and wildcard NODATA answers; both are reported as an unproven denial.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

NSEC, NSEC3, CNAME = dns.rdatatype.NSEC, dns.rdatatype.NSEC3, dns.rdatatype.CNAME
SHA1 = 1  # the one NSEC3 hash algorithm (RFC 5155 11)


class Unproven(Exception):
    """The reply does not prove the denial (or the wildcard expansion) it claims."""


def denial(message: dns.message.Message, name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> list[dns.rrset.RRset]:
    """The proof that ``name`` does not exist (NXDOMAIN) or has no ``rdtype`` record (NODATA)."""
    nxdomain = message.rcode() == dns.rcode.NXDOMAIN
    nsec, nsec3 = _authority(message, NSEC), _authority(message, NSEC3)
    what = f"{name} {'does not exist' if nxdomain else f'has no {dns.rdatatype.to_text(rdtype)} record'}"
    if nsec:
        proof = _nsec_nxdomain(nsec, name) if nxdomain else _nsec_nodata(nsec, name, rdtype)
    elif nsec3:
        proof = _nsec3_nxdomain(nsec3, name) if nxdomain else _nsec3_nodata(nsec3, name, rdtype)
    else:
        raise Unproven(f"the reply says {what} but carries no NSEC or NSEC3 record to prove it")
    if proof is None:
        kind = "NSEC" if nsec else "NSEC3"
        raise Unproven(f"the reply says {what} but its {kind} records do not prove it")
    return proof


def expanded(message: dns.message.Message, name: dns.name.Name, labels: int) -> list[dns.rrset.RRset]:
    """The proof that a wildcard answer for ``name`` (its RRSIG has ``labels`` labels) was needed: the
    name itself does not exist (RFC 4035 5.3.4, RFC 5155 8.8)."""
    encloser = dns.name.Name(name.labels[-(labels + 1):])
    nsec, nsec3 = _authority(message, NSEC), _authority(message, NSEC3)
    proof = _nsec_covering(nsec, name) if nsec else _nsec3_covering(nsec3, _next_closer(name, encloser))
    if proof is None:
        raise Unproven(f"the answer for {name} comes from the wildcard *.{encloser} but the reply does not "
                       "prove that the name itself does not exist")
    return [proof]


def _authority(message: dns.message.Message, rdtype: int) -> list[dns.rrset.RRset]:
    return [r for r in message.authority if r.rdtype == rdtype and r.rdclass == dns.rdataclass.IN]


def _has_type(rdata: Any, rdtype: int) -> bool:
    """Whether an NSEC/NSEC3 type bitmap lists ``rdtype`` (RFC 4034 4.1.2)."""
    window, bit = divmod(rdtype, 256)
    for number, bitmap in rdata.windows:
        if number == window:
            return bit // 8 < len(bitmap) and bool(bitmap[bit // 8] & (0x80 >> (bit % 8)))
    return False


# --- NSEC: names in canonical order (dnspython orders names canonically, RFC 4034 6.1) -------------------

def _nsec_nodata(nsec: list[dns.rrset.RRset], name: dns.name.Name, rdtype: int) -> list[dns.rrset.RRset] | None:
    for rrset in nsec:
        if rrset.name == name:
            rdata = rrset[0]
            return None if _has_type(rdata, rdtype) or _has_type(rdata, CNAME) else [rrset]
    return None


def _nsec_nxdomain(nsec: list[dns.rrset.RRset], name: dns.name.Name) -> list[dns.rrset.RRset] | None:
    covering = _nsec_covering(nsec, name)
    if covering is None:
        return None
    encloser = max((_common(name, covering.name), _common(name, covering[0].next)), key=len)
    wildcard = _nsec_covering(nsec, dns.name.Name((b"*", *encloser.labels)))
    return None if wildcard is None else [covering] if wildcard is covering else [covering, wildcard]


def _nsec_covering(nsec: list[dns.rrset.RRset], name: dns.name.Name) -> dns.rrset.RRset | None:
    for rrset in nsec:
        owner, after = rrset.name, rrset[0].next
        inside = owner < name < after if owner < after else name > owner or name < after  # the last one wraps
        if inside and name.is_subdomain(_zone_of(after, owner)):
            return rrset
    return None


def _common(a: dns.name.Name, b: dns.name.Name) -> dns.name.Name:
    common = a.fullcompare(b)[2]
    return a.split(common)[1]


def _zone_of(after: dns.name.Name, owner: dns.name.Name) -> dns.name.Name:
    """The zone an NSEC chain belongs to: the names it links share at least the apex."""
    return _common(after, owner)


# --- NSEC3: hashed owner names, compared as base32hex text ------------------------------------------------

def nsec3_hash(name: dns.name.Name, salt: bytes | None, iterations: int) -> str:
    """RFC 5155 5: SHA-1 over the canonical wire name and salt, iterated; base32hex, lower case (as owner
    names are compared). Here rather than dnspython's, whose module needs cryptography to import without
    warnings; tests/test_dns_dnssec.py holds it to dnspython's."""
    salt = salt or b""
    digest = hashlib.sha1(bytes(name.canonicalize().to_wire() or b"") + salt).digest()
    for _ in range(iterations):
        digest = hashlib.sha1(digest + salt).digest()
    return base64.b32hexencode(digest).decode("ascii").lower()


def _hash(rdata: Any, name: dns.name.Name) -> str | None:
    """The name hashed with the record's parameters; None for a hash algorithm other than SHA-1."""
    return nsec3_hash(name, rdata.salt, rdata.iterations) if rdata.algorithm == SHA1 else None


def _owner_hash(rrset: dns.rrset.RRset) -> str:
    return rrset.name.labels[0].decode("ascii").lower()


def _nsec3_matching(nsec3: list[dns.rrset.RRset], name: dns.name.Name) -> dns.rrset.RRset | None:
    for rrset in nsec3:
        if name.is_subdomain(rrset.name.parent()) and _owner_hash(rrset) == _hash(rrset[0], name):
            return rrset
    return None


def _nsec3_covering(nsec3: list[dns.rrset.RRset], name: dns.name.Name) -> dns.rrset.RRset | None:
    for rrset in nsec3:
        if not name.is_subdomain(rrset.name.parent()):
            continue
        owner, after = _owner_hash(rrset), base64.b32hexencode(rrset[0].next).decode("ascii").lower()
        hashed = _hash(rrset[0], name)
        if hashed is None:
            continue
        if owner < hashed < after if owner < after else hashed > owner or hashed < after:
            return rrset
    return None


def _nsec3_nodata(nsec3: list[dns.rrset.RRset], name: dns.name.Name, rdtype: int) -> list[dns.rrset.RRset] | None:
    match = _nsec3_matching(nsec3, name)
    if match is None or _has_type(match[0], rdtype) or _has_type(match[0], CNAME):
        return None
    return [match]


def _nsec3_nxdomain(nsec3: list[dns.rrset.RRset], name: dns.name.Name) -> list[dns.rrset.RRset] | None:
    """The closest encloser proof (RFC 5155 8.3): an ancestor that exists, the name one label below it
    towards ``name`` covered (does not exist), and the wildcard at the encloser covered."""
    encloser = name.parent()
    while True:
        match = _nsec3_matching(nsec3, encloser)
        if match is not None:
            break
        if encloser == dns.name.root:
            return None
        encloser = encloser.parent()
    closer = _nsec3_covering(nsec3, _next_closer(name, encloser))
    wildcard = _nsec3_covering(nsec3, dns.name.Name((b"*", *encloser.labels)))
    if closer is None or wildcard is None:
        return None
    return list({id(r): r for r in (match, closer, wildcard)}.values())


def _next_closer(name: dns.name.Name, encloser: dns.name.Name) -> dns.name.Name:
    return dns.name.Name(name.labels[-(len(encloser.labels) + 1):])
