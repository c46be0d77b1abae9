"""``probe.engine.intake.admit``: where a result enters, each field is made safe once."""

from __future__ import annotations

from probe.config.redact import Redactor
from probe.engine.intake import SUMMARY_MAX, admit
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
