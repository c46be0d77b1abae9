"""Failure modes a plugin author meets, each with a message that names the plugin and says the fix."""

from __future__ import annotations

import time
import types
from typing import Any

import pytest
from pydantic import ConfigDict

import probe
from probe.engine.runner import Runner
from probe.plugins.manager import load_plugins
from probe.testing import build_spec


def plugin(name: str, **attrs: Any) -> types.ModuleType:
    module = types.ModuleType(name)
    for key, value in attrs.items():
        setattr(module, key, value)
    return module


class EchoCheck(probe.Check):
    type = "echo"

    class Options(probe.Options):
        value: Any = None
        """What run() returns."""

    def run(self, ctx: probe.Context) -> Any:
        return self.options.value


def registers(*classes: type) -> Any:
    @probe.hookimpl
    def register_checks(register: Any) -> None:
        for cls in classes:
            register(cls)

    return register_checks


def failures(*plugins: object) -> list[str]:
    registry = load_plugins(builtins=(), use_entry_points=False, extra=plugins)
    return [f.error for f in registry.failures]


def test_hookimpl_with_wrong_argument_names_names_plugin_hook_and_signature() -> None:
    @probe.hookimpl
    def register_checks(reg: Any) -> None:
        reg(EchoCheck)

    (error,) = failures(plugin("acme_probe", register_checks=register_checks))
    assert error == ("plugin 'acme_probe': register_checks(reg) takes 'reg', which probe does not pass; "
                     "the hook is def register_checks(register) (declare any subset of its arguments, by these names)")


def test_hookimpl_with_star_args_is_refused() -> None:
    @probe.hookimpl
    def check_result(*args: Any) -> None: ...

    (error,) = failures(plugin("acme_probe", check_result=check_result))
    assert "acme_probe" in error and "def check_result(check, result, state)" in error


def test_misspelled_hook_name_gets_a_did_you_mean() -> None:
    @probe.hookimpl
    def register_check(register: Any) -> None: ...

    (error,) = failures(plugin("acme_probe", register_check=register_check))
    assert "plugin 'acme_probe'" in error
    assert "register_check() implements no probe hook; did you mean 'register_checks'?" in error


def test_hook_without_the_decorator_is_reported() -> None:
    def register_checks(register: Any) -> None: ...

    register_checks.__module__ = "acme_probe"
    (error,) = failures(plugin("acme_probe", register_checks=register_checks))
    assert error == ("plugin 'acme_probe': register_checks() is not decorated with @probe.hookimpl, "
                     "so probe never calls it")


def test_a_subset_of_hook_arguments_is_fine() -> None:
    seen = []

    @probe.hookimpl
    def check_result(result: Any) -> None:
        seen.append(result)

    registry = load_plugins(builtins=(), use_entry_points=False,
                            extra=[plugin("acme_probe", check_result=check_result)])
    assert not registry.failures
    registry.manager.hook.check_result(check=None, result="r", state=None)
    assert seen == ["r"]


def test_options_that_allow_unknown_keys_are_refused_and_other_types_still_register() -> None:
    class Loose(probe.Check):
        type = "loose"

        class Options(probe.Options):
            model_config = ConfigDict(extra="allow", frozen=True)

        def run(self, ctx: probe.Context) -> probe.Result:
            return probe.Result.ok("")

    registry = load_plugins(builtins=(), use_entry_points=False,
                            extra=[plugin("acme_probe", register_checks=registers(Loose, EchoCheck))])
    (failure,) = registry.failures
    assert failure.plugin == "acme_probe"
    assert "plugin 'acme_probe'" in failure.error and "Loose.Options must reject unknown keys" in failure.error
    assert "extra='allow'" in failure.error
    assert list(registry.checks) == ["echo"]


def test_options_that_are_not_frozen_are_refused() -> None:
    class Mutable(probe.Check):
        type = "mutable"

        class Options(probe.Options):
            model_config = ConfigDict(extra="forbid", frozen=False)

        def run(self, ctx: probe.Context) -> probe.Result:
            return probe.Result.ok("")

    (error,) = failures(plugin("acme_probe", register_checks=registers(Mutable)))
    assert "Mutable.Options must be frozen (frozen=True" in error


def test_options_not_from_probe_options_and_missing_run_are_refused() -> None:
    from pydantic import BaseModel

    class Plain(probe.Check):
        type = "plain"
        Options = BaseModel  # type: ignore[assignment]

        def run(self, ctx: probe.Context) -> probe.Result:
            return probe.Result.ok("")

    class NoRun(probe.Check):
        type = "norun"

    errors = failures(plugin("acme_probe", register_checks=registers(Plain, NoRun, object)))
    assert any("Plain.Options must subclass probe.Options" in e for e in errors), errors
    assert any("NoRun does not implement run(self, ctx)" in e for e in errors), errors
    assert any("<class 'object'> is not a subclass of probe.Check" in e for e in errors), errors


def test_local_that_is_not_a_bool_is_refused_and_other_types_still_register() -> None:
    class Vague(probe.Check):
        type = "vague"
        local = "yes"  # type: ignore[assignment]

        def run(self, ctx: probe.Context) -> probe.Result:
            return probe.Result.ok("")

    class Sensors(probe.Check):
        type = "sensors"
        local = True

        def run(self, ctx: probe.Context) -> probe.Result:
            return probe.Result.ok("")

    registry = load_plugins(builtins=(), use_entry_points=False,
                            extra=[plugin("acme_probe", register_checks=registers(Vague, Sensors))])
    [failure] = registry.failures
    assert "Vague.local must be True or False (whether the type reads only this host), got 'yes'" in failure.error
    assert "sensors" in registry.checks and "vague" not in registry.checks


