"""``probe status`` and ``probe report``: ``compute`` aggregates the history, ``render`` writes table/json/html,
``commands`` are the CLI entry points."""
