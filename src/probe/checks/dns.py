"""dns: ask a DNS server one question and judge the reply's rcode, flags and answers.

The query is built once per check and only its id changes per run; queries are built and replies read by
``dnswire`` and sent by ``dnsclient``, which keeps a check at a fraction of blackbox_exporter's CPU
(docs/performance.md, section DNS) and dnspython out of the process unless a config needs it.
``dnssec`` (``checks/net/dnssec.py``, imported only then) validates the reply's signatures from a trust
anchor, or requires a validating resolver's AD flag, and reports when the first signature expires.
"""

from __future__ import annotations

import ipaddress
import re
import ssl
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ValidationInfo, field_validator, model_validator

import probe
from probe.checks.net import dnsanswer, dnswire
from probe.checks.net.conn import Failure
from probe.checks.net.dnsclient import Exchange, Server, exchange, parse_server
from probe.hookspecs import CheckRegistrar
from probe.units import format_duration

if TYPE_CHECKING:
    from probe.checks.net.dnssec import Anchors

_RCODE_REASONS = {"NXDOMAIN": "nxdomain", "SERVFAIL": "servfail", "REFUSED": "refused"}
# Replies DNSSEC has nothing to say about: the server did not give the answer judged (or any we can read).
_BEFORE_DNSSEC = frozenset({*_RCODE_REASONS.values(), "rcode_mismatch", "malformed_response", "not_authenticated"})
_SHOWN_ANSWERS = 3


