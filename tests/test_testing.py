"""probe.testing: the helpers plugin authors use, exercised the way an author would."""

from __future__ import annotations

import asyncio
import sys
import types
from typing import Any

import pytest

import probe
from probe.actions import Action, ActionContext, ActionResult
from probe.config.load import ConfigErrors
from probe.testing import (
    PluginLoadError,
    assert_result,
    build_spec,
    load_registry,
    run_action,
    run_check,
    run_check_sync,
    temporary_plugin,
)


class SleepCheck(probe.Check):
    type = "sleep"
    measurements = frozenset({"duration", "slept"})

    class Options(probe.Options):
        seconds: float = 0.0
        """How long to sleep."""
        extra_measurement: str = ""
        """Report this undeclared measurement too (a plugin bug)."""

    async def run(self, ctx: probe.Context) -> probe.Result:
        await asyncio.sleep(self.options.seconds)
        extra = [probe.Measurement(self.options.extra_measurement, 1.0)] if self.options.extra_measurement else []
        return probe.Result.ok(f"slept {self.options.seconds}s",
                               probe.Measurement("slept", self.options.seconds, "s"), *extra)


class EchoAction(Action):
    name = "echo"

    class Options(probe.Options):
        word: str
        """Echoed back."""

    async def run(self, ctx: ActionContext) -> ActionResult:
        return ActionResult(True, f"{self.options.word} for {ctx.check} {ctx.env['PROBE_STATUS']}")


async def test_run_check_goes_through_config_validation_runner_and_thresholds() -> None:
    with temporary_plugin(SleepCheck):
        outcome = await run_check({"type": "sleep", "seconds": 0.01,
                                   "thresholds": {"slept": {"warning": ">= 0s"}}})
    assert_result(outcome, "warning", reason="threshold", summary_contains="slept",
                  measurements=["slept", "duration"], units={"slept": "s"})
    assert_result(outcome.plugin_result, probe.Status.OK)  # type: ignore[arg-type]
    assert outcome.name == "test-sleep" and outcome.type == "sleep"


async def test_the_runner_owns_the_timeout() -> None:
    with temporary_plugin(SleepCheck):
        outcome = await run_check({"type": "sleep", "seconds": 30, "timeout": "100ms"})
    assert_result(outcome, "critical", reason="timeout", summary_contains="timed out after")


def test_bad_options_fail_as_a_user_would_see_them() -> None:
    with temporary_plugin(SleepCheck), pytest.raises(ConfigErrors) as exc:
        build_spec({"type": "sleep", "secnds": 1})
    assert "check 'test-sleep': secnds: unknown key 'secnds'; did you mean 'seconds'?" in str(exc.value)


def test_unknown_type_and_thresholds_on_unreported_measurements_are_config_errors() -> None:
    with temporary_plugin(SleepCheck):
        with pytest.raises(ConfigErrors, match="unknown check type 'slep'; did you mean 'sleep'"):
            build_spec({"type": "slep"})
        with pytest.raises(ConfigErrors, match="never reports measurement 'latency'"):
            build_spec({"type": "sleep", "thresholds": {"latency": {"critical": "> 1s"}}})


def test_env_interpolation_is_the_real_one() -> None:
    with temporary_plugin(SleepCheck):
        spec = build_spec({"type": "sleep", "seconds": "${NAP}"}, env={"NAP": "0.5"})
    assert spec.options.seconds == 0.5


def test_an_undeclared_measurement_fails_the_test_with_the_fix() -> None:
    with temporary_plugin(SleepCheck), pytest.raises(AssertionError) as exc:
        run_check_sync({"type": "sleep", "extra_measurement": "bogus"})
    assert "reported 'bogus' but does not list it in `measurements`" in str(exc.value)


