"""``probe run``: the composition root. ``run`` starts the daemon, ``wiring`` assembles its sinks from the plan,
``systemd`` speaks the notify protocol."""
