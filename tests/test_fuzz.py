"""Property tests with hypothesis: every parser of user or network input either succeeds or raises the
module's own error with a clear message, whatever it is fed; the output formats stay well-formed for any
summary, label or measurement name a plugin may produce.

A failure here is a crash probe would have in production: the example hypothesis prints is the input.
"""

from __future__ import annotations

import json
import math
import re
import struct
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import dns.message
import dns.rrset
import pytest
import yaml
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from probe import units
from probe.checks import _perfdata as perfdata
from probe.checks.net import dnswire
from probe.conditions import parse_condition
from probe.config.load import ConfigErrors, load_plan
from probe.config.spec import CheckSpec, CommonFields
from probe.config.yamlsource import Location, YamlError, load_yaml
from probe.engine.interfaces import Outcome
from probe.formats import Report
from probe.formats.builtin import render_human, render_json, render_junit, render_prometheus, render_tap
from probe.formats.nagios import render_nagios
from probe.model import Measurement, Result, Status
from probe.plugins.manager import load_plugins

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MESSAGE_LIMIT = 400  # an error message names the bad value, it does not echo a megabyte of it

# Anything a YAML document or a Python caller may hand a parser.
ANY_VALUE = st.one_of(
    st.text(max_size=60),
    st.floats(),  # nan and +-inf included
    st.integers(min_value=-(10**500), max_value=10**500),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=3),
    st.from_regex(r"\A\s*[-+]?\d{0,400}(\.\d*)?([eE][-+]?\d{1,4})?\s*[a-zA-Zµ%]{0,4}\s*\Z"),
)


def _clear(exc: BaseException) -> None:
    text = str(exc)
    assert text and len(text) <= MESSAGE_LIMIT, text[:MESSAGE_LIMIT]


# -- durations, sizes, ratios, quantities -------------------------------------------------------------------------


@pytest.mark.parametrize("parse", [units.parse_duration, units.parse_size, units.parse_ratio])
@FUZZ
@given(value=ANY_VALUE)
@example(value=10**400)
@example(value=float("nan"))
@example(value="1e400s")
@example(value="9" * 400)
def test_unit_parsers_return_a_finite_number_or_a_clear_value_error(parse: Any, value: object) -> None:
    try:
        number = parse(value)
    except ValueError as exc:
        _clear(exc)
        return
    assert isinstance(number, float) and math.isfinite(number)
    if parse is not units.parse_ratio:
        assert number >= 0


@FUZZ
@given(text=st.one_of(st.text(max_size=60), ANY_VALUE.filter(lambda v: isinstance(v, str))))
def test_parse_quantity_is_finite_or_value_error(text: str) -> None:
    try:
        number = units.parse_quantity(text)
    except ValueError as exc:
        _clear(exc)
        return
    assert math.isfinite(number)


@FUZZ
@given(number=st.floats(min_value=0, max_value=1e12), unit=st.sampled_from(["ms", "s", "m", "h", "d", "w"]))
def test_duration_means_what_it_says(number: float, unit: str) -> None:
    factor = {"ms": 1e-3, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[unit]
    assert units.parse_duration(f"{number!r}{unit}") == pytest.approx(number * factor)


@FUZZ
@given(number=st.integers(min_value=0, max_value=10**15), unit=st.sampled_from(["", "B", "KiB", "MiB", "GB"]))
def test_size_means_what_it_says(number: int, unit: str) -> None:
    factor = {"": 1, "B": 1, "KiB": 1024, "MiB": 1024**2, "GB": 1000**3}[unit]
    assert units.parse_size(f"{number}{unit}") == pytest.approx(number * factor)


@FUZZ
@given(value=st.floats(allow_nan=False, allow_infinity=False, width=32))
def test_formatters_never_raise_for_a_finite_measurement(value: float) -> None:
    for unit in ("s", "By", "1", "", "req"):
        assert units.format_value(value, unit)


# -- threshold conditions -----------------------------------------------------------------------------------------


@FUZZ
@given(text=st.one_of(ANY_VALUE, st.from_regex(r"\A@?(~|[-\d.e]{0,8}[a-z%]{0,3})?(:[-\d.e]{0,8}[a-z%]{0,3})?\Z")),
       probe_values=st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=5))
@example(text="@", probe_values=[0.0])
@example(text="> 1e400", probe_values=[0.0])
@example(text=10**400, probe_values=[0.0])
def test_conditions_parse_or_fail_clearly_and_never_raise_when_evaluated(text: object,
                                                                         probe_values: list[float]) -> None:
    try:
        condition = parse_condition(text)
    except ValueError as exc:
        _clear(exc)
        return
    for value in probe_values:
        assert condition(value) in (True, False)


