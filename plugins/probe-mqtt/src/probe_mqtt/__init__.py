"""probe-mqtt: the ``mqtt`` check type (publish/subscribe round trip through a broker).

probe finds each type through its own entry point (pyproject.toml: ``probe.checks``, ``probe.actions``)
and imports only the module that defines it; nothing is imported here.
"""