class DnsExpect(probe.Options):
    """What a good reply looks like. Every condition given must hold."""

    rcode: list[str] = ["NOERROR"]
    """Acceptable response codes (``NOERROR``, ``NXDOMAIN``, ``SERVFAIL``, ...); one name or a list."""
    answers: list[str] | None = None
    """The exact set of answers (order and duplicates ignored). ``[]`` expects an empty answer (NODATA)."""
    answers_contain: list[str] = []
    """Answers that must all be present among others."""
    answers_regex: list[str] = []
    """Regular expressions that must each match at least one answer."""
    answers_not_regex: list[str] = []
    """Regular expressions that no answer may match."""
    authoritative: bool = False
    """Require the AA flag: the server must answer from its own zone data."""
    authenticated: bool = False
    """Require the AD flag (DNSSEC validated by the resolver); the query then sets the DO and AD bits."""

    @field_validator("rcode", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @field_validator("rcode")
    @classmethod
    def _known_rcodes(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("list at least one rcode")
        names = []
        for text in value:
            try:
                names.append(dnswire.rcode_canonical(text))
            except ValueError as exc:
                raise ValueError(f"{exc}; expected NOERROR, NXDOMAIN, SERVFAIL, REFUSED, ...") from None
        return names

    @field_validator("answers_regex", "answers_not_regex")
    @classmethod
    def _compiles(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None
        return value


class DnsTls(probe.Options):
    """Certificate checking for ``transport: tls`` and ``https``."""

    server_name: str | None = None
    """Name the server's certificate must carry (default: the server's host)."""
    ca_file: str | None = None
    """PEM file of the CAs to trust instead of the system store."""
    insecure: bool = False
    """Skip certificate verification (still encrypted, not authenticated)."""


class DnsOptions(probe.Options):
    query: str
    """The name to look up, e.g. ``www.example.com`` (always absolute: no search domains)."""
    record_type: str = "A"
    """Record type: ``A``, ``AAAA``, ``MX``, ``TXT``, ``CNAME``, ``NS``, ``SOA``, ``SRV``, ``PTR``, ..."""
    record_class: str = "IN"
    """Record class; ``CH`` for ``version.bind``-style queries."""
    transport: Literal["udp", "tcp", "tls", "https"] = "udp"
    """``udp`` (retried over TCP when the reply is truncated), ``tcp``, ``tls`` (DoT, RFC 7858) or
    ``https`` (DoH, RFC 8484)."""
    server: list[str] | None = None
    """``host``, ``host:port``, ``[ipv6]:port``, or a list tried in order; an ``https://`` URL for DoH.
    Default: the nameservers in ``resolv_conf``."""
    resolv_conf: str = "/etc/resolv.conf"
    """Where the system's nameservers are read from when ``server`` is not set."""
    recursion_desired: bool = True
    """Set the RD flag; turn off to ask an authoritative server about its own zone only."""
    expect: DnsExpect = DnsExpect()
    """Conditions on the reply (see below)."""
    tls: DnsTls = DnsTls()
    """Certificate settings for DoT and DoH."""
    dnssec: Literal["validate", "require_ad"] | None = None
    """``validate``: check the signatures here, from ``trust_anchor`` down to the answer (DNSKEY and DS
    records asked of the same server, with the CD flag); ``require_ad``: the server must be a validating
    resolver that sets the AD flag. Both report ``signature_remaining``."""
    trust_anchor: list[str] = []
    """For ``dnssec: validate``: DS or DNSKEY records the chain starts from, as zone-file lines
    (``example.com. IN DS 2371 13 2 1F98...``); one or a list."""
    trust_anchor_file: str | None = None
    """For ``dnssec: validate``: a file of such records (dnssec-keygen's ``.key`` file, dnssec-dsfromkey's
    output, Debian's ``/usr/share/dns/root.ds``); read when the config is loaded."""

    @field_validator("server", "trust_anchor", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @field_validator("server")
    @classmethod
    def _servers_parse(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("list at least one server, or leave it out to use resolv_conf")
        for text in value or ():
            parse_server(text, info.data.get("transport", "udp"))
        return value

    @field_validator("record_type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        try:
            return dnswire.rdatatype(value)[0]
        except ValueError as exc:
            raise ValueError(f"{exc}; expected A, AAAA, MX, TXT, ...") from None

    @field_validator("record_class")
    @classmethod
    def _known_class(cls, value: str) -> str:
        try:
            return dnswire.rdataclass(value)[0]
        except ValueError as exc:
            raise ValueError(f"{exc}; expected IN, CH or HS") from None

    @field_validator("query")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        try:
            dnswire.name_wire(value.strip())
        except ValueError as exc:
            raise ValueError(f"invalid name {value!r}: {exc}") from None
        return value.strip()

    @model_validator(mode="after")
    def _https_needs_url(self) -> DnsOptions:
        if self.transport == "https" and not self.server:
            raise ValueError("transport https needs server: an https:// URL")
        return self

    @model_validator(mode="after")
    def _dnssec_is_coherent(self) -> DnsOptions:
        if self.dnssec != "validate":
            if self.trust_anchor or self.trust_anchor_file:
                raise ValueError("trust_anchor and trust_anchor_file are for dnssec: validate (require_ad trusts "
                                 "the resolver's validation)")
            return self
        if self.record_class != "IN":
            raise ValueError(f"dnssec: validate works on class IN records, not {self.record_class}")
        if self.expect.authenticated:
            raise ValueError("expect.authenticated asks the server to validate; dnssec: validate validates here "
                             "(use dnssec: require_ad for the server's AD flag)")
        load_anchors(self)
        return self


def load_anchors(o: DnsOptions) -> Anchors:
    from probe.checks.net.dnssec import load_anchors

    return load_anchors(o.query, o.trust_anchor, o.trust_anchor_file)


class DnsCheck(probe.Check[DnsOptions]):
    """One DNS question to a server (or the resolv.conf nameservers, in order, until one answers)."""

    type = "dns"
    measurements = frozenset({"duration", "answer_count", "signature_remaining", "signature_time_to_expiry"})
    units = {"duration": "s", "answer_count": "{record}", "signature_remaining": "s", "signature_time_to_expiry": "s"}
    # Seconds left drain towards 0: the forecast is when the trend reaches it (engine/forecast.py).
    capacities = {"signature_remaining": "signature_time_to_expiry"}

    def __init__(self, name: str, options: DnsOptions) -> None:
        super().__init__(name, options)
        self._query: dnswire.Query | None = None
        self._servers = [parse_server(s, options.transport) for s in options.server or ()]
        self._tls: ssl.SSLContext | None = None
        self._anchors: Anchors | None = None

    async def run(self, ctx: probe.Context) -> probe.Result:
        # The first run builds the query (and imports dnspython for an unusual name); not the server's time.
        try:
            query = self._query or self._prepare()
        except ValueError as exc:  # the trust anchor file changed since the config was loaded
            return probe.Result.unknown(str(exc), reason="bad_trust_anchor")
        started = time.monotonic()
        result, took = await self._ask(ctx, query)
        # The server's time when the run's exchanges were timed at their I/O events (UDP: the query sent to the
        # reply's kernel arrival stamp, docs/decisions/0031); the wall's otherwise.
        elapsed = time.monotonic() - started
        duration = probe.Measurement("duration", elapsed if took is None else min(took, elapsed), "s")
        return result.replace(measurements=(*result.measurements, duration))

    async def _ask(self, ctx: probe.Context, query: dnswire.Query) -> tuple[probe.Result, float | None]:
        """The result, and the servers' time when it is known at the I/O events."""
        o = self.options
        try:
            servers = self._servers or system_servers(o.resolv_conf, o.transport)
        except Failure as exc:
            return probe.Result.unknown(exc.message, reason=exc.reason), None
        # Stop a little before the core's deadline so the reply (or our reason) still gets reported.
        deadline = ctx.deadline - min(0.05, 0.05 * ctx.remaining())
        failures: list[tuple[Server, Failure]] = []
        failed = 0.0  # the servers that did not answer, by the wall
        for i, server in enumerate(servers):
            now = time.monotonic()
            try:
                answer = await exchange(query, server, o.transport, now + (deadline - now) / (len(servers) - i),
                                        self._tls, o.tls.server_name)
            except Failure as exc:
                failures.append((server, exc))
                failed += time.monotonic() - now
                continue
            result = judge(o, query, answer, server, failures)
            if o.dnssec is None or result.reason in _BEFORE_DNSSEC or answer.response.rcode not in (0, 3):
                # nothing DNSSEC could prove: another rcode, or not the reply judged
                return result, None if answer.took is None else failed + answer.took
            return await self._secure(result, answer.response, server, deadline), None
        return _all_failed(failures), None

    def _prepare(self) -> dnswire.Query:
        o = self.options
        if o.dnssec == "validate":
            self._anchors = load_anchors(o)
        self._query = dnswire.make_query(
            o.query, dnswire.rdatatype(o.record_type)[1], dnswire.rdataclass(o.record_class)[1],
            recursion_desired=o.recursion_desired, dnssec=o.expect.authenticated or o.dnssec is not None,
            checking_disabled=o.dnssec == "validate")
        if o.transport in ("tls", "https"):
            self._tls = tls_context(o.tls)
        return self._query

    async def _secure(self, result: probe.Result, response: dnswire.Response, server: Server,
                      deadline: float) -> probe.Result:
        """The DNSSEC verdict on a reply whose rcode was as expected; it outranks the answers' verdict,
        which means nothing when the records are forged."""
        from probe.checks.net import dnssec

        o = self.options
        what = f"{o.query} {o.record_type}"

        async def ask(name: Any, rdtype: Any) -> Any:
            query = dnswire.make_query(name.to_text(), int(rdtype), 1, recursion_desired=o.recursion_desired,
                                       dnssec=True, checking_disabled=True)
            reply = await exchange(query, server, o.transport, deadline, self._tls, o.tls.server_name)
            return dnssec.read_message(reply.response.wire)

        try:
            found = await dnssec.check(o.dnssec or "", response.wire, self._anchors, ask)
        except dnssec.Bogus as exc:
            return result.replace(status=probe.Status.CRITICAL, reason=exc.reason, summary=f"{what}: DNSSEC: "
                                  f"{exc.message} (from {server})", details={**result.details, **exc.details()})
        except Failure as exc:
            return result.replace(status=probe.Status.CRITICAL, reason=exc.reason,
                                  summary=f"{what}: DNSSEC lookup failed: {exc.message}")
        details = {**result.details, "dnssec": found.details()}
        if found.remaining is None:
            return result.replace(details=details)
        remaining = probe.Measurement("signature_remaining", found.remaining, "s")
        summary = result.summary
        if result.status == probe.Status.OK:
            summary += f"; DNSSEC {found.status}, first signature expires in {format_duration(found.remaining)}"
        return result.replace(measurements=(*result.measurements, remaining), details=details, summary=summary)


def tls_context(options: DnsTls) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=options.ca_file)
    if options.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def system_servers(path: str, transport: str) -> list[Server]:
    """The ``nameserver`` lines of a resolv.conf (its other options do not apply to a check)."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise Failure("no_servers", f"cannot read {path}: {exc.strerror}") from None
    servers = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            address = fields[1].split("%")[0]
            try:
                servers.append(parse_server(f"[{address}]" if ":" in address else address, transport))
            except ValueError:
                continue
    if not servers:
        raise Failure("no_servers", f"no nameserver in {path}")
    return servers


def judge(o: DnsOptions, query: dnswire.Query, answer: Exchange, server: Server,
          failures: list[tuple[Server, Failure]]) -> probe.Result:
    response = answer.response
    rcode = dnswire.rcode_name(response.rcode)
    details: dict[str, object] = {"server": str(server), "transport": answer.transport, "rcode": rcode,
                                  "flags": response.flag_names()}
    if answer.tcp_fallback:
        details["tcp_fallback"] = True
    if failures:
        details["failed_servers"] = {str(s): f.message for s, f in failures}
    what = f"{o.query} {o.record_type}"
    try:
        found = dnsanswer.follow(response, query)
    except dnswire.Malformed as exc:
        return probe.Result.critical(f"{what}: {exc} (from {server})", reason="malformed_response", details=details)
    values = found.values
    details["answers"] = values
    details.update(_sections(found, response))
    count = probe.Measurement("answer_count", float(len(values)), "{record}")
    problem = _problem(o, rcode, response, values)
    if problem is not None:
        reason, text = problem
        return probe.Result.critical(f"{what}: {text} (from {server})", count, reason=reason, details=details)
    shown = ", ".join(values[:_SHOWN_ANSWERS]) + (f" (+{len(values) - _SHOWN_ANSWERS} more)"
                                                  if len(values) > _SHOWN_ANSWERS else "")
    return probe.Result.ok(f"{what}: {shown or rcode} from {server}", count, details=details)


def _sections(found: dnsanswer.Answer, response: dnswire.Response) -> dict[str, list[str]]:
    """The rest of the reply, as dig prints its records: the chain, what the answer section held that
    answers nothing, and the authority and additional sections."""
    # RRSIGs answer nothing themselves, but sign what does: not strays.
    ignored = [r.line() for r in found.ignored if r.rdtype != dnswire.RRSIG]
    sections = {"cnames": list(found.cnames), "ignored_answers": ignored,
                "authority": [r.line() for r in response.authority],
                "additional": [r.line() for r in response.additional]}
    return {name: lines for name, lines in sections.items() if lines}


def _problem(o: DnsOptions, rcode: str, response: dnswire.Response,
             values: list[str]) -> tuple[str, str] | None:
    e = o.expect
    if rcode not in e.rcode:
        return _RCODE_REASONS.get(rcode, "rcode_mismatch"), f"rcode {rcode}, expected {' or '.join(e.rcode)}"
    if e.authoritative and not response.has(dnswire.AA):
        return "not_authoritative", "reply is not authoritative (AA flag not set)"
    if (e.authenticated or o.dnssec == "require_ad") and not response.has(dnswire.AD):
        return "not_authenticated", "reply is not DNSSEC-authenticated (AD flag not set)"
    if rcode == "NOERROR" and not values and e.answers is None:
        return "no_answer", f"no {o.record_type} record (NOERROR, empty answer)"
    mismatch = answer_mismatch(e, o.record_type, values)
    return ("answer_mismatch", mismatch) if mismatch else None


def answer_mismatch(e: DnsExpect, record_type: str, values: list[str]) -> str | None:
    if e.answers is None and not e.answers_contain and not e.answers_regex and not e.answers_not_regex:
        return None
    got = {normalize(v, record_type) for v in values}
    if e.answers is not None:
        want = {normalize(v, record_type) for v in e.answers}
        if got != want:
            return f"answers {sorted(values)} differ from expected {sorted(e.answers)}"
    missing = [v for v in e.answers_contain if normalize(v, record_type) not in got]
    if missing:
        return f"answers {sorted(values)} lack {missing}"
    for pattern in e.answers_regex:
        if not any(re.search(pattern, v) for v in values):
            return f"no answer matches /{pattern}/ (got {sorted(values)})"
    for pattern in e.answers_not_regex:
        bad = [v for v in values if re.search(pattern, v)]
        if bad:
            return f"answer {bad[0]!r} matches /{pattern}/"
    return None


def normalize(value: str, record_type: str) -> str:
    """Compare answers as DNS does: addresses by value, names without case or a trailing dot."""
    value = value.strip()
    if record_type in ("A", "AAAA"):
        try:
            return ipaddress.ip_address(value).compressed
        except ValueError:
            return value
    if record_type in ("TXT", "SPF"):
        return value
    return " ".join(token.rstrip(".") if token != "." else token for token in value.lower().split())


def _all_failed(failures: list[tuple[Server, Failure]]) -> probe.Result:
    server, last = failures[-1]
    if len(failures) == 1:
        return probe.Result.critical(last.message, reason=last.reason, details={"server": str(server)})
    summary = f"all {len(failures)} servers failed: " + "; ".join(f.message for _, f in failures)
    return probe.Result.critical(summary, reason=last.reason,
                                 details={"failed_servers": {str(s): f.message for s, f in failures}})


@probe.hookimpl
def register_checks(register: CheckRegistrar) -> None:
    register(DnsCheck)
