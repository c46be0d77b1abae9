"""The ``probe`` command: ``commands`` (click), ``logs`` (the log format), ``report`` (``probe status``/``report``)."""
