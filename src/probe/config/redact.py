"""Secrets never leave the process: every output path runs text through a Redactor."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from probe.model import CheckInfo

if TYPE_CHECKING:
    from probe.config.spec import CheckSpec

MASK = "********"
MIN_CUT = 3
"""A secret's first characters before an ellipsis (``tok0123...``) are masked from this many on: a length cap
that cut a secret in two must not leak its start."""
MIN_TAIL = 6
"""...and at the very end of a text (a cap without an ellipsis), from this many, so a short ending that merely
looks like a secret's start (``200``) stays readable."""
_ELLIPSES = ("...", "\u2026")


class Redactor:
    """Masks every secret, and every form a secret takes once encoded: escaped for JSON, XML, TAP, Prometheus
    labels or a Python repr, URL-encoded, base64 (alone or inside ``user:password``), whitespace-collapsed or
    stripped of control characters, or cut short by a length cap. Outputs mask values before encoding them;
    the encoded forms are the second line of defence, for text rendered before anyone masked it."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._state = _State(_longest_first(secrets))

    @property
    def secrets(self) -> list[str]:
        return self._state.secrets

    def add(self, secrets: Iterable[str]) -> None:
        """Mask these as well from now on (a reloaded configuration's); the earlier ones stay masked: a
        rotated password is still a password. Safe while other threads redact (one attribute swap)."""
        self._state = _State(_longest_first([*self._state.secrets, *secrets]))

    def __call__(self, text: str) -> str:
        state = self._state
        if not state.forms or text in state.clean:
            return text
        original = text
        for form in state.forms:  # str's own search, longest first: cheaper than one regex alternation
            if form in text:
                text = text.replace(form, MASK)
        text = _mask_cut(text, state.secrets)
        if text == original and len(text) <= 64:  # names and keys come back every run: remember them
            if len(state.clean) >= 4096:
                state.clean.clear()
            state.clean.add(text)
        return text

    def __bool__(self) -> bool:
        return bool(self._state.secrets)


class _State:
    """The secrets and all their forms, swapped whole by ``Redactor.add``."""

    def __init__(self, secrets: list[str]) -> None:
        self.secrets = secrets
        forms = {form for secret in secrets for form in encoded_forms(secret)}
        self.forms = sorted(forms, key=len, reverse=True)  # longest first: a secret containing another goes whole
        self.clean: set[str] = set()


def encoded_forms(secret: str) -> set[str]:
    """``secret`` and what the outputs (and the peers they quote) turn it into."""
    import base64
    import html
    import json
    from urllib.parse import quote, quote_plus

    forms = {
        secret,
        " ".join(secret.split()),
        _CONTROLS.sub("", secret),
        repr(secret)[1:-1],
        repr(secret.encode("utf-8", "surrogatepass"))[2:-1],  # a peer's bytes quoted as received
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        html.escape(secret),
        html.escape(secret, quote=False),
        html.escape(secret, quote=False).replace('"', "&quot;"),
        secret.replace("\\", "\\\\").replace("#", "\\#"),  # TAP
        secret.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"'),  # Prometheus labels
        secret.replace("|", "/"),  # Nagios text (and a plugin keeping to its rules)
        secret.replace("|", "/").replace("'", "''"),  # Nagios perfdata labels
        quote(secret, safe=""),
        quote(secret, safe="").lower(),
        quote(secret),
        quote_plus(secret),
    }
    raw = secret.encode("utf-8", "surrogatepass")
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        for offset in range(3):
            # The characters that depend on the secret's bytes alone, wherever it sits in the encoded data
            # (``Basic base64(user:password)``): for each of the three alignments in a 3-byte group.
            encoded = encode(bytes(offset) + raw).decode("ascii")
            forms.add(encoded[-(-8 * offset // 6):8 * (offset + len(raw)) // 6])
    return {form for form in forms if len(form) >= 4 or form == secret}


def _mask_cut(text: str, secrets: list[str]) -> str:
    """Mask a secret's start that a length cap cut off: before an ellipsis, or ending the text."""
    cuts = [i for mark in _ELLIPSES if mark in text for i in _find_all(text, mark)]
    spans = []
    for end in (*cuts, len(text)):
        shortest = MIN_CUT if end < len(text) else MIN_TAIL
        if end < shortest:
            continue
        tail = text[end - shortest:end]
        for secret in secrets:
            if tail not in secret:  # a cut secret's start ends here only if these characters are in it
                continue
            start = _cut_start(text, end, secret, shortest)
            if start is not None:
                spans.append((start, end))
                break
    for start, end in sorted(spans, reverse=True):
        text = text[:start] + MASK + text[end:]
    return text


def _cut_start(text: str, end: int, secret: str, shortest: int) -> int | None:
    """Where the longest proper prefix of ``secret`` (at least ``shortest`` long) that ends at ``end`` starts."""
    start = max(0, end - len(secret) + 1)
    while True:
        start = text.find(secret[0], start, end - shortest + 1)
        if start < 0:
            return None
        if secret.startswith(text[start:end]):
            return start
        start += 1


def _find_all(text: str, mark: str) -> list[int]:
    found, at = [], text.find(mark)
    while at >= 0:
        found.append(at)
        at = text.find(mark, at + len(mark))
    return found


_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f]")


