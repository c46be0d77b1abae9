"""The Nagios perfdata parser: the guideline's examples, real plugins' quirks, and a property test."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probe.checks._perfdata import MAX_ITEMS, PerfValue, parse, parse_output


def one(text: str) -> PerfValue:
    result = parse(text)
    assert not result.errors, result.errors
    assert len(result.values) == 1
    return result.values[0]


@pytest.mark.parametrize(("text", "value", "unit"), [
    ("t=1.5s", 1.5, "s"),
    ("t=250ms", 0.25, "s"),
    ("t=40us", 40e-6, "s"),
    ("pct=85%", 0.85, "1"),
    ("b=512B", 512, "By"),
    ("b=2KB", 2048, "By"),
    ("b=3MB", 3 * 1024**2, "By"),
    ("b=1GB", 1024**3, "By"),
    ("b=1TB", 1024**4, "By"),
    ("b=1MiB", 1024**2, "By"),
    ("packets=12345c", 12345, ""),
    ("load=0.42", 0.42, ""),
    ("neg=-3", -3, ""),
    ("exp=1e3", 1000, ""),
    ("comma=0,5", 0.5, ""),
    ("power=230W", 230, "W"),
])
def test_units_are_converted_to_base_units(text: str, value: float, unit: str) -> None:
    item = one(text)
    assert item.value == pytest.approx(value)
    assert item.unit == unit


def test_warn_crit_min_max() -> None:
    item = one("time=0.3s;1;2;0;10")
    assert (item.warn, item.crit, item.min, item.max) == ("1", "2", 0.0, 10.0)
    item = one("/=2643MB;5948;5958;0;5968")
    assert item.max == 5968 * 1024**2
    item = one("x=1;;;;")
    assert (item.warn, item.crit, item.min, item.max) == ("", "", None, None)
    assert one("r=5;@10:20;~:30").crit == "~:30"


def test_quoted_labels_with_spaces_equals_and_escaped_quotes() -> None:
    result = parse("'my label'=1 'a=b'=2 'it''s'=3 '/var/log'=4MB")
    assert [v.label for v in result.values] == ["my label", "a=b", "it's", "/var/log"]
    assert result.errors == ()


def test_unknown_value_u_is_skipped_without_error() -> None:
    result = parse("a=U;1;2 b=3")
    assert [v.label for v in result.values] == ["b"]
    assert result.errors == ()


@pytest.mark.parametrize(("text", "error"), [
    ("=5", "empty label"),
    ("novalue=", "is not a number"),
    ("bad=abc", "'abc' is not a number"),
    ("weird=3%%", "unknown unit '%%'"),
    ("lonely", "is not label=value"),
    ("'open=1", "unterminated quoted label"),
    ("huge=1e400", "out of range"),
])
def test_malformed_items_are_reported_not_raised(text: str, error: str) -> None:
    result = parse(f"ok=1 {text} after=2")
    assert any(error in e for e in result.errors), result.errors
    labels = [v.label for v in result.values]
    assert labels[0] == "ok"
    if "unterminated" not in error:
        assert labels[-1] == "after"


def test_duplicates_keep_the_first() -> None:
    result = parse("a=1 a=2")
    assert [v.value for v in result.values] == [1]
    assert result.errors == ("duplicate label 'a'; the first value is kept",)


def test_item_count_is_bounded() -> None:
    result = parse(" ".join(f"m{i}=1" for i in range(MAX_ITEMS + 50)))
    assert len(result.values) == MAX_ITEMS
    assert result.errors[-1].startswith(f"more than {MAX_ITEMS}")


def test_output_without_perfdata() -> None:
    out = parse_output("PING OK - Packet loss = 0%\n")
    assert out.summary == "PING OK - Packet loss = 0%"
    assert out.perfdata.values == ()


def test_output_with_long_text_and_perfdata_on_later_lines() -> None:
    text = ("DISK OK - free space: / 3326 MB (56%); | /=2643MB;5948;5958;0;5968\n"
            "/ 15272 MB (77%);\n"
            "/boot 68 MB (69%); | /boot=68MB;88;93;0;98\n"
            "/home=69357MB;253404;253409;0;253414\n")
    out = parse_output(text)
    assert out.summary == "DISK OK - free space: / 3326 MB (56%);"
    assert out.long_text == "/ 15272 MB (77%);\n/boot 68 MB (69%);"
    assert [v.label for v in out.perfdata.values] == ["/", "/boot", "/home"]


def test_empty_output() -> None:
    assert parse_output("").summary == ""


labels = st.one_of(st.text(min_size=0, max_size=12), st.sampled_from(["a", "'q q'", "''", "'x''y'", "="]))
values = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), st.integers().map(str),
                   st.sampled_from(["U", "", "1e999", "-0", ".5", "5.", "1,5", "nan", "inf"]))
uoms = st.sampled_from(["", "s", "ms", "us", "%", "B", "KB", "MB", "GB", "TB", "c", "zz", "%%", "µs", "W"])
fields = st.lists(st.one_of(st.text(max_size=6), st.floats().map(repr)), max_size=6).map(";".join)
items = st.builds(lambda lb, v, u, f: f"{lb}={v}{u};{f}", labels, values, uoms, fields)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=300), st.lists(items, max_size=12).map(" ".join)))
def test_parse_never_raises_and_values_are_finite(text: str) -> None:
    result = parse(text)
    for item in result.values:
        assert item.label
        assert math.isfinite(item.value)
        assert item.min is None or math.isfinite(item.min)
        assert item.max is None or math.isfinite(item.max)
    for error in result.errors:
        assert isinstance(error, str) and error


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=500))
def test_parse_output_never_raises(text: str) -> None:
    out = parse_output(text)
    assert "\n" not in out.summary


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp")),
                                       min_size=1, max_size=10),
                       st.floats(min_value=-1e12, max_value=1e12, allow_nan=False), max_size=8))
def test_well_formed_perfdata_round_trips(data: dict[str, float]) -> None:
    text = " ".join("'" + label.replace("'", "''") + f"'={value!r}ms;1;2" for label, value in data.items())
    result = parse(text)
    assert result.errors == ()
    assert {v.label: v.value for v in result.values} == pytest.approx({k: v / 1000 for k, v in data.items()})
