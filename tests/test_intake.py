"""``probe.engine.intake.admit``: where a result enters, each field is made safe once."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from probe.config.redact import Redactor
from probe.engine.intake import DETAIL_DEPTH, SUMMARY_MAX, admit
from probe.model import Measurement, Result, Status


def test_a_clean_result_is_the_same_object() -> None:
    result = Result(Status.OK, "fine", "", (Measurement("duration", 0.1, "s"), Measurement("rows", 3)), {"a": "b"})
    assert admit(result) is result


def test_measurement_names_lose_control_characters_and_secrets_whichever_measurement_carries_them() -> None:
    redact = Redactor({"hunter2-secret"})
    for bad in ("\x1b[2Jrows", "rows\x00", "hunter2-secret_rows"):
        result = Result(Status.OK, "fine", "", (Measurement("duration", 0.1, "s"), Measurement(bad, 3)))
        names = [m.name for m in admit(result, redact).measurements]
        assert names[0] == "duration", bad
        assert names[1] != bad and "\x1b" not in names[1] and "\x00" not in names[1], bad
        assert "hunter2-secret" not in names[1], bad


def test_the_summary_is_one_line_masked_then_capped() -> None:
    redact = Redactor({"hunter2-secret"})
    result = admit(Result(Status.CRITICAL, "bad\r\nline hunter2-secret" + "x" * 3000, "tim\x07eout"), redact)
    assert "\n" not in result.summary and "hunter2-secret" not in result.summary
    assert len(result.summary) == SUMMARY_MAX and result.summary.endswith("...")
    assert result.reason == "timeout"


_text = st.one_of(st.text(alphabet="ab é", max_size=4),  # mostly printable, so whole results often are
                  st.text(alphabet=st.sampled_from("ab \t\n\r\x00\x1b\u202e\x85é"), max_size=4))
_detail = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), _text, st.binary(max_size=3)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.tuples(inner, inner),
                            st.dictionaries(st.one_of(_text, st.integers()), inner, max_size=3)),
    max_leaves=12)


@given(summary=_text, reason=_text, name=_text.filter(bool), details=st.dictionaries(_text, _detail, max_size=4))
@settings(max_examples=400, deadline=None)
def test_admitting_without_secrets_takes_the_same_path_as_with_a_redactor_that_masks_nothing(
        summary: str, reason: str, name: str, details: dict[str, object]) -> None:
    """With no secrets a result that needs nothing made safe is passed through unexamined (the common case):
    what comes out is what the full walk, forced by a redactor that masks nothing, makes of it."""
    result = Result(Status.OK, summary, reason, (Measurement(name, 1.0),), details)
    fast, full = admit(result), admit(result, lambda text: text)
    assert (fast.summary, fast.reason, fast.measurements, fast.details) == \
        (full.summary, full.reason, full.measurements, full.details)
    assert (fast is result) == (full is result)


def test_details_nested_deeper_than_the_limit_are_cut_even_when_clean() -> None:
    nested: dict[str, object] = {"leaf": 1}
    for _ in range(DETAIL_DEPTH + 1):
        nested = {"n": nested}
    admitted = admit(Result(Status.OK, "fine", "", (), nested))
    assert "(nested too deep)" in repr(admitted.details)
