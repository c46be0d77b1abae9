"""Parsing of option values shared by several commands (labels, durations) and the did-you-mean hint."""

from __future__ import annotations

from collections.abc import Sequence

import click


def parse_labels(values: Sequence[str]) -> dict[str, str]:
    labels = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected k=v, got {value!r}", param_hint="--label")
        labels[key] = val
    return labels


def did_you_mean(name: str, known: Sequence[str]) -> str:
    """``; did you mean 'web'?`` or ``""``, for a usage error's message."""
    from probe.config.errors import did_you_mean as closest  # the one did-you-mean of config errors and the CLI

    close = closest(name, known)
    return f"; did you mean {close!r}?" if close else ""


def duration_option(text: str, name: str) -> float:
    from probe.units import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=name) from None
