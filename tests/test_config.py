"""Valid configs load into the Plan they mean: YAML 1.2 scalars, defaults, interpolation, thresholds."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from probe.config.load import ConfigError, ConfigErrors, load_plan
from probe.config.spec import CheckSpec
from probe.config.thresholds import hysteresis_problem, shadowed_warning
from probe.config.yamlsource import Location, load_yaml
from probe.model import Status
from probe.plugins.manager import load_plugins

REGISTRY = load_plugins(use_entry_points=False)


def plan_of(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> dict[str, CheckSpec]:
    path = tmp_path / "checks.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return {c.name: c for c in load_plan(path, REGISTRY, env=env or {}).checks}


@pytest.mark.parametrize(("text", "value"), [
    ("no", "no"), ("off", "off"), ("yes", "yes"), ("on", "on"), ("y", "y"), ("NO", "NO"),  # YAML 1.1 booleans
    ("010", "010"), ("0644", "0644"),  # YAML 1.1 octal
    ("10:20", "10:20"), ("1:30:00", "1:30:00"),  # YAML 1.1 sexagesimal numbers
    ("2026-01-01", "2026-01-01"),  # YAML 1.1 timestamps
    ("1_000", "1_000"), ("=", "="),
    ("true", True), ("False", False), ("~", None), ("null", None), ("", None),
    ("12", 12), ("-3", -3), ("0o17", 15), ("0x1F", 31), ("1.5", 1.5), ("1e3", 1000.0), (".5", 0.5),
])
def test_scalars_follow_the_yaml_1_2_core_schema(text: str, value: object) -> None:
    loaded = load_yaml(Path("x.yaml"), f"key: {text}\n")
    assert loaded == {"key": value}
    assert type(loaded["key"]) is not bool or isinstance(value, bool)


def test_yaml_1_1_surprises_do_not_bite_a_checks_file(tmp_path: Path) -> None:
    checks = plan_of(tmp_path, """
        checks:
          - name: mem
            type: memory
            labels: {country: no, zip: 010, version: 1.10, build: 1_000, on: call, release: 2026-01-01}
            thresholds:
              used: {warning: 10:20}  # bytes; on utilization (a ratio) 10:20 is refused
            remediate:
              - on: critical
                run: [/bin/true]
          - name: "007"
            type: memory
            enabled: no
          - name: 404
            type: memory
        """)
    mem = checks["mem"]
    assert dict(mem.labels) == {"country": "no", "zip": "010", "version": "1.10", "build": "1_000", "on": "call",
                                "release": "2026-01-01"}
    assert mem.remediate[0].on == "critical"  # YAML 1.1 would have made the key `on` the boolean true
    (threshold,) = mem.thresholds
    assert str(threshold.warning) == "10:20"  # YAML 1.1 would have made it the number 620
    assert threshold.evaluate(15) is Status.OK and threshold.evaluate(25) is Status.WARNING
    assert "007" not in checks  # `enabled: no` is false, as an operator means it
    assert checks["404"].name == "404"  # a plain number where a string is expected is read as written


def test_the_design_example_loads(tmp_path: Path) -> None:
    checks = plan_of(tmp_path, """
        defaults:
          interval: 30s
          labels: {team: web}
        checks:
          - name: root-disk
            type: disk
            path: /
            labels: {tier: system}
            thresholds:
              utilization: {warning: ">= 80%", critical: ">= 90%", clear: "< 85%"}
              time_to_full: {critical: "< 4h"}
            remediate:
              - on: critical
                run: [/usr/local/sbin/purge-old-logs, --days, "7"]
                timeout: 2m
                cooldown: 15m
                max_runs: 3
                window: 6h
        """)
    disk = checks["root-disk"]
    assert disk.interval == 30 and disk.timeout == 10 and disk.retry_interval == 30
    assert dict(disk.labels) == {"team": "web", "tier": "system"}  # labels merge key by key
    entry = disk.remediate[0]
    assert (entry.timeout, entry.cooldown, entry.window, entry.max_runs) == (120, 900, 21600, 3)
    utilization = next(t for t in disk.thresholds if t.measurement == "utilization")
    assert utilization.evaluate(0.87, previous=Status.CRITICAL) is Status.CRITICAL  # held back by clear
    assert utilization.evaluate(0.84, previous=Status.CRITICAL) is Status.WARNING


def test_merge_keys_let_checks_share_a_block(tmp_path: Path) -> None:
    checks = plan_of(tmp_path, """
        checks:
          - &mem
            name: mem
            type: memory
            interval: 20s
          - <<: *mem
            name: mem-fast
            interval: 5s
            timeout: 2s
        """)
    assert (checks["mem"].interval, checks["mem-fast"].interval, checks["mem-fast"].type) == (20, 5, "memory")


def test_interpolation_expands_env_defaults_files_and_dollars(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("s3cr3t\n")
    path = tmp_path / "checks.yaml"
    path.write_text(textwrap.dedent(f"""
        checks:
          - name: echo
            type: command
            run: [/bin/echo, "${{file:{secret}}}", "${{API_TOKEN}}"]
            labels:
              team: ${{TEAM}}
              tier: ${{TIER:-web}}
              empty: ${{EMPTY:-fallback}}
              price: $${{not expanded}}
        """))
    plan = load_plan(path, REGISTRY, env={"TEAM": "ops", "EMPTY": "", "API_TOKEN": "abc123"})
    (echo,) = plan.checks
    assert dict(echo.labels) == {"team": "ops", "tier": "web", "empty": "fallback", "price": "${not expanded}"}
    assert list(echo.options.run) == ["/bin/echo", "s3cr3t", "abc123"]
    assert {"s3cr3t", "abc123"} <= plan.secrets  # from a file, or from a variable named like a secret


def test_hysteresis_rules() -> None:
    assert hysteresis_problem(">= 80%", ">= 90%", "< 85%") is None
    assert hysteresis_problem(None, "< 3d", ">= 7d") is None
    assert hysteresis_problem(None, "10:20", "< 5") is None  # ranges are not judged
    assert "wrong way" in (hysteresis_problem(None, "> 2s", ">= 1s") or "")
    assert "holds nothing back" in (hysteresis_problem(None, "< 3d", "> 1d") or "")


def test_a_warning_that_critical_always_preempts_is_found() -> None:
    assert shadowed_warning(">= 80%", ">= 90%") is None
    assert shadowed_warning(">= 90", "> 90") is None  # 90 itself is a warning
    assert shadowed_warning("> 90", ">= 90") and shadowed_warning("> 90", "> 90")
    assert shadowed_warning("<= 5", "< 5") is None and shadowed_warning("< 5", "<= 5")
    assert shadowed_warning("< 1h", "< 4h") and shadowed_warning("< 4h", "< 1h") is None
    assert shadowed_warning(None, "< 4") is None and shadowed_warning("10:20", "> 5") is None
    assert shadowed_warning("> 5", "< 2") is None  # opposite directions: both can fire


def test_errors_sort_by_place_even_when_only_some_name_a_check() -> None:
    here = Location("a.yaml", 3, 1)
    errors = ConfigErrors([ConfigError(here, "web", "type", "b"), ConfigError(here, None, None, "a"),
                           ConfigError(Location("a.yaml", 1, 1), None, None, "c")])
    assert [e.message for e in errors.errors] == ["c", "a", "b"]
    assert str(errors).splitlines()[2] == "a.yaml:3:1: check 'web': type: b"


def test_a_disabled_check_is_validated_but_not_planned(tmp_path: Path) -> None:
    with pytest.raises(ConfigErrors, match="intervall"):
        plan_of(tmp_path, "checks: [{name: m, type: memory, enabled: false, intervall: 5s}]")
    assert plan_of(tmp_path, "checks: [{name: m, type: memory, enabled: false}]") == {}
