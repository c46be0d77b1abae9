"""Every invalid config in tests/invalid/ is reported exactly as its ``.expected`` file says.

A case is ``<case>.yaml`` (one checks file) or a directory ``<case>/`` holding ``checks.d/`` and, when
the case is about agent settings, ``probe.yaml``. ``<case>.expected`` lists every error line
``probe validate`` prints, in order; ``{installed types}`` stands for the installed check types. Paths
are relative: the command runs in tests/invalid/.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from hostfs import probe_main

from probe.plugins.manager import load_plugins

INVALID = Path(__file__).parent / "invalid"
CASES = sorted(p.name.removesuffix(".yaml") for p in INVALID.iterdir() if p.suffix == ".yaml" or p.is_dir())
ERROR_LINE = re.compile(r"^[^:\s]+:\d+:\d+: (check '[^']*': )?([\w.\[\]-]+: )?\S")


def _arguments(case: str, tmp_path: Path) -> list[str]:
    source = INVALID / case
    if source.is_dir():
        args = ["--config-dir", f"{case}/checks.d"]
        return args + (["--config", f"{case}/probe.yaml"] if (source / "probe.yaml").exists() else [])
    # Only the built-in check types, whatever else is installed, so the messages are the same everywhere.
    settings = tmp_path / "probe.yaml"
    settings.write_text("plugins: {entry_points: false}\n")
    return ["--config", str(settings), "--config-dir", f"{case}.yaml"]


def expected_lines(case: str) -> list[str]:
    types = ", ".join(load_plugins(use_entry_points=False).check_type_names())
    text = (INVALID / f"{case}.expected").read_text(encoding="utf-8")
    return text.replace("{installed types}", types).splitlines()


def test_there_are_enough_cases_and_each_has_its_expected_errors() -> None:
    assert len(CASES) >= 35
    missing = [c for c in CASES if not (INVALID / f"{c}.expected").is_file()]
    assert not missing, f"add tests/invalid/<case>.expected for: {missing}"
    orphans = [p.name for p in INVALID.glob("*.expected") if p.stem not in CASES]
    assert not orphans, f"expected files without a case: {orphans}"


@pytest.mark.parametrize("case", CASES)
def test_expected_lines_have_the_documented_shape(case: str) -> None:
    bad = [line for line in expected_lines(case) if not ERROR_LINE.match(line)]
    assert not bad, f"not 'file:line:col: check 'name': field: message': {bad}"


@pytest.mark.parametrize("case", CASES)
def test_invalid_config_is_rejected_with_every_error_exactly(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in [k for k in os.environ if k.startswith("PROBE_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(INVALID)
    proc = probe_main(capsys, *_arguments(case, tmp_path), "validate")
    want = expected_lines(case)
    noun = "error" if len(want) == 1 else "errors"
    # Log records (a plugin that failed to load, say) are not part of the verdict.
    got = [line for line in proc.stderr.splitlines() if not line.startswith(("WARNING ", "ERROR ", "INFO "))]
    assert got == [*want, f"probe: configuration invalid: {len(want)} {noun}"]
    assert proc.returncode == 78
    assert proc.stdout == ""