@FUZZ
@given(op=st.sampled_from([">", ">=", "<", "<=", "==", "!="]),
       bound=st.floats(min_value=-1e12, max_value=1e12), value=st.floats(min_value=-1e12, max_value=1e12))
def test_comparison_conditions_mean_the_comparison(op: str, bound: float, value: float) -> None:
    expected = {">": value > bound, ">=": value >= bound, "<": value < bound, "<=": value <= bound,
                "==": value == bound, "!=": value != bound}[op]
    assert parse_condition(f"{op} {bound!r}")(value) is expected


@FUZZ
@given(low=st.floats(min_value=-1e9, max_value=1e9), width=st.floats(min_value=0, max_value=1e9),
       value=st.floats(min_value=-3e9, max_value=3e9), inside=st.booleans())
def test_nagios_ranges_follow_the_plugin_guidelines(low: float, width: float, value: float, inside: bool) -> None:
    high = low + width
    assume(math.isfinite(high) and low <= high)
    condition = parse_condition(f"{'@' if inside else ''}{low!r}:{high!r}")
    within = low <= value <= high
    assert condition(value) is (within if inside else not within)


# -- perfdata -----------------------------------------------------------------------------------------------------

PERF_TEXT = st.one_of(
    st.text(max_size=300),
    st.lists(st.tuples(st.text(max_size=12), st.sampled_from(["=", "", "=="]),
                       st.from_regex(r"\A[-+]?[\d.,]{0,6}([eE][-+]?\d{1,4})?[a-zA-Z%µ]{0,4}(;[^ ]{0,6}){0,5}\Z")),
             max_size=20).map(lambda items: " ".join(f"{label}{eq}{rest}" for label, eq, rest in items)),
)


@settings(FUZZ, max_examples=120)
@given(text=PERF_TEXT)
@example(text="a=1e400s b=nan c=U 'x''y'=3;4;5;6;7 'open=1")
def test_perfdata_parser_never_raises_and_keeps_values_finite(text: str) -> None:
    parsed = perfdata.parse(text)
    assert len(parsed.values) <= perfdata.MAX_ITEMS
    labels = [v.label for v in parsed.values]
    assert len(labels) == len(set(labels))
    for v in parsed.values:
        assert v.label and math.isfinite(v.value)
        assert v.min is None or math.isfinite(v.min)
        assert v.max is None or math.isfinite(v.max)
    assert all(isinstance(e, str) and 0 < len(e) <= MESSAGE_LIMIT for e in parsed.errors)


@FUZZ
@given(text=st.text(max_size=500))
def test_plugin_output_parser_never_raises(text: str) -> None:
    out = perfdata.parse_output(text)
    assert "\n" not in out.summary


LABEL = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x0b\x0c\x1c\x1d\x1e\x85"
                              "\u2028\u2029"), min_size=1, max_size=20).filter(lambda s: s.strip() == s and s)


@FUZZ
@given(items=st.dictionaries(LABEL, st.floats(min_value=-1e9, max_value=1e9), max_size=10))
def test_perfdata_round_trips_through_quoted_labels(items: dict[str, float]) -> None:
    text = " ".join(f"'{label.replace(chr(39), chr(39) * 2)}'={value!r}s" for label, value in items.items())
    assume(all(not label.isspace() for label in items))
    parsed = perfdata.parse(text)
    assert parsed.errors == ()
    assert {v.label: v.value for v in parsed.values} == pytest.approx(items)


# -- DNS replies --------------------------------------------------------------------------------------------------

QUERY = dnswire.make_query("fuzz.test", 1, 1, recursion_desired=True, dnssec=False)
QUESTION = QUERY.wire[12:]
RDTYPES = [1, 2, 5, 6, 12, 15, 16, 28, 33, 35, 39, 41, 43, 46, 48, 99, 257, 65280]


def _valid_reply() -> bytes:
    query = dns.message.from_wire(QUERY.with_id(7))
    reply = dns.message.make_response(query)
    reply.answer.append(dns.rrset.from_text("fuzz.test.", 60, "IN", "A", "192.0.2.1", "192.0.2.2"))
    reply.answer.append(dns.rrset.from_text("fuzz.test.", 60, "IN", "MX", "10 mail.fuzz.test."))
    reply.answer.append(dns.rrset.from_text("fuzz.test.", 60, "IN", "TXT", '"v=spf1 -all" "more"'))
    reply.answer.append(dns.rrset.from_text("fuzz.test.", 60, "IN", "CNAME", "other.fuzz.test."))
    reply.authority.append(dns.rrset.from_text("fuzz.test.", 60, "IN", "SOA", "ns. host. 1 2 3 4 5"))
    return reply.to_wire()


