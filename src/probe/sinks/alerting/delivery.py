"""Posting the outbox to its receivers: one round at a time, with a bounded HTTP client and backoff.

A round takes the rows that are due, oldest first. An Alertmanager gets its due alerts in one POST; a webhook
gets one POST per notification, in order, and a failure stops that receiver's round so the order holds.
2xx is delivered; a connection error, a timeout, 408, 429 or 5xx is retried. The backoff is the receiver's,
not each row's: after ``n`` failures in a row it gets no request for ``2^n`` seconds (at most
``MAX_BACKOFF``), and rows queued meanwhile wait with the rest, so they neither jump the queue nor multiply the
requests to a receiver that is down. Any other answer is a refusal that retrying cannot fix: the row is
dropped and counted. The clock is injected so tests can let a receiver fail "for an hour" in no time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from probe.sinks.alerting.outbox import Item, Outbox
from probe.sinks.alerting.payloads import SIGNATURE_HEADER, sign

log = logging.getLogger("probe.alerting")

MAX_BACKOFF = 300.0
RETRY_STATUSES = frozenset({408, 425, 429})


@dataclass(frozen=True)
class Receiver:
    name: str  # ``alertmanager <url>`` or ``webhook <name>``: the outbox's receiver column
    kind: Literal["alertmanager", "webhook"]
    url: str  # where to POST
    timeout: float = 10.0
    headers: dict[str, str] = field(default_factory=dict)
    secret: str | None = None


@dataclass
class ReceiverStats:
    sent: int = 0  # notifications delivered
    failed: int = 0  # failed attempts (each retried, or dropped when refused)
    last_error: str = ""


def _client() -> Any:
    import httpx

    # httpx logs every request's URL at INFO, and a webhook URL often carries its token (Slack, Teams):
    # receivers are named in our own log lines instead.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return httpx.AsyncClient(limits=httpx.Limits(max_connections=8, max_keepalive_connections=4),
                             follow_redirects=False)


@dataclass
class Round:
    delivered: list[int] = field(default_factory=list)
    retry: list[tuple[int, float, str]] = field(default_factory=list)  # (id, next attempt, error): attempted
    postponed: list[tuple[int, float]] = field(default_factory=list)  # (id, next attempt): not attempted
    refused: list[int] = field(default_factory=list)


def backoff(attempts: int) -> float:
    return min(MAX_BACKOFF, 2.0 ** min(attempts, 16))


class Delivery:
    """One round of posting at a time (:meth:`round`); the caller decides when the next one is."""

    def __init__(self, outbox: Outbox, receivers: Sequence[Receiver], *, clock: Callable[[], float] = time.time,
                 redact: Callable[[str], str] = str) -> None:
        self.outbox = outbox
        self.receivers = {r.name: r for r in receivers}
        self.clock = clock
        self.redact = redact
        self.stats: dict[str, ReceiverStats] = {r.name: ReceiverStats() for r in receivers}
        self._client: Any = None
        self._streak: dict[str, int] = {}  # failures in a row, by receiver
        self._blocked: dict[str, float] = {}  # no request before this time, by receiver

    async def _http(self) -> Any:
        if self._client is None:
            # Importing httpx and building its TLS context (the CA bundle) takes ~1 s of CPU: not on the loop.
            self._client = await asyncio.to_thread(_client)
        return self._client

    async def warm(self) -> None:
        """Build the HTTP client now, so the first alert does not wait for it."""
        if self.receivers:
            await self._http()

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def round(self, items: Sequence[Item]) -> Round:
        """Post ``items`` (rows the outbox says are due); the caller writes the :class:`Round` back to the
        outbox (in a thread)."""
        done = Round()
        delivered, retry, refused = done.delivered, done.retry, done.refused
        by_receiver: dict[str, list[Item]] = {}
        for item in items:
            by_receiver.setdefault(item.receiver, []).append(item)
        now = self.clock()
        for name, batch in by_receiver.items():
            receiver = self.receivers.get(name)
            if receiver is None:
                refused += [i.id for i in batch]  # a receiver removed from the config: nobody to deliver to
                continue
            if self._blocked.get(name, 0.0) > now:
                done.postponed += [(i.id, self._blocked[name]) for i in batch]
                continue
            if receiver.kind == "alertmanager":
                outcome = await self._post(receiver, json_body=[i.payload for i in batch])
                self._settle(receiver, batch, outcome, delivered, retry, refused)
                continue
            for item in batch:
                body = str(item.payload.get("body", "")).encode() if isinstance(item.payload, dict) else b""
                event = str(item.payload.get("event", "")) if isinstance(item.payload, dict) else ""
                outcome = await self._post(receiver, content=body, event=event)
                self._settle(receiver, [item], outcome, delivered, retry, refused)
                if outcome[0] == "retry":  # keep the order: the rest wait too
                    done.postponed += [(i.id, self._blocked[name]) for i in batch[batch.index(item) + 1:]]
                    break
        return done

    def _settle(self, receiver: Receiver, batch: list[Item], outcome: tuple[str, str],
                delivered: list[int], retry: list[tuple[int, float, str]], refused: list[int]) -> None:
        verdict, error = outcome
        stats = self.stats[receiver.name]
        if verdict == "ok":
            if stats.last_error:
                log.info("%s accepts notifications again", receiver.name)
            self._streak[receiver.name] = 0
            stats.sent += len(batch)
            stats.last_error = ""
            delivered += [i.id for i in batch]
            return
        stats.failed += 1
        if not stats.last_error:
            log.warning("%s: %s; %s", receiver.name, error,
                        "will retry" if verdict == "retry" else "dropping what it refused")
        stats.last_error = error
        if verdict == "retry":
            streak = self._streak[receiver.name] = self._streak.get(receiver.name, 0) + 1
            self._blocked[receiver.name] = self.clock() + backoff(streak - 1)
            retry += [(i.id, self._blocked[receiver.name], error) for i in batch]
        else:
            refused += [i.id for i in batch]

    async def _post(self, receiver: Receiver, *, json_body: Any = None, content: bytes | None = None,
                    event: str = "") -> tuple[str, str]:
        """("ok" | "retry" | "refused", error text)."""
        import httpx

        headers = dict(receiver.headers)
        if content is not None:
            headers["Content-Type"] = "application/json"
            headers["X-Probe-Event"] = event
            if receiver.secret:
                headers[SIGNATURE_HEADER] = sign(content, receiver.secret)
        try:
            response = await (await self._http()).post(receiver.url, json=json_body, content=content, headers=headers,
                                               timeout=receiver.timeout)
        except httpx.HTTPError as exc:
            return "retry", self.redact(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
        if 200 <= response.status_code < 300:
            return "ok", ""
        text = self.redact(f"HTTP {response.status_code}: {response.text[:200].strip()}")
        if response.status_code >= 500 or response.status_code in RETRY_STATUSES:
            return "retry", text
        return "refused", text
