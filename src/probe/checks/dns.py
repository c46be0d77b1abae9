"""dns: ask a DNS server one question and judge the reply's rcode, flags and answers.

The query is built once per check and only its id changes per run; queries are built and replies read by
``dnswire`` and sent by ``dnsclient``, which keeps a check at a fraction of blackbox_exporter's CPU
(docs/performance.md, section DNS) and dnspython out of the process unless a config needs it.
"""

from __future__ import annotations

import ipaddress
import re
import ssl
import time
from pathlib import Path
from typing import Literal

from pydantic import ValidationInfo, field_validator, model_validator

import probe
from probe.checks.net import dnsanswer, dnswire
from probe.checks.net.conn import Failure
from probe.checks.net.dnsclient import Exchange, Server, exchange, parse_server
from probe.hookspecs import CheckRegistrar

_RCODE_REASONS = {"NXDOMAIN": "nxdomain", "SERVFAIL": "servfail", "REFUSED": "refused"}
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

    @field_validator("server", mode="before")
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


class DnsCheck(probe.Check[DnsOptions]):
    """One DNS question to a server (or the resolv.conf nameservers, in order, until one answers)."""

    type = "dns"
    measurements = frozenset({"duration", "answer_count"})
    units = {"duration": "s", "answer_count": "{record}"}

    def __init__(self, name: str, options: DnsOptions) -> None:
        super().__init__(name, options)
        self._query: dnswire.Query | None = None
        self._servers = [parse_server(s, options.transport) for s in options.server or ()]
        self._tls: ssl.SSLContext | None = None

    async def run(self, ctx: probe.Context) -> probe.Result:
        # The first run builds the query (and imports dnspython for an unusual name); not the server's time.
        query = self._query or self._prepare()
        started = time.monotonic()
        result = await self._ask(ctx, query)
        duration = probe.Measurement("duration", time.monotonic() - started, "s")
        return result.replace(measurements=(*result.measurements, duration))

    async def _ask(self, ctx: probe.Context, query: dnswire.Query) -> probe.Result:
        o = self.options
        try:
            servers = self._servers or system_servers(o.resolv_conf, o.transport)
        except Failure as exc:
            return probe.Result.unknown(exc.message, reason=exc.reason)
        # Stop a little before the core's deadline so the reply (or our reason) still gets reported.
        deadline = ctx.deadline - min(0.05, 0.05 * ctx.remaining())
        failures: list[tuple[Server, Failure]] = []
        for i, server in enumerate(servers):
            now = time.monotonic()
            try:
                answer = await exchange(query, server, o.transport, now + (deadline - now) / (len(servers) - i),
                                        self._tls, o.tls.server_name)
            except Failure as exc:
                failures.append((server, exc))
                continue
            return judge(o, query, answer, server, failures)
        return _all_failed(failures)

    def _prepare(self) -> dnswire.Query:
        o = self.options
        self._query = dnswire.make_query(
            o.query, dnswire.rdatatype(o.record_type)[1], dnswire.rdataclass(o.record_class)[1],
            recursion_desired=o.recursion_desired, dnssec=o.expect.authenticated)
        if o.transport in ("tls", "https"):
            self._tls = tls_context(o.tls)
        return self._query


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
    sections = {"cnames": list(found.cnames), "ignored_answers": [r.line() for r in found.ignored],
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
    if e.authenticated and not response.has(dnswire.AD):
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