VALID_REPLY = _valid_reply()


def _read(data: bytes) -> None:
    try:
        response = dnswire.read_response(data, 7, QUERY)
    except (dnswire.NotOurs, dnswire.Malformed) as exc:
        _clear(exc)
        return
    for record in response.answers:
        assert isinstance(record.text, str) and isinstance(record.name, str)
    dnswire.rcode_name(response.rcode)


@FUZZ
@given(flips=st.lists(st.tuples(st.integers(0, len(VALID_REPLY) - 1), st.integers(0, 255)), min_size=1, max_size=6),
       cut=st.integers(0, len(VALID_REPLY)))
def test_mutated_reply_is_read_or_rejected_as_malformed(flips: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(VALID_REPLY)
    for position, byte in flips:
        data[position] = byte
    data[0:2] = b"\x00\x07"  # keep it "ours", so the decoder goes past the header
    data[2] |= 0x80
    _read(bytes(data[:cut] if cut > 12 else data))


@FUZZ
@given(records=st.lists(st.tuples(st.binary(max_size=20), st.sampled_from(RDTYPES), st.integers(0, 0xFFFF),
                                  st.binary(max_size=40), st.integers(-3, 3)), max_size=5),
       flags=st.integers(0, 0xFFFF), extra=st.integers(0, 3))
def test_structured_garbage_records_are_read_or_malformed(records: list[tuple[bytes, int, int, bytes, int]],
                                                          flags: int, extra: int) -> None:
    body = b""
    for name, rdtype, rdclass, rdata, skew in records:
        body += name + struct.pack("!HHIH", rdtype, rdclass, 60, max(0, len(rdata) + skew)) + rdata
    header = struct.pack("!HHHHHH", 7, flags | 0x8000, 1, len(records), 0, extra)
    _read(header + QUESTION + body)


@FUZZ
@given(rcode=st.integers(0, 4095))
def test_every_extended_rcode_has_a_name(rcode: int) -> None:
    assert dnswire.rcode_name(rcode)


# -- the config loader --------------------------------------------------------------------------------------------

REGISTRY = load_plugins(use_entry_points=False)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(10**20), 10**20), st.floats(),
                    st.text(max_size=12), st.sampled_from(["5s", "1e400s", "${NOPE}", "${file:/nonexistent}",
                                                           "> 90%", "@10:20", "~:", "disk", "critical", "$$"]))
KEYS = st.one_of(st.sampled_from(["name", "type", "interval", "timeout", "retry_interval", "failure_threshold",
                                  "labels", "thresholds", "remediate", "enabled", "path", "run", "on",
                                  "warning", "critical", "clear", "utilization", "query", "dsn", "defaults",
                                  "checks", "server", "timeout_status", "with", "action", "max_runs"]),
                 st.text(max_size=6), st.integers(-3, 3), st.booleans(), st.none())
DOCS = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                     st.dictionaries(KEYS, inner, max_size=5)), max_leaves=25)
CHECK = st.fixed_dictionaries(
    {"name": st.one_of(st.text(max_size=8), st.just("c")), "type": st.sampled_from(["disk", "command", "dns",
                                                                                  "sql", "memory", "nope", ""])},
    optional={k: DOCS for k in ("interval", "timeout", "labels", "thresholds", "remediate", "path", "run", "query",
                                "dsn", "enabled", "bogus")})
CONFIG = st.one_of(DOCS, st.fixed_dictionaries({"checks": st.lists(st.one_of(CHECK, DOCS), max_size=4)},
                                               optional={"defaults": st.one_of(CHECK, DOCS)}))


def _load(tmp: Path, text: str) -> None:
    path = tmp / "fuzz.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_plan(path, REGISTRY, env={"HOME": "/root"})
    except ConfigErrors as exc:
        assert exc.errors
        for error in exc.errors:
            assert isinstance(error.location, Location) and error.location.line >= 1
            assert str(error).startswith(str(error.location))
            _clear(Exception(error.message))


@FUZZ
@given(doc=CONFIG)
def test_any_config_structure_loads_or_reports_located_errors(tmp_path_factory: pytest.TempPathFactory,
                                                              doc: Any) -> None:
    text = yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)
    _load(tmp_path_factory.mktemp("cfg"), text)


