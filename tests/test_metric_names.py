"""One naming rule for every measurement (probe._metricnames): checked for every built-in check type's declared
measurements with promtool, against OpenTelemetry's own unit mapping, and on the real agent: what its /metrics
serves is, name for name and label for label, what ``run --once --format prometheus`` writes for the same
checks, and every unit a check reports is the one its type declares."""

from __future__ import annotations

import json
import re
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agentproc import Daemon, scrape_until
from conftest import require_binary
from dnsservers import dnsmasq
from hostfs import probe_cli
from netservers import ThreadedServer, free_port, http_server
from prometheus_client.parser import text_string_to_metric_families

from probe._metricnames import instrument_name, prometheus_name, prometheus_unit
from probe.plugins.manager import load_plugins

PROMETHEUS_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
OTEL_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-/]{0,254}$")
RESERVED = ("_count", "_sum", "_bucket", "_total")


def builtin_units() -> dict[str, dict[str, str]]:
    registry = load_plugins(use_entry_points=False)
    out = {}
    for name in registry.check_type_names():
        cls = registry.check_type(name)
        assert cls is not None
        out[name] = dict(cls.units)
    return out


def test_every_builtin_measurement_declares_its_unit() -> None:
    registry = load_plugins(use_entry_points=False)
    for name in registry.check_type_names():
        cls = registry.check_type(name)
        assert cls is not None
        if cls.measurements is None:  # names come from the config (sql columns, perfdata labels)
            continue
        declared = set(cls.measurements) | set(cls.capacities.values())
        missing = declared - set(cls.units)
        assert not missing, f"check type {name!r}: add {sorted(missing)} to its `units` (s, By, 1 or {{thing}})"


