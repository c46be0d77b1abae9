"""The engine: runs checks (``runner``, ``workers``), schedules them (``scheduler``, ``agent``), keeps their
soft/hard state (``state``) and forecasts (``forecast``); ``once`` is ``probe run --once``. What it hands on to
sinks, and the hooks on its life, are in ``interfaces``. The engine knows no CLI and no concrete sink."""