def test_assert_result_shows_the_whole_result_on_failure() -> None:
    result = probe.Result.critical("down", probe.Measurement("duration", 0.5, "s"), reason="connection_refused")
    with pytest.raises(AssertionError) as exc:
        assert_result(result, "ok", reason="x", summary_contains="up", measurements=["latency"],
                      units={"duration": "ms"})
    text = str(exc.value)
    for part in ("status is critical, expected ok", "reason is 'connection_refused', expected 'x'",
                 "summary does not contain 'up'", "no measurement 'latency'",
                 "measurement 'duration' has unit 's', expected 'ms'", "duration=0.5 s"):
        assert part in text
    with pytest.raises(AssertionError, match="one line"):
        assert_result(probe.Result.ok("two\nlines"))
    with pytest.raises(AssertionError, match=r"expected a probe\.Result, got dict"):
        assert_result({"status": 0})  # type: ignore[arg-type]


def test_temporary_plugin_is_gone_after_the_block() -> None:
    with temporary_plugin(SleepCheck) as registry:
        assert "sleep" in registry.checks
    with pytest.raises(ConfigErrors, match="unknown check type 'sleep'"):
        build_spec({"type": "sleep"}, registry=load_registry(entry_points=False))


def test_temporary_plugin_takes_a_module() -> None:
    module = types.ModuleType("acme_sleep")

    @probe.hookimpl
    def register_checks(register: Any) -> None:
        register(SleepCheck)

    module.register_checks = register_checks  # type: ignore[attr-defined]
    with temporary_plugin(module) as registry:
        assert registry.owner("check type", "sleep") == "acme_sleep"


def test_a_broken_plugin_under_test_fails_loudly() -> None:
    class Bad(SleepCheck):
        type = ""

    with pytest.raises(PluginLoadError, match="must set a non-empty `type` string"), temporary_plugin(Bad):
        pass
    class Twin(SleepCheck):
        pass

    with pytest.raises(PluginLoadError, match="registered by both plugin"), temporary_plugin(SleepCheck, Twin):
        pass
    with pytest.raises(PluginLoadError, match=r"two plugins are named 'test-plugin:test_testing\.SleepCheck'"), \
            temporary_plugin(SleepCheck, SleepCheck):
        pass
    with pytest.raises(TypeError, match="Check/Action subclasses"), temporary_plugin(object()):
        pass


async def test_run_action_validates_options_and_runs() -> None:
    with temporary_plugin(EchoAction):
        done = await run_action("echo", {"word": "hello"}, check="web")
        assert done.ok and done.summary == "hello for web critical"
        with pytest.raises(Exception, match="word"):
            await run_action("echo", {})
        with pytest.raises(PluginLoadError, match="no action type 'nope'"):
            await run_action("nope", {})


async def test_run_action_runs_the_builtin_run_action() -> None:
    done = await run_action("run", {"argv": [sys.executable, "-c", "import os; print(os.environ['PROBE_CHECK'])"]},
                            check="db", registry=load_registry(entry_points=False))
    assert done.ok and done.output.strip() == "db"


def test_builtin_checks_run_through_the_helpers() -> None:
    outcome = run_check_sync({"type": "disk", "path": "/", "thresholds": {"utilization": {"critical": ">= 0%"}}},
                             registry=load_registry(entry_points=False))
    assert_result(outcome, "critical", reason="threshold", measurements=["utilization", "free"])


def test_remediation_actions_are_validated_with_the_config() -> None:
    with temporary_plugin(SleepCheck, EchoAction):
        spec = build_spec({"type": "sleep", "remediate": [{"on": "critical", "action": "echo",
                                                           "with": {"word": "hi"}}]})
        assert spec.actions == ("echo",)
        with pytest.raises(ConfigErrors) as exc:
            build_spec({"type": "sleep", "remediate": [
                {"on": "critical", "action": "ecko", "with": {}},
                {"on": "critical", "action": "echo", "with": {"wrd": "hi"}},
            ]})
    text = str(exc.value)
    assert "remediate[0].action: unknown action type 'ecko'; did you mean 'echo'? (registered: echo, run)" in text
    assert "remediate[1].with.word: field required" in text
    assert "remediate[1].with.wrd: extra inputs are not permitted" in text
