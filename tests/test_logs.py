"""Log lines: formats, structured fields, journald, secrets."""

from __future__ import annotations

import io
import json
import logging
import os
import socket
from collections.abc import Iterator

import pytest
from conftest import REPO
from hostfs import probe_cli

from probe.cli import logs
from probe.config.redact import MASK


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:], root.level = handlers, level
    logs._redactor = logs.Redactor()


def record(msg: str = "check %s timed out", *args: object, level: int = logging.WARNING,
           exc: BaseException | None = None, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("probe.agent", level, __file__, 1, msg, args or ("web",),
                            (type(exc), exc, exc.__traceback__) if exc else None)
    rec.__dict__.update(extra)
    return rec


def test_logfmt_has_time_level_logger_message_and_the_extra_fields() -> None:
    line = logs.Formatter("logfmt").format(record(check="web", type="http", reason="timeout", blocked=1.25))
    assert line.startswith("time=20") and line.endswith("Z level=warning logger=probe.agent "
                                                           'msg="check web timed out" check=web type=http '
                                                           "reason=timeout blocked=1.25")


@pytest.mark.parametrize(("value", "rendered"), [
    ("plain", "plain"), ("two words", '"two words"'), ("", '""'), ("a=b", '"a=b"'), ('say "hi"', r'"say \"hi\""'),
    ("line\nbreak", r'"line\nbreak"'), ("back\\slash", r'"back\\slash"'), (None, '""'), (3, "3"), (True, "true"),
    (["a", 1], r'"[\"a\", 1]"'),
])
def test_logfmt_values_stay_on_one_line_and_parse_back(value: object, rendered: str) -> None:
    assert logs.logfmt_value(value) == rendered


def test_a_traceback_stays_one_logfmt_line() -> None:
    try:
        raise ValueError("bad value")
    except ValueError as exc:
        line = logs.Formatter("logfmt").format(record(exc=exc))
    assert "\n" not in line
    assert 'exc="Traceback (most recent call last):\\n' in line and "ValueError: bad value" in line


def test_json_lines_parse_with_fields_and_exception() -> None:
    try:
        raise KeyError("k")
    except KeyError as exc:
        line = logs.Formatter("json").format(record(exc=exc, check="db", status=2, labels={"team": "ops"}))
    doc = json.loads(line)
    assert doc["level"] == "warning" and doc["logger"] == "probe.agent" and doc["msg"] == "check web timed out"
    assert doc["check"] == "db" and doc["status"] == 2 and doc["labels"] == {"team": "ops"}
    assert doc["exc"].startswith("Traceback") and "KeyError: 'k'" in doc["exc"]
    assert doc["time"].endswith("Z")


def test_fields_never_override_the_core_keys() -> None:
    doc = json.loads(logs.Formatter("json").format(record(msg="real", args=(), level=logging.INFO)))
    assert doc["msg"] == "real" and doc["level"] == "info"


def test_human_is_time_level_logger_message_then_fields() -> None:
    line = logs.Formatter("human").format(record(check="web"))
    clock, rest = line.split(" ", 1)
    assert len(clock) == 8 and clock.count(":") == 2
    assert rest == "WARNING probe.agent: check web timed out check=web"


def test_unknown_format_and_level_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="unknown log format 'xml'; choose from auto, human, logfmt, json"):
        logs.Formatter("xml")
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        logs.setup("loud")


@pytest.mark.parametrize(("style", "expected"), [
    ("human", "<4>WARNING probe.agent: check web timed out"),
    ("logfmt", '<4>level=warning logger=probe.agent msg="check web timed out"'),
    ("json", '<4>{"level": "warning", "logger": "probe.agent", "msg": "check web timed out"}'),
])
def test_journal_lines_carry_a_priority_and_no_timestamp(style: str, expected: str) -> None:
    formatter = logs.Formatter(style, journal=True)
    assert formatter.format(record()) == expected  # journald stamps every entry itself


