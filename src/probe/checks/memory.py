"""memory: RAM and swap use of this host, from the kernel's own accounting in /proc/meminfo."""

from __future__ import annotations

import probe
from probe.hookspecs import CheckRegistrar
from probe.units import format_size

MEMINFO = "/proc/meminfo"


class MemoryOptions(probe.Options):
    pass


class MemoryCheck(probe.Check[MemoryOptions]):
    """How much memory is in use. ``available`` is the kernel's MemAvailable estimate (what can be
    allocated without swapping, reclaimable page cache included), so ``utilization`` = 1 - available /
    total: what ``free`` shows as available and what matters for the OOM killer, unlike "free" memory,
    which Linux keeps low on purpose. Swap measurements are reported only when the host has swap."""

    type = "memory"
    local = True  # reads this host only: runs start on whole seconds with the other local checks
    # time_to_full is forecast by the core from history (see ``capacities``), listed for thresholds.
    measurements = frozenset({"duration", "utilization", "available", "used", "total",
                              "swap_utilization", "swap_used", "swap_free", "swap_total", "time_to_full"})
    units = {"duration": "s", "utilization": "1", "available": "By", "used": "By", "total": "By",
             "swap_utilization": "1", "swap_used": "By", "swap_free": "By", "swap_total": "By", "time_to_full": "s"}
    capacities = {"utilization": "time_to_full"}

    def run(self, ctx: probe.Context) -> probe.Result:
        try:
            info = read_meminfo(MEMINFO)
            total = info["MemTotal"]
        except (OSError, KeyError, ValueError) as exc:
            return probe.Result.unknown(f"cannot read {MEMINFO}: {exc}", reason="unreadable")
        available = available_bytes(info)
        used = total - available
        utilization = used / total if total else 0.0
        measurements = [
            probe.Measurement("utilization", utilization, "1"),
            probe.Measurement("available", available, "By"),
            probe.Measurement("used", used, "By"),
            probe.Measurement("total", total, "By"),
        ]
        summary = f"{utilization:.1%} used, {format_size(available)} available of {format_size(total)}"
        swap_total, swap_free = info.get("SwapTotal", 0.0), info.get("SwapFree", 0.0)
        if swap_total:
            swap_used = swap_total - swap_free
            measurements += [
                probe.Measurement("swap_utilization", swap_used / swap_total, "1"),
                probe.Measurement("swap_used", swap_used, "By"),
                probe.Measurement("swap_free", swap_free, "By"),
                probe.Measurement("swap_total", swap_total, "By"),
            ]
            summary += f"; swap {swap_used / swap_total:.1%} of {format_size(swap_total)} used"
        else:
            summary += "; no swap"
        return probe.Result.ok(summary, *measurements)


def read_meminfo(path: str) -> dict[str, float]:
    """``/proc/meminfo`` in bytes: ``{"MemTotal": 25276063744.0, ...}``."""
    out: dict[str, float] = {}
    with open(path, encoding="ascii", errors="replace") as f:
        for line in f:
            key, _, rest = line.partition(":")
            fields = rest.split()
            if not fields:
                continue
            scale = 1024 if fields[1:] == ["kB"] else 1
            out[key.strip()] = float(fields[0]) * scale
    return out


def available_bytes(info: dict[str, float]) -> float:
    if "MemAvailable" in info:
        return info["MemAvailable"]
    # Kernels before 3.14 have no MemAvailable; this is the estimate free(1) used then.
    return info.get("MemFree", 0.0) + info.get("Buffers", 0.0) + info.get("Cached", 0.0)


@probe.hookimpl
def register_checks(register: CheckRegistrar) -> None:
    register(MemoryCheck)
