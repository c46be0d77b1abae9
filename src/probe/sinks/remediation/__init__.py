"""Remediation: running a check's ``remediate`` actions, bounded by cooldown, max_runs/window and timeout."""
