"""memory: RAM and swap use of this host, from the kernel's own accounting."""

from __future__ import annotations

from collections.abc import Callable

import psutil

import probe
from probe.units import format_size


class MemoryCheck(probe.Check):
    """How much memory is in use. ``available`` is the kernel's MemAvailable estimate (what can be
    allocated without swapping, page cache included), so ``utilization`` = 1 - available / total; this is
    what ``free`` shows and what matters for the OOM killer, unlike "free" memory which Linux keeps low on
    purpose. Swap measurements are reported only when the host has swap."""

    type = "memory"
    measurements = frozenset({"duration", "utilization", "available", "used", "total",
                              "swap_utilization", "swap_used", "swap_free", "swap_total"})
    capacities = ("utilization",)

    class Options(probe.Options):
        pass

    def run(self, ctx: probe.Context) -> probe.Result:
        vm = psutil.virtual_memory()
        used = vm.total - vm.available
        utilization = used / vm.total if vm.total else 0.0
        measurements = [
            probe.Measurement("utilization", utilization, "1"),
            probe.Measurement("available", float(vm.available), "By"),
            probe.Measurement("used", float(used), "By"),
            probe.Measurement("total", float(vm.total), "By"),
        ]
        summary = f"{utilization:.1%} used, {format_size(vm.available)} available of {format_size(vm.total)}"
        swap = psutil.swap_memory()
        if swap.total:
            measurements += [
                probe.Measurement("swap_utilization", swap.used / swap.total, "1"),
                probe.Measurement("swap_used", float(swap.used), "By"),
                probe.Measurement("swap_free", float(swap.free), "By"),
                probe.Measurement("swap_total", float(swap.total), "By"),
            ]
            summary += f"; swap {swap.used / swap.total:.1%} of {format_size(swap.total)} used"
        else:
            summary += "; no swap"
        return probe.Result.ok(summary, *measurements)


@probe.hookimpl
def register_checks(register: Callable[[type[probe.Check]], None]) -> None:
    register(MemoryCheck)
