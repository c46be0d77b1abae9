"""probe against real peers, both sides in the same run: one command, one table, one JSON file.

    .venv/bin/python benchmarks/bench.py              # or: make bench  (BENCH_FULL=1 for the long rows)
    .venv/bin/python benchmarks/bench.py --quick --no-install --rows dns,disk   # a smoke run

Installs the missing peers from Debian (prometheus-blackbox-exporter, dnsmasq-base, monitoring-plugins-basic,
nginx; only as root, only with apt-get, never with --no-install), starts them on loopback, runs every row
and prints ``row | probe | peer | ratio | target | result``. A row whose peer (or probe feature) is missing
is reported as ``skipped`` with the reason; nothing is silently left out. Results also go to
``benchmarks/results/bench-<UTC time>.json`` (and ``latest.json``). The method of each row is in its
function's docstring and in docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import importlib.util
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT / "tests")]

from measure import alternate, blackbox, blackbox_cpu_per_probe, forked_cpu_per_run, probe_cpu_per_check  # noqa: E402

PACKAGES = {  # Debian package -> the file that shows it is installed
    "prometheus-blackbox-exporter": "/usr/bin/prometheus-blackbox-exporter",
    "dnsmasq-base": "/usr/sbin/dnsmasq",
    "monitoring-plugins-basic": "/usr/lib/nagios/plugins/check_disk",
    "nginx": "/usr/sbin/nginx",
}
# The disk rows: probe's check and check_disk with the same thresholds (20% free = 80% used)
DISK_CHECK = {"type": "disk", "path": "/", "thresholds": {"utilization": {"warning": ">= 80%", "critical": ">= 90%"}}}
CHECK_DISK_ARGV = [PACKAGES["monitoring-plugins-basic"], "-w", "20%", "-c", "10%", "-p", "/"]
# issue 20's types: benchmarks/bench_checks.py
CHECK_ROWS = ("ntp", "grpc", "websocket", "ssh", "smtp", "imap", "systemd")
ROWS = ("agent", "http", "tcp", "dns", "disk", "once", "startup", "scale", "rss", "history", "scrape-flood",
        *CHECK_ROWS)


@dataclass
class Row:
    """One line of the table. ``ratio`` is probe/peer when there is a peer; ``target`` applies to the ratio,
    or to ``probe`` itself for rows without a peer (``goal`` says which way is better)."""

    row: str
    unit: str
    target: float
    goal: str = "<="  # "<=": lower is better, ">=": higher is better
    probe: float | None = None
    peer: float | None = None
    peer_name: str = ""
    status: str = "skipped"  # pass | fail | skipped | error
    note: str = ""
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.probe is None or not self.peer:
            return None
        return self.probe / self.peer

    def judge(self) -> Row:
        value = self.ratio if self.peer_name else self.probe
        if value is None:
            return self
        ok = value <= self.target if self.goal == "<=" else value >= self.target
        self.status = "pass" if ok else "fail"
        return self

    def target_text(self) -> str:
        suffix = "x" if self.peer_name else f" {self.unit}"
        return f"{self.goal} {self.target:g}{suffix}"

    def to_json(self) -> dict[str, object]:
        return {**asdict(self), "ratio": self.ratio, "target_text": self.target_text()}


@dataclass
class Settings:
    quick: bool
    full: bool

    def runs(self, normal: int, quick: int = 100) -> int:
        return quick if self.quick else normal

    @property
    def rounds(self) -> int:
        return 1 if self.quick else 3


# --- peers -------------------------------------------------------------------------------------------


def ensure_packages(install: bool) -> dict[str, str]:
    """Install the missing peers when allowed; return {package: why it is unavailable} for the rest."""
    missing = [pkg for pkg, path in PACKAGES.items() if not os.path.exists(path)]
    if missing and install and os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"installing {' '.join(missing)} with apt-get", file=sys.stderr)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], env=env,
                       stdout=subprocess.DEVNULL, check=False)
    return {pkg: f"{pkg} is not installed ({path} missing)" for pkg, path in PACKAGES.items()
            if not os.path.exists(path)}


@dataclass
class Peers:
    """The loopback servers both sides talk to; ``None`` where the package is missing."""

    unavailable: dict[str, str]
    dns: str | None = None  # host:port of dnsmasq
    web: str | None = None  # host:port of nginx, plain HTTP
    web_tls: str | None = None  # host:port of the same nginx over TLS
    ca_file: str | None = None  # the CA that signed nginx's certificate
    blackbox_pid: int | None = None
    blackbox_port: int | None = None
    blackbox_idle_rss: int | None = None  # bytes, before its first probe

    def why(self, package: str) -> str:
        return self.unavailable.get(package, f"{package} did not start")


@contextlib.contextmanager
def start_peers(install: bool) -> Iterator[Peers]:
    peers = Peers(ensure_packages(install))
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory(prefix="probe-bench-") as tmp:
        if "dnsmasq-base" not in peers.unavailable:
            from dnsservers import dnsmasq

            peers.dns = stack.enter_context(dnsmasq(PACKAGES["dnsmasq-base"]))
        if "nginx" not in peers.unavailable:
            from netservers import Certs, nginx

            certs = Certs(Path(tmp) / "certs")
            server = stack.enter_context(nginx(PACKAGES["nginx"], Path(tmp) / "nginx", *certs.files["valid"]))
            peers.web, peers.web_tls = f"127.0.0.1:{server.port}", f"127.0.0.1:{server.tls_port}"
            peers.ca_file = str(certs.ca_file)
        if "prometheus-blackbox-exporter" not in peers.unavailable:
            import bench_dns
            import bench_http

            http_modules = bench_http.BLACKBOX_CONFIG.format(ca_file=peers.ca_file or "/dev/null")
            config = bench_dns.BLACKBOX_CONFIG + http_modules.split("modules:", 1)[1]
            pid, port = stack.enter_context(blackbox(config, PACKAGES["prometheus-blackbox-exporter"]))
            time.sleep(0.5)  # let it settle before reading its idle RSS
            peers.blackbox_pid, peers.blackbox_port, peers.blackbox_idle_rss = pid, port, rss(pid)
        yield peers


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


# --- helpers -----------------------------------------------------------------------------------------


def check_types() -> set[str]:
    from probe.plugins.manager import load_plugins

    return set(load_plugins(use_entry_points=False).checks)


def median_of_rounds(rounds: int, ours: Callable[[], float], theirs: Callable[[], float]) -> tuple[float, float, float,
                                                                                                   list[float]]:
    """Alternate the two sides; the median per-round ratio is the result (load on the machine shifts both)."""
    mine, peer = alternate(rounds, ours, theirs)
    ratios = [m / p for m, p in zip(mine, peer, strict=True) if p > 0]
    if not ratios:  # /proc/PID/stat counts whole clock ticks (10 ms)
        raise RuntimeError("the peer's CPU was below one clock tick in every round: too few runs")
    return statistics.median(mine), statistics.median(peer), statistics.median(ratios), ratios


def probe_command() -> list[str]:
    script = Path(sys.executable).parent / "probe"
    return [str(script)] if script.exists() else [sys.executable, "-m", "probe"]


# --- rows --------------------------------------------------------------------------------------------


AGENT_TARGETS = {"http": 0.6, "tcp": 0.6, "dns": 0.6, "disk": 0.2}


def row_agent(peers: Peers, s: Settings) -> list[Row]:
    """CPU per check of the running agent (``probe run``, shipped probe.yaml, 100 checks/s) per check type vs
    the same peers as the in-process rows (benchmarks/bench_agent.py has the method)."""
    # 100 checks/s in the steady state: every check has run 21 times (a full flapping window) before measuring
    # --quick: every check has run once (first runs are splayed over one interval), then one 1 s window.
    checks, interval, warmup = (50, 1.0, 1.5) if s.quick else (100, 1.0, 25.0)
    window = 1.0 if s.quick else 20.0
    rows = []
    for kind, target in AGENT_TARGETS.items():
        row = Row(f"agent-{kind}", "ms CPU/check", target,
                  peer_name="check_disk per run" if kind == "disk" else f"blackbox_exporter {BLACKBOX_MODULE[kind]}")
        try:
            rows.append(agent_row(row, kind, peers, s, checks, interval, window, warmup))
        except Exception as exc:  # one broken row must not lose the others
            row.status, row.note = "error", f"{type(exc).__name__}: {exc}"[:300]
            rows.append(row)
    return rows


BLACKBOX_MODULE = {"http": "http_2xx", "tcp": "tcp_connect", "dns": "dns_udp"}


def agent_row(row: Row, kind: str, peers: Peers, s: Settings, checks: int, interval: float, window: float,
              warmup: float) -> Row:
    from bench_agent import agent_vs_peer, running_agent

    if kind == "disk":
        if "monitoring-plugins-basic" in peers.unavailable:
            row.note = peers.why("monitoring-plugins-basic")
            return row
        check: dict[str, object] = DISK_CHECK
        peer = partial(forked_cpu_per_run, CHECK_DISK_ARGV, s.runs(300, 10), checks / interval)
        back_to_back = partial(forked_cpu_per_run, CHECK_DISK_ARGV, s.runs(300, 10))
    else:
        target = {"http": peers.web, "tcp": peers.web, "dns": peers.dns}[kind]
        if target is None or peers.blackbox_pid is None:
            row.note = peers.why("prometheus-blackbox-exporter" if target else
                                 "dnsmasq-base" if kind == "dns" else "nginx")
            return row
        host, port = target.rsplit(":", 1)
        check = {"http": {"type": "http", "url": f"http://{target}/"},
                 "tcp": {"type": "tcp", "host": host, "port": int(port)},
                 "dns": {"type": "dns", "query": "www.test", "server": target}}[kind]
        blackbox_target = f"http://{target}/" if kind == "http" else target
        peer = blackbox_cpu(peers, BLACKBOX_MODULE[kind], blackbox_target, s.runs(2000), checks / interval)
        back_to_back = blackbox_cpu(peers, BLACKBOX_MODULE[kind], blackbox_target, s.runs(2000))
    # The peer at the agent's rate, as Prometheus spreads its scrapes of many targets over the interval (and
    # as a scheduler forks a plugin): both sides woken for every check. Its cost back to back is shown too.
    with running_agent(check, checks, interval, warmup) as agent:
        m = agent_vs_peer(agent, peer, s.rounds, window)
        with agent.paused():
            flat_out = back_to_back()
    row.probe, row.peer = m.agent * 1e3, m.peer * 1e3
    row.extra = {"checks": checks, "interval": interval, "window": window, "warmup": warmup, "runs": m.runs,
                 "rounds": m.ratios, "peer_rate": checks / interval, "peer_back_to_back_ms": flat_out * 1e3}
    row.note = (f"probe run, shipped probe.yaml, {checks} checks every {interval:g} s; {m.runs:.0f} runs in "
                f"{s.rounds} x {window:g} s windows, median ratio {m.ratio:.2f}; the peer at "
                f"{checks / interval:g}/s ({flat_out * 1e3:.3g} ms back to back)")
    return row.judge()


def blackbox_cpu(peers: Peers, module: str, target: str, runs: int, rate: float | None = None) -> Callable[[], float]:
    pid, port = peers.blackbox_pid or 0, peers.blackbox_port or 0
    return lambda: blackbox_cpu_per_probe(pid, port, module, target, runs, rate)


def row_dns(peers: Peers, s: Settings) -> list[Row]:
    """CPU per DNS check through the Runner vs blackbox_exporter's dns prober (CPU of its process per probe)."""
    return [dns_row(peers, s, transport) for transport in ("udp", "tcp")]


