"""StrictModes: as root, files another user could have written are refused with the file, its mode and
the fix. These tests run as root (as CI does) and make such files for real: chmod 0666, chown nobody."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from hostfs import probe_main

from probe._permissions import strict_modes_apply, unsafe_file
from probe.config.load import ConfigErrors, load

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="StrictModes guard root; these tests need root")

NOBODY = pwd.getpwnam("nobody").pw_uid
FIX = "as root probe only reads files that no other user can change (StrictModes)"
CHECKS = "checks:\n  - name: mem\n    type: memory\n"

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A safe /etc/probe-like tree: root-owned, 0755 directories, 0644 files."""
    root = tmp_path / "etc"
    (root / "checks.d").mkdir(parents=True)
    (root / "plugins").mkdir()
    (root / "checks.d" / "mem.yaml").write_text(CHECKS)
    (root / "probe.yaml").write_text("plugins: {entry_points: false}\n")
    for path in (tmp_path, root, root / "checks.d", root / "plugins"):
        path.chmod(0o755)
    return root


@pytest.fixture
def validate(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, config: Path) -> Run:
    for key in [k for k in os.environ if k.startswith("PROBE_")]:
        monkeypatch.delenv(key)
    return lambda: probe_main(capsys, "--config", config / "probe.yaml", "--config-dir", config / "checks.d",
                              "validate")


def test_a_safe_tree_loads(config: Path, validate: Run) -> None:
    assert strict_modes_apply()
    proc = validate()
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(("mode", "who"), [(0o666, "group and others"), (0o646, "others"), (0o664, "group")])
def test_a_checks_file_writable_by_others_is_refused(config: Path, validate: Run, mode: int, who: str) -> None:
    path = config / "checks.d" / "mem.yaml"
    path.chmod(mode)
    proc = validate()
    assert proc.returncode == 78
    assert proc.stderr.splitlines() == [
        f"{path}:1:1: {path} is writable by {who} (mode {mode:04o}); {FIX}: chmod go-w {path}",
        "probe: configuration invalid: 1 error",
    ]


def test_a_checks_file_owned_by_another_user_is_refused(config: Path, validate: Run) -> None:
    path = config / "checks.d" / "mem.yaml"
    os.chown(path, NOBODY, -1)
    proc = validate()
    assert proc.returncode == 78
    assert f"{path}:1:1: {path} is owned by user nobody (uid {NOBODY}), not root; {FIX}: chown root {path}" \
        in proc.stderr.splitlines()


def test_both_problems_are_named_with_both_fixes(config: Path) -> None:
    path = config / "checks.d" / "mem.yaml"
    os.chown(path, NOBODY, -1)
    path.chmod(0o666)
    assert unsafe_file(path) == (f"{path} is owned by user nobody (uid {NOBODY}), not root and is writable by "
                                 f"group and others (mode 0666); {FIX}: chown root {path} && chmod go-w {path}")


def test_a_writable_parent_directory_is_refused(config: Path, validate: Run) -> None:
    directory = config / "checks.d"
    directory.chmod(0o777)
    proc = validate()
    path = directory / "mem.yaml"
    assert proc.returncode == 78
    assert (f"{path}:1:1: {path}: directory {directory} is writable by group and others (mode 0777); {FIX}: "
            f"chmod go-w {directory}") in proc.stderr.splitlines()


def test_a_root_owned_sticky_directory_is_accepted(config: Path, validate: Run) -> None:
    """Like /tmp: others may write there but cannot replace what root keeps in it."""
    config.chmod(0o1777)
    assert validate().returncode == 0
    os.chown(config, NOBODY, -1)
    assert "is owned by user nobody" in validate().stderr


def test_a_symlink_to_an_unsafe_file_is_refused(config: Path, tmp_path: Path, validate: Run) -> None:
    elsewhere = tmp_path / "elsewhere.yaml"
    elsewhere.write_text(CHECKS.replace("mem", "other"))
    os.chown(elsewhere, NOBODY, -1)
    (config / "checks.d" / "other.yaml").symlink_to(elsewhere)
    proc = validate()
    assert proc.returncode == 78
    assert f"{config / 'checks.d' / 'other.yaml'} is owned by user nobody" in proc.stderr


