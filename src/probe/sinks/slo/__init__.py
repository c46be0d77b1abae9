"""SLOs: how time counts (``accounting``, shared with ``probe report``), the agent's running figures
(``tracker``) and the sink that feeds them and exports ``probe.slo.*`` metrics (``sink``)."""