def dns_row(peers: Peers, s: Settings, transport: str) -> Row:
    row = Row(f"dns/{transport}", "ms CPU/check", 0.5, peer_name="blackbox_exporter dns")
    if peers.dns is None or peers.blackbox_pid is None:
        row.note = peers.why("dnsmasq-base" if peers.dns is None else "prometheus-blackbox-exporter")
        return row
    runs = s.runs(2000)
    check = {"type": "dns", "query": "www.test", "server": peers.dns, "transport": transport, "timeout": "2s"}
    pid, port, target = peers.blackbox_pid, peers.blackbox_port or 0, peers.dns
    mine, peer, ratio, ratios = median_of_rounds(
        s.rounds, lambda: asyncio.run(probe_cpu_per_check(check, runs)),
        lambda: blackbox_cpu_per_probe(pid, port, f"dns_{transport}", target, runs))
    row.probe, row.peer = mine * 1e3, peer * 1e3
    row.extra = {"runs": runs, "rounds": ratios}
    row.note = f"{runs} runs x {s.rounds} rounds, median ratio {ratio:.2f}"
    return row.judge()


def row_http(peers: Peers, s: Settings) -> list[Row]:
    """CPU per HTTP check (fresh connection each) through the Runner vs blackbox_exporter's http prober, same nginx
    (benchmarks/bench_http.py does the measuring); TLS as an extra row."""
    return [http_row(peers, s, "http", "http", "http_2xx"), http_row(peers, s, "http/tls", "http", "https_2xx")]


