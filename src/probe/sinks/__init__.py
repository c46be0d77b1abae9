"""Sinks: where every outcome goes after the state update. ``logsink`` is the log of state changes;
``telemetry`` (OpenTelemetry metrics), ``history`` (the SQLite state store) and ``remediation`` (bounded
actions) each hold their :class:`~probe.engine.interfaces.Sink` in a ``sink`` module; ``guard`` is what
they share. Sinks import nothing of the engine but ``probe.engine.interfaces``."""
