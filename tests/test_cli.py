"""The ``probe`` command line end to end: every command and option, exit codes, terminal output."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hostfs import STATUS_CHECKS, fill, probe_cli, probe_main, tmpfs

from probe.cli.commands import gate_exit_code
from probe.model import Status

Result = subprocess.CompletedProcess[str]


@pytest.fixture
def checks(tmp_path: Path) -> Path:
    path = tmp_path / "checks.d" / "status.yaml"
    path.parent.mkdir()
    path.write_text(STATUS_CHECKS)
    return path


def once(checks: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``probe run --once`` in a real process."""
    return probe_cli("--config-dir", checks, "run", "--once", *args)


@pytest.fixture
def quick(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    """``probe run --once`` through ``probe.cli.commands.main`` in this process."""
    for key in [k for k in os.environ if k.startswith("PROBE_")]:
        monkeypatch.delenv(key)

    def run(checks: Path, *args: str) -> Result:
        return probe_main(capsys, "--config-dir", checks, "run", "--once", *args)

    return run


@pytest.fixture
def inproc(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    """Any ``probe`` command line through ``probe.cli.commands.main`` in this process."""
    for key in [k for k in os.environ if k.startswith("PROBE_")]:
        monkeypatch.delenv(key)
    return lambda *args: probe_main(capsys, *args)


@pytest.mark.parametrize(("name", "code"), [("mem-ok", 0), ("mem-warning", 1), ("disk-critical", 2),
                                            ("disk-unknown", 3)])
def test_exit_code_is_the_status(checks: Path, name: str, code: int) -> None:
    proc = once(checks, "--check", name)
    assert proc.returncode == code, proc.stderr
    assert proc.stderr == ""


def test_every_check_runs_and_the_worst_status_wins(checks: Path) -> None:
    proc = once(checks)
    assert proc.returncode == 2  # CRITICAL outranks UNKNOWN, as Nagios ranks service states
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["STATUS", "CHECK", "TYPE", "TIME", "SUMMARY"]
    assert [line.split()[:3] for line in lines[1:5]] == [
        ["OK", "mem-ok", "memory"], ["WARNING", "mem-warning", "memory"],
        ["CRITICAL", "disk-critical", "disk"], ["UNKNOWN", "disk-unknown", "disk"]]
    assert lines[5] == ""
    assert lines[6].startswith("CRITICAL: 4 checks (1 ok, 1 warning, 1 critical, 1 unknown) in ")
    assert len(lines) == 7
    assert "\x1b[" not in proc.stdout  # not a terminal: no colour


@pytest.mark.parametrize(("name", "code"), [("mem-ok", 0), ("mem-warning", 0), ("disk-critical", 2),
                                            ("disk-unknown", 3)])
def test_fail_on_critical_lets_warnings_pass(checks: Path, quick: Callable[..., Result], name: str,
                                            code: int) -> None:
    assert quick(checks, "--check", name, "--fail-on", "critical").returncode == code


def test_gate_exit_code_table() -> None:
    table = {(s, f): gate_exit_code(s, f) for s in Status for f in ("warning", "critical")}
    assert table == {(Status.OK, "warning"): 0, (Status.WARNING, "warning"): 1, (Status.CRITICAL, "warning"): 2,
                     (Status.UNKNOWN, "warning"): 3, (Status.OK, "critical"): 0, (Status.WARNING, "critical"): 0,
                     (Status.CRITICAL, "critical"): 2, (Status.UNKNOWN, "critical"): 3}


def test_label_and_check_selection(checks: Path, quick: Callable[..., Result]) -> None:
    once = quick
    proc = once(checks, "--label", "tier=ok", "--format", "json")
    assert [c["name"] for c in json.loads(proc.stdout)["checks"]] == ["mem-ok"] and proc.returncode == 0
    proc = once(checks, "--check", "mem-ok", "--check", "mem-warning", "--format", "json")
    assert [c["name"] for c in json.loads(proc.stdout)["checks"]] == ["mem-ok", "mem-warning"]
    assert proc.returncode == 1
    proc = once(checks, "--label", "tier=problem", "--check", "mem-warning", "--format", "json")
    assert [c["name"] for c in json.loads(proc.stdout)["checks"]] == ["mem-warning"]


@pytest.mark.parametrize(("args", "message"), [
    (["--label", "tier"], "Invalid value for --label: expected k=v, got 'tier'"),
    (["--label", "=ok"], "Invalid value for --label: expected k=v, got '=ok'"),
    (["--label", "tier=nothing"], "Error: no checks match the selection"),
    (["--check", "mem-okay"], "Error: no such check: 'mem-okay'; did you mean 'mem-ok'?"),
    (["--check", "zzz"], "Error: no such check: 'zzz'\n"),
    (["--format", "yaml"], "Invalid value for --format: unknown format 'yaml'; choose from human, json, junit, "
                           "nagios, prometheus, tap"),
    (["--fail-on", "unknown"], "Invalid value for '--fail-on': 'unknown' is not one of 'warning', 'critical'."),
    (["--wait", "soon"], "Invalid value for --wait: expected a duration like 5s or 2m, got 'soon'"),
    (["--colour"], "No such option '--colour'"),
    (["--output", "/nonexistent/dir/report.txt"], "Invalid value for --output: directory '/nonexistent/dir' "
                                                 "does not exist"),
])
def test_usage_errors_exit_64(checks: Path, quick: Callable[..., Result], args: list[str], message: str) -> None:
    proc = quick(checks, *args)
    assert proc.returncode == 64, proc.stderr
    assert message in proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize("args", [["--check", "mem-ok"], ["--wait", "1s"], ["--format", "json"]])
def test_daemon_mode_rejects_once_only_options(checks: Path, args: list[str]) -> None:
    proc = probe_cli("--config-dir", checks, "run", *args)
    assert proc.returncode == 64
    assert "need --once" in proc.stderr


def test_top_level_usage_errors_exit_64(inproc: Callable[..., Result]) -> None:
    assert inproc("--no-such-option").returncode == 64
    assert inproc("frobnicate").returncode == 64
    assert inproc("--log-level", "loud", "validate").returncode == 64
    assert probe_cli().returncode == 64  # no command: usage on stderr, never mistaken for OK
    version = probe_cli("--version")
    assert (version.returncode, version.stdout) == (0, "probe, version 0.1.0\n")


def test_config_errors_exit_78_for_every_command(tmp_path: Path, inproc: Callable[..., Result]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("checks:\n  - {name: d, type: disk, pth: /}\n  - {name: m, type: memroy}\n")
    for args in (["run", "--once"], ["check", "d"], ["validate"]):
        run = probe_cli if args[0] == "run" else inproc
        proc = run("--config-dir", bad, *args)
        assert proc.returncode == 78, (args, proc.stderr)
        assert proc.stderr.splitlines() == [
            f"{bad}:2:27: check 'd': pth: unknown key 'pth'; did you mean 'path'?",
            f"{bad}:3:21: check 'm': type: unknown check type 'memroy'; did you mean 'memory'?",
            "probe: configuration invalid: 2 errors",
        ]
        assert proc.stdout == ""
    missing = inproc("--config-dir", tmp_path / "nope", "validate")
    assert missing.returncode == 78 and f"{tmp_path / 'nope'}:1:1: no such file or directory" in missing.stderr


def test_validate_ok(checks: Path, inproc: Callable[..., Result]) -> None:
    proc = inproc("--config-dir", checks.parent, "validate")
    assert (proc.returncode, proc.stdout) == (0, f"configuration OK: 4 checks from {checks}\n")


def test_config_dir_from_environment_and_cwd(checks: Path) -> None:
    proc = probe_cli("validate", env={"PROBE_CONFIG_DIR": str(checks)})
    assert proc.returncode == 0 and "4 checks" in proc.stdout
    proc = probe_cli("validate", cwd=checks.parent.parent)  # ./checks.d
    assert proc.returncode == 0 and "4 checks" in proc.stdout


def test_output_file_is_written_and_stdout_stays_empty(checks: Path, tmp_path: Path) -> None:
    report = tmp_path / "out" / "probe.prom"
    report.parent.mkdir()
    proc = once(checks, "--check", "mem-ok", "--format", "prometheus", "--output", str(report))
    assert (proc.returncode, proc.stdout) == (0, "")
    assert 'probe_check_status{check_name="mem-ok",check_type="memory",tier="ok"} 0' in report.read_text()
    assert sorted(p.name for p in report.parent.iterdir()) == ["probe.prom"]  # no temp file left behind


def test_output_file_in_a_read_only_directory_is_refused_before_running(checks: Path, tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root may write into a directory without write permission")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    proc = once(checks, "--output", str(locked / "r.txt"))
    assert proc.returncode == 64 and "is not writable" in proc.stderr


def test_wait_reruns_failing_checks_until_they_pass(tmp_path: Path) -> None:
    pidfile = tmp_path / "app.pid"
    config = tmp_path / "gate.yaml"
    config.write_text(f"checks:\n  - {{name: app, type: process, pidfile: {pidfile}, retry_interval: 200ms,"
                      " timeout: 1s}\n")
    app = subprocess.Popen(["sleep", "60"])
    try:
        # The "deploy" finishes while the gate waits: the pidfile appears half a second in.
        writer = subprocess.Popen([sys.executable, "-c", f"import time; time.sleep(0.5); "
                                   f"open({str(pidfile)!r}, 'w').write('{app.pid}')"])
        proc = probe_cli("--config-dir", config, "run", "--once", "--wait", "20s", "--format", "json")
        writer.wait(timeout=10)
    finally:
        app.kill()
        app.wait()
    assert proc.returncode == 0, proc.stdout
    assert json.loads(proc.stdout)["checks"][0]["status"] == "ok"


def test_wait_gives_up_at_the_deadline_with_the_last_status(checks: Path, quick: Callable[..., Result]) -> None:
    proc = quick(checks, "--check", "disk-critical", "--wait", "300ms")
    assert proc.returncode == 2
    assert "CRITICAL: 1 checks (1 critical)" in proc.stdout


def test_check_command_is_verbose(checks: Path, inproc: Callable[..., Result]) -> None:
    proc = probe_cli("--config-dir", checks, "check", "mem-warning")
    assert proc.returncode == 1
    out = proc.stdout
    assert out.startswith(f"check:    mem-warning (type memory, defined at {checks}:")
    assert "status:   WARNING (reason: threshold)" in out
    for name in ("utilization", "available", "used", "total", "duration"):
        assert f"\n  {name} " in out
    assert "thresholds:\n  utilization" in out and "WARNING (>= 0%)" in out
    proc = inproc("--config-dir", checks, "check", "disk-critical")
    assert proc.returncode == 2 and "reason: not_found" in proc.stdout
    proc = inproc("--config-dir", checks, "check", "mem-ok")
    assert proc.returncode == 0 and "status:   OK\n" in proc.stdout


def test_check_command_details_and_unknown_name(checks: Path, tmp_path: Path,
                                               inproc: Callable[..., Result]) -> None:
    config = tmp_path / "d.yaml"
    config.write_text("checks: [{name: root, type: disk, path: /}]\n")
    proc = inproc("--config-dir", config, "check", "root")
    assert "details:\n  /: " in proc.stdout
    proc = inproc("--config-dir", checks, "check", "mem-warnin")
    assert proc.returncode == 64
    assert "Error: no such check: 'mem-warnin'; did you mean 'mem-warning'?" in proc.stderr


def test_plugins_lists_builtins_and_failures(tmp_path: Path, inproc: Callable[..., Result]) -> None:
    checks = tmp_path / "checks.d"
    checks.mkdir()
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "broken.py").write_text("import no_such_module_anywhere\n")
    (plugins / "fine.py").write_text(
        "import probe\n"
        "class Echo(probe.Check):\n"
        "    type = 'echo'\n"
        "    def run(self, ctx):\n"
        "        return probe.Result.ok('hi')\n"
        "@probe.hookimpl\n"
        "def register_checks(register):\n"
        "    register(Echo)\n"
    )
    table = probe_cli("--config-dir", checks, "plugins")
    assert table.returncode == 1  # a plugin failed to load
    rows = [line.split(None, 3) for line in table.stdout.splitlines()]
    assert rows[0] == ["PLUGIN", "VERSION", "SOURCE", "PROVIDES"]
    by_name = {r[0]: r for r in rows[1:]}
    assert by_name["probe.checks.disk"][1:] == ["-", "builtin", "checks: disk"]
    assert by_name["fine"][2:] == [str(plugins / "fine.py"), "checks: echo"]
    assert by_name["broken"][3] == "FAILED: ModuleNotFoundError: No module named 'no_such_module_anywhere'"
    doc = json.loads(inproc("--config-dir", checks, "plugins", "--format", "json").stdout)
    assert {p["name"]: p["check_types"] for p in doc["plugins"]}["fine"] == ["echo"]
    assert doc["failures"] == [{"plugin": "broken", "source": str(plugins / "broken.py"),
                                "error": "ModuleNotFoundError: No module named 'no_such_module_anywhere'"}]
    assert doc["conflicts"] == []
    (plugins / "broken.py").unlink()
    assert inproc("--config-dir", checks, "plugins").returncode == 0


def test_plugins_lists_what_the_settings_load(tmp_path: Path, inproc: Callable[..., Result]) -> None:
    checks, elsewhere = tmp_path / "checks.d", tmp_path / "site-plugins"
    checks.mkdir()
    elsewhere.mkdir()
    (tmp_path / "plugins").mkdir()
    plugin = ("import probe\n"
              "class C(probe.Check):\n"
              "    type = {name!r}\n"
              "    def run(self, ctx):\n"
              "        return probe.Result.ok('hi')\n"
              "@probe.hookimpl\n"
              "def register_checks(register):\n"
              "    register(C)\n")
    # The default directory: not used once plugins.dir is set.
    (tmp_path / "plugins" / "beside.py").write_text(plugin.format(name="beside"))
    for name in ("wanted", "unwanted"):
        (elsewhere / f"{name}.py").write_text(plugin.format(name=name))
    settings = tmp_path / "probe.yaml"
    settings.write_text(f"plugins: {{dir: '{elsewhere}', allow: [wanted], entry_points: false}}\n")
    doc = json.loads(inproc("--config", settings, "--config-dir", checks, "plugins", "--format", "json").stdout)
    loaded = {p["name"]: (p["source"], p["check_types"]) for p in doc["plugins"] if p["source"] != "builtin"}
    assert loaded == {"wanted": (str(elsewhere / "wanted.py"), ["wanted"])}  # no entry points, no unwanted
    assert doc["failures"] == []
    assert {p["name"] for p in doc["plugins"]} >= {"probe.checks.disk", "probe.checks.http"}  # all built-ins

    settings.write_text("plugins:\n  entry_points: sometimes\n")
    proc = inproc("--config", settings, "--config-dir", checks, "plugins")
    assert proc.returncode == 78 and proc.stdout == ""
    assert f"{settings}:2:" in proc.stderr and "entry_points" in proc.stderr


def test_a_type_whose_module_is_missing_is_listed_with_what_to_install(tmp_path: Path,
                                                                      inproc: Callable[..., Result]) -> None:
    """``requires`` names a module that is not installed: listed, not a failure; a config using it is invalid."""
    checks = tmp_path / "checks.d"
    checks.mkdir()
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "needy.py").write_text(
        "import probe\n"
        "class Needy(probe.Check):\n"
        "    type = 'needy'\n"
        "    requires = {'no_such_module_anywhere': 'probe-needy[fast]'}\n"
        "    def run(self, ctx):\n"
        "        import no_such_module_anywhere\n"
        "@probe.hookimpl\n"
        "def register_checks(register):\n"
        "    register(Needy)\n")
    table = inproc("--config-dir", checks, "plugins")
    assert table.returncode == 0, table.stdout
    row = next(line for line in table.stdout.splitlines() if line.startswith("needy "))
    assert row.endswith("checks: needy (unavailable: pip install 'probe-needy[fast]')")
    doc = json.loads(inproc("--config-dir", checks, "plugins", "--format", "json").stdout)
    assert doc["unavailable"] == {"needy": "check type 'needy' needs the Python module 'no_such_module_anywhere', "
                                           "which is not installed: pip install 'probe-needy[fast]'"}
    (checks / "n.yaml").write_text("checks:\n  - {name: n, type: needy}\n")
    proc = inproc("--config-dir", checks, "validate")
    assert proc.returncode == 78
    assert f"{checks / 'n.yaml'}:2:" in proc.stderr
    assert "pip install 'probe-needy[fast]'" in proc.stderr


def test_validate_warns_about_a_failed_plugin_but_passes(tmp_path: Path) -> None:
    checks = tmp_path / "checks.d"
    checks.mkdir()
    (checks / "m.yaml").write_text("checks: [{name: m, type: memory}]\n")
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "boom.py").write_text("raise RuntimeError('boom at import')\n")
    proc = probe_cli("--config-dir", checks, "validate")
    assert proc.returncode == 0
    assert "warning: plugin boom" in proc.stderr and "RuntimeError: boom at import" in proc.stderr


def _on_a_terminal(args: list[str], columns: int = 200, env: dict[str, str] | None = None) -> str:
    """Run probe with stdout on a pseudo-terminal of ``columns`` columns; return what it showed."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    full_env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "COLUMNS")} | (env or {})
    proc = subprocess.Popen([sys.executable, "-m", "probe", *args], stdout=follower, stderr=subprocess.PIPE,
                            env=full_env)
    os.close(follower)
    chunks = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    proc.wait(timeout=30)
    return b"".join(chunks).decode().replace("\r\n", "\n")


def test_colour_only_on_a_terminal(checks: Path) -> None:
    shown = _on_a_terminal(["--config-dir", str(checks), "run", "--once"])
    assert "\x1b[32mOK      \x1b[0m  mem-ok" in shown
    assert "\x1b[33mWARNING \x1b[0m  mem-warning" in shown
    assert "\x1b[31mCRITICAL\x1b[0m  disk-critical" in shown
    assert "\x1b[35mUNKNOWN \x1b[0m  disk-unknown" in shown
    assert "\x1b[31mCRITICAL\x1b[0m: 4 checks" in shown
    plain = _on_a_terminal(["--config-dir", str(checks), "run", "--once"], env={"NO_COLOR": "1"})
    assert "\x1b[" not in plain and "CRITICAL: 4 checks" in plain
    json_out = _on_a_terminal(["--config-dir", str(checks), "run", "--once", "--format", "json"])
    assert json.loads(json_out)["status"] == "critical"


def test_wide_summaries_are_cut_to_the_terminal(tmp_path: Path) -> None:
    config = tmp_path / "wide.yaml"
    long_path = "/nonexistent/" + "very-long-directory-name/" * 8
    config.write_text(f"checks: [{{name: wide, type: disk, path: {long_path}}}]\n")
    narrow = _on_a_terminal(["--config-dir", str(config), "run", "--once"], columns=80)
    row = next(line for line in narrow.splitlines() if "wide" in line)
    assert len(row.replace("\x1b[31m", "").replace("\x1b[0m", "")) == 80
    assert row.endswith("…")
    piped = once(config)
    full = next(line for line in piped.stdout.splitlines() if "wide" in line)
    assert full.endswith(f"{long_path}: no such file or directory")


def test_help_does_not_import_heavy_libraries() -> None:
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "probe", "--help"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and "Usage: probe" in proc.stdout
    imported = {line.split("|")[-1].strip().split(".")[0] for line in proc.stderr.splitlines() if "|" in line}
    assert "click" in imported  # the parse worked
    heavy = {"httpx", "dns", "opentelemetry", "psycopg", "pymysql", "h2", "psutil", "yaml", "pydantic", "asyncio",
             "_ssl", "_hashlib"}
    assert not heavy & imported, f"probe --help imported {sorted(heavy & imported)}"
    for command in (["--version"], ["run", "--help"], ["check", "--help"], ["validate", "--help"],
                    ["plugins", "--help"]):
        sub = subprocess.run([sys.executable, "-X", "importtime", "-m", "probe", *command],
                             capture_output=True, text=True, timeout=60)
        imported = {line.split("|")[-1].strip().split(".")[0] for line in sub.stderr.splitlines() if "|" in line}
        assert sub.returncode == 0 and "click" in imported and not heavy & imported, (command, heavy & imported)


def test_report_that_cannot_be_written_exits_74(checks: Path, tmp_path: Path) -> None:
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "probe", "--config-dir", str(checks), "run", "--once",
                               "--check", "mem-ok"], stdout=full, stderr=subprocess.PIPE, text=True, timeout=60)
    assert proc.returncode == 74
    assert "probe: cannot write the report: No space left on device" in proc.stderr
    with tmpfs(tmp_path / "full", size="4k") as small:
        fill(small, 4096)
        proc = once(checks, "--check", "mem-ok", "--output", str(small / "report.txt"))
        assert proc.returncode == 74, proc.stderr
        assert f"probe: cannot write {small / 'report.txt'}: No space left on device" in proc.stderr
        assert sorted(p.name for p in small.iterdir()) == ["fill"]  # the temp file was removed


def test_a_closed_pipe_is_not_an_error(checks: Path) -> None:
    proc = subprocess.run(f"{sys.executable} -m probe --config-dir {checks} run --once --format json "
                          "| head -c 1; exit ${PIPESTATUS[0]}", shell=True, executable="/bin/bash",
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stdout == "{"
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr


def test_an_internal_error_exits_unknown_not_warning(tmp_path: Path) -> None:
    checks = tmp_path / "checks.d"
    checks.mkdir()
    (checks / "m.yaml").write_text("checks: [{name: m, type: memory}]\n")
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "badformat.py").write_text(
        "import probe\n"
        "class Broken:\n"
        "    name = 'broken'\n"
        "    def render(self, report):\n"
        "        raise ValueError('cannot render')\n"
        "@probe.hookimpl\n"
        "def register_formats(register):\n"
        "    register(Broken())\n"
    )
    proc = probe_cli("--config-dir", checks, "run", "--once", "--format", "broken")
    assert proc.returncode == 3
    assert proc.stderr.strip() == ("probe: internal error: ValueError: cannot render "
                                   "(--log-level debug shows where)")


def test_local_plugins_leave_no_byte_code_in_the_plugins_dir(tmp_path: Path) -> None:
    """/etc/probe/plugins is configuration: a root run of the CLI must not write __pycache__ there, which
    package removal would leave behind (issue 21 item 9)."""
    import subprocess
    import sys

    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "hello.py").write_text(
        "import probe\n\nclass Hello(probe.Check):\n    type = 'hello'\n\n"
        "    def run(self, ctx):\n        return probe.Result.ok('hi')\n\n"
        "@probe.hookimpl\ndef register_checks(register):\n    register(Hello)\n")
    (tmp_path / "probe.yaml").write_text(f"plugins: {{dir: {plugins}}}\n")
    (tmp_path / "checks.yaml").write_text("checks: [{name: hi, type: hello}]\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE" and not k.startswith("PROBE_")}
    run = subprocess.run([sys.executable, "-m", "probe", "--config", str(tmp_path / "probe.yaml"), "--config-dir",
                          str(tmp_path / "checks.yaml"), "run", "--once"], capture_output=True, text=True, env=env)
    assert run.returncode == 0 and "hi" in run.stdout, run.stderr
    assert sorted(p.name for p in plugins.iterdir()) == ["hello.py"]
