"""The memory check against the kernel's real numbers, and against meminfo files of other hosts
(bind-mounted over /proc/meminfo in a private mount namespace, as lxcfs does for containers)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import require
from hostfs import config_errors, run_checks

from probe import Status

SLACK = 256 * 1024**2  # memory moves while the test runs (services, the interpreter itself)


def meminfo() -> dict[str, int]:
    out = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, rest = line.split(":", 1)
        out[key] = int(rest.split()[0]) * 1024
    return out


async def test_real_values_match_proc_meminfo(tmp_path: Path) -> None:
    before = meminfo()
    outcome = (await run_checks(tmp_path, "checks: [{name: mem, type: memory}]"))["mem"]
    after = meminfo()
    r = outcome.result
    assert r.status is Status.OK
    values = {m.name: m for m in r.measurements}
    assert values["total"].value == before["MemTotal"] and values["total"].unit == "By"
    low = min(before["MemAvailable"], after["MemAvailable"]) - SLACK
    high = max(before["MemAvailable"], after["MemAvailable"]) + SLACK
    assert low <= values["available"].value <= high
    assert values["used"].value == values["total"].value - values["available"].value
    assert values["utilization"].unit == "1"
    assert values["utilization"].value == pytest.approx(values["used"].value / values["total"].value)
    if before["SwapTotal"]:
        assert values["swap_total"].value == before["SwapTotal"]
        assert "swap" in r.summary
    else:
        assert not {"swap_total", "swap_used", "swap_free", "swap_utilization"} & set(values)
        assert r.summary.endswith("; no swap")


async def test_total_agrees_with_free(tmp_path: Path) -> None:
    free = shutil.which("free")
    require(free is not None, "free (procps) is not installed")
    assert free is not None
    total = int(subprocess.run([free, "-b"], capture_output=True, text=True, check=True)
                .stdout.splitlines()[1].split()[1])
    outcome = (await run_checks(tmp_path, "checks: [{name: mem, type: memory}]"))["mem"]
    assert outcome.result.measurement("total").value == total  # type: ignore[union-attr]


async def test_thresholds_on_real_utilization(tmp_path: Path) -> None:
    outcomes = await run_checks(tmp_path, """
        checks:
          - {name: always, type: memory, thresholds: {utilization: {warning: ">= 0%"}}}
          - {name: never, type: memory, thresholds: {available: {critical: "< 1B"}}}
          - {name: swapless, type: memory, thresholds: {swap_utilization: {critical: ">= 0%"}}}
    """)
    assert outcomes["always"].status is Status.WARNING and outcomes["always"].result.reason == "threshold"
    assert outcomes["never"].status is Status.OK
    swap = next(v for v in outcomes["swapless"].verdicts if v.measurement == "swap_utilization")
    if meminfo()["SwapTotal"] == 0:
        # No swap: the measurement is absent, so the threshold cannot fire.
        assert swap.value is None and outcomes["swapless"].status is Status.OK
    else:
        assert outcomes["swapless"].status is Status.CRITICAL


def _run_with_meminfo(tmp_path: Path, content: str) -> dict[str, object]:
    """Run the memory check in a private mount namespace where /proc/meminfo is ``content``."""
    unshare = shutil.which("unshare")
    require(unshare is not None, "unshare (util-linux) is not installed")
    fake = tmp_path / "meminfo"
    fake.write_text(textwrap.dedent(content).lstrip())
    config = tmp_path / "mem.yaml"
    config.write_text("checks: [{name: mem, type: memory}]\n")
    script = (f"mount --bind {fake} /proc/meminfo && exec {sys.executable} -m probe --config-dir {config} "
              "run --once --format json")
    proc = subprocess.run([str(unshare), "-m", "sh", "-c", script], capture_output=True, text=True, timeout=60)
    require("mount" not in proc.stderr, f"cannot bind-mount in a mount namespace here: {proc.stderr.strip()}")
    doc = json.loads(proc.stdout)
    check: dict[str, object] = doc["checks"][0]
    return check


def test_swap_is_reported_when_the_host_has_swap(tmp_path: Path) -> None:
    check = _run_with_meminfo(tmp_path, """
        MemTotal:        8000000 kB
        MemFree:         1000000 kB
        MemAvailable:    2000000 kB
        Buffers:          100000 kB
        Cached:           500000 kB
        SwapTotal:       4000000 kB
        SwapFree:        3000000 kB
    """)
    m = check["measurements"]
    assert isinstance(m, dict)
    assert m["total"] == {"value": 8000000 * 1024, "unit": "By"}
    assert m["available"] == {"value": 2000000 * 1024, "unit": "By"}
    assert m["utilization"]["value"] == pytest.approx(0.75)
    assert m["swap_total"] == {"value": 4000000 * 1024, "unit": "By"}
    assert m["swap_used"] == {"value": 1000000 * 1024, "unit": "By"}
    assert m["swap_free"] == {"value": 3000000 * 1024, "unit": "By"}
    assert m["swap_utilization"] == {"value": 0.25, "unit": "1"}
    assert check["summary"] == "75.0% used, 1.9GiB available of 7.6GiB; swap 25.0% of 3.8GiB used"


def test_old_kernel_without_memavailable_uses_free_buffers_cached(tmp_path: Path) -> None:
    check = _run_with_meminfo(tmp_path, """
        MemTotal:        1000000 kB
        MemFree:          200000 kB
        Buffers:          100000 kB
        Cached:           300000 kB
        SwapTotal:             0 kB
        SwapFree:              0 kB
    """)
    m = check["measurements"]
    assert isinstance(m, dict)
    assert m["available"]["value"] == 600000 * 1024
    assert m["utilization"]["value"] == pytest.approx(0.4)
    assert "swap_total" not in m


def test_garbled_meminfo_is_unknown(tmp_path: Path) -> None:
    check = _run_with_meminfo(tmp_path, "MemFree: lots\n")
    assert (check["status"], check["reason"]) == ("unknown", "unreadable")
    assert str(check["summary"]).startswith("cannot read /proc/meminfo: ")


def test_memory_takes_no_options(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    errors = config_errors(path, "checks:\n  - {name: mem, type: memory, swap: true}\n")
    assert errors == [f"{path}:2:31: check 'mem': swap: unknown key 'swap'"]