def _longest_first(secrets: Iterable[str]) -> list[str]:
    # Longest first, so a secret containing another is masked whole.
    return sorted({s for s in secrets if s and len(s) >= 3}, key=len, reverse=True)


@functools.lru_cache(maxsize=8)
def redactor_for(secrets: frozenset[str]) -> Redactor:
    """One Redactor per set of secrets (a plan's), built once rather than per result. Shared: never ``add``
    to one."""
    return Redactor(secrets)


_CREDENTIAL_FIELD = re.compile(r"(^|_)pass(word|wd|phrase)?$|(^|_)token$|secret|api_?key$|credential",
                               re.IGNORECASE)
"""Option names whose value is a credential however it was written (typed into the YAML or interpolated)."""
_CREDENTIAL_HEADER = re.compile(r"^(proxy-)?authorization$|^cookie$|token|api[-_]?key|secret", re.IGNORECASE)
"""Header names (in any mapping option) whose value is a credential."""
_AUTH_SCHEME = re.compile(r"^\s*(basic|bearer|token|digest)\s+(\S+)", re.IGNORECASE)


def secret_values(value: object) -> set[str]:
    """Every secret in a check's options: each ``SecretStr``, each option named like a credential
    (``password``, ``bearer_token``, ``api_key``), each credential header (``Authorization``, ``Cookie``,
    ``X-Api-Key``) and the token and ``user:password`` inside an ``Authorization`` value. A password typed into
    the YAML is as secret as one read with ``${file:...}``, so output layers mask it too."""
    from pydantic import BaseModel, SecretBytes, SecretStr  # here: logging (this module) must not need pydantic

    found: set[str] = set()
    if isinstance(value, SecretStr):
        found.add(value.get_secret_value())
    elif isinstance(value, SecretBytes):
        found.add(value.get_secret_value().decode("utf-8", "replace"))
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            item = getattr(value, name, None)
            found |= _credential(item) if isinstance(item, str) and _CREDENTIAL_FIELD.search(name) else set()
            found |= secret_values(item)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(item, str) and isinstance(key, str) and _CREDENTIAL_HEADER.search(key):
                found |= _credential(item)
            found |= secret_values(item)
    elif isinstance(value, list | tuple):
        for item in value:
            found |= secret_values(item)
    elif isinstance(value, str) and "://" in value and "@" in value:
        found |= _url_password(value)
    return found


def _url_password(text: str) -> set[str]:
    """The password of a URL's ``user:password@``, as written (percent-encoded) and decoded."""
    from urllib.parse import unquote, urlsplit

    try:
        password = urlsplit(text.strip()).password
    except ValueError:
        return set()
    return {password, unquote(password)} if password else set()


def _credential(text: str) -> set[str]:
    """The value, and for ``Basic <base64>`` / ``Bearer <token>`` the token and the decoded ``user:password``
    and password alone (what a peer echoing the header would show once decoded)."""
    import base64
    import binascii

    found = {text}
    scheme = _AUTH_SCHEME.match(text)
    if scheme is None:
        return found
    token = scheme.group(2)
    found.add(token)
    if scheme.group(1).lower() == "basic":
        try:
            pair = base64.b64decode(token, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return found
        found.add(pair)
        found.add(pair.partition(":")[2])
    return found


def check_info(spec: CheckSpec, redact: Callable[[str], str]) -> CheckInfo:
    """The ``check_result`` hook's view of ``spec``: its options as plain data, every secret masked."""
    dump = getattr(spec.options, "model_dump", None)
    options = dump(mode="json") if callable(dump) else {}
    return CheckInfo(spec.name, spec.type, dict(spec.labels), spec.interval, spec.timeout, _masked(options, redact))


def _masked(value: Any, redact: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _masked(v, redact) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v, redact) for v in value]
    return value
