"""redis: PING round-trip, memory against maxmemory, clients, and replication role/link of one server."""

from __future__ import annotations

import time
from typing import Any, Literal

import probe

from probe_redis.connection import ConnectionOptions, client, failure, where


class RedisOptions(ConnectionOptions):
    role: Literal["any", "master", "replica"] = "any"
    """Expected replication role; another role is CRITICAL (reason ``role_mismatch``)."""
    require_master_link: bool = True
    """On a replica, CRITICAL (reason ``master_link_down``) when its link to the master is down."""


class RedisCheck(probe.Check[RedisOptions]):
    """PING latency and the server's INFO: memory (a capacity when maxmemory is set), clients, replication."""

    type = "redis"
    measurements = frozenset({
        "duration", "ping", "used_memory", "maxmemory", "memory_utilization", "memory_time_to_full",
        "connected_clients", "blocked_clients", "connected_replicas", "master_link_down_seconds",
    })
    # The core forecasts when memory reaches maxmemory (then Redis evicts or refuses writes).
    capacities = {"memory_utilization": "memory_time_to_full"}

    async def run(self, ctx: probe.Context) -> probe.Result:
        import redis.exceptions as rx

        conn = client(self.options, ctx.remaining())
        try:
            started = time.perf_counter()
            await conn.ping()
            ping = time.perf_counter() - started
            info = await conn.info()
            maxmemory = await _maxmemory(conn, info)
        except (rx.RedisError, OSError) as exc:
            return failure(exc, self.options.url)
        finally:
            await conn.aclose()
        return self._result(ping, info, maxmemory)

    def _result(self, ping: float, info: dict[str, Any], maxmemory: int) -> probe.Result:
        used = int(info.get("used_memory", 0))
        role = "replica" if info.get("role") == "slave" else str(info.get("role", "unknown"))
        m = [
            probe.Measurement("ping", ping, "s"),
            probe.Measurement("used_memory", used, "By"),
            probe.Measurement("maxmemory", maxmemory, "By"),
            probe.Measurement("connected_clients", int(info.get("connected_clients", 0))),
            probe.Measurement("blocked_clients", int(info.get("blocked_clients", 0))),
            probe.Measurement("connected_replicas", int(info.get("connected_slaves", 0))),
        ]
        memory = f"{_size(used)} used"
        if maxmemory > 0:
            m.append(probe.Measurement("memory_utilization", used / maxmemory, "1"))
            memory += f" of {_size(maxmemory)} maxmemory ({used / maxmemory:.1%})"
        details: dict[str, Any] = {"server": where(self.options.url), "role": role,
                                   "version": info.get("redis_version", ""),
                                   "maxmemory_policy": info.get("maxmemory_policy", "")}
        summary = (f"PONG in {ping * 1000:.1f}ms, {role}, {info.get('connected_clients', 0)} clients, {memory}")
        if role == "replica":
            link = info.get("master_link_status", "down")
            details["master"] = f"{info.get('master_host')}:{info.get('master_port')} link {link}"
            if link != "up":
                down = float(info.get("master_link_down_since_seconds", 0) or 0)
                m.append(probe.Measurement("master_link_down_seconds", down, "s"))
                if self.options.require_master_link:
                    return probe.Result.critical(f"link to master {details['master']}; {summary}", *m,
                                                 reason="master_link_down", details=details)
        if self.options.role != "any" and role != self.options.role:
            return probe.Result.critical(f"role is {role}, expected {self.options.role}; {summary}", *m,
                                         reason="role_mismatch", details=details)
        return probe.Result.ok(summary, *m, details=details)


async def _maxmemory(conn: Any, info: dict[str, Any]) -> int:
    if "maxmemory" in info:
        return int(info["maxmemory"])
    # Older servers do not put maxmemory in INFO memory; managed ones may refuse CONFIG.
    import redis.exceptions as rx

    try:
        return int((await conn.config_get("maxmemory")).get("maxmemory", 0))
    except rx.ResponseError:
        return 0


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return f"{n}"