def row_tcp(peers: Peers, s: Settings) -> list[Row]:
    """CPU per TCP connect check through the Runner vs blackbox_exporter's tcp prober, same nginx port."""
    return [http_row(peers, s, "tcp", "tcp", "tcp_connect")]


def http_row(peers: Peers, s: Settings, name: str, check_type: str, module: str) -> Row:
    row = Row(name, "ms CPU/check", 0.5, peer_name=f"blackbox_exporter {module}")
    if peers.web is None or peers.web_tls is None or peers.blackbox_pid is None:
        row.note = peers.why("nginx" if peers.web is None else "prometheus-blackbox-exporter")
        return row
    if check_type not in check_types():
        row.note = f"no {check_type} check type on this branch"
        return row
    host, port = peers.web.rsplit(":", 1)
    check: dict[str, object] = {"type": check_type, "timeout": "2s"}
    if module == "tcp_connect":
        check.update(host=host, port=int(port))
        target = peers.web
    elif module == "https_2xx":
        target = f"https://{peers.web_tls}/"
        check.update(url=target, tls={"ca_file": peers.ca_file})
    else:
        target = f"http://{peers.web}/"
        check.update(url=target)
    runs = s.runs(2000)
    pid, bport = peers.blackbox_pid, peers.blackbox_port or 0
    mine, peer, ratio, ratios = median_of_rounds(
        s.rounds, lambda: asyncio.run(probe_cpu_per_check(check, runs)),
        lambda: blackbox_cpu_per_probe(pid, bport, module, target, runs))
    row.probe, row.peer = mine * 1e3, peer * 1e3
    row.extra = {"runs": runs, "rounds": ratios}
    row.note = f"{runs} runs x {s.rounds} rounds, median ratio {ratio:.2f}"
    if name == "http/tls":
        row.note += " (not a row of the issue: TLS handshake per check)"
    return row.judge()


