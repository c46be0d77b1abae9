"""A plugin whose import fails: the agent must report it and carry on."""

import probe_no_such_dependency  # noqa: F401

import probe


@probe.hookimpl
def register_checks(register):  # type: ignore[no-untyped-def]
    raise AssertionError("never reached")