def test_an_unsafe_probe_yaml_is_refused(config: Path, validate: Run) -> None:
    settings = config / "probe.yaml"
    settings.chmod(0o620)
    proc = validate()
    assert proc.returncode == 78
    assert proc.stderr.splitlines()[0] == (f"{settings}:1:1: {settings} is writable by group (mode 0620); {FIX}: "
                                           f"chmod go-w {settings}")


def test_strict_modes_false_lets_checks_files_through_but_never_probe_yaml(config: Path, validate: Run) -> None:
    (config / "probe.yaml").write_text("plugins: {entry_points: false}\nstrict_modes: false\n")
    (config / "checks.d" / "mem.yaml").chmod(0o666)
    assert validate().returncode == 0
    (config / "probe.yaml").chmod(0o666)
    assert validate().returncode == 78


def test_an_unsafe_secret_file_is_refused_where_it_is_referenced(config: Path, tmp_path: Path,
                                                                    validate: Run) -> None:
    secret = tmp_path / "db-password"
    secret.write_text("hunter2\n")
    os.chown(secret, NOBODY, -1)
    secret.chmod(0o600)
    checks = config / "checks.d" / "mem.yaml"
    checks.write_text(textwrap.dedent(f"""\
        checks:
          - name: echo
            type: command
            run: [/bin/echo, "${{file:{secret}}}"]
        """))
    proc = validate()
    assert proc.returncode == 78
    assert proc.stderr.splitlines()[0] == (
        f"{checks}:4:22: check 'echo': run[1]: refusing secret file: {secret} is owned by user nobody "
        f"(uid {NOBODY}), not root; {FIX}: chown root {secret}")
    assert "hunter2" not in proc.stderr
    os.chown(secret, 0, -1)
    assert validate().returncode == 0  # root-owned, 0600: fine


def test_an_unsafe_plugin_file_is_refused_like_a_failed_plugin_and_never_imported(
    config: Path, tmp_path: Path, validate: Run
) -> None:
    marker = tmp_path / "imported"
    plugin = config / "plugins" / "evil.py"
    plugin.write_text(textwrap.dedent(f"""\
        import pathlib
        pathlib.Path({str(marker)!r}).write_text("ran as root")

        import probe

        class Evil(probe.Check):
            type = "evil"

            def run(self, ctx):
                return probe.Result.ok("pwned")

        @probe.hookimpl
        def register_checks(register):
            register(Evil)
        """))
    plugin.chmod(0o666)
    (config / "checks.d" / "evil.yaml").write_text("checks:\n  - name: evil\n    type: evil\n")
    with pytest.raises(ConfigErrors) as caught:
        load(config / "checks.d", settings_path=config / "probe.yaml", env={})
    assert not marker.exists()
    refused = f"refused: {plugin} is writable by group and others (mode 0666); {FIX}: chmod go-w {plugin}"
    assert "unknown check type 'evil'; installed types:" in str(caught.value)
    assert f"(plugins that failed to load: evil ({refused}))" in str(caught.value)

    proc = subprocess.run([sys.executable, "-m", "probe", "--config-dir", str(config / "checks.d"), "plugins",
                           "--format", "json"], capture_output=True, text=True, timeout=60,
                          env={k: v for k, v in os.environ.items() if not k.startswith("PROBE_")})
    failures = json.loads(proc.stdout)["failures"]
    assert failures == [{"plugin": "evil", "source": str(plugin), "error": refused}]
    assert not marker.exists()

    plugin.chmod(0o644)
    registry, _ = load(config / "checks.d", settings_path=config / "probe.yaml", env={})
    assert "evil" in registry.checks and marker.exists()


def test_an_unprivileged_agent_does_not_apply_strict_modes() -> None:
    """As any other user probe can only hurt that user: a world-writable file of theirs loads."""
    top = Path(tempfile.mkdtemp(prefix="probe-strict-"))
    try:
        top.chmod(0o755)
        (top / "checks.d").mkdir(mode=0o755)
        checks = top / "checks.d" / "mem.yaml"
        checks.write_text(CHECKS)
        checks.chmod(0o666)
        pid = os.fork()
        if pid == 0:  # the child drops to nobody in this very interpreter (nobody cannot reach the venv)
            code = 3
            try:
                os.seteuid(NOBODY)
                _, plan = load(top / "checks.d", env={})
                code = 0 if not strict_modes_apply() and [c.name for c in plan.checks] == ["mem"] else 1
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        with pytest.raises(ConfigErrors, match="chmod go-w"):
            load(top / "checks.d", env={})
    finally:
        shutil.rmtree(top)