def row_disk(peers: Peers, s: Settings) -> list[Row]:
    """CPU per disk check of ``/``: probe's through the Runner in-process vs ``check_disk`` fork+exec, measured by
    the children's rusage (user+sys) — the cost a Nagios-style scheduler pays per run."""
    row = Row("disk", "ms CPU/check", 0.2, peer_name="check_disk per run")
    if "monitoring-plugins-basic" in peers.unavailable:
        row.note = peers.why("monitoring-plugins-basic")
        return [row]
    runs = s.runs(2000)
    peer_runs = s.runs(300, 10)
    mine, peer, ratio, ratios = median_of_rounds(s.rounds, lambda: asyncio.run(probe_cpu_per_check(DISK_CHECK, runs)),
                                                 partial(forked_cpu_per_run, CHECK_DISK_ARGV, peer_runs))
    row.probe, row.peer = mine * 1e3, peer * 1e3
    row.extra = {"runs": runs, "peer_runs": peer_runs, "rounds": ratios}
    row.note = f"{runs} / {peer_runs} runs x {s.rounds} rounds, median ratio {ratio:.2f}"
    return [row.judge()]


def five_checks(peers: Peers, types: set[str]) -> tuple[str, list[str]]:
    """The issue's 5-check all-local config, with the types that exist and targets that run."""
    wanted = {
        "http": f"{{name: web, type: http, url: 'http://{peers.web}/'}}" if peers.web else None,
        "dns": f"{{name: dns, type: dns, query: www.test, server: '{peers.dns}'}}" if peers.dns else None,
        "tcp": (f"{{name: tcp, type: tcp, host: 127.0.0.1, port: {peers.web.rsplit(':', 1)[1]}}}"
                if peers.web else None),
        "disk": "{name: disk, type: disk, path: /}",
        "process": "{name: procs, type: process, user: root}",
    }
    lines, missing = [], []
    for kind, line in wanted.items():
        if kind in types and line is not None:
            lines.append(f"  - {line}")
        else:
            missing.append(kind)
    return "checks:\n" + "\n".join(lines) + "\n", missing


def wall_median(argv: list[str], runs: int, cpu: list[float] | None = None) -> float:
    """Median wall time of ``runs`` runs; each run's CPU (user+system, from the children's rusage) goes to ``cpu``."""
    times = []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        times.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if cpu is not None:
            cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return statistics.median(times)


def row_startup(peers: Peers, s: Settings) -> list[Row]:
    """Wall time of ``probe run --once`` on the 5-check config vs a bare ``python -c "import ..."`` of every
    library module that run imports (found with ``-X importtime`` on the same config: the floor the stack
    sets), and of
    ``probe --help`` vs ``python -I -c pass``. Alternating runs, medians (hyperfine when installed)."""
    config, missing = five_checks(peers, check_types())
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "five.yaml"
        path.write_text(config)
        ours = [*probe_command(), "--config-dir", str(path), "run", "--once"]
        # Bytecode cached, as after a pip or package install: this first run writes what is missing.
        os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
        result = subprocess.run([sys.executable, "-X", "importtime", "-m", "probe", "--config-dir", str(path), "run",
                                 "--once"], capture_output=True, text=True, check=False)
        row = Row("startup", "ms wall", 1.25, peer_name="python -c 'import <what run imports>'")
        if result.returncode not in (0, 1):
            row.status, row.note = "error", f"probe run --once exited {result.returncode}: {result.stderr[-300:]}"
            return [row]
        libraries = libraries_imported(result.stderr)
        modules = libraries_imported(result.stderr, submodules=True)
        floor = [sys.executable, "-c", "import " + ", ".join(libraries)]
        every_module = [sys.executable, "-c", "import " + ", ".join(modules)]
        for command in (floor, every_module):
            if (failed := subprocess.run(command, capture_output=True, text=True, check=False)).returncode:
                row.status, row.note = "error", f"the floor's imports fail: {failed.stderr[-300:]}"
                return [row]
        help_row = Row("help", "ms wall", 8.0, peer_name="python -I -c pass")
        runs = s.runs(30, 3)
        (mine, whole, top), how = timed_runs([ours, every_module, floor], runs, s)
        # The floor is every module of those libraries that run loads: `import pydantic` alone loads almost
        # nothing (its names come on first use), so the top-level imports were not "the libraries run needs".
        row.probe, row.peer = mine * 1e3, whole * 1e3
        row.extra = {"checks": 5 - len(missing), "missing_types": missing, "config": config, "libraries": libraries,
                     "top_level_floor_ms": top * 1e3, "submodules": len(modules)}
        row.note = (f"{5 - len(missing)} checks" + (f" (no {', '.join(missing)} yet)" if missing else "")
                    + f"; floor imports the {len(modules)} modules of {len(libraries)} libraries that run loads "
                    f"({', '.join(libraries[:6])}, ...); {how}; their {len(libraries)} top-level modules alone "
                    f"(pydantic without pydantic.main, ...) take {top * 1e3:.0f} ms: {mine / top:.2f}x of that")
        (mine, peer), how = timed_runs([[*probe_command(), "--help"], [sys.executable, "-I", "-c", "pass"]], runs, s)
        help_row.probe, help_row.peer = mine * 1e3, peer * 1e3
        help_row.note = how
    return [row.judge(), help_row.judge()]


