"""BIND 9 for the dns check's DNSSEC tests: zones signed here with dnssec-keygen/dnssec-signzone, served by a
private ``named`` on a loopback port, and a second ``named`` as a validating resolver in front of it.

The zones (all below ``test.``, served from a temporary directory, never the system's named):

- ``sec.test``: signed (KSK + ZSK); ``www`` A and AAAA, ``alias`` CNAME www, ``txt`` TXT, ``*.wild`` TXT,
  nothing else (NXDOMAIN, proven by NSEC); delegations with a DS to ``child.sec.test``, so a chain from an anchor at
  ``sec.test`` crosses a zone cut, without a DS to ``nods.sec.test``, and with the DS of a key that never
  signed to ``badds.sec.test``;
- ``child.sec.test``, ``nods.sec.test``, ``badds.sec.test``: signed with their own keys; ``www`` A;
- ``n3.test``: signed with NSEC3 (salt, iterations 0), for denial of existence with hashed names;
- ``tampered.test``: signed, then ``www``'s address edited in the signed file (its RRSIG no longer fits);
- ``expired.test``: signed with a validity period that ended in 2020;
- ``future.test``: signed with a validity period that starts tomorrow;
- ``nokey.test``: signed by a ZSK whose DNSKEY is not in the zone (only the KSK's is): a ZSK removed too
  early in a rollover, the records' RRSIGs name a key nobody can find;
- ``plain.test``: not signed at all.

``Bind.ds(zone)`` is the DS of a zone's KSK as dnssec-dsfromkey prints it (a trust anchor), ``Bind.wrong_ds``
a DS of a key that never signed ``sec.test`` (a wrong anchor), ``Bind.ksk_file(zone)`` the KSK's ``.key``
file (a DNSKEY anchor in zone-file form).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from conftest import require_binary
from daemons import stop, wait_for
from netservers import free_port

CHILDREN = ("child.sec.test", "nods.sec.test", "badds.sec.test")
SIGNED = ("sec.test", *CHILDREN, "n3.test", "tampered.test", "expired.test", "future.test", "nokey.test")
VALIDITY = 30 * 86400  # seconds the good zones' signatures stay valid

ZONE_HEAD = """\
$TTL 300
@ IN SOA ns.{zone}. hostmaster.{zone}. ( 1 3600 600 86400 300 )
@ IN NS ns.{zone}.
ns IN A 127.0.0.1
www IN A 192.0.2.{octet}
www IN AAAA 2001:db8::{octet}
alias IN CNAME www
txt IN TXT "probe dnssec test"
"""

AUTH_CONFIG = """\
options {{
  directory "{dir}";
  pid-file "{dir}/named.pid";
  session-keyfile "{dir}/session.key";
  listen-on port {port} {{ 127.0.0.1; }};
  listen-on-v6 {{ none; }};
  recursion no;
  dnssec-validation no;
  notify no;
  allow-query {{ 127.0.0.1; }};
}};
controls {{ }};
"""

RESOLVER_CONFIG = """\
options {{
  directory "{dir}";
  pid-file "{dir}/named.pid";
  session-keyfile "{dir}/session.key";
  listen-on port {port} {{ 127.0.0.1; }};
  listen-on-v6 {{ none; }};
  recursion yes;
  allow-query {{ 127.0.0.1; }};
  allow-recursion {{ 127.0.0.1; }};
  forward only;
  forwarders {{ 127.0.0.1 port {upstream}; }};
  dnssec-validation yes;
  qname-minimization off;
}};
controls {{ }};
trust-anchors {{
{anchors}
}};
"""


@dataclass
class Bind:
    dir: Path
    port: int = 0  # the authoritative server
    resolver_port: int = 0  # the validating resolver (0 until started)
    keys: dict[str, dict[str, Path]] = field(default_factory=dict)  # zone -> {"ksk": ..., "zsk": ...}

    @property
    def server(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def resolver(self) -> str:
        return f"127.0.0.1:{self.resolver_port}"

    def ds(self, zone: str) -> str:
        return dsfromkey(self.keys[zone]["ksk"])

    @property
    def wrong_ds(self) -> str:
        return dsfromkey(self.keys["wrong"]["ksk"])

    def ksk_file(self, zone: str) -> Path:
        return self.keys[zone]["ksk"]


def dsfromkey(key: Path) -> str:
    out = subprocess.run(["dnssec-dsfromkey", "-2", str(key)], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def _keygen(workdir: Path, zone: str, *flags: str) -> Path:
    out = subprocess.run(["dnssec-keygen", "-q", "-a", "ECDSAP256SHA256", "-K", str(workdir), *flags, zone],
                         capture_output=True, text=True, check=True)
    return workdir / f"{out.stdout.strip()}.key"


def _sign(workdir: Path, zone: str, text: str, keys: dict[str, Path], *extra: str, published: str = "ksk zsk") -> Path:
    source = workdir / f"{zone}.zone"
    includes = "".join(f"$INCLUDE {keys[kind]}\n" for kind in published.split())
    source.write_text(text + includes)
    signed = workdir / f"{zone}.signed"
    # -O full: one record per line, so a test can edit the signed file line by line.
    subprocess.run(["dnssec-signzone", "-q", "-O", "full", "-K", str(workdir), "-o", zone, "-f", str(signed), *extra,
                    "-k", str(keys["ksk"]).removesuffix(".key"), str(source), str(keys["zsk"]).removesuffix(".key")],
                   check=True, capture_output=True, cwd=workdir)
    return signed


def _zones(workdir: Path) -> dict[str, dict[str, Path]]:
    """Generate keys and write the zone files; returns the keys of each signed zone."""
    keys = {zone: {"ksk": _keygen(workdir, zone, "-f", "KSK"), "zsk": _keygen(workdir, zone)} for zone in SIGNED}
    keys["wrong"] = {"ksk": _keygen(workdir, "sec.test", "-f", "KSK")}  # never signs anything
    good = ("-e", f"+{VALIDITY}")  # from an hour ago (the default start) to 30 days ahead
    for octet, zone in enumerate((*CHILDREN, "n3.test", "tampered.test"), start=2):
        extra = ("-3", "c0ffee", "-H", "0") if zone == "n3.test" else ()
        _sign(workdir, zone, ZONE_HEAD.format(zone=zone, octet=octet), keys[zone], *good, *extra)
    # -P: dnssec-signzone's own verification would refuse these zones.
    _sign(workdir, "nokey.test", ZONE_HEAD.format(zone="nokey.test", octet=8), keys["nokey.test"], "-P", *good,
          published="ksk")
    _sign(workdir, "expired.test", ZONE_HEAD.format(zone="expired.test", octet=9), keys["expired.test"],
          "-P", "-s", "20200101000000", "-e", "20200201000000")
    _sign(workdir, "future.test", ZONE_HEAD.format(zone="future.test", octet=11), keys["future.test"],
          "-P", "-s", f"+{86400}", "-e", f"+{VALIDITY}")
    delegations = [f"{child.split('.')[0]} IN NS ns.{child}.\nns.{child.split('.')[0]} IN A 127.0.0.1\n"
                   for child in CHILDREN]
    never_signed = _keygen(workdir, "badds.sec.test", "-f", "KSK")
    ds = [dsfromkey(keys["child.sec.test"]["ksk"]), dsfromkey(never_signed)]
    parent = ZONE_HEAD.format(zone="sec.test", octet=1) + '*.wild IN TXT "wildcard"\n' + "".join(delegations) \
        + "\n".join(ds) + "\n"
    _sign(workdir, "sec.test", parent, keys["sec.test"], *good)
    _edit(workdir / "tampered.test.signed", lambda line: line.replace("192.0.2.6", "192.0.2.66"))
    (workdir / "plain.test.signed").write_text(ZONE_HEAD.format(zone="plain.test", octet=10))
    return keys


def _edit(path: Path, change: object) -> None:
    lines = path.read_text().splitlines(keepends=True)
    edited = [change(line) for line in lines]  # type: ignore[operator]
    if edited == lines:
        raise AssertionError(f"nothing changed in {path}")
    path.write_text("".join(edited))


def _answers(port: int) -> bool:
    out = subprocess.run(["dig", "+short", "+time=1", "+tries=1", "-p", str(port), "@127.0.0.1", "www.sec.test",
                          "A"], capture_output=True, text=True)
    return out.returncode == 0 and "192.0.2.1" in out.stdout


def _start(binary: str, workdir: Path, config: str, check: object) -> subprocess.Popen[bytes]:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "named.conf").write_text(config)
    log = workdir / "named.log"
    with log.open("wb") as out:
        # -g: foreground, log to stderr; -n 1: one worker thread is plenty on loopback.
        proc = subprocess.Popen([binary, "-g", "-n", "1", "-c", str(workdir / "named.conf")],
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(check, "named", proc, log, seconds=30)
    except BaseException:
        stop(proc)
        raise
    return proc


@contextlib.contextmanager
def bind(workdir: Path) -> Iterator[Bind]:
    """The authoritative named with the zones above, and a validating resolver forwarding to it with
    trust anchors (static DS) for ``sec.test`` and ``tampered.test``."""
    binary = require_binary("named")
    for tool in ("dnssec-keygen", "dnssec-signzone", "dnssec-dsfromkey", "dig"):
        require_binary(tool)
    zones = workdir / "zones"
    zones.mkdir(parents=True, exist_ok=True)
    server = Bind(workdir, keys=_zones(zones))
    server.port = free_port()
    config = AUTH_CONFIG.format(dir=workdir / "auth", port=server.port) + "".join(
        f'zone "{zone}" {{ type primary; file "{zones}/{zone}.signed"; }};\n' for zone in (*SIGNED, "plain.test"))
    with contextlib.ExitStack() as stack:
        auth = _start(binary, workdir / "auth", config, lambda: _answers(server.port))
        stack.callback(stop, auth)
        anchors = "\n".join(static_ds(server.ds(zone)) for zone in ("sec.test", "tampered.test"))
        server.resolver_port = free_port()
        config = RESOLVER_CONFIG.format(dir=workdir / "resolver", port=server.resolver_port, upstream=server.port,
                                        anchors=anchors)
        resolver = _start(binary, workdir / "resolver", config, lambda: _answers(server.resolver_port))
        stack.callback(stop, resolver)
        yield server


def static_ds(ds: str) -> str:
    """``sec.test. IN DS 123 13 2 ABCD`` as named.conf's ``"sec.test." static-ds 123 13 2 "ABCD";``."""
    owner, _, _, tag, algorithm, digest_type, *digest = ds.split()
    return f'  "{owner}" static-ds {tag} {algorithm} {digest_type} "{"".join(digest)}";'


if __name__ == "__main__":  # a quick look by hand: python tests/bindzones.py
    import tempfile

    with tempfile.TemporaryDirectory() as tmp, bind(Path(tmp)) as b:
        print("authoritative", b.server, "resolver", b.resolver, "pid", os.getpid())
        print(b.ds("sec.test"))
        input("enter to stop ")
