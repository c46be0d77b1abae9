"""Every built-in output format, rendered from real outcomes and parsed back with a real parser."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET
from functools import partial
from pathlib import Path

import pytest
from hostfs import STATUS_CHECKS, probe_cli, probe_main, run_checks
from prometheus_client.parser import text_string_to_metric_families

from probe.formats import Report
from probe.model import Status
from probe.plugins.manager import load_plugins

# Besides one check per status: a process check (counts, seconds), a summary with characters that each
# format must escape, and a label value with quotes, a backslash and a newline.
EXTRA_CHECKS = """
  - name: self
    type: process
    user: root
    min_count: 0
    labels: {note: "say \\"hi\\" \\\\ bye\\nnow"}
  - name: odd-summary
    type: disk
    path: "/nonexistent/a#b|c<d>&'e\\x01"
"""


@pytest.fixture
async def report(tmp_path: Path) -> Report:
    outcomes = await run_checks(tmp_path, STATUS_CHECKS + EXTRA_CHECKS)
    ordered = [o.public() for o in outcomes.values()]
    return Report(ordered, Status.worst(o.status for o in ordered), "host-1", time.time(), 0.25)


def render(report: Report, name: str) -> str:
    text: str = load_plugins(use_entry_points=False).formats[name].render(report)
    return text


CHECK_KEYS = {"name", "type", "labels", "status", "status_code", "summary", "reason", "runbook", "started", "duration",
              "measurements", "thresholds", "details"}


def test_json_schema_is_stable(report: Report) -> None:
    doc = json.loads(render(report, "json"))
    assert set(doc) == {"status", "status_code", "host", "started", "duration", "checks", "remediations"}
    assert (doc["status"], doc["status_code"], doc["host"]) == ("critical", 2, "host-1")
    assert [c["name"] for c in doc["checks"]] == ["mem-ok", "mem-warning", "disk-critical", "disk-unknown",
                                                  "self", "odd-summary"]
    for check in doc["checks"]:
        assert set(check) == CHECK_KEYS
        assert all(set(m) == {"value", "unit"} for m in check["measurements"].values())
    by_name = {c["name"]: c for c in doc["checks"]}
    assert [by_name[n]["status_code"] for n in ("mem-ok", "mem-warning", "disk-critical", "disk-unknown")] == \
        [0, 1, 2, 3]
    assert by_name["mem-ok"]["reason"] is None
    assert by_name["disk-critical"]["reason"] == "not_found"
    assert by_name["mem-warning"]["thresholds"] == [{
        "measurement": "utilization", "value": by_name["mem-warning"]["measurements"]["utilization"]["value"],
        "status": "warning", "condition": ">= 0%"}]
    assert by_name["mem-ok"]["measurements"]["total"]["unit"] == "By"
    assert by_name["self"]["labels"] == {"note": 'say "hi" \\ bye\nnow'}


def test_junit_is_valid_xml_with_failure_and_error_counts(report: Report) -> None:
    root = ET.fromstring(render(report, "junit"))
    assert root.tag == "testsuites"
    suite = root.find("testsuite")
    assert suite is not None
    for element in (root, suite):
        assert (element.get("tests"), element.get("failures"), element.get("errors")) == ("6", "3", "1")
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert list(cases) == ["mem-ok", "mem-warning", "disk-critical", "disk-unknown", "self", "odd-summary"]
    assert cases["mem-ok"].find("failure") is None and cases["mem-ok"].find("error") is None
    warning = cases["mem-warning"].find("failure")
    assert warning is not None and warning.get("type") == "threshold"
    assert cases["disk-unknown"].find("error") is not None
    odd = cases["odd-summary"].find("failure")
    assert odd is not None
    assert odd.get("message") == "/nonexistent/a#b|c<d>&'e: no such file or directory"  # removed at intake
    assert cases["mem-ok"].get("classname") == "probe.memory"


def test_tap_14(report: Report) -> None:
    lines = render(report, "tap").splitlines()
    assert lines[:2] == ["TAP version 14", "1..6"]
    points = [line for line in lines if re.match(r"^(not )?ok \d+ - ", line)]
    assert [p.split(" - ")[0] for p in points] == ["ok 1", "not ok 2", "not ok 3", "not ok 4", "ok 5", "not ok 6"]
    assert points[2].startswith("not ok 3 - disk-critical: /nonexistent/probe-test: no such file")
    # '#' would start a directive: escaped. The whole point stays on one line.
    assert points[5] == "not ok 6 - odd-summary: /nonexistent/a\\#b/c<d>&'e: no such file or directory"
    block = lines[lines.index(points[1]) + 1:lines.index(points[2])]
    assert block[0] == "  ---" and block[-1] == "  ..."
    assert "  status: warning" in block and '  reason: "threshold"' in block


NUMBER = r"-?\d+(?:\.\d+)?"
RANGE = rf"(?:@?(?:(?:{NUMBER}|~)?:)?(?:{NUMBER})?)"
PERF = re.compile(rf"'(?P<label>[^']+)'=(?P<value>{NUMBER})(?P<uom>%|B|s|)"
                  rf"(?:;(?P<warn>{RANGE})(?:;(?P<crit>{RANGE})(?:;(?P<min>{NUMBER})?(?:;(?P<max>{NUMBER})?)?)?)?)?$")


def test_nagios_status_line_and_perfdata(report: Report) -> None:
    lines = render(report, "nagios").splitlines()
    head, _, perf = lines[0].partition(" | ")
    assert head.startswith("CRITICAL - mem-warning: utilization ")
    assert "|" not in head
    terms = perf.split(" ")
    parsed = {}
    for term in terms:
        match = PERF.match(term)
        assert match, f"not Nagios perfdata: {term!r}"
        parsed[match["label"]] = (float(match["value"]), match["uom"], match["warn"], match["crit"], match["min"],
                                  match["max"])
    value, uom = parsed["mem-ok::utilization"][:2]
    assert uom == "%" and 0 < value <= 100  # ratio -> percent
    total_doc = json.loads(render(report, "json"))["checks"][0]["measurements"]["total"]["value"]
    assert parsed["mem-ok::total"][:2] == (total_doc, "B")  # bytes, no exponent
    assert parsed["mem-ok::utilization"][2:] == ("", "", "0", "100")  # a percentage is 0..100
    assert parsed["mem-warning::utilization"][2:] == ("@0:", "", "0", "100")  # the threshold, as a range
    assert parsed["mem-ok::duration"][1] == "s"
    assert parsed["self::count"][1:] == ("", None, None, None, None)
    assert parsed["self::cpu_time"][1] == "s"
    # One long-output line per check after the status line.
    assert lines[1:] == [line for line in lines[1:] if re.match(r"^\[(OK|WARNING|CRITICAL|UNKNOWN)\] ", line)]
    assert len(lines) == 7


async def test_nagios_single_check_is_a_plain_plugin_line(tmp_path: Path) -> None:
    outcomes = await run_checks(tmp_path, "checks: [{name: m, type: memory}]")
    one = Report([o.public() for o in outcomes.values()], Status.OK, "h", time.time(), 0.1)
    lines = render(one, "nagios").splitlines()
    assert len(lines) == 1 and lines[0].startswith("OK - ") and " | 'm::utilization'=" in lines[0]


def test_prometheus_text_exposition(report: Report, tmp_path: Path) -> None:
    text = render(report, "prometheus")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    status = {s.labels["check_name"]: s.value for s in families["probe_check_status"].samples}
    assert status == {"mem-ok": 0, "mem-warning": 1, "disk-critical": 2, "disk-unknown": 3, "self": 0,
                      "odd-summary": 2}
    up = {s.labels["check_name"]: s.value for s in families["probe_check_up"].samples}
    assert up["mem-ok"] == 1 and up["mem-warning"] == 0
    # The agent's names and types (tests/test_metric_names.py compares the two): the duration is its histogram.
    assert families["probe_check_duration_seconds"].type == "histogram"
    assert {"probe_memory_utilization", "probe_memory_total_bytes", "probe_process_processes",
            "probe_process_cpu_time_seconds", "probe_process_rss_bytes"} <= set(families)
    assert families["probe_memory_total_bytes"].type == "gauge"
    self_sample = next(s for s in families["probe_check_status"].samples if s.labels["check_name"] == "self")
    assert self_sample.labels["note"] == 'say "hi" \\ bye\nnow'  # escaped in the text, restored by the parser
    assert self_sample.labels["check_type"] == "process"
    promtool = shutil.which("promtool")
    if promtool:  # stricter (naming lints); not required: the Debian package is ~100 MB
        proc = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_human_table(report: Report) -> None:
    lines = render(report, "human").splitlines()
    assert lines[0].split() == ["STATUS", "CHECK", "TYPE", "TIME", "SUMMARY"]
    assert lines[-1].startswith("CRITICAL: 6 checks (2 ok, 1 warning, 2 critical, 1 unknown) in 250.0ms")
    column = lines[0].index("CHECK")
    names = [o.name for o in report.outcomes]
    assert [line[column:].split()[0] for line in lines[1:7]] == names  # aligned columns
    assert lines[-2] == ""


@pytest.mark.parametrize("fmt", ["human", "json", "junit", "tap", "nagios", "prometheus"])
def test_secrets_never_appear_in_any_format(tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    """A ``${file:...}`` secret that ends up in a summary (a path) and the verbose view. (A secret in a label
    is a config error: tests/test_security.py.)"""
    secret = tmp_path / "secret"
    secret.write_text("s3cr3t-vault-token\n")
    config = tmp_path / "c.yaml"
    config.write_text(
        "checks:\n"
        f"  - name: leaky\n    type: disk\n    path: /nonexistent/${{file:{secret}}}\n"
    )
    # human through a real process; the rest through the same entry point in this process (faster)
    run = probe_cli if fmt == "human" else partial(probe_main, capsys)
    proc = run("--config-dir", config, "run", "--once", "--format", fmt)
    assert proc.returncode == 2, proc.stderr
    assert "s3cr3t" not in proc.stdout + proc.stderr
    assert "********" in proc.stdout or fmt == "prometheus"  # which carries no summary
    if fmt == "human":
        verbose = probe_cli("--config-dir", config, "check", "leaky")
        assert "s3cr3t" not in verbose.stdout + verbose.stderr and "/nonexistent/********" in verbose.stdout


@pytest.mark.parametrize(("condition", "scale", "expected"), [
    (">= 90%", 100, "@90:"), ("> 2s", 1, "~:2"), ("< 14d", 1, "1209600:"), ("<= 5", 1, "@~:5"),
    ("== 0", 1, "@0:0"), ("!= 0", 1, "0:0"), ("10:20", 1, "10:20"), ("@10:20", 1, "@10:20"),
    ("~:10", 1, "~:10"), ("10", 1, "10"), ("10:", 1, "10:"), ("80%:95%", 100, "80:95"),
    ("@1KiB:2KiB", 1, "@1024:2048"), ("> 500ms", 1, "~:0.5"),
])
def test_thresholds_become_nagios_ranges_that_alert_for_the_same_values(condition: str, scale: float,
                                                                        expected: str) -> None:
    from probe.conditions import parse_condition
    from probe.formats.nagios import nagios_range

    assert nagios_range(condition, scale) == expected
    # Cross-check: the range, read back by probe's own Nagios range parser, alerts exactly when the
    # comparison does (on the perfdata scale).
    ours, theirs = parse_condition(condition), parse_condition(expected)
    for value in (-1.0, 0.0, 0.5, 2.0, 5.0, 10.0, 15.0, 20.0, 80.0, 90.0, 95.0, 1024.0, 2048.0, 1209600.0):
        assert ours(value / scale) == theirs(value), (condition, value)