def libraries_imported(importtime: str, *, submodules: bool = False) -> list[str]:
    """Top-level modules a ``-X importtime`` run imported, but probe's own and the interpreter's start-up; with
    ``submodules``, every module it imported (``pydantic.main`` as well as ``pydantic``, whose ``__init__`` loads
    almost nothing: its names are imported on first use)."""
    names = []
    for line in importtime.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name and not name.startswith(" ") and (submodules or "." not in name):
                names.append(name)
    bare = subprocess.run([sys.executable, "-X", "importtime", "-c", "pass"], capture_output=True, text=True,
                          check=False).stderr
    startup = {line.rsplit("|", 1)[1].strip() for line in bare.splitlines() if line.startswith("import time:")}
    skip = {"probe", "__main__", "runpy"} | startup
    # importtime also lists imports that failed inside a try (msvcrt, _winapi on Linux): only what exists.
    # Private modules last: they are a library's C half, imported by its Python half. Imported first, one can
    # break its library: `import _asyncio, asyncio` on CPython 3.11 leaves two registries of the current task,
    # and `asyncio.timeout()` then raises "should be used inside a task" in every task (the checks of a run
    # timed after such an import failed at once instead of connecting).
    return sorted({n for n in names if n not in skip and not n.startswith("probe")
                   and all(part.isidentifier() for part in n.split(".")) and _importable(n)},
                  key=lambda n: (n.startswith("_"), n))


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:  # a submodule of a package that is not installed
        return False


def timed_runs(commands: list[list[str]], runs: int, s: Settings) -> tuple[tuple[float, ...], str]:
    """Median wall time of each command, the commands alternating; ``how`` says how, with the CPU ratio of the
    first two."""
    if shutil.which("hyperfine") and not s.quick:
        return hyperfine(commands, runs), "hyperfine"
    walls: list[list[float]] = [[] for _ in commands]
    cpus: list[list[float]] = [[] for _ in commands]
    for _ in range(s.rounds):
        for i, command in enumerate(commands):
            walls[i].append(wall_median(command, runs, cpus[i]))
    mine, peer = statistics.median(cpus[0]), statistics.median(cpus[1])
    how = (f"median of {runs} runs x {s.rounds} rounds, alternating; CPU {mine * 1e3:.0f} vs "
           f"{peer * 1e3:.1f} ms = {mine / peer:.2f}x")
    return tuple(statistics.median(w) for w in walls), how


def hyperfine(commands: list[list[str]], runs: int) -> tuple[float, ...]:
    import shlex

    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run(["hyperfine", "-N", "--warmup", "3", "--runs", str(runs), "--export-json", out.name,
                        *(shlex.join(c) for c in commands)], stdout=subprocess.DEVNULL, check=True)
        results = json.loads(Path(out.name).read_text())["results"]
    return tuple(r["median"] for r in results)


def row_history(peers: Peers, s: Settings) -> list[Row]:
    """History store: results/s the writer thread sustains (benchmarks/bench_history.py), and what the caller
    (the scheduler's loop) pays per result to enqueue."""
    from bench_history import measure

    n = s.runs(100_000, 2_000)
    numbers = measure(n)
    row = Row("history", "results/s", 5000.0, goal=">=", probe=numbers["rate"])
    row.extra = dict(numbers)
    row.note = f"{n} results; enqueue {numbers['enqueue_us']:.1f} us/result on the caller's thread"
    return [row.judge()]


