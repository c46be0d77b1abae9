"""Two network namespaces of the test's own, joined by a veth pair, for "every address of a name" (issue 20):
the checks run in the client namespace (``ip netns exec``, which also mounts /etc/netns/NAME/hosts over
/etc/hosts there), the servers in the server namespace, on IPv4 and IPv6 addresses. Nothing touches the
host's own interfaces or its /etc/hosts; everything is removed afterwards.

Names, in the client namespace's hosts file:

- ``dual.test``: ``2001:db8:201::2`` and ``10.201.0.2``, both served;
- ``hole.test``: ``2001:db8:201::3`` and ``10.201.0.2``; the client reaches ``::3`` from its own
  ``2001:db8:202::11``
  (a route with that source), and the server namespace routes ``::11`` into a blackhole, so a SYN or an
  echo request to ``::3`` arrives and its answer vanishes: IPv6 blackholed (routes only; this kernel has
  no tc classifiers or netfilter to drop packets with). The client knows ``::3``'s link-layer address, so
  it never waits for neighbour discovery;
- ``v6.test``: ``2001:db8:201::2`` only.

glibc orders each name's IPv6 address first (RFC 6724: global IPv6 above IPv4). Port 8081 listens on
IPv4 only, so IPv6 connections to it are refused.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from conftest import REPO, require, require_binary
from daemons import stop

C_V4, S_V4 = "10.201.0.1", "10.201.0.2"
C_V6, S_V6, S_HOLE = "2001:db8:201::1", "2001:db8:201::2", "2001:db8:201::3"
C_HOLE = "2001:db8:202::11"  # outside the link's /64, so the kernel never picks it as a source by itself
HOSTS = f"""127.0.0.1 localhost
::1 localhost
{S_V6} dual.test
{S_V4} dual.test
{S_HOLE} hole.test
{S_V4} hole.test
{S_V6} v6.test
"""
SERVER = Path(__file__).with_name("netns_server.py")


@dataclass
class Namespaces:
    client: str
    server: str
    workdir: Path

    def run(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", self.client, *argv], capture_output=True, text=True,
                              timeout=timeout)

    def probe_once(self, checks: list[dict[str, object]]) -> dict[str, dict[str, object]]:
        """``probe run --once --format json`` in the client namespace; each check's JSON by name."""
        config = self.workdir / "checks.d"
        config.mkdir(exist_ok=True)
        (config / "checks.yaml").write_text(json.dumps({"checks": checks}))
        done = self.run(sys.executable, "-m", "probe", "run", "--once", "--config-dir", str(config), "--format",
                        "json")
        if done.returncode not in (0, 1, 2):
            raise AssertionError(f"probe exited {done.returncode}: {done.stderr[-3000:]}")
        return {c["name"]: c for c in json.loads(done.stdout)["checks"]}


def _ip(*argv: str, netns: str | None = None) -> None:
    prefix = ["ip", "netns", "exec", netns] if netns else []
    subprocess.run([*prefix, *argv], check=True, capture_output=True, text=True, timeout=30)


@contextlib.contextmanager
def namespaces(workdir: Path, tls: dict[str, str]) -> Iterator[Namespaces]:
    """The namespaces with the servers of ``netns_server.py`` running; ``tls`` names PEM files: ``cert4``,
    ``cert6`` (one certificate per address family) and ``key``s, passed to the server."""
    require(os.geteuid() == 0, "network namespaces need root (CI runs as root)")
    require_binary("ip")
    suffix = secrets.token_hex(3)
    ns = Namespaces(f"probe-c-{suffix}", f"probe-s-{suffix}", workdir)
    etc = Path("/etc/netns") / ns.client
    veth_c, veth_s = f"pc{suffix}", f"ps{suffix}"
    with contextlib.ExitStack() as cleanup:
        for name in (ns.client, ns.server):
            _ip("ip", "netns", "add", name)
            cleanup.callback(subprocess.run, ["ip", "netns", "del", name], capture_output=True)
        _ip("ip", "link", "add", veth_c, "netns", ns.client, "type", "veth", "peer", "name", veth_s, "netns", ns.server)
        for name, veth, v4, v6s in ((ns.client, veth_c, C_V4, (f"{C_V6}/64", f"{C_HOLE}/128")),
                                    (ns.server, veth_s, S_V4, (f"{S_V6}/64", f"{S_HOLE}/64"))):
            _ip("ip", "link", "set", "lo", "up", netns=name)
            _ip("ip", "addr", "add", f"{v4}/24", "dev", veth, netns=name)
            for v6 in v6s:
                _ip("ip", "-6", "addr", "add", v6, "dev", veth, "nodad", netns=name)
            _ip("ip", "link", "set", veth, "up", netns=name)
        _blackhole(ns, veth_c, veth_s)
        if not etc.parent.exists():
            etc.parent.mkdir()
            cleanup.callback(_remove_if_empty, etc.parent)
        etc.mkdir()
        cleanup.callback(shutil.rmtree, etc, ignore_errors=True)
        (etc / "hosts").write_text(HOSTS)
        setup = json.dumps({"v4": S_V4, "v6": S_V6, "hole": S_HOLE, **tls})
        server = subprocess.Popen(["ip", "netns", "exec", ns.server, sys.executable, str(SERVER), setup],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
        cleanup.callback(stop, server)
        assert server.stdout is not None
        ready = server.stdout.readline()
        if ready.strip() != "ready":
            raise RuntimeError(f"netns_server did not start: {ready}{server.stderr.read() if server.stderr else ''}")
        yield ns


def _blackhole(ns: Namespaces, veth_c: str, veth_s: str) -> None:
    """The client talks to S_HOLE from C_HOLE, whose answers the server routes into a blackhole; the
    client knows S_HOLE's link-layer address, so it sends into the void instead of failing neighbour
    discovery."""
    _ip("ip", "-6", "route", "add", f"{S_HOLE}/128", "dev", veth_c, "src", C_HOLE, netns=ns.client)
    _ip("ip", "-6", "route", "add", "blackhole", f"{C_HOLE}/128", netns=ns.server)
    mac = Path(f"/sys/class/net/{veth_s}/address")
    shown = subprocess.run(["ip", "netns", "exec", ns.server, "cat", str(mac)], capture_output=True, text=True,
                           check=True).stdout.strip()
    _ip("ip", "-6", "neigh", "replace", S_HOLE, "lladdr", shown, "dev", veth_c, "nud", "permanent", netns=ns.client)


def _remove_if_empty(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.rmdir()
