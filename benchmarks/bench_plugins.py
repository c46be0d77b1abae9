"""The plugin packages against their peers, both in one run: what probe's core adds to a plugin check.

    .venv/bin/python benchmarks/bench_plugins.py [--runs 200]

Needs plugins/probe-redis, probe-mqtt and probe-rabbitmq installed (plugins/run-tests.sh does it) and the
services on loopback. Each row times N sequential runs and reports the median per run:

- ``redis``: probe's ``redis`` check through the real Runner (validated spec, timeout task, thresholds)
  against the same client calls made directly (redis-py: connect, PING, INFO, close), and against
  ``redis-cli PING`` + ``INFO`` as a Nagios-style check would spawn them.
- ``mqtt``: the ``mqtt`` check through the Runner against the same paho round trip called directly.
- ``rabbitmq``: the ``rabbitmq`` check through the Runner against pika's passive declare called directly.

The ratio probe/direct is the core's overhead on a real plugin; it should stay near 1.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import time
from collections.abc import Awaitable, Callable
from typing import Any


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


async def time_async(fn: Callable[[], Awaitable[Any]], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        await fn()
        out.append(time.perf_counter() - t)
    return out


async def paired(a: Callable[[], Awaitable[Any]], b: Callable[[], Awaitable[Any]], runs: int
                 ) -> tuple[float, float]:
    """Median ms of ``a`` and of ``b``, run alternately so load from other processes hits both alike."""
    sa: list[float] = []
    sb: list[float] = []
    for _ in range(runs):
        sa += await time_async(a, 1)
        sb += await time_async(b, 1)
    return median_ms(sa), median_ms(sb)


async def main(runs: int) -> None:
    import probe_mqtt
    import probe_rabbitmq
    import probe_redis

    from probe.engine.runner import Runner
    from probe.testing import build_spec, load_registry

    registry = load_registry(probe_redis, probe_mqtt, probe_rabbitmq, entry_points=False)
    runner = Runner(registry)
    rows: list[tuple[str, float, str, float]] = []

    # redis
    spec = build_spec({"type": "redis", "thresholds": {"ping": {"critical": "> 1s"}}}, registry=registry)
    async def direct_redis() -> None:
        import redis.asyncio

        conn = redis.asyncio.from_url("redis://127.0.0.1:6379/0", decode_responses=True)
        await conn.ping()
        await conn.info()
        await conn.aclose()

    redis_spec = spec
    p, q = await paired(lambda: runner.run(redis_spec), direct_redis, runs)
    rows.append(("redis check", p, "redis-py direct", q))
    if shutil.which("redis-cli"):
        def cli() -> None:
            subprocess.run(["redis-cli", "PING"], capture_output=True, check=True)
            subprocess.run(["redis-cli", "INFO"], capture_output=True, check=True)

        samples = []
        for _ in range(max(runs // 4, 10)):
            t = time.perf_counter()
            cli()
            samples.append(time.perf_counter() - t)
        rows.append(("redis check", p, "redis-cli PING+INFO", median_ms(samples)))

    # mqtt
    spec = build_spec({"type": "mqtt", "qos": 1}, registry=registry)
    mqtt_runs = max(runs // 4, 10)
    async def direct_mqtt() -> None:
        from probe_mqtt.check import _RoundTrip

        ctx = _ctx()
        await asyncio.to_thread(_RoundTrip(spec.options, ctx).run)

    mqtt_spec = spec
    p, q = await paired(lambda: runner.run(mqtt_spec), direct_mqtt, mqtt_runs)
    rows.append(("mqtt check", p, "paho round trip direct", q))

    # rabbitmq: a queue of our own
    import pika

    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1"))
    ch = conn.channel()
    ch.queue_declare("probe-bench", auto_delete=False)
    try:
        spec = build_spec({"type": "rabbitmq", "queue": "probe-bench"}, registry=registry)
        rabbit_runs = max(runs // 4, 10)

        def direct_rabbit() -> None:
            c = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", connection_attempts=1))
            c.channel().queue_declare("probe-bench", passive=True)
            c.close()

        rabbit_spec = spec
        p, q = await paired(lambda: runner.run(rabbit_spec), lambda: asyncio.to_thread(direct_rabbit), rabbit_runs)
        rows.append(("rabbitmq check", p, "pika passive declare direct", q))
    finally:
        ch.queue_delete("probe-bench")
        conn.close()

    print(f"{'row':<16} {'probe ms':>9}  {'peer':<28} {'peer ms':>8}  ratio")
    for name, p, peer, q in rows:
        print(f"{name:<16} {p:9.2f}  {peer:<28} {q:8.2f}  {p / q:5.2f}")


def _ctx() -> Any:
    import logging

    from probe.check import Context

    return Context("bench", time.monotonic() + 10, logging.getLogger("bench"))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    asyncio.run(main(parser.parse_args().runs))