def row_rss(peers: Peers, s: Settings) -> list[Row]:
    """RSS of the agent (``probe run``, shipped probe.yaml: history and the Prometheus endpoint on) with 100 checks
    of http, dns, tcp, disk and process after each has run, vs blackbox_exporter's RSS after it has probed the same
    network targets 100 times, in the same run."""
    row = Row("rss-100", "MiB RSS", 3.5, peer_name="blackbox_exporter after 100 probes")
    if peers.blackbox_pid is None:
        row.note = peers.why("prometheus-blackbox-exporter")
        return [row]
    from bench_agent import shipped_settings

    config, missing = five_checks(peers, check_types())
    kinds = [k for k in ("http", "dns", "tcp", "disk", "process") if k not in missing]
    items = [line for line in config.splitlines()[1:]]
    lines = ["defaults: {interval: 10s, timeout: 5s}", "checks:"]
    for i in range(100):
        item = items[i % len(items)]
        lines.append(item.replace("{name: ", f"{{name: c{i:03d}-", 1))
    probes = [(m, t) for m, t in (("http_2xx", f"http://{peers.web}/"), ("dns_udp", peers.dns),
                                  ("tcp_connect", peers.web)) if t]
    from bench_http import blackbox_probe

    for i in range(100):  # the same targets the agent's checks probe, 100 times in all
        module, target = probes[i % len(probes)]
        blackbox_probe(peers.blackbox_port or 0, module, target)
    theirs = rss(peers.blackbox_pid)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "checks.d").mkdir()
        (Path(tmp) / "checks.d" / "hundred.yaml").write_text("\n".join(lines) + "\n")
        from bench_agent import free_port
        from daemons import stop

        (Path(tmp) / "probe.yaml").write_text(shipped_settings(Path(tmp) / "state", free_port()))
        argv = [*probe_command(), "--config", f"{tmp}/probe.yaml", "--config-dir", f"{tmp}/checks.d", "run"]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            # First runs are splayed over the interval: at 12 s every check has run at least once.
            time.sleep(3 if s.quick else 12)
            if proc.poll() is not None:
                err = proc.stderr.read().decode()[-300:] if proc.stderr else ""
                row.status, row.note = "error", f"probe run exited {proc.returncode}: {err}"
                return [row]
            mine = rss(proc.pid)
        finally:
            stop(proc)
    row.probe, row.peer = mine / 2**20, theirs / 2**20
    row.note = (f"100 checks of {', '.join(kinds)} at 10 s, shipped probe.yaml; RSS at {3 if s.quick else 12} s; "
                f"blackbox idle {(peers.blackbox_idle_rss or 0) / 2**20:.1f} MiB")
    return [row.judge()]


ONCE_WATCHED = ("redis-ping", "root-disk", "postgres")


def row_once(peers: Peers, s: Settings) -> list[Row]:
    """``probe run --once`` with 20 mixed checks (Redis, PostgreSQL, nginx, dnsmasq, local checks, a process scan,
    subprocesses) vs the same check alone: the duration each reports (tests/test_once_timings.py holds the
    rule ``<= 2x + 2 ms`` for the checks timed at their I/O events). Best of the rounds on each side."""
    row = Row("once", "ms reported", 2.0, peer_name="the same check alone")
    import socket as socket_module

    def reachable(port: int) -> bool:
        with contextlib.suppress(OSError):
            socket_module.create_connection(("127.0.0.1", port), timeout=2).close()
            return True
        return False

    if peers.web is None or not reachable(6379):
        row.note = "needs nginx and Redis on 127.0.0.1:6379"
        return [row]
    web_port = peers.web.rsplit(":", 1)[1]
    checks = [f"{{name: redis-ping{'' if i == 0 else i}, type: tcp, host: 127.0.0.1, port: 6379, "
              f"send: \"PING\\r\\n\", expect: ['\\+PONG']}}" for i in range(3)]
    if reachable(5432):
        checks += [f"{{name: postgres{'' if i == 0 else i}, type: sql, "
                   "dsn: 'postgresql://postgres@127.0.0.1:5432/test', query: 'SELECT 1'}" for i in range(3)]
    checks += [f"{{name: web{i}, type: http, url: 'http://{peers.web}/'}}" for i in range(5)]
    checks += [f"{{name: port{i}, type: tcp, host: 127.0.0.1, port: {web_port}}}" for i in range(2)]
    if peers.dns:
        checks += [f"{{name: dns{i}, type: dns, query: www.test, server: '{peers.dns}'}}" for i in range(2)]
    checks += ["{name: root-disk, type: disk, path: /}", "{name: memory, type: memory}",
               "{name: hosts, type: file, path: /etc/hosts}",
               "{name: procs, type: process, process_name: redis-server}",
               "{name: true-cmd, type: command, run: [/bin/true]}"]
    checks = checks[:20]
    watched = [w for w in ONCE_WATCHED if any(c.startswith(f"{{name: {w},") for c in checks)]
    rounds = 2 if s.quick else 7
    mixed: dict[str, list[float]] = {w: [] for w in watched}
    alone: dict[str, list[float]] = {w: [] for w in watched}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "twenty.yaml"
        path.write_text("checks:\n" + "".join(f"  - {c}\n" for c in checks))
        base = [*probe_command(), "--config-dir", str(path), "run", "--once", "--format", "json"]

        def durations(*extra: str) -> dict[str, float]:
            done = subprocess.run([*base, *extra], capture_output=True, text=True, check=False)
            if not done.stdout:
                raise RuntimeError(f"probe run --once exited {done.returncode}: {done.stderr[-300:]}")
            return {c["name"]: c["duration"] * 1e3 for c in json.loads(done.stdout)["checks"]}

        for _ in range(rounds):
            together = durations()
            for w in watched:
                mixed[w].append(together[w])
                alone[w].append(durations("--check", w)[w])
    best = {w: (min(mixed[w]), min(alone[w])) for w in watched}
    first = watched[0]
    row.probe, row.peer = best[first]
    row.extra = {"checks": len(checks), "rounds": rounds, "best_ms": best,
                 "median_ms": {w: (statistics.median(mixed[w]), statistics.median(alone[w])) for w in watched}}
    row.note = (f"{len(checks)} checks at once, best of {rounds}: "
                + "; ".join(f"{w} {m:.2f} vs {a:.2f} ms" + (" (<= 2x + 2 ms)" if m <= 2 * a + 2 else " (over)")
                            for w, (m, a) in best.items()))
    row.status = "pass" if all(m <= 2 * a + 2 for m, a in best.values()) else "fail"
    return [row]


