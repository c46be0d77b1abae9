"""probe-nats: the ``jetstream`` check type (a JetStream consumer's backlog).

probe finds each type through its own entry point (pyproject.toml: ``probe.checks``, ``probe.actions``)
and imports only the module that defines it; nothing is imported here.
"""
