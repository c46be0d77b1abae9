"""probe-redis: the ``redis`` check type and the ``redis-command`` remediation action.

probe finds each type through its own entry point (pyproject.toml: ``probe.checks``, ``probe.actions``)
and imports only the module that defines it; nothing is imported here.
"""
