"""Maintenance windows, silences and dependencies: config errors at their place, cron windows on an injected
clock, and the real daemon marking results (recorded, not alerted, not remediated) while ``probe silence``
is used beside it."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from agentproc import Daemon, wait_for
from hostfs import probe_main

from probe.config.incidents import MaintenanceWindow
from probe.config.load import load_plan
from probe.engine.muting import Muting, Window
from probe.engine.state import CheckState
from probe.model import Result, Status
from probe.plugins.manager import load_plugins
from probe.sinks.alerting.silences import SilenceStore, SilenceWatch
from probe.sinks.history import HistoryReader

PY = sys.executable
BERLIN = ZoneInfo("Europe/Berlin")


def _at(text: str, zone: ZoneInfo = BERLIN) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=zone).timestamp()


def _validate(capsys: pytest.CaptureFixture[str], tmp_path: Path, checks: str, settings: str = "") -> tuple[int, str]:
    (tmp_path / "checks.yaml").write_text(checks)
    (tmp_path / "probe.yaml").write_text(settings or "{}\n")
    proc = probe_main(capsys, "--config", tmp_path / "probe.yaml", "--config-dir", tmp_path / "checks.yaml",
                      "validate")
    return proc.returncode, proc.stderr


def test_unknown_parents_and_cycles_are_config_errors_where_they_were_written(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _validate(capsys, tmp_path, """checks:
  - {name: web, type: memory, depends_on: [db]}
  - {name: db, type: memory, depends_on: [net]}
  - {name: net, type: memory, depends_on: [web, nte, net]}
""")
    path = tmp_path / "checks.yaml"
    assert code == 78
    assert f"{path}:2:44: check 'web': depends_on[0]: dependency cycle: web -> db -> net -> web" in err
    assert f"{path}:3:43: check 'db': depends_on[0]: dependency cycle: web -> db -> net -> web" in err
    assert f"{path}:4:44: check 'net': depends_on[0]: dependency cycle: web -> db -> net -> web" in err
    assert f"{path}:4:49: check 'net': depends_on[1]: no check named 'nte'; did you mean 'net'?" in err
    assert f"{path}:4:54: check 'net': depends_on[2]: a check cannot depend on itself" in err


def test_a_malformed_cron_an_unknown_zone_and_an_unknown_check_fail_validation(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _validate(capsys, tmp_path, "checks:\n  - {name: web, type: memory}\n", """maintenance:
  - {name: a, cron: "0 2 * * 9", duration: 2h}
  - {name: b, cron: "0 2 * *", duration: 2h, timezone: Europe/Atlantis}
  - {name: c, cron: "@daily", duration: 0s, checks: [wbe]}
""")
    settings = tmp_path / "probe.yaml"
    assert code == 78
    assert f"{settings}:2:21: maintenance[0].cron: invalid cron expression '0 2 * * 9': Bad day-of-week" in err
    assert f"{settings}:3:21: maintenance[1].cron: expected 5 cron fields" in err
    assert f"{settings}:3:56: maintenance[1].timezone: unknown time zone 'Europe/Atlantis'" in err
    assert f"{settings}:4:21: maintenance[2].cron: expected 5 cron fields" in err
    assert f"{settings}:4:41: maintenance[2].duration: input should be greater than 0" in err
    assert f"{settings}:4:54: maintenance[2].checks[0]: no check named 'wbe'; did you mean 'web'?" in err


def test_a_weekly_window_opens_and_closes_in_its_time_zone_across_dst() -> None:
    window = Window(MaintenanceWindow(name="sunday", cron="0 2 * * 0", duration=7200, timezone="Europe/Berlin"))
    assert not window.is_open(_at("2024-06-02 01:59:59"))
    assert window.is_open(_at("2024-06-02 02:00:00"))
    assert window.closes(_at("2024-06-02 03:00:00")) == _at("2024-06-02 04:00:00")
    assert not window.is_open(_at("2024-06-02 04:00:00"))
    assert not window.is_open(_at("2024-06-05 02:30:00"))  # a Wednesday
    assert window.is_open(_at("2024-06-09 03:59:00"))
    # 2024-03-31 has no 02:00 in Berlin (clocks jump to 03:00): the window opens at the jump, lasts 2h.
    assert window.is_open(_at("2024-03-31 03:30:00")) and not window.is_open(_at("2024-03-31 05:00:00"))
    # The same instant read in UTC: 00:00 UTC on a Sunday in June is 02:00 in Berlin.
    assert window.is_open(_at("2024-06-02 00:30:00", ZoneInfo("UTC")))


def test_windows_cover_checks_by_name_or_labels_and_dependencies_mark_only_problems(tmp_path: Path) -> None:
    registry = load_plugins(use_entry_points=False)
    (tmp_path / "c.yaml").write_text("""checks:
  - {name: db, type: memory}
  - {name: web, type: memory, labels: {team: shop}, depends_on: [db]}
  - {name: api, type: memory, labels: {team: api}}