def test_the_rule_for_every_builtin_measurement_and_promtool_agrees() -> None:
    exposition = []
    for check_type, units in builtin_units().items():
        for measurement, unit in units.items():
            assert unit in ("s", "By", "1", "") or re.fullmatch(r"\{[a-z_]+\}", unit), (check_type, measurement, unit)
            instrument = instrument_name(check_type, measurement, unit)
            name = prometheus_name(instrument, unit)
            assert OTEL_NAME.match(instrument) and PROMETHEUS_NAME.match(name), name
            assert name.startswith(f"probe_{check_type}_")
            assert not name.endswith(RESERVED) and not name.endswith("_value"), name
            assert name.endswith("_seconds") == (unit == "s"), name
            assert name.endswith("_bytes") == (unit == "By"), name
            exposition += [f"# HELP {name} Latest value of this measurement", f"# TYPE {name} gauge",
                           f'{name}{{check_name="c",check_type="{check_type}"}} 1']
    promtool = require_binary("promtool")
    lint = subprocess.run([promtool, "check", "metrics"], input="\n".join(exposition) + "\n", capture_output=True,
                          text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr


@pytest.mark.parametrize(("check_type", "measurement", "unit", "instrument", "prometheus"), [
    ("process", "count", "{process}", "probe.process.processes", "probe_process_processes"),
    ("dns", "answer_count", "{record}", "probe.dns.answer_records", "probe_dns_answer_records"),
    ("disk", "inodes_free", "{inode}", "probe.disk.inodes_free", "probe_disk_inodes_free"),
    ("http", "body_bytes", "By", "probe.http.body_bytes", "probe_http_body_bytes"),
    ("memory", "total", "By", "probe.memory.total", "probe_memory_total_bytes"),
    ("memory", "utilization", "1", "probe.memory.utilization", "probe_memory_utilization"),
    ("sql", "count", "", "probe.sql.count.value", "probe_sql_count_value"),  # a column: no noun to use
    ("sql", "lag_sum", "s", "probe.sql.lag_sum", "probe_sql_lag_sum_seconds"),
    ("acme", "policy", "{policy}", "probe.acme.policy", "probe_acme_policy"),
    ("acme", "hits-total", "{hit}", "probe.acme.hits-hits", "probe_acme_hits_hits"),
    ("my type", "a:b", "", "probe.my_type.a_b", "probe_my_type_a_b"),
])
def test_names(check_type: str, measurement: str, unit: str, instrument: str, prometheus: str) -> None:
    assert instrument_name(check_type, measurement, unit) == instrument
    assert prometheus_name(instrument, unit) == prometheus


@pytest.mark.parametrize("unit", ["s", "ms", "By", "KiBy", "1", "%", "{process}", "", "m/s", "By/s", "Cel",
                                  "widgets", "{a}/s", "1/h"])
def test_units_are_worded_as_opentelemetry_words_them(unit: str) -> None:
    from opentelemetry.exporter.prometheus._mapping import map_unit

    assert prometheus_unit(unit) == map_unit(unit)


# -- the real agent and --format prometheus ------------------------------------------------------------------


@pytest.fixture
def peers(tmp_path: Path) -> Iterator[dict[str, str]]:
    dnsmasq_bin = require_binary("dnsmasq")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    (tmp_path / "spool").mkdir()
    for i in range(3):
        (tmp_path / "spool" / f"job{i}").write_text("x" * (i + 1))
    with ThreadedServer(http_server()) as web, dnsmasq(dnsmasq_bin) as dns_address:
        yield {"http": f"http://{web.address}/redirect/2", "tcp_port": str(listener.getsockname()[1]),
               "dns": dns_address, "spool": str(tmp_path / "spool")}
    listener.close()


def _checks(tmp_path: Path, peers: dict[str, str]) -> dict[str, Any]:
    plugin = tmp_path / "check_fake"
    plugin.write_text("#!/bin/sh\necho 'OK - fine | load=0.5;1;2 used=12MB free=88% age=3s'\n")
    plugin.chmod(0o755)
    every = {"interval": "3s", "labels": {"team": "ops"}}
    return {"checks": [
        {"name": "mem", "type": "memory", "interval": "3s"},  # no labels: none may appear empty
        {"name": "root", "type": "disk", "path": str(tmp_path), **every},
        {"name": "procs", "type": "process", "user": "root", **every},
        {"name": "spool", "type": "file", "path": peers["spool"] + "/job*", **every},
        {"name": "port", "type": "tcp", "host": "127.0.0.1", "port": int(peers["tcp_port"]), **every},
        {"name": "web", "type": "http", "url": peers["http"], **every, "labels": {"team": "web", "tier": "front"}},
        {"name": "resolver", "type": "dns", "query": "www.test", "server": peers["dns"], **every},
        {"name": "nagios", "type": "command", "run": [str(plugin)], **every},
    ]}


def _families(text: str) -> dict[str, tuple[str, set[frozenset[str]]]]:
    """Family name -> (type, the label-name sets of its series), for probe_ families other than the agent's own."""
    out: dict[str, tuple[str, set[frozenset[str]]]] = {}
    for family in text_string_to_metric_families(text):
        if not family.name.startswith("probe_") or family.name.startswith("probe_agent_"):
            continue
        keys = {frozenset(k for k in s.labels if k != "le") for s in family.samples}
        out[family.name] = (family.type, keys)
    return out


@pytest.mark.slow
def test_the_agent_and_format_prometheus_name_every_series_alike(tmp_path: Path, peers: dict[str, str]) -> None:
    promtool = require_binary("promtool")
    checks = _checks(tmp_path, peers)
    port = free_port()
    daemon = Daemon(tmp_path, checks, {"state_dir": str(tmp_path / "state"), "plugins": {"entry_points": False},
                                       "telemetry": {"prometheus": {"enabled": True, "port": port}}}).start()
    try:
        def every_check_ran(text: str) -> str | None:
            ran = {m.group(1) for m in re.finditer(r'^probe_check_status\{check_name="([^"]+)"', text, re.M)}
            return text if ran == {c["name"] for c in checks["checks"]} else None

        agent = scrape_until("every check's first run", port, every_check_ran, log=daemon.log)
    finally:
        daemon.stop()
    once = probe_cli("--config", daemon.settings, "--config-dir", daemon.checks, "run", "--once", "--format",
                     "prometheus")
    assert once.returncode in (0, 1, 2), once.stderr
    for text in (agent, once.stdout):
        lint = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
        assert lint.returncode == 0, lint.stdout + lint.stderr
        assert '=""' not in text  # no empty labels
        assert not re.search(r"^\w+(_value|_B)\{", text, re.M)
    ours, theirs = _families(once.stdout), _families(agent)
    # The agent has more (hard status, flapping); everything --once writes, it writes under the same name,
    # type and label names.
    assert set(ours) <= set(theirs), sorted(set(ours) - set(theirs))
    for name, (kind, keys) in ours.items():
        assert theirs[name] == (kind, keys), name
    expected = {"probe_process_processes", "probe_file_files", "probe_dns_answer_records", "probe_http_body_bytes",
                "probe_http_redirects", "probe_memory_utilization", "probe_disk_free_bytes",
                "probe_tcp_connect_seconds", "probe_command_used_bytes", "probe_command_free",
                "probe_check_duration_seconds", "probe_check_runs"}
    assert expected <= set(ours), sorted(expected - set(ours))


def test_reported_units_are_the_declared_ones(tmp_path: Path, peers: dict[str, str]) -> None:
    """The contract `units` states, held to what the checks report when they really run."""
    config = tmp_path / "checks.json"
    config.write_text(json.dumps(_checks(tmp_path, peers)))
    settings = tmp_path / "probe.yaml"
    settings.write_text("plugins: {entry_points: false}\n")
    proc = probe_cli("--config", settings, "--config-dir", config, "run", "--once", "--format", "json")
    declared = builtin_units()
    seen = 0
    for check in json.loads(proc.stdout)["checks"]:
        if check["type"] == "command":
            continue  # perfdata: the plugin's units
        for name, m in check["measurements"].items():
            assert declared[check["type"]].get(name) == m["unit"], (check["type"], name, m["unit"])
            seen += 1
    assert seen >= 25
