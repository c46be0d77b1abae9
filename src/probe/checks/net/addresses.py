"""Every address of a name, for the http, tcp, tls and icmp checks: ``addresses: first | all | any``.

``first`` (the default) is what a client does: the addresses in resolver order (or ``prefer_``'s), and
the first that answers is used -- tried one after the other, or raced with ``happy_eyeballs``. A dual-stack
name whose IPv6 is broken then passes on IPv4, and nobody notices. ``all`` and ``any`` run the whole check
against every address at once, each on its own connection, and combine the results: ``all`` is OK only
when every address is, ``any`` when at least one is. Either way the per-family counts (``addresses_ok_ipv6``
below ``addresses_total_ipv6``) say which family is down, for a threshold or a graph.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal

import probe
from probe.checks.net.conn import Failure, IpVersion, Peer, Timings, resolve

AddressMode = Literal["first", "all", "any"]
MEASUREMENTS = frozenset({"addresses_ok", "addresses_total", "addresses_ok_ipv4", "addresses_total_ipv4",
                          "addresses_ok_ipv6", "addresses_total_ipv6"})
UNITS: Mapping[str, str] = {name: "{address}" for name in MEASUREMENTS}
ADDRESSES_DOC = """``first``: the first address that answers, as a client would (default); ``all``: run the check
    against every address of the host, OK only when each is; ``any``: every address, OK when one is. With
    ``all``/``any`` the details list each address's result and ``addresses_ok``/``addresses_total`` (also per
    family: ``addresses_ok_ipv6``, ...) count them."""


def check_modes(addresses: AddressMode, happy_eyeballs: bool) -> None:
    """The options agree with each other; ValueError says how they do not."""
    if happy_eyeballs and addresses != "first":
        raise ValueError(f"happy_eyeballs races the addresses for one connection; addresses: {addresses} "
                         "connects to each of them (use one or the other)")


Worse = Callable[[probe.Result, float], tuple[float, ...]]
"""Among passing runs, how bad one is (from its result and its time): ``all`` reports the worst. Default:
the slowest."""


async def each(host: str, port: int, ip_version: IpVersion, mode: AddressMode, target: str,
               one: Callable[[Peer], Awaitable[probe.Result]], worse: Worse | None = None) -> probe.Result:
    """Resolve ``host`` once, run ``one`` against every address at the same time, and combine."""
    timings = Timings()
    try:
        resolved = await resolve(host, port, ip_version, timings)
    except Failure as exc:
        return probe.Result.critical(f"{target}: {exc.message}", *timings.measurements(), reason=exc.reason)
    peers = [Peer(family, address) for family, address in resolved]
    async with asyncio.TaskGroup() as group:  # a plugin error in one run cancels the others
        tasks = [group.create_task(_timed(one, peer)) for peer in peers]
    return combine(mode, peers, [task.result() for task in tasks], timings, ip_version, worse)


async def _timed(one: Callable[[Peer], Awaitable[probe.Result]], peer: Peer) -> tuple[probe.Result, float]:
    started = time.monotonic()
    result = await one(peer)
    return result, time.monotonic() - started


def combine(mode: AddressMode, peers: list[Peer], runs: list[tuple[probe.Result, float]], timings: Timings,
            ip_version: IpVersion, worse: Worse | None = None) -> probe.Result:
    """One result from each address's: the verdict and phase measurements of the address that decides it
    -- for ``all`` the first that failed, else the worst (the slowest, or by ``worse``); for ``any`` the
    fastest that passed, else the first that failed -- with every address's outcome in details and the
    counts as measurements."""
    good = [result.status is probe.Status.OK for result, _ in runs]
    by_time = sorted(range(len(runs)), key=lambda i: runs[i][1])
    failed = [i for i, ok in enumerate(good) if not ok]
    if mode == "all":
        decisive = failed[0] if failed else max(range(len(runs)), key=lambda i: (worse or _slower)(*runs[i]))
    else:
        decisive = next((i for i in by_time if good[i]), failed[0] if failed else 0)
    base = runs[decisive][0]
    families = _families(peers, good, ip_version)
    measurements = [m for m in base.measurements if m.name not in ("duration", "dns")]
    measurements += [*timings.measurements(), *_counts(good, families)]
    rows = [_row(peer, result, elapsed) for peer, (result, elapsed) in zip(peers, runs, strict=True)]
    details: dict[str, Any] = {**base.details, "addresses": rows}
    tally = ", ".join([f"{sum(good)}/{len(good)} addresses OK",
                       *(f"{family} {ok}/{total}" for family, (ok, total) in families.items())])
    passed = all(good) if mode == "all" else any(good)
    if passed:
        return probe.Result.ok(f"{base.summary} [{tally}]", *measurements, details=details)
    return probe.Result(base.status, f"{base.summary} [{tally}]", base.reason, tuple(measurements), details)


def _slower(result: probe.Result, elapsed: float) -> tuple[float, ...]:
    return (elapsed,)


def expiring_first(name: str) -> Worse:
    """Worse is the certificate that expires first (measurement ``name``), else the slower run: with
    ``all`` each address may be a different front end with its own certificate."""
    def worse(result: probe.Result, elapsed: float) -> tuple[float, ...]:
        remaining = result.measurement(name)
        return (-remaining.value,) if remaining is not None else (elapsed,)
    return worse


def _families(peers: list[Peer], good: list[bool], ip_version: IpVersion) -> dict[str, tuple[int, int]]:
    """(OK, total) per family the check uses; a family ``ip_version`` excludes has no count, rather than a
    misleading 0 (a v4-only name under ``any`` still shows ``ipv6 0/0``: it has no IPv6)."""
    families = {}
    for family in ("ipv4", "ipv6"):
        if ip_version in ("ipv4", "ipv6") and ip_version != family:
            continue
        mine = [ok for peer, ok in zip(peers, good, strict=True) if peer.family_name == family]
        families[family] = (sum(mine), len(mine))
    return families


def _counts(good: list[bool], families: dict[str, tuple[int, int]]) -> list[probe.Measurement]:
    counts = [probe.Measurement("addresses_ok", float(sum(good)), "{address}"),
              probe.Measurement("addresses_total", float(len(good)), "{address}")]
    for family, (ok, total) in families.items():
        counts += [probe.Measurement(f"addresses_ok_{family}", float(ok), "{address}"),
                   probe.Measurement(f"addresses_total_{family}", float(total), "{address}")]
    return counts


def _row(peer: Peer, result: probe.Result, elapsed: float) -> dict[str, Any]:
    row: dict[str, Any] = {"address": str(peer), "family": peer.family_name, "status": result.status.label,
                           "summary": result.summary, "time": round(elapsed, 6)}
    if result.reason:
        row["reason"] = result.reason
    row["measurements"] = {m.name: m.value for m in result.measurements if m.name != "duration"}
    return row
