"""ntp: how far our clock is from an NTP server's, and whether that server is fit to follow.

One SNTP exchange (``net/sntp``): offset, round-trip delay, the server's stratum, leap indicator and root
distance. A server that says it is unsynchronized (leap indicator 3, stratum 0 or 16) or sends a
kiss-o'-death is a failure with its own reason, whatever the offset; the offset is judged by thresholds.
"""

from __future__ import annotations

import time

from pydantic import Field, field_validator

import probe
from probe.checks.net import sntp
from probe.checks.net.conn import Failure
from probe.hookspecs import CheckRegistrar


class NtpOptions(probe.Options):
    server: str
    """``host``, ``host:port`` or ``[address]:port`` of the NTP server (port 123 by default)."""
    max_stratum: int = Field(15, ge=1, le=15)
    """Highest stratum accepted: a server further from a reference clock is ``stratum_too_high``."""

    @field_validator("server")
    @classmethod
    def _server(cls, value: str) -> str:
        sntp.parse_server(value)
        return value


class NtpCheck(probe.Check[NtpOptions]):
    """Offset and delay against one server, plus the server's own health (stratum, leap, kiss codes)."""

    type = "ntp"
    measurements = frozenset({"duration", "offset", "abs_offset", "delay", "stratum", "root_distance"})
    units = {"duration": "s", "offset": "s", "abs_offset": "s", "delay": "s", "stratum": "", "root_distance": "s"}

    def __init__(self, name: str, options: NtpOptions) -> None:
        super().__init__(name, options)
        self._server = sntp.parse_server(options.server)

    async def run(self, ctx: probe.Context) -> probe.Result:
        started = time.monotonic()
        try:
            # Stop a little before the core's deadline so our own reason gets reported.
            sample = await sntp.query(self._server, ctx.deadline - min(0.05, 0.05 * ctx.remaining()))
        except Failure as exc:
            return probe.Result.critical(f"{self._server}: {exc.message}", _duration(started), reason=exc.reason)
        except TimeoutError:  # the core's deadline passed first
            return probe.Result.critical(f"{self._server}: no reply", _duration(started), reason="timeout")
        return self._judge(sample, _duration(started))

    def _judge(self, sample: sntp.Sample, duration: probe.Measurement) -> probe.Result:
        reply = sample.reply
        details = {"address": sample.address, "stratum": reply.stratum, "leap": sntp.LEAP[reply.leap],
                   "version": reply.version, "reference_id": reply.reference_text(),
                   "root_delay": reply.root_delay, "root_dispersion": reply.root_dispersion}
        where = str(self._server)
        if reply.stratum == 0:
            return probe.Result.critical(f"{where}: kiss-o'-death {reply.kiss_code!r} (the server refuses to "
                                         f"serve us: RATE = too often, DENY/RSTR = not allowed)", duration,
                                         reason="kiss_of_death", details=details)
        if reply.leap == 3 or reply.stratum >= 16:
            return probe.Result.critical(f"{where}: the server is not synchronized (stratum {reply.stratum}, "
                                         f"leap {sntp.LEAP[reply.leap]})", duration,
                                         reason="unsynchronized", details=details)
        measurements = [duration,
                        probe.Measurement("offset", sample.offset, "s"),
                        probe.Measurement("abs_offset", abs(sample.offset), "s"),
                        probe.Measurement("delay", sample.delay, "s"),
                        probe.Measurement("stratum", reply.stratum),
                        # RFC 5905's root distance: how wrong the server's own time may be.
                        probe.Measurement("root_distance", reply.root_delay / 2 + reply.root_dispersion, "s")]
        details["offset"] = sample.offset
        summary = (f"{where}: offset {sample.offset * 1e3:+.3f} ms, delay {sample.delay * 1e3:.3f} ms, "
                   f"stratum {reply.stratum}"
                   + (f", leap second pending ({sntp.LEAP[reply.leap]})" if reply.leap in (1, 2) else ""))
        if reply.stratum > self.options.max_stratum:
            return probe.Result.critical(f"{summary}: stratum above {self.options.max_stratum} (max_stratum)",
                                         *measurements, reason="stratum_too_high", details=details)
        return probe.Result.ok(summary, *measurements, details=details)


def _duration(started: float) -> probe.Measurement:
    return probe.Measurement("duration", time.monotonic() - started, "s")


@probe.hookimpl
def register_checks(register: CheckRegistrar) -> None:
    register(NtpCheck)
