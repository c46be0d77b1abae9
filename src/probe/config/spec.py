"""The common fields every check has, and the validated form the scheduler and runner use."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from probe.conditions import parse_condition
from probe.config.settings import objective_problem
from probe.config.thresholds import Threshold
from probe.config.yamlsource import Location
from probe.model import Status
from probe.units import Duration, Ratio

if TYPE_CHECKING:
    from probe.check import Options


class ThresholdSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    warning: str | float | None = None
    critical: str | float | None = None
    clear: str | float | None = None

    @field_validator("warning", "critical", "clear")
    @classmethod
    def _parses(cls, value: object) -> object:
        if value is not None:
            parse_condition(value)
        return value


class RemediationSpec(BaseModel):
    """One ``remediate:`` entry (see docs/remediation.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    on: Literal["warning", "critical", "unknown", "problem", "recovery"]
    run: list[str] | None = Field(None, min_length=1)
    action: str = "run"
    options: dict[str, Any] = Field(default_factory=dict, alias="with")
    timeout: Duration = 60.0
    cooldown: Duration = 900.0
    max_runs: int = Field(3, ge=1)
    window: Duration = 6 * 3600.0
    run_as: str | None = None
    dry_run: bool = False

    @model_validator(mode="after")
    def _has_something_to_run(self) -> RemediationSpec:
        if self.action == "run" and not self.run:
            raise ValueError("needs 'run' (an argv list) or another 'action'")
        return self


DEFAULT_TIMEOUT = 10.0
DEFAULT_TIMEOUT_SHARE = 0.9


def _label_value(value: object) -> str:
    """A label value is one piece of text: ``version: 1.10`` stays "1.10" (PlainFloat keeps the spelling), a
    boolean is ``true``/``false``. A list or mapping is refused, not turned into "['web', 'ops']"; so is an
    empty value, which Prometheus reads as no label at all."""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        raise ValueError("a label value must be one value (text, a number or true/false), got nothing (null)")
    if isinstance(value, list | dict):
        kind = "a list" if isinstance(value, list) else "a mapping"
        raise ValueError(f"a label value must be one value (text, a number or true/false), got {kind}; labels "
                         "become metric attributes: use one label per dimension or join the values ('web+ops')")
    if isinstance(value, int | float):
        value = getattr(value, "text", None) or str(value)
    if isinstance(value, str) and not value.strip():
        raise ValueError("must not be empty: Prometheus reads an empty label as no label; remove the key")
    return value  # type: ignore[return-value]  # anything else is refused by the str type after this


def _label_key(key: str) -> str:
    """A label name: not empty, and not ``__``-prefixed (Prometheus keeps those for itself)."""
    if not key.strip():
        raise ValueError("a label needs a name")
    if key.startswith("__"):
        raise ValueError(f"label {key!r}: names starting with '__' are reserved by Prometheus")
    return key


LabelValue = Annotated[str, BeforeValidator(_label_value)]
LabelKey = Annotated[str, AfterValidator(_label_key)]


class CommonFields(BaseModel):
    """Fields every check has, whatever its type."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    name: str = Field(max_length=200)
    type: str
    interval: Duration = 60.0
    timeout: Duration = 10.0
    timeout_status: Literal["ok", "warning", "critical", "unknown"] = "critical"
    retry_interval: Duration | None = None
    failure_threshold: int = Field(3, ge=1)
    success_threshold: int = Field(1, ge=1)
    labels: dict[LabelKey, LabelValue] = Field(default_factory=dict)
    thresholds: dict[str, ThresholdSpec] = Field(default_factory=dict)
    # A list default is written as one: pydantic copies a mutable default for each instance, and
    # default_factory=list costs inspect.signature(list), which tokenizes list's text signature (3 ms at start).
    remediate: list[RemediationSpec] = []
    enabled: bool = True
    runbook: str | None = None
    """A URL telling whoever is paged what to do; in every output format, alert and report."""
    alert: bool = True
    """``false``: the check is recorded and remediated but never alerts."""
    depends_on: list[str] = []
    """Parent checks: while one is down (its latest result, soft or hard, a problem), this check's problems are
    marked ``suppressed_by`` it and neither alert nor remediate."""
    slo: Ratio | None = None
    """The availability objective (``99.9%``); probe.yaml's ``slo.objective`` when unset."""

    @field_validator("runbook")
    @classmethod
    def _runbook_is_a_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://\S+$", value):
            raise ValueError(f"expected an absolute URL (https://wiki.example.com/...), got {value!r}")
        return value

    @field_validator("slo")
    @classmethod
    def _objective(cls, value: float | None) -> float | None:
        return None if value is None else objective_problem(value)

    @field_validator("name")
    @classmethod
    def _name_is_a_word(cls, value: str) -> str:
        if not value:
            raise ValueError("must not be empty")
        if bad := sorted({c for c in value if c.isspace() or c in "/\\"}):
            raise ValueError(f"must not contain {' or '.join(repr(c) for c in bad)} (it names files and metrics)")
        return value

    def timeout_for(self) -> float:
        """The timeout written, else the smaller of 10 s and 90% of the interval: ``interval: 5s`` alone must
        not be refused over a default the user never wrote (an explicit ``timeout >= interval`` still is)."""
        if "timeout" in self.model_fields_set:
            return self.timeout
        return min(DEFAULT_TIMEOUT, self.interval * DEFAULT_TIMEOUT_SHARE)


COMMON_KEYS = frozenset(CommonFields.model_fields)


@dataclass(frozen=True)
class CheckSpec:
    """A fully validated check definition: common fields, the type's Options, and where it came from."""

    name: str
    type: str
    interval: float
    timeout: float
    timeout_status: Status
    retry_interval: float
    failure_threshold: int
    success_threshold: int
    labels: Mapping[str, str]
    thresholds: tuple[Threshold, ...]
    remediate: tuple[RemediationSpec, ...]
    enabled: bool
    options: Options
    location: Location
    raw_options: Mapping[str, Any] = field(default_factory=dict, compare=True, repr=False)
    runbook: str | None = None
    alert: bool = True
    depends_on: tuple[str, ...] = ()
    depends_on_at: tuple[Location, ...] = field(default=(), compare=False, repr=False)
    """Where each ``depends_on`` entry was written, for errors about names found only later."""
    slo: float | None = None  # the check's own objective; probe.yaml's slo.objective applies when None

    @classmethod
    def build(cls, common: CommonFields, options: Options, location: Location,
              raw_options: Mapping[str, Any], depends_on_at: tuple[Location, ...] = ()) -> CheckSpec:
        thresholds = tuple(
            Threshold(
                measurement,
                parse_condition(t.warning) if t.warning is not None else None,
                parse_condition(t.critical) if t.critical is not None else None,
                parse_condition(t.clear) if t.clear is not None else None,
            )
            for measurement, t in common.thresholds.items()
        )
        return cls(
            name=common.name,
            type=common.type,
            interval=common.interval,
            timeout=common.timeout_for(),
            timeout_status=Status.parse(common.timeout_status),
            retry_interval=common.retry_interval if common.retry_interval is not None else common.interval,
            failure_threshold=common.failure_threshold,
            success_threshold=common.success_threshold,
            labels=dict(common.labels),
            thresholds=thresholds,
            remediate=tuple(common.remediate),
            enabled=common.enabled,
            options=options,
            location=location,
            raw_options=raw_options,
            runbook=common.runbook,
            alert=common.alert,
            depends_on=tuple(common.depends_on),
            depends_on_at=depends_on_at,
            slo=common.slo,
        )
