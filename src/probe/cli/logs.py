"""Log output: human, logfmt or JSON lines on stderr, journald-aware, with secrets masked.

Structured fields travel in ``extra``: ``log.warning("check timed out", extra={"check": name, "reason": r})``
renders as ``... check=web reason=timeout`` (logfmt, human) or as JSON keys. Any ``extra`` key is a field;
:data:`FIELDS` lists the ones probe itself uses, so tools can rely on them.

``auto`` (the default) is ``human`` on a terminal and ``logfmt`` otherwise: one line per record that stays
readable in ``journalctl`` and ``kubectl logs`` and that Loki, Vector and ``jq``-less shells parse. When
stderr is the journal (``$JOURNAL_STREAM`` names it), lines carry no timestamp (the journal has one) and start
with a ``<N>`` syslog priority, which journald turns into the entry's priority (``journalctl -p warning``).

Every line, including tracebacks and field values, goes through the :class:`~probe.config.redact.Redactor` of the
loaded configuration's secrets (:func:`add_secrets`), so a secret that reaches a log message is masked.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

from probe.config.redact import Redactor

FORMATS = ("auto", "human", "logfmt", "json")
LEVELS = ("debug", "info", "warning", "error")
# The fields probe's own log records carry (as ``extra``), documented in docs/deployment.md.
FIELDS = ("check", "type", "reason", "status", "plugin", "blocked")

# syslog priorities for the <N> prefix journald reads (sd-daemon.h: SD_ERR, SD_WARNING...).
_PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6, logging.DEBUG: 7}
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The record's structured fields: whatever ``extra`` added to the standard attributes."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


_LOGFMT_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"})


def logfmt_value(value: object) -> str:
    """``value`` bare when it can be, else double-quoted with backslash escapes (one line, always)."""
    text = value if isinstance(value, str) else "" if value is None else json.dumps(value, default=str)
    if text and text.isprintable() and not any(c in text for c in ' ="\\'):
        return text
    return f'"{text.translate(_LOGFMT_ESCAPES)}"'


class Formatter(logging.Formatter):
    """One line per record (a traceback is folded into the ``exc`` field, except in ``human``)."""

    def __init__(self, style: str, *, journal: bool = False, redactor: Redactor | None = None) -> None:
        super().__init__()
        if style not in ("human", "logfmt", "json"):
            raise ValueError(f"unknown log format {style!r}; choose from {', '.join(FORMATS)}")
        self.style = style
        self.journal = journal
        self.redactor = Redactor() if redactor is None else redactor  # an empty one is falsy: keep it

    def format(self, record: logging.LogRecord) -> str:
        redact = self.redactor
        message = redact(record.getMessage())
        fields = {k: redact(v) if isinstance(v, str) else v for k, v in extra_fields(record).items()}
        exc = self.formatException(record.exc_info) if record.exc_info else record.exc_text or ""
        if record.stack_info:
            exc = (exc + "\n" + self.formatStack(record.stack_info)).strip()
        # Redacted before rendering, so that JSON or logfmt escaping cannot hide a secret from the mask.
        render = {"human": self._human, "logfmt": self._logfmt, "json": self._json}[self.style]
        line = render(record, message, fields, redact(exc))
        if self.journal:
            line = f"<{_priority(record.levelno)}>{line}"
        return line

    def _timestamp(self, record: logging.LogRecord) -> str:
        seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{seconds}.{int(record.msecs):03d}Z"

    def _human(self, record: logging.LogRecord, message: str, fields: dict[str, Any], exc: str) -> str:
        head = "" if self.journal else time.strftime("%H:%M:%S ", time.localtime(record.created))
        tail = "".join(f" {k}={logfmt_value(v)}" for k, v in fields.items())
        line = f"{head}{record.levelname} {record.name}: {message}{tail}"
        return f"{line}\n{exc}" if exc else line

    def _logfmt(self, record: logging.LogRecord, message: str, fields: dict[str, Any], exc: str) -> str:
        pairs: list[tuple[str, object]] = [] if self.journal else [("time", self._timestamp(record))]
        pairs += [("level", record.levelname.lower()), ("logger", record.name), ("msg", message)]
        pairs += [(k, v) for k, v in fields.items() if k not in ("time", "level", "logger", "msg")]
        if exc:
            pairs.append(("exc", exc))
        return " ".join(f"{k}={logfmt_value(v)}" for k, v in pairs)

    def _json(self, record: logging.LogRecord, message: str, fields: dict[str, Any], exc: str) -> str:
        doc: dict[str, Any] = {} if self.journal else {"time": self._timestamp(record)}
        doc |= {"level": record.levelname.lower(), "logger": record.name, "msg": message}
        doc |= {k: v for k, v in fields.items() if k not in doc}
        if exc:
            doc["exc"] = exc
        return json.dumps(doc, default=str, ensure_ascii=False)


def _priority(levelno: int) -> int:
    for level in sorted(_PRIORITY, reverse=True):
        if levelno >= level:
            return _PRIORITY[level]
    return 7


def is_journal(stream: TextIO, environ: Mapping[str, str]) -> bool:
    """True when ``stream`` is the journal's socket that systemd connected (``$JOURNAL_STREAM=dev:ino``)."""
    value = environ.get("JOURNAL_STREAM", "")
    if not value:
        return False
    try:
        dev, ino = (int(part) for part in value.split(":"))
        st = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


def echo_error(text: str, *, stream: TextIO | None = None, environ: Mapping[str, str] | None = None) -> None:
    """Write ``text`` (one or more lines) to stderr as errors: with the ``<3>`` priority prefix on each line
    when stderr is the journal, so ``journalctl -p err`` shows why a start failed (a plain line would be
    stored at journald's default, info)."""
    stream = sys.stderr if stream is None else stream
    environ = os.environ if environ is None else environ
    prefix = f"<{_PRIORITY[logging.ERROR]}>" if is_journal(stream, environ) else ""
    stream.write("".join(f"{prefix}{line}\n" for line in text.splitlines()))
    stream.flush()


def resolve_format(fmt: str, stream: TextIO) -> str:
    if fmt != "auto":
        return fmt
    try:
        tty = stream.isatty()
    except (ValueError, AttributeError):
        tty = False
    return "human" if tty else "logfmt"


_handler: logging.Handler | None = None
_redactor = Redactor()


def setup(level: str = "warning", fmt: str = "auto", *, stream: TextIO | None = None,
          environ: Mapping[str, str] | None = None) -> logging.Handler:
    """Send every log record at ``level`` or above to ``stream`` (stderr) in ``fmt``. Calling it again
    replaces the handler it installed before (and no other handler)."""
    global _handler
    if level.lower() not in LEVELS:
        raise ValueError(f"unknown log level {level!r}; choose from {', '.join(LEVELS)}")
    stream = sys.stderr if stream is None else stream
    environ = os.environ if environ is None else environ
    handler = logging.StreamHandler(stream)
    handler.setFormatter(Formatter(resolve_format(fmt, stream), journal=is_journal(stream, environ),
                                   redactor=_redactor))
    root = logging.getLogger()
    if _handler is not None and _handler in root.handlers:
        root.removeHandler(_handler)
    root.addHandler(handler)
    root.setLevel(level.upper())
    _handler = handler
    return handler


def add_secrets(secrets: Iterable[str]) -> None:
    """Mask these values in every line logged from now on (a loaded configuration's secrets). Secrets of a
    configuration replaced by a reload stay masked: a rotated password is still a password."""
    _redactor.add(secrets)  # every Formatter setup() made holds this one
