"""memory: RAM and swap utilization of this host."""

from __future__ import annotations

from collections.abc import Callable

import psutil

import probe
from probe.units import format_size


class MemoryCheck(probe.Check):
    """Reports how much memory is in use. Put thresholds on ``utilization`` or ``available``."""

    type = "memory"
    measurements = frozenset({"duration", "utilization", "available", "used", "total",
                              "swap_utilization", "swap_used"})
    capacities = {"utilization": "time_to_full"}

    class Options(probe.Options):
        pass

    def run(self, ctx: probe.Context) -> probe.Result:
        vm = psutil.virtual_memory()
        swap = psutil.swap_memory()
        utilization = (vm.total - vm.available) / vm.total if vm.total else 0.0
        measurements = [
            probe.Measurement("utilization", utilization, "1"),
            probe.Measurement("available", float(vm.available), "By"),
            probe.Measurement("used", float(vm.total - vm.available), "By"),
            probe.Measurement("total", float(vm.total), "By"),
            probe.Measurement("swap_used", float(swap.used), "By"),
        ]
        if swap.total:
            measurements.append(probe.Measurement("swap_utilization", swap.used / swap.total, "1"))
        summary = f"{utilization:.1%} used, {format_size(vm.available)} available of {format_size(vm.total)}"
        if swap.total:
            summary += f"; swap {swap.used / swap.total:.1%} used"
        return probe.Result.ok(summary, *measurements)


@probe.hookimpl
def register_checks(register: Callable[[type[probe.Check]], None]) -> None:
    register(MemoryCheck)