""")
    plan = load_plan(tmp_path / "c.yaml", registry)
    web, db, api = (next(c for c in plan.checks if c.name == n) for n in ("web", "db", "api"))
    muting = Muting.from_settings([
        MaintenanceWindow(name="shop", cron="*/10 * * * *", duration=60, labels={"team": "shop"}, timezone="UTC"),
        MaintenanceWindow(name="db-only", cron="0 * * * *", duration=60, checks=["db"], timezone="UTC"),
    ])
    states = {"db": CheckState.for_spec(db)}
    now = _at("2024-06-02 10:10:30", ZoneInfo("UTC"))
    assert muting.marks(web, Status.OK, states, now).maintenance == "shop"
    assert not muting.marks(api, Status.CRITICAL, states, now).muted
    assert muting.marks(db, Status.OK, states, now + 3000 - 30).maintenance == "db-only"  # 11:00:00
    assert not muting.marks(db, Status.OK, states, now + 60).muted
    for _ in range(3):
        states["db"].update(Result.critical("down"), now)
    assert states["db"].problem
    later = now + 120
    assert muting.marks(web, Status.CRITICAL, states, later).suppressed_by == "db"
    assert not muting.marks(web, Status.OK, states, later).muted  # an OK result is nobody's outage


def test_a_silence_for_a_check_that_does_not_exist_exits_64_and_stores_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "checks.yaml").write_text("checks:\n  - {name: web, type: memory, labels: {team: shop}}\n")
    state = tmp_path / "state"
    args = ["--config-dir", tmp_path / "checks.yaml", "silence"]
    missing = probe_main(capsys, *args, "add", "--check", "wbe", "--for", "1h", "--reason", "x",
                         "--state-dir", state)
    assert missing.returncode == 64 and "no such check: 'wbe'; did you mean 'web'?" in missing.stderr
    nolabel = probe_main(capsys, *args, "add", "--label", "team=api", "--for", "1h", "--reason", "x",
                         "--state-dir", state)
    assert nolabel.returncode == 64 and "no check matches team=api" in nolabel.stderr
    bad = probe_main(capsys, *args, "add", "--check", "web", "--for", "soon", "--reason", "x", "--state-dir", state)
    assert bad.returncode == 64 and "--for" in bad.stderr
    nothing = probe_main(capsys, *args, "add", "--for", "1h", "--reason", "x", "--state-dir", state)
    assert nothing.returncode == 64
    gone = probe_main(capsys, *args, "remove", "deadbeef", "--state-dir", state)
    assert gone.returncode == 64 and "no active silence 'deadbeef'" in gone.stderr
    listed = probe_main(capsys, *args, "list", "--all", "--format", "json", "--state-dir", state)
    assert listed.returncode == 0 and json.loads(listed.stdout) == {"silences": []}


def test_the_watch_sees_a_silence_added_and_removed_by_another_process(tmp_path: Path) -> None:
    registry = load_plugins(use_entry_points=False)
    (tmp_path / "c.yaml").write_text("checks:\n  - {name: web, type: memory, labels: {team: shop}}\n"
                                     "  - {name: api, type: memory}\n")
    web, api = load_plan(tmp_path / "c.yaml", registry).checks
    store = SilenceStore(tmp_path / "history.sqlite3")
    watch = SilenceWatch(store)
    watch.refresh()
    assert watch.matching(web, 1e10) == ""
    silence = store.add(labels={"team": "shop"}, duration=3600, reason="deploy", now=1000.0)
    future = store.add(checks=["api"], duration=60, reason="later", now=2.0e9)  # starts in the future
    watch.silences = [*store.all(), ]
    assert watch.matching(web, 1500.0) == silence.id and watch.matching(api, 1500.0) == ""
    assert watch.matching(web, 1000.0 + 3600) == ""  # ended
    assert watch.matching(api, 2.0e9 + 1) == future.id
    assert store.remove(silence.id, now=1200.0) is not None
    assert store.remove(silence.id) is None  # already removed
    watch.silences = [s for s in store.all() if s.removed is None]
    assert watch.matching(web, 1500.0) == ""


@pytest.mark.slow
def test_the_daemon_marks_suppressed_silenced_and_maintenance_results_and_never_acts_on_them(
        tmp_path: Path, daemons: list[Daemon]) -> None:
    marker = tmp_path / "remediated"

    def failing(name: str, when: str = "True", **more: object) -> dict[str, object]:
        return {"name": name, "type": "command", "interval": "1s", "timeout": "900ms", "failure_threshold": 1,
                "run": [PY, "-c", f"import os; raise SystemExit(2 if {when} else 0)"],
                "remediate": [{"on": "critical", "run": [PY, "-c", f"open({str(marker)!r} + '-' + {name!r}, 'w')"],
                               "cooldown": "0s"}], **more}

    state = tmp_path / "state"
    router_down = f"os.path.exists({str(marker)!r} + '-router')"  # web fails once the router has gone down
    opened = datetime.now(ZoneInfo("UTC")) - timedelta(minutes=1)  # a daily window that opened a minute ago
    window = {"name": "patching", "cron": f"{opened.minute} {opened.hour} * * *", "duration": "1h",
              "timezone": "UTC", "labels": {"team": "os"}}
    d = Daemon(tmp_path, {"checks": [failing("router"), failing("web", router_down, depends_on=["router"]),
                                     failing("batch", labels={"team": "jobs"}),
                                     failing("kernel", labels={"team": "os"})]},
               {"state_dir": str(state), "maintenance": [window]})
    silenced = d.cli("silence", "add", "--label", "team=jobs", "--for", "1h", "--reason", "reindex")
    assert silenced.returncode == 0, silenced.stderr  # before the agent ever ran: the store is created
    silence_id = silenced.stdout.strip()
    daemons.append(d.start())
    db = state / "history.sqlite3"
    wait_for("the router to be remediated", lambda: Path(f"{marker}-router").exists(), log=d.log)
    wait_for("suppressed and silenced results",
             lambda: len([r for r in HistoryReader(db).results(0, "web") if r.suppressed_by == "router"]) >= 3
             and len([r for r in HistoryReader(db).results(0, "batch") if r.silenced == silence_id]) >= 3
             and len([r for r in HistoryReader(db).results(0, "kernel") if r.maintenance == "patching"]) >= 3,
             log=d.log)
    assert not Path(f"{marker}-web").exists() and not Path(f"{marker}-batch").exists()
    assert not Path(f"{marker}-kernel").exists()
    status = json.loads(d.cli("status", "--format", "json").stdout)
    rows = {r["name"]: r for r in status["checks"]}
    assert rows["web"]["suppressed_by"] == "router" and rows["batch"]["silenced"] == silence_id
    assert rows["kernel"]["maintenance"] == "patching" and rows["kernel"]["status"] == "critical"
    assert [(x["id"], x["matches"], x["reason"]) for x in status["silences"]] == [(silence_id, "team=jobs", "reindex")]
    table = d.cli("status").stdout
    assert f"silenced:{silence_id}" in table and "suppressed-by:router" in table and "maintenance:patching" in table
    assert f"silence {silence_id} (team=jobs) ends in" in table and "maintenance patching open, closes in" in table
    assert [w["name"] for w in status["maintenance"]] == ["patching"]

    removed = d.cli("silence", "remove", silence_id)
    assert removed.returncode == 0, removed.stderr
    wait_for("the unsilenced check to be remediated", lambda: Path(f"{marker}-batch").exists(), log=d.log)
    listed = json.loads(d.cli("silence", "list", "--all", "--format", "json").stdout)["silences"]
    assert [(s["id"], s["state"], s["reason"]) for s in listed] == [(silence_id, "removed", "reindex")]
    assert d.stop() == 0
    assert not Path(f"{marker}-web").exists()  # its parent never recovered


def test_once_remediate_honours_silences_and_maintenance_windows(tmp_path: Path) -> None:
    from hostfs import probe_cli

    marker = tmp_path / "fixed"
    checks = tmp_path / "checks.yaml"
    checks.write_text(json.dumps({"checks": [
        {"name": "job", "type": "command", "run": [PY, "-c", "raise SystemExit(2)"], "labels": {"team": "ops"},
         "remediate": [{"on": "critical", "run": [PY, "-c", f"open({str(marker)!r}, 'w')"]}]}]}))
    settings = tmp_path / "probe.yaml"
    settings.write_text(json.dumps({"state_dir": str(tmp_path / "state")}))
    args = ["--config", settings, "--config-dir", checks]
    added = probe_cli(*args, "silence", "add", "--check", "job", "--for", "1h", "--reason", "migration")
    assert added.returncode == 0, added.stderr
    proc = probe_cli(*args, "run", "--once", "--remediate")
    assert proc.returncode == 2 and not marker.exists()
    assert f"remediation of job skipped: silenced {added.stdout.strip()}" in proc.stderr
    assert probe_cli(*args, "silence", "remove", added.stdout.strip()).returncode == 0

    opened = datetime.now(ZoneInfo("UTC")) - timedelta(minutes=1)
    settings.write_text(json.dumps({"state_dir": str(tmp_path / "state"), "maintenance": [
        {"name": "ops-window", "cron": f"{opened.minute} {opened.hour} * * *", "duration": "1h",
         "timezone": "UTC", "labels": {"team": "ops"}}]}))
    proc = probe_cli(*args, "run", "--once", "--remediate")
    assert not marker.exists() and "remediation of job skipped: maintenance ops-window" in proc.stderr

    settings.write_text(json.dumps({"state_dir": str(tmp_path / "state")}))
    probe_cli(*args, "run", "--once", "--remediate")
    assert marker.exists()  # nothing mutes it any more
