"""The HTML report as people see it: a week of a realistic history rendered by ``probe report --format html``,
opened in a real browser (Debian's headless Chromium), screenshotted, and printed to PDF. The screenshot must
show every status colour of the legend where the history has it; printed, the week fits on one A4 page."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import struct
import subprocess
import time
import zlib
from collections import Counter
from pathlib import Path

import pytest
from conftest import require_binary
from hostfs import probe_cli

from probe.cli.report.html import COLORS
from probe.sinks.history import HistoryStore
from probe.sinks.slo.accounting import Kind

pytestmark = pytest.mark.slow

CHROMIUM_FLAGS = ("--no-sandbox", "--headless", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--hide-scrollbars")


def week(state: Path) -> None:
    """Four checks, a result a minute for seven days: an outage, a degraded stretch, a lasting certificate
    WARNING, a database outage inside a maintenance window, six hours with the agent stopped."""
    store = HistoryStore(state / "history.sqlite3").open()
    start = time.time() - 7 * 86400
    for i in range(7 * 1440):
        ts = start + 60 * i
        day = i / 1440
        if 3.0 < day < 3.25:
            continue  # the agent was stopped
        web = 2 if 1.5 < day < 1.52 or 5.7 < day < 5.705 else 1 if 4.2 < day < 4.3 else 0
        store.record_result(ts, "shop-web", "http", web, duration=0.08, hard_status=web,
                            reason=("", "threshold", "status_mismatch")[web],
                            summary=("HTTP 200 in 80ms", "HTTP 200 in 812ms > 500ms", "HTTP 503 Unavailable")[web])
        db = 2 if 6.0 < day < 6.02 else 0
        store.record_result(ts, "orders-db", "sql", db, duration=0.004, hard_status=db,
                            reason="connection_refused" if db else "", summary="connection refused" if db else "1 row")
        store.record_result(ts, "api-cert", "tls", 1, duration=0.02, hard_status=1, reason="threshold",
                            summary="certificate expires in 20d (< 30d)")
        disk = 2 if 2.0 < day < 2.03 else 0
        store.record_result(ts, "root-disk", "disk", disk, duration=0.001, hard_status=disk,
                            reason="threshold" if disk else "", summary="/ 96% used" if disk else "/ 41% used")
    store.record_remediation(start + 2.005 * 86400, "root-disk", "run", ["/usr/local/sbin/purge-old-logs"], "fixed",
                             exit_code=0)
    store.close()
    db = sqlite3.connect(state / "history.sqlite3")
    present = {r[1] for r in db.execute("PRAGMA table_info(results)")}
    for column in ("maintenance", "silenced", "suppressed_by"):
        if column not in present:  # the incidents feature's columns, on a schema that predates them
            db.execute(f"ALTER TABLE results ADD COLUMN {column} TEXT")
    db.execute("UPDATE results SET maintenance = 'sunday-patching' WHERE check_name = 'orders-db' AND ts > ? "
               "AND ts < ?", (start + 5.99 * 86400, start + 6.03 * 86400))
    db.commit()
    db.close()


def pixels(png: bytes) -> tuple[int, int, Counter[tuple[int, int, int]]]:
    """Width, height and how many pixels of each colour an 8-bit RGB or RGBA PNG (what Chromium writes) has."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, data, width = 8, b"", 0
    height = depth = kind = 0
    while pos < len(png):
        length, tag = struct.unpack(">I4s", png[pos:pos + 8])
        body = png[pos + 8:pos + 8 + length]
        if tag == b"IHDR":
            width, height, depth, kind = struct.unpack(">IIBB", body[:10])
        elif tag == b"IDAT":
            data += body
        pos += 12 + length
    assert depth == 8 and kind in (2, 6), (depth, kind)
    channels = 3 if kind == 2 else 4
    raw, stride, previous = zlib.decompress(data), width * channels, bytearray(width * channels)
    colours: Counter[tuple[int, int, int]] = Counter()
    for y in range(height):
        line = raw[y * (stride + 1):(y + 1) * (stride + 1)]
        kind_, row = line[0], bytearray(line[1:])
        for x in range(stride):
            a = row[x - channels] if x >= channels else 0
            b, c = previous[x], previous[x - channels] if x >= channels else 0
            if kind_ == 1:
                row[x] = (row[x] + a) & 255
            elif kind_ == 2:
                row[x] = (row[x] + b) & 255
            elif kind_ == 3:
                row[x] = (row[x] + (a + b) // 2) & 255
            elif kind_ == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                row[x] = (row[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        colours.update(tuple(row[i:i + 3]) for i in range(0, stride, channels))
        previous = row
    return width, height, colours


def rgb(hex_colour: str) -> tuple[int, int, int]:
    return int(hex_colour[1:3], 16), int(hex_colour[3:5], 16), int(hex_colour[5:7], 16)


def chromium(*args: str, profile: Path) -> None:
    binary = require_binary("chromium")
    proc = subprocess.run([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                          text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_the_week_in_a_browser_and_on_paper(tmp_path: Path) -> None:
    require_binary("chromium")
    state = tmp_path / "state"
    state.mkdir()
    week(state)
    checks = tmp_path / "checks.yaml"
    checks.write_text("checks:\n"
                      "  - {name: shop-web, type: http, url: 'http://127.0.0.1:9/', slo: 99.9%}\n"
                      "  - {name: orders-db, type: memory, slo: 99.5%}\n"
                      "  - {name: api-cert, type: tls, host: 127.0.0.1, port: 9, slo: 99%}\n"
                      "  - {name: root-disk, type: disk, path: /}\n")
    page = tmp_path / "report.html"
    made = probe_cli("--config-dir", checks, "report", "--state-dir", state, "--format", "html", "-o", page)
    assert made.returncode == 0, made.stderr
    html = page.read_text()
    assert re.search(r"<b>2 of 3</b><span>objectives met</span>", html)
    assert "shop-web" in html and "ongoing" in html and "CRITICAL (maintenance)" in html

    shot = tmp_path / "report.png"
    chromium("--window-size=1240,1754", f"--screenshot={shot}", page.as_uri(), profile=tmp_path / "profile-1")
    width, height, colours = pixels(shot.read_bytes())
    assert (width, height) == (1240, 1754)
    area = {kind: colours[rgb(COLORS[kind])] for kind in Kind}
    # Far more than the legend's 12x12 swatches: the bars and strips are drawn. Green: three bars and most
    # of three strips; amber: the certificate's whole strip and a bar; red: a bar, and slivers of outage.
    assert area[Kind.OK] > 20_000 and area[Kind.DEGRADED] > 10_000 and area[Kind.OUTAGE] > 5_000, area
    assert area[Kind.NO_DATA] > 1_000 and area[Kind.EXCLUDED] > 500, area  # the stopped agent, the window
    if os.environ.get("PROBE_REPORT_SCREENSHOT"):  # to look at it: PROBE_REPORT_SCREENSHOT=/tmp/report.png
        shutil.copy(shot, os.environ["PROBE_REPORT_SCREENSHOT"])

    pdf = tmp_path / "report.pdf"
    chromium("--no-pdf-header-footer", f"--print-to-pdf={pdf}", page.as_uri(), profile=tmp_path / "profile-2")
    pages = len(re.findall(rb"/Type\s*/Page(?![s\w])", pdf.read_bytes()))
    assert pages == 1, f"the week printed on {pages} pages"
