"""process: is a process running, how many, and what does it use."""

from __future__ import annotations

import re
from collections.abc import Callable

import psutil
from pydantic import model_validator

import probe
from probe.units import format_size


class ProcessCheck(probe.Check):
    type = "process"
    measurements = frozenset({"duration", "count", "rss", "cpu", "zombies"})

    class Options(probe.Options):
        name: str | None = None
        """Process name (comm), exact match."""
        cmdline: str | None = None
        """Regular expression searched in the full command line."""
        user: str | None = None
        """Only processes of this user."""
        pidfile: str | None = None
        """Path of a pidfile; the process it names must be alive (a stale pidfile is CRITICAL)."""
        min_count: int = 1
        """Fewer matching processes than this is CRITICAL."""

        @model_validator(mode="after")
        def _something_to_match(self) -> ProcessCheck.Options:
            if not (self.name or self.cmdline or self.pidfile or self.user):
                raise ValueError("set at least one of name, cmdline, user or pidfile")
            if self.cmdline:
                re.compile(self.cmdline)
            return self

    def run(self, ctx: probe.Context) -> probe.Result:
        o = self.options
        pattern = re.compile(o.cmdline) if o.cmdline else None
        matched, zombies = [], 0
        for proc in psutil.process_iter(["pid", "name", "cmdline", "username", "status", "memory_info"]):
            info = proc.info
            if o.name and info["name"] != o.name:
                continue
            if o.user and info["username"] != o.user:
                continue
            if pattern and not pattern.search(" ".join(info["cmdline"] or [])):
                continue
            if info["status"] == psutil.STATUS_ZOMBIE:
                zombies += 1
                continue
            matched.append(proc)
        rss = float(sum(p.info["memory_info"].rss for p in matched if p.info["memory_info"]))
        measurements = [probe.Measurement("count", float(len(matched))), probe.Measurement("rss", rss, "By"),
                        probe.Measurement("zombies", float(zombies))]
        what = o.name or o.cmdline or o.pidfile or o.user
        if len(matched) < o.min_count:
            return probe.Result.critical(f"{len(matched)} processes match {what!r}, expected at least {o.min_count}"
                                         + (f" ({zombies} zombies)" if zombies else ""),
                                         *measurements, reason="not_running")
        return probe.Result.ok(f"{len(matched)} processes match {what!r}, RSS {format_size(rss)}", *measurements)


@probe.hookimpl
def register_checks(register: Callable[[type[probe.Check]], None]) -> None:
    register(ProcessCheck)
