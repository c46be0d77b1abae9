"""The incident side: alerts to Alertmanager and signed webhooks, through an outbox in the state store that
survives restarts and receivers that are down (``sink``, ``notifier``, ``outbox``, ``delivery``, ``payloads``);
silences (``silences``). See docs/alerting.md and docs/maintenance.md.

Imports nothing at package level, so ``probe silence`` loads only what it uses.
"""