SCALE_CHECKS = 10_000


def row_scale(peers: Peers, s: Settings) -> list[Row]:
    """10,000 dns checks at a 60 s interval against dnsmasq, in an agent wired as ``probe run`` wires it
    (history and metrics sinks, forecasts), in a child process: its CPU (all threads) over the window, the p99
    of how late runs started (the scheduler's own lag samples) and its RSS. 60 s by default (every check runs
    once), 5 minutes with BENCH_FULL=1; --quick runs 1,000 checks for 2 s."""
    row = Row("10k-checks", "% of one core", 25.0)
    if (HERE / "scheduler_scale.py").exists():
        return delegated("scheduler_scale", (row,), "daemon")(peers, s)
    if peers.dns is None:
        row.note = peers.why("dnsmasq-base")
        return [row]
    seconds = 2.0 if s.quick else 300.0 if s.full else 60.0
    checks = SCALE_CHECKS // 10 if s.quick else SCALE_CHECKS
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "checks.yaml"
        lines = ["defaults: {interval: 60s, timeout: 5s}", "checks:"]
        lines += [f"  - {{name: dns-{i:05d}, type: dns, query: www.test, server: '{peers.dns}'}}"
                  for i in range(checks)]
        config.write_text("\n".join(lines) + "\n")
        (Path(tmp) / "probe.yaml").write_text(f"state_dir: {tmp}/state\n")
        done = subprocess.run([sys.executable, __file__, "--scale-child", tmp, str(seconds)], capture_output=True,
                              text=True, timeout=seconds + 600, check=False)
    if done.returncode != 0:
        row.status, row.note = "error", f"agent child exited {done.returncode}: {done.stderr[-300:]}"
        return [row]
    m = json.loads(done.stdout.strip().splitlines()[-1])
    row.probe, row.extra = m["cpu_percent"], m
    met = {"cpu": m["cpu_percent"] <= 25.0, "p99 lateness": m["lag_p99_ms"] <= 50.0, "rss": m["rss_mib"] <= 150.0}
    row.status = "pass" if all(met.values()) else "fail"
    row.note = (f"{m['checks']} checks, {seconds:g} s, {m['runs']} runs: p99 start lateness "
                f"{m['lag_p99_ms']:.1f} ms (<= 50), worst {m['lag_worst_ms']:.0f} ms;"
                f" RSS {m['rss_mib']:.0f} MiB (<= 150)"
                + "".join(f"; {k} not met" for k, ok in met.items() if not ok))
    return [row]


def scale_child(tmp: str, seconds: float) -> None:
    """The agent side of ``row_scale``, in its own process so its CPU and memory are its own."""
    from probe.config.load import load
    from probe.daemon.wiring import assemble, freeze_heap
    from probe.engine.agent import Agent

    registry, plan = load(Path(tmp) / "checks.yaml", settings_path=Path(tmp) / "probe.yaml", env={})

    async def measure() -> dict[str, float]:
        parts = assemble(plan, registry, rerun=None, remediate=False, prometheus=False)
        sinks = [sink for sink in (parts.history, parts.metrics) if sink is not None]
        agent = Agent(plan, registry, sinks=sinks)
        agent.runner.forecaster = parts.forecaster
        freeze_heap()  # as probe.daemon.wiring.serve does before the loop starts
        task = asyncio.create_task(agent.run())
        wall, cpu = time.monotonic(), time.process_time()
        await asyncio.sleep(seconds)
        cpu, wall = time.process_time() - cpu, time.monotonic() - wall
        lag = agent.schedule.lag
        result = {"cpu_percent": cpu / wall * 100, "runs": lag.total, "lag_p99_ms": lag.quantile(0.99) * 1e3,
                  "lag_worst_ms": lag.worst * 1e3, "rss_mib": rss(os.getpid()) / 2**20, "seconds": wall,
                  "checks": len(plan.checks)}
        agent.request_stop()
        await task
        await parts.aclose()
        return result

    print(json.dumps(asyncio.run(measure())))