def test_journal_priorities_follow_the_level() -> None:
    formatter = logs.Formatter("logfmt", journal=True)
    assert formatter.format(record(level=logging.ERROR)).startswith("<3>")
    assert formatter.format(record(level=logging.INFO)).startswith("<6>")
    assert formatter.format(record(level=logging.DEBUG)).startswith("<7>")
    assert formatter.format(record(level=logging.CRITICAL)).startswith("<2>")


def test_the_journal_is_recognised_by_the_device_and_inode_of_stderr() -> None:
    """systemd connects stderr to a journald socket and names it in $JOURNAL_STREAM=dev:ino."""
    journal, other = socket.socketpair()
    with journal, other, journal.makefile("w") as stream, other.makefile("w") as elsewhere:
        st = os.fstat(stream.fileno())
        env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        assert logs.is_journal(stream, env)
        # Inherited by a child whose stderr went elsewhere (a pipe, a file): not the journal.
        assert not logs.is_journal(elsewhere, env)
        assert not logs.is_journal(stream, {})
        assert not logs.is_journal(stream, {"JOURNAL_STREAM": "garbage"})
        assert not logs.is_journal(io.StringIO(), env)


def test_auto_is_human_on_a_terminal_and_logfmt_otherwise() -> None:
    primary, secondary = os.openpty()
    with os.fdopen(secondary, "w") as tty, os.fdopen(primary, "rb", buffering=0):
        assert logs.resolve_format("auto", tty) == "human"
        assert logs.resolve_format("json", tty) == "json"
    read, write = os.pipe()
    with os.fdopen(write, "w") as pipe, os.fdopen(read):
        assert logs.resolve_format("auto", pipe) == "logfmt"
    assert logs.resolve_format("auto", io.StringIO()) == "logfmt"


def test_setup_replaces_its_own_handler_and_leaves_others(restore_root: None) -> None:
    root = logging.getLogger()
    foreign = logging.NullHandler()
    root.addHandler(foreign)
    first, second = io.StringIO(), io.StringIO()
    logs.setup("info", "json", stream=first, environ={})
    logs.setup("debug", "logfmt", stream=second, environ={})
    logging.getLogger("probe.test").debug("hello", extra={"check": "x"})
    assert first.getvalue() == ""
    assert "level=debug logger=probe.test msg=hello check=x" in second.getvalue()
    assert foreign in root.handlers and root.level == logging.DEBUG


def test_secrets_are_masked_in_message_fields_and_tracebacks(restore_root: None) -> None:
    secret = 'pa"ss\\word'  # JSON and logfmt escape it: the mask must apply before escaping
    out = io.StringIO()
    for style in ("json", "logfmt", "human"):
        logs.setup("info", style, stream=out, environ={})
        logs.add_secrets([secret])
        try:
            raise RuntimeError(f"login with {secret} refused")
        except RuntimeError:
            logging.getLogger("probe.test").exception("dsn=%s", f"postgres://u:{secret}@db", extra={"url": secret})
    text = out.getvalue()
    for form in (secret, json.dumps(secret)[1:-1], logs.logfmt_value(secret)[1:-1], "ss\\word", 'ss\\\\word'):
        assert form not in text, (form, text)
    assert text.count(MASK) >= 9


def test_cli_log_format_and_level_options() -> None:
    local = REPO / "checks.d" / "local.yaml"
    proc = probe_cli("--log-format", "json", "--log-level", "debug", "--config-dir", local, "run", "--once")
    docs = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    assert docs and all({"time", "level", "logger", "msg"} <= set(d) for d in docs), proc.stderr
    proc = probe_cli("--config-dir", local, "run", "--once", env={"PROBE_LOG_FORMAT": "logfmt",
                                                                    "PROBE_LOG_LEVEL": "debug"})
    assert "level=debug logger=" in proc.stderr, proc.stderr
    bad = probe_cli("--log-format", "xml", "validate")
    assert bad.returncode == 64 and "'xml' is not one of 'auto', 'human', 'logfmt', 'json'" in bad.stderr