def test_two_plugins_with_one_type_name_name_both_and_fail_validation(tmp_path: Any) -> None:
    class Other(EchoCheck):
        pass

    registry = load_plugins(builtins=(), use_entry_points=False, extra=[
        plugin("acme_echo", register_checks=registers(EchoCheck)),
        plugin("other_echo", register_checks=registers(Other)),
    ])
    assert registry.conflicts == [
        "check type 'echo' is registered by both plugin 'acme_echo' and plugin 'other_echo'; "
        "uninstall one, or list only one in the plugins allow-list"]
    from probe.config.load import ConfigErrors

    with pytest.raises(ConfigErrors, match="both plugin 'acme_echo' and plugin 'other_echo'"):
        build_spec({"type": "echo"}, registry=registry)


def test_one_plugin_registering_a_type_twice_is_reported() -> None:
    class Again(EchoCheck):
        pass

    (error,) = failures(plugin("acme_probe", register_checks=registers(EchoCheck, Again)))
    assert error.startswith("plugin 'acme_probe' registers check type 'echo' twice, from ")
    assert "EchoCheck" in error and "Again" in error


def test_a_plugin_that_registers_nothing_says_so() -> None:
    (error,) = failures(plugin("acme_probe"))
    assert error == ("plugin 'acme_probe' implements no hook: decorate its register_checks (or another hook) "
                     "with @probe.hookimpl")


@pytest.mark.parametrize(("value", "message"), [
    ({"status": "ok"}, "returned LocatedDict, not probe.Result"),
    (None, "returned NoneType, not probe.Result; did run() forget to return?"),
    (probe.Result("ok", "x"), "returned a Result with invalid status 'ok'"),  # type: ignore[arg-type]
    (probe.Result(probe.Status.OK, "x", "", ("not a measurement",)),  # type: ignore[arg-type]
     "measurements are not probe.Measurement objects"),
])
async def test_a_check_returning_no_result_is_unknown_naming_plugin_and_type(value: Any, message: str) -> None:
    registry = load_plugins(builtins=(), use_entry_points=False,
                            extra=[plugin("acme_probe", register_checks=registers(EchoCheck))])
    runner = Runner(registry)
    spec = build_spec({"type": "echo", "value": value}, registry=registry)
    outcome = await runner.run(spec)
    assert outcome.status is probe.Status.UNKNOWN
    assert outcome.result.reason == "invalid_result"
    assert outcome.result.summary.startswith("check plugin 'acme_probe' (type 'echo') ")
    assert message in outcome.result.summary


async def test_a_result_with_a_list_of_measurements_is_accepted() -> None:
    registry = load_plugins(builtins=(), use_entry_points=False,
                            extra=[plugin("acme_probe", register_checks=registers(EchoCheck))])
    value = probe.Result(probe.Status.OK, "x", "", [probe.Measurement("duration", 1.0, "s")])  # type: ignore[arg-type]
    runner = Runner(registry)
    outcome = await runner.run(build_spec({"type": "echo", "value": value}, registry=registry))
    assert outcome.status is probe.Status.OK
    assert outcome.result.measurements == (probe.Measurement("duration", 1.0, "s"),)


async def test_a_crash_names_the_plugin() -> None:
    class Boom(EchoCheck):
        type = "boom"

        def run(self, ctx: probe.Context) -> Any:
            raise RuntimeError("no route to the moon")

    registry = load_plugins(builtins=(), use_entry_points=False,
                            extra=[plugin("acme_probe", register_checks=registers(Boom))])
    runner = Runner(registry)
    outcome = await runner.run(build_spec({"type": "boom"}, registry=registry))
    assert outcome.result.summary == "check plugin 'acme_probe' (type 'boom') raised RuntimeError: no route to the moon"
    assert outcome.result.reason == "plugin_error"


def test_builtins_pass_their_own_contract() -> None:
    registry = load_plugins(use_entry_points=False)
    assert not registry.failures and not registry.conflicts
    assert registry.owner("check type", "disk") == "probe.checks.disk"


class SlowToBuild(probe.Check):
    """A check whose constructor takes its time (importing a driver, loading a CA store)."""

    type = "slow_to_build"

    def __init__(self, name: str, options: probe.Options) -> None:
        super().__init__(name, options)
        time.sleep(0.3)

    async def run(self, ctx: probe.Context) -> probe.Result:
        return probe.Result.ok("built")


async def test_a_first_runs_duration_leaves_out_the_construction_of_the_check_object() -> None:
    """The first run builds the check object (``probe check``, ``probe.testing``; the daemon and ``--once``
    build them before the first run): its 300 ms are the plugin's set-up, not the target's time, and count
    neither in the duration nor against the timeout (a 200 ms timeout still leaves the run its time)."""
    registry = load_plugins(builtins=(), use_entry_points=False,
                            extra=[plugin("acme_probe", register_checks=registers(SlowToBuild))])
    outcome = await Runner(registry).run(build_spec({"type": "slow_to_build", "timeout": "200ms"}, registry=registry))
    assert outcome.status is probe.Status.OK, outcome.result.summary
    assert outcome.duration < 0.15
    assert outcome.result.measurement("duration").value == outcome.duration
