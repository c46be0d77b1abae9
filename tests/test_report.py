"""Report numbers against a hand-computed scenario, written through the real history store."""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from probe.cli.report.compute import build, percentile
from probe.cli.report.render import render_html, render_json, render_table
from probe.sinks.history import HistoryReader, HistoryStore

T0 = float(int(time.time()) - 7200)


@pytest.fixture
def reader(tmp_path: Path) -> HistoryReader:
    store = HistoryStore(tmp_path / "h.db", batch_interval=0.05).open()
    # web, every 60s; hard statuses: OK OK CRIT CRIT OK OK WARN OK, durations 0.1 .. 0.8
    for i, hard in enumerate([0, 0, 2, 2, 0, 0, 1, 0]):
        store.record_result(T0 + 60 * i, "web", "http", hard, duration=0.1 * (i + 1), hard_status=hard,
                            state_type="hard")
    # db: a gap while the agent was stopped (between +60 and +1000)
    for ts in (0, 60, 1000, 1060):
        store.record_result(T0 + ts, "db", "sql", 0, duration=0.01, hard_status=0)
    store.record_remediation(T0 + 130, "web", "run", ["/bin/true"], "fixed", exit_code=0)
    store.record_remediation(T0 + 190, "web", "run", ["/bin/true"], "not_fixed", exit_code=0)
    store.record_remediation(T0 + 200, "web", "run", ["/bin/true"], "fixed", exit_code=0)
    assert store.flush()
    store.close()
    return HistoryReader(tmp_path / "h.db")


def test_availability_incidents_mttr_mtbf_and_percentiles(reader: HistoryReader) -> None:
    report = build(reader, T0 - 10, T0 + 480)
    web = next(c for c in report.checks if c.name == "web")
    assert web.runs == 8
    assert web.observed == pytest.approx(480)
    assert web.ok_time == pytest.approx(300)
    assert web.availability == pytest.approx(0.625)
    assert [(i.start - T0, None if i.end is None else i.end - T0, i.worst) for i in web.incidents] == [
        (120, 240, 2), (360, 420, 1)]
    assert web.mttr == pytest.approx(90)
    assert web.mtbf == pytest.approx(150)
    assert (web.p50, web.p95) == (pytest.approx(0.4), pytest.approx(0.8))
    assert web.remediations == {"fixed": 2, "not_fixed": 1}


def test_gaps_while_the_agent_was_down_are_unobserved(reader: HistoryReader) -> None:
    db = next(c for c in build(reader, T0 - 10, T0 + 1120).checks if c.name == "db")
    # coverage: 60 + min(940, 3*60) + 60 + 60 = 360
    assert db.observed == pytest.approx(360)
    assert db.availability == pytest.approx(1.0)
    assert db.incidents == () and db.mttr is None and db.mtbf is None


def test_an_open_incident_counts_but_has_no_repair_time(reader: HistoryReader) -> None:
    web = next(c for c in build(reader, T0 - 10, T0 + 200).checks if c.name == "web")
    assert [(i.start - T0, i.end) for i in web.incidents] == [(120, None)]
    assert web.mttr is None


def test_nearest_rank_percentile() -> None:
    assert percentile([], 95) is None
    assert percentile([5.0], 50) == 5.0
    assert percentile([float(i) for i in range(1, 101)], 95) == 95.0


def test_renderings(reader: HistoryReader) -> None:
    report = build(reader, T0 - 10, T0 + 480, names=["web"])
    table = render_table(report)
    assert "web" in table and "62.500%" in table and "2 fixed, 1 not_fixed" in table
    doc = json.loads(render_json(report))
    assert doc["checks"][0]["availability"] == 0.625
    assert doc["checks"][0]["incidents"][0]["worst"] == "critical"
    html = render_html(report)
    assert html.startswith("<!DOCTYPE html>") and "<script" not in html and "http://" not in html.replace(
        "http://www.w3.org/2000/svg", "")
    svgs = html.count("<svg")
    assert svgs == 2  # the availability chart and one timeline
    for start in range(svgs):  # every chart is well-formed XML
        chunk = html.split("<svg")[start + 1].split("</svg>")[0]
        ET.fromstring("<svg" + chunk + "</svg>")


def test_an_empty_period_says_so(reader: HistoryReader) -> None:
    assert "no results recorded" in render_table(build(reader, T0 + 10**6, T0 + 10**6 + 10))
