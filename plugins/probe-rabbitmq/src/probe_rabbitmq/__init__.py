"""probe-rabbitmq: the ``rabbitmq`` check type (queue depth and consumers over AMQP 0-9-1).

probe finds each type through its own entry point (pyproject.toml: ``probe.checks``, ``probe.actions``)
and imports only the module that defines it; nothing is imported here.
"""