def delegated(module: str, rows: tuple[Row, ...], owner: str) -> Callable[[Peers, Settings], list[Row]]:
    """Rows another benchmark script owns: called when it is present, reported as skipped until then."""

    def run(peers: Peers, s: Settings) -> list[Row]:
        if not (HERE / f"{module}.py").exists():
            for r in rows:
                r.note = f"benchmarks/{module}.py ({owner}) is not here yet"
            return list(rows)
        mod = importlib.import_module(module)
        wanted = {r.row for r in rows}  # a script may report rows that other ROW_FUNCTIONS entries ask for
        return [Row(**r) for r in mod.bench_rows(peers=peers, quick=s.quick, full=s.full) if r["row"] in wanted]

    return run


def check_rows(name: str, peers: Peers, s: Settings) -> list[Row]:
    """One of issue 20's check types: benchmarks/bench_checks.py starts its server and peers and measures."""
    import bench_checks

    return [Row(**r) for r in bench_checks.bench_rows(quick=s.quick, only=[name])]


ROW_FUNCTIONS: dict[str, Callable[[Peers, Settings], list[Row]]] = {
    "agent": row_agent,
    "http": row_http,
    "tcp": row_tcp,
    "dns": row_dns,
    "disk": row_disk,
    "once": row_once,
    "startup": row_startup,
    "scale": row_scale,
    "rss": row_rss,
    "history": row_history,
    # benchmarks/bench_scrape.py: check lateness while 1,000 scrapers hammer /metrics (issue 16)
    "scrape-flood": delegated("bench_scrape", (Row("scrape-flood", "ms p99 lateness", 50.0),), "issue 16"),
    # bench_checks.py starts its own servers and peers for each of these
    **{name: partial(check_rows, name) for name in CHECK_ROWS},
}


# --- output ------------------------------------------------------------------------------------------


def machine() -> dict[str, object]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cpus": os.cpu_count(), "cpu_model": model, "python": platform.python_version(),
            "kernel": platform.release(), "load_1m": os.getloadavg()[0]}


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def table(rows: list[Row]) -> str:
    lines = ["| row | unit | probe | peer | ratio | target | result | note |", "|" + " --- |" * 8]
    for r in rows:
        ratio = f"{r.ratio:.2f}x" if r.ratio is not None else "-"
        peer = f"{fmt(r.peer)} ({r.peer_name})" if r.peer_name and r.peer is not None else (r.peer_name or "-")
        lines.append(f"| {r.row} | {r.unit or '-'} | {fmt(r.probe)} | {peer} | {ratio} | {r.target_text()} | "
                     f"{r.status} | {r.note} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="few iterations: proves the harness runs")
    parser.add_argument("--full", action="store_true", default=os.environ.get("BENCH_FULL") == "1",
                        help="the long rows at full length (default: $BENCH_FULL=1)")
    parser.add_argument("--no-install", action="store_true", help="never apt-get install the peers")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated subset of {','.join(ROWS)}")
    parser.add_argument("--json", metavar="FILE", help="write the results here (default benchmarks/results/)")
    args = parser.parse_args(argv)
    wanted = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = sorted(set(wanted) - set(ROWS))
    if unknown:
        parser.error(f"unknown rows: {', '.join(unknown)} (choose from {', '.join(ROWS)})")
    settings = Settings(quick=args.quick, full=args.full)
    rows: list[Row] = []
    started = time.time()
    with start_peers(install=not args.no_install) as peers:
        for name in wanted:
            print(f"running {name} ...", file=sys.stderr, flush=True)
            try:
                rows += ROW_FUNCTIONS[name](peers, settings)
            except Exception as exc:  # one broken row must not lose the others
                rows.append(Row(name, "", 0.0, status="error", note=f"{type(exc).__name__}: {exc}"[:300]))
    print(table(rows))
    report = {"started": started, "finished": time.time(), "machine": machine(), "quick": settings.quick,
              "full": settings.full, "rows": [r.to_json() for r in rows]}
    out = Path(args.json) if args.json else HERE / "results" / time.strftime("bench-%Y%m%dT%H%M%SZ.json",
                                                                              time.gmtime(started))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str))
    if not args.json:
        (out.parent / "latest.json").write_text(out.read_text())
    print(f"results: {out}", file=sys.stderr)
    return 1 if any(r.status == "error" for r in rows) else 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--scale-child"]:
        scale_child(sys.argv[2], float(sys.argv[3]))
    else:
        sys.exit(main())
