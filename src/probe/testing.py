"""Helpers for a plugin author's own pytest suite: the real config validation, the real runner, clear asserts.

::

    from probe.testing import assert_result, run_check, temporary_plugin

    async def test_ping(redis_url):
        outcome = await run_check({"type": "redis", "url": redis_url,
                                   "thresholds": {"duration": {"critical": "> 1s"}}})
        assert_result(outcome, "ok", measurements=["duration"])

Nothing here fakes the core: a config dict goes through the same validation as a checks.d file (so a
bad option fails the way a user would see it), and the run goes through ``probe.engine.runner.Runner`` (timeout,
exception containment, thresholds). ``temporary_plugin`` registers classes or modules for the duration of
a ``with`` block, so a test needs no installed entry point.

What comes back is public and stable (docs/plugins/compatibility.md): a :class:`CheckConfig` for a validated
definition, a :class:`probe.model.CheckRun` for a run. This module is the one public module that reaches into
probe's internals, so that a plugin's tests never have to.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import types
from collections.abc import Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from probe.actions import Action, ActionContext, ActionResult, action_env
from probe.check import Check, Options
from probe.config.spec import CheckSpec
from probe.engine.runner import Runner
from probe.hookspecs import ActionRegistrar, CheckRegistrar, hookimpl
from probe.model import CheckRun, Result, Status
from probe.plugins.manager import Registry, load_plugins

__all__ = [
    "CheckConfig",
    "PluginLoadError",
    "assert_result",
    "build_spec",
    "load_registry",
    "run_action",
    "run_check",
    "run_check_sync",
    "temporary_plugin",
    "validate_file",
]

_ACTIVE: ContextVar[Registry | None] = ContextVar("probe_testing_registry", default=None)


class PluginLoadError(AssertionError):
    """A plugin under test failed to load or conflicts with another; the message says which and why."""


@dataclass(frozen=True)
class CheckConfig:
    """One validated check definition, as a plugin's tests see it: pass it to :func:`run_check`.

    ``options`` is the check type's validated Options instance; ``actions`` the action type of each
    ``remediate`` entry, in order; ``thresholds`` the measurements that have a threshold.
    """

    name: str
    type: str
    labels: Mapping[str, str]
    interval: float
    timeout: float
    options: Options
    thresholds: tuple[str, ...] = ()
    actions: tuple[str, ...] = ()
    _spec: CheckSpec | None = field(default=None, repr=False, compare=False)

    @classmethod
    def _of(cls, spec: CheckSpec) -> CheckConfig:
        return cls(spec.name, spec.type, spec.labels, spec.interval, spec.timeout, spec.options,
                   tuple(t.measurement for t in spec.thresholds), tuple(r.action for r in spec.remediate), spec)


def load_registry(*plugins: object, entry_points: bool = True) -> Registry:
    """Built-ins, installed entry points (unless ``entry_points=False``) and ``plugins``.

    ``plugins`` may be plugin modules, or Check / Action subclasses (wrapped in a plugin for you).
    Raises PluginLoadError when any of them fails to load, or when any check type is claimed twice.
    """
    extra = [_as_plugin(p) for p in plugins]
    registry = load_plugins(use_entry_points=entry_points, extra=extra)
    ours = {getattr(p, "__name__", "") for p in extra}
    failures = [f for f in registry.failures if f.plugin in ours or not extra]
    problems = [f"plugin {f.plugin!r} failed to load: {f.error}" for f in failures] + list(registry.conflicts)
    if problems:
        raise PluginLoadError("\n".join(problems))
    return registry


@contextlib.contextmanager
def temporary_plugin(*plugins: object, entry_points: bool = False) -> Iterator[Registry]:
    """Register ``plugins`` (modules or Check/Action classes) until the ``with`` block ends.

    Inside the block ``build_spec``/``run_check``/``run_action`` use this registry by default. Installed
    entry points are left out unless ``entry_points=True``, so a test sees exactly what it registered.
    """
    registry = load_registry(*plugins, entry_points=entry_points)
    token = _ACTIVE.set(registry)
    try:
        yield registry
    finally:
        _ACTIVE.reset(token)


def build_spec(config: Mapping[str, Any], *, registry: Registry | None = None,
               env: Mapping[str, str] | None = None) -> CheckConfig:
    """Validate one check definition exactly as a ``checks.d`` entry; raise ``ConfigErrors`` if it is bad.

    ``name`` defaults to ``test-<type>``; ``${VAR}`` references are expanded from ``env`` (default: none).
    """
    from probe.config.checkfile import load_check
    from probe.config.interpolation import Interpolator
    from probe.config.load import ConfigError, ConfigErrors
    from probe.config.yamlsource import Location

    registry = _registry(registry)
    item = dict(config)
    if isinstance(item.get("type"), str):
        item.setdefault("name", f"test-{item['type']}")
    where = Location("<probe.testing>", 1, 1)
    loaded = load_check(item, {}, where, Path("<probe.testing>"), registry, Interpolator(dict(env or {}), set()))
    errors = [e for e in loaded if isinstance(e, ConfigError)]
    errors += [ConfigError(where, None, None, c) for c in registry.conflicts]
    if errors:
        raise ConfigErrors(errors)
    (spec,) = loaded
    assert isinstance(spec, CheckSpec)
    return CheckConfig._of(spec)


def validate_file(path: str | Path, *, registry: Registry | None = None,
                  env: Mapping[str, str] | None = None) -> tuple[CheckConfig, ...]:
    """Validate a checks.d file (an example you ship) as ``probe validate`` would; raise ``ConfigErrors``."""
    from probe.config.load import load_plan

    plan = load_plan(Path(path), _registry(registry), env=dict(env or {}))
    return tuple(CheckConfig._of(spec) for spec in plan.checks)


async def run_check(config: Mapping[str, Any] | CheckConfig, *, registry: Registry | None = None,
                    levels: Mapping[str, Status] | None = None,
                    env: Mapping[str, str] | None = None) -> CheckRun:
    """Run one check once through the real runner; return the run (``result`` after thresholds).

    Also holds the plugin to its declaration: a measurement the check type does not list in
    ``measurements`` fails the test, since no user could put a threshold on it.
    """
    registry = _registry(registry)
    checked = config if isinstance(config, CheckConfig) else build_spec(config, registry=registry, env=env)
    assert checked._spec is not None, "a CheckConfig comes from build_spec or validate_file"
    from probe.config.redact import Redactor, secret_values

    runner = Runner(registry, redact=Redactor(secret_values(checked._spec.options)))
    run = (await runner.run(checked._spec, levels)).public()
    cls = registry.check_type(run.type)
    if cls is not None:
        _check_declared(cls, run)
    return run


def run_check_sync(config: Mapping[str, Any] | CheckConfig, **kwargs: Any) -> CheckRun:
    """``run_check`` for a test that is not async."""
    return asyncio.run(run_check(config, **kwargs))


async def run_action(action: str, options: Mapping[str, Any], *, result: Result | None = None,
                     check: str = "test", status: Status = Status.CRITICAL, previous: Status = Status.OK,
                     timeout: float = 30.0, registry: Registry | None = None) -> ActionResult:
    """Validate ``options`` as a ``remediate: [{action: NAME, with: ...}]`` entry would and run the action once."""
    registry = _registry(registry)
    cls = registry.action_type(action)
    if cls is None:
        raise PluginLoadError(f"no action type {action!r} is registered; "
                              f"registered: {', '.join(registry.action_type_names())}")
    instance: Action = cls(cls.Options.model_validate(dict(options)))
    result = result or Result(status, f"{check} is {status.label}", "test")
    ctx = ActionContext(check, status, previous, result, timeout, action_env(check, status, previous, result),
                        logging.getLogger(f"probe.action.{action}"))
    return await asyncio.wait_for(instance.run(ctx), timeout + 10.0)


def assert_result(subject: CheckRun | Result, status: Status | str | None = None, *, reason: str | None = None,
                  summary_contains: str | None = None, measurements: Iterable[str] = (),
                  units: Mapping[str, str] | None = None) -> Result:
    """Assert on a Result (or a run's final result) and return it; failures show the whole result."""
    result = subject.result if isinstance(subject, CheckRun) else subject
    if not isinstance(result, Result):
        raise AssertionError(f"expected a probe.Result, got {type(result).__name__}: {result!r}")
    shown = _show(result)
    problems = []
    if status is not None:
        want = Status.parse(status) if isinstance(status, str) else status
        if result.status is not want:
            problems.append(f"status is {result.status.label}, expected {want.label}")
    if reason is not None and result.reason != reason:
        problems.append(f"reason is {result.reason!r}, expected {reason!r}")
    if summary_contains is not None and summary_contains not in result.summary:
        problems.append(f"summary does not contain {summary_contains!r}")
    if "\n" in result.summary:
        problems.append("summary must be one line")
    names = {m.name for m in result.measurements}
    problems += [f"no measurement {n!r}" for n in measurements if n not in names]
    for name, unit in (units or {}).items():
        m = result.measurement(name)
        if m is not None and m.unit != unit:
            problems.append(f"measurement {name!r} has unit {m.unit!r}, expected {unit!r}")
    if problems:
        raise AssertionError("; ".join(problems) + f"\n  result: {shown}")
    return result


def _registry(registry: Registry | None) -> Registry:
    if registry is not None:
        return registry
    return _ACTIVE.get() or load_registry()


def _check_declared(cls: type[Check[Any]], run: CheckRun) -> None:
    declared = cls.measurements
    raw = run.plugin_result
    if declared is None or raw is None:
        return
    undeclared = sorted({m.name for m in raw.measurements} - set(declared))
    if undeclared:
        raise AssertionError(
            f"check type {cls.type!r} ({cls.__module__}.{cls.__qualname__}) reported "
            f"{', '.join(repr(n) for n in undeclared)} but does not list it in `measurements`, so no threshold "
            f"could name it; declared: {', '.join(sorted(declared))}")


def _show(result: Result) -> str:
    ms = ", ".join(f"{m.name}={m.value!r}{m.unit and ' ' + m.unit}" for m in result.measurements)
    return f"{result.status.label} {result.summary!r} reason={result.reason!r} measurements=[{ms}]"


def _as_plugin(obj: object) -> object:
    """A module is a plugin already; Check and Action classes get one made for them."""
    if isinstance(obj, types.ModuleType):
        return obj
    classes = obj if isinstance(obj, list | tuple) else [obj]
    checks = [c for c in classes if isinstance(c, type) and issubclass(c, Check)]
    actions = [c for c in classes if isinstance(c, type) and issubclass(c, Action)]
    others = [c for c in classes if c not in checks and c not in actions]
    if others:
        raise TypeError(f"temporary_plugin takes plugin modules or Check/Action subclasses, not {others!r}")
    first = classes[0]
    module = types.ModuleType(f"test-plugin:{getattr(first, '__module__', '')}.{getattr(first, '__qualname__', '')}")

    def register_checks(register: CheckRegistrar) -> None:
        for cls in checks:
            register(cls)

    def register_actions(register: ActionRegistrar) -> None:
        for cls in actions:
            register(cls)

    module.register_checks = hookimpl(register_checks)  # type: ignore[attr-defined]
    module.register_actions = hookimpl(register_actions)  # type: ignore[attr-defined]
    return module
