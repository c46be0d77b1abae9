"""What waking an idle process costs on this machine, and what it does to a check's CPU per run.

    .venv/bin/python benchmarks/wake_cost.py

Two tables, to read the rows of bench.py and bench_checks.py by (a ratio of CPU per check moves with it
from one machine to another):

- **an idle event loop's wake-up**: an asyncio loop that sleeps until the next of N evenly spaced instants and
  does ~3 us of work there, CPU per wake-up (user and system, ``getrusage``) at several rates. Back to back the
  work costs what it costs; after an idle gap the caches, branch predictors and (in a VM) the virtual CPU
  itself must come back, and the process pays for it in CPU, not only in latency;
- **the same check, the same server, a different wait**: probe's ssh check (banner only) through the Runner
  against a loopback server that writes an OpenSSH identification after ``delay`` ms (0: at once, like a
  server that answers from memory; 5: like sshd, which forks and re-executes itself per connection). The
  check's own work is the same in every column.

Loopback only; nothing else needs to run.
"""

from __future__ import annotations

import asyncio
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE)]

BANNER_SERVER = r"""
import socket, sys, time
delay = float(sys.argv[1])
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(128)
print(s.getsockname()[1], flush=True)
while True:
    c, _ = s.accept()
    if delay:
        time.sleep(delay)
    c.sendall(b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n")
    try:
        c.recv(256)
    except OSError:
        pass
    c.close()
"""


def _cpu() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


async def _wakes(rate: float, count: int) -> tuple[float, float]:
    """User and system CPU per wake-up (seconds) of a loop woken ``rate`` times a second (0: never sleeps)."""
    user, system = _cpu()
    start = time.monotonic()
    for i in range(count):
        if rate:
            await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
        sum(range(200))  # a few microseconds of work at each wake-up
    user_after, system_after = _cpu()
    return (user_after - user) / count, (system_after - system) / count


def wake_table() -> None:
    print("an idle event loop's wake-up, ~3 us of work each: CPU per wake-up (user + system)")
    for rate, count in ((0.0, 20000), (10000.0, 5000), (1000.0, 3000), (100.0, 500), (20.0, 100)):
        user, system = asyncio.run(_wakes(rate, count))
        label = "back to back" if not rate else f"{rate:g}/s"
        print(f"  {label:>13}: {(user + system) * 1e3:.3f} ms  (user {user * 1e3:.3f}, system {system * 1e3:.3f})")


def banner_table(runs: int = 1000) -> None:
    from measure import probe_cpu_per_check

    print(f"probe's ssh check (banner) through the Runner, {runs} runs: CPU per run by the server's delay")
    for delay in (0.0, 0.001, 0.005):
        server = subprocess.Popen([sys.executable, "-c", BANNER_SERVER, str(delay)], stdout=subprocess.PIPE,
                                  text=True)
        try:
            assert server.stdout is not None
            port = int(server.stdout.readline())
            check = {"type": "ssh", "host": "127.0.0.1", "port": port}
            cpus = sorted(asyncio.run(probe_cpu_per_check(check, runs)) for _ in range(3))
            print(f"  server answers after {delay * 1e3:g} ms: {cpus[1] * 1e3:.3f} ms (median of 3 rounds)")
        finally:
            server.kill()
            server.wait()


def main() -> int:
    wake_table()
    banner_table()
    return 0


if __name__ == "__main__":
    sys.exit(main())