YAMLISH = st.lists(st.sampled_from([
    *"abc:-[]{}&*!?|>'\"#%@`,\n\t 0123.eE~", "!!int ", "!!float ", "!!timestamp ", "!!binary ",
    "!!set ", "<<: ", "\x00", "checks:\n", "- name: x\n"]),
    max_size=60).map("".join)


@FUZZ
@given(text=st.one_of(YAMLISH, st.text(max_size=200)))
@example(text="a: !!timestamp 2001-02-30")
@example(text="a: !!int abc")
@example(text="a: \x00")
@example(text="&a [*a, *a]")
def test_any_yaml_text_loads_or_raises_yamlerror(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    try:
        load_yaml(Path("fuzz.yaml"), text)
    except YamlError as exc:
        assert exc.location.file == "fuzz.yaml" and exc.location.line >= 1
        _clear(Exception(exc.message))
    _load(tmp_path_factory.mktemp("cfg"), text)


# -- output formats -----------------------------------------------------------------------------------------------

HOSTILE = st.one_of(
    st.text(max_size=80),
    st.sampled_from(["", "|", "a | b=1", "'", "''", "\"", "\\", "\n", "\r\n", "]]>", "<x>&amp;", "\x00\x1b[31m",
                     "# SKIP", "ok 1", "1..2", "\ufffe", "\u2028", "=", ";", "a=1;2;3", "}", "{", "\\n"]),
)
NAMES = st.text(st.characters(blacklist_categories=("Cs", "Zs", "Zl", "Zp", "Cc")), min_size=1, max_size=20).filter(
    lambda s: "/" not in s and "\\" not in s and not any(c.isspace() for c in s))


def _outcome(name: str, status: Status, summary: str, reason: str, labels: dict[str, str],
             measurements: list[tuple[str, float, str]]) -> Outcome:
    common = CommonFields(name=name, type="fuzz", labels=labels)
    spec = CheckSpec.build(common, None, Location("fuzz.yaml", 1, 1), {})
    unique = {n: (n, v, u) for n, v, u in measurements}
    result = Result(status, summary, reason, tuple(Measurement(n, v, u) for n, v, u in unique.values()))
    return Outcome(spec, result, 1_700_000_000.0, 0.125)


OUTCOMES = st.lists(
    st.builds(_outcome, NAMES, st.sampled_from(list(Status)), HOSTILE, HOSTILE,
              st.dictionaries(HOSTILE.filter(lambda k: k.strip() and not k.startswith("__")), HOSTILE.filter(str.strip),
                              max_size=3),  # as config allows: named labels, values not empty
              st.lists(st.tuples(HOSTILE.filter(bool), st.floats(allow_nan=False, allow_infinity=False),
                                 st.sampled_from(["s", "By", "1", "", "x y", "%"])), max_size=3)),
    min_size=1, max_size=4, unique_by=lambda o: o.name)


def _report(outcomes: list[Outcome]) -> Report:
    return Report([o.public() for o in outcomes], Status.worst(o.status for o in outcomes), "fuzz-host",
                  1_700_000_000.0, 0.5)


@FUZZ
@given(outcomes=OUTCOMES)
def test_every_format_renders_hostile_strings_well_formed(outcomes: list[Outcome]) -> None:
    report = _report(outcomes)
    for render in (render_human, render_json, render_junit, render_tap, render_nagios, render_prometheus):
        text = render(report)
        text.encode("utf-8")
    doc = json.loads(render_json(report))
    assert [c["name"] for c in doc["checks"]] == [o.name for o in outcomes]
    ET.fromstring(render_junit(report).encode("utf-8"))
    tap = render_tap(report).splitlines()
    points = [line for line in tap if line.startswith(("ok ", "not ok "))]
    assert tap[1] == f"1..{len(outcomes)}" and len(points) == len(outcomes)


@FUZZ
@given(outcomes=OUTCOMES)
def test_prometheus_output_parses_for_any_labels_and_names(outcomes: list[Outcome]) -> None:
    families = list(text_string_to_metric_families(render_prometheus(_report(outcomes))))
    status = next(f for f in families if f.name == "probe_check_status")
    assert sorted(s.labels["check_name"] for s in status.samples) == sorted(o.name for o in outcomes)


@FUZZ
@given(outcomes=OUTCOMES)
def test_nagios_output_is_one_status_line_whose_perfdata_parses_back(outcomes: list[Outcome]) -> None:
    line_break = re.compile("[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")  # become spaces in labels
    labels = [line_break.sub(" ", f"{o.name}::{m.name}") for o in outcomes for m in o.result.measurements]
    assume(len(labels) == len(set(labels)))
    report = _report(outcomes)
    text = render_nagios(report)
    lines = text.splitlines()
    assert lines[0].startswith(f"{report.status.name} - ")
    assert len(lines) == (1 if len(outcomes) == 1 else 1 + len(outcomes))
    parsed = perfdata.parse_output(text)
    assert parsed.perfdata.errors == ()
    assert [v.label for v in parsed.perfdata.values] == labels


# -- HTTP/1.1 responses -------------------------------------------------------------------------------------------


class _Replay:
    """A Stream stand-in that plays back a server's bytes in the given pieces, then EOF."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = list(pieces)
        self.arrived = 0.0  # no clock: the phases are not what these tests are about

    async def send(self, data: bytes) -> None:
        return None

    async def recv(self, size: int) -> bytes:
        return self.pieces.pop(0)[:size] if self.pieces else b""


def _http_exchange(pieces: list[bytes], max_body: int = 4096) -> Any:
    import asyncio

    from probe.checks.net.http1 import Hop, exchange

    return asyncio.run(exchange(Hop("http://fuzz.test/"), _Replay(pieces), "GET", "/", [("Host", "fuzz.test")], b"",
                                max_body))


HTTP_PIECES = st.lists(st.sampled_from([
    b"HTTP/1.1 200 OK\r\n", b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.0 \xb2\xb3 X\r\n", b"HTTP/1.1 \xb9 X\r\n",
    b"Content-Length: 5\r\n", b"Content-Length: \xb2\r\n", b"Content-Length: -1\r\n",
    b"Content-Length: 99999999999999999999\r\n", b"Transfer-Encoding: chunked\r\n", b"X: y\r\n", b"bad header\r\n",
    b"\r\n", b"hello", b"5\r\nhello\r\n", b"0\r\n\r\n", b"-5\r\n", b"zz\r\n", b"1_0\r\n", b"\x00\xff", b"\r\n\r\n",
]), max_size=12)


@FUZZ
@given(pieces=st.one_of(HTTP_PIECES, st.lists(st.binary(max_size=64), max_size=6)))
@example(pieces=[b"HTTP/1.1 \xb2\xb3\xb9 OK\r\n\r\n"])
@example(pieces=[b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\n"])
@example(pieces=[b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n"])
def test_http1_reader_returns_a_response_or_a_failure(pieces: list[bytes]) -> None:
    from probe.checks.net.conn import Failure

    try:
        response = _http_exchange(pieces)
    except Failure as exc:
        _clear(exc)
        return
    assert response.status >= 0 and len(response.body) <= 4096


# -- state restored from a damaged store ----------------------------------------------------------------------------

JSONISH = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-(10**30), 10**30), st.floats(),
                                 st.text(max_size=5)),
                       lambda inner: st.one_of(st.lists(inner, max_size=3),
                                               st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                       max_leaves=10)
STATE_KEYS = st.sampled_from(["interval", "failure_threshold", "success_threshold", "status", "hard_status",
                              "state_type", "reason", "failures", "successes", "history", "flapping", "last_run",
                              "last_change", "last_hard_change", "runs", "exhausted", "0", "1"])
SAVED = st.dictionaries(STATE_KEYS, JSONISH, max_size=8)


@FUZZ
@given(saved=SAVED, budgets=st.dictionaries(st.one_of(st.sampled_from(["0", "1"]), st.text(max_size=3)),
                                            st.one_of(SAVED, JSONISH), max_size=3))
@example(saved={}, budgets={"0": {"runs": None}})
@example(saved={}, budgets={"²": {}, "\u0661": {}, "0": {}})  # isdigit() is true for both; int("²") raises
@example(saved={}, budgets={"0": {"runs": [1e400, True, "x", 5.0], "exhausted": "no"}})
def test_state_and_budgets_from_a_damaged_store_never_raise(saved: dict[str, Any], budgets: dict[str, Any]) -> None:
    from probe.engine.state import CheckState
    from probe.sinks.remediation.remediator import Remediator

    state = CheckState.from_dict("restored", saved)
    json.dumps(state.to_dict())
    remediator = Remediator({})
    remediator.restore_budgets("restored", budgets)
    for budget in remediator.budgets["restored"].values():
        assert all(isinstance(t, float) and math.isfinite(t) for t in budget.runs)
        assert budget.exhausted in (True, False)
