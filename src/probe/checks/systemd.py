"""systemd: a unit's state, its restarts, a timer's last run, or every failed unit, read from the manager
over D-Bus (jeepney, a pure-Python client: the ``systemd`` extra), not by parsing ``systemctl`` output.

The check is synchronous (the core runs it in a worker thread) and opens one bus connection per run: the
system bus is local and the connection costs a few milliseconds, while a kept one would go stale across
dbus restarts.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import Field, field_validator, model_validator

import probe
from probe.hookspecs import CheckRegistrar
from probe.units import Duration, format_duration

_SYSTEMD = "org.freedesktop.systemd1"
_MANAGER = "/org/freedesktop/systemd1"
_ACTIVE_STATES = ("active", "reloading", "inactive", "failed", "activating", "deactivating", "maintenance",
                  "refreshing")
_UNIT_TYPES = (".service", ".socket", ".target", ".device", ".mount", ".automount", ".swap", ".timer",
               ".path", ".slice", ".scope")


_NEEDS_JEEPNEY = "the systemd check needs the 'jeepney' package (pip install 'probe-monitor[systemd]')"


class Failure(Exception):
    def __init__(self, status: probe.Status, reason: str, summary: str) -> None:
        super().__init__(summary)
        self.status, self.reason, self.summary = status, reason, summary


class SystemdOptions(probe.Options):
    unit: str | None = None
    """The unit to check (``nginx.service``, ``backup.timer``; a name without a type is a service)."""
    active_state: list[str] = ["active"]
    """ActiveState values that are OK (``active``, ``inactive``, ``failed``, ...), one or a list."""
    max_restarts: int | None = Field(None, ge=0)
    """For a service: most automatic restarts (NRestarts) allowed since the previous run of this check
    (on the first run: since the service was started). More is CRITICAL, reason ``restarting``."""
    max_age: Duration | None = Field(None, gt=0)
    """For a timer: longest time since it last triggered (never triggered counts as too old)."""
    failed_units: bool = False
    """Instead of one unit: CRITICAL when any unit on the host is in the ``failed`` state."""
    bus: str = "system"
    """Which bus: ``system``, or a D-Bus address (``unix:path=/run/dbus/system_bus_socket``)."""

    @field_validator("unit")
    @classmethod
    def _unit_name(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value or "/" in value or any(c.isspace() for c in value):
            raise ValueError(f"invalid unit name {value!r}")
        return value if value.endswith(_UNIT_TYPES) else value + ".service"

    @field_validator("active_state", mode="before")
    @classmethod
    def _one_or_more(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("active_state")
    @classmethod
    def _known_states(cls, value: list[str]) -> list[str]:
        unknown = [v for v in value if v not in _ACTIVE_STATES]
        if unknown or not value:
            raise ValueError(f"unknown ActiveState {unknown[0] if unknown else '(none)'}; expected one of "
                             f"{', '.join(_ACTIVE_STATES)}")
        return value

    @model_validator(mode="after")
    def _unit_or_failed_units(self) -> SystemdOptions:
        if (self.unit is None) == (not self.failed_units):
            raise ValueError("set either 'unit' or 'failed_units: true'")
        if self.unit is not None:
            if self.max_restarts is not None and not self.unit.endswith(".service"):
                raise ValueError("'max_restarts' applies to services only")
            if self.max_age is not None and not self.unit.endswith(".timer"):
                raise ValueError("'max_age' applies to timers only")
        return self


class SystemdCheck(probe.Check[SystemdOptions]):
    """A unit's ActiveState, a service's restarts, a timer's last trigger and its service's last result,
    or the host's failed units."""

    type = "systemd"
    local = True  # reads this host only: runs start on whole seconds with the other local checks
    requires = {"jeepney": "probe-monitor[systemd]"}  # `probe plugins` and validation say what to install
    measurements = frozenset({"duration", "restarts", "age", "failed_units"})
    units = {"duration": "s", "restarts": "{restart}", "age": "s", "failed_units": "{unit}"}

    _restarts: int | None = None  # NRestarts at the previous run

    def run(self, ctx: probe.Context) -> probe.Result:
        try:
            with _Bus(self.options.bus, ctx.remaining()) as bus:
                if self.options.failed_units:
                    return _failed_units(bus)
                return self._unit(bus, self.options.unit or "")
        except Failure as failure:
            return probe.Result(failure.status, failure.summary, failure.reason)

    def _unit(self, bus: _Bus, unit: str) -> probe.Result:
        o = self.options
        # One call for the states and the object path (ListUnitsByNames loads the unit like LoadUnit), then
        # only the properties needed: GetAll's hundreds of properties cost ~90% of a run to parse.
        (_, _, load_state, active_state, sub_state, _, path, *_), = bus.call(
            _MANAGER, "org.freedesktop.systemd1.Manager", "ListUnitsByNames", "as", [unit])[0]
        if load_state == "not-found":
            raise Failure(probe.Status.CRITICAL, "not_found", f"{unit}: no such unit")
        state = f"{unit} {active_state} ({sub_state})"
        measurements: list[probe.Measurement] = []
        problem: tuple[str, str] | None = None
        if active_state not in o.active_state:
            problem = ("state_mismatch", f"{state}, expected {' or '.join(o.active_state)}")
        if unit.endswith(".service"):
            total = int(bus.get(path, "org.freedesktop.systemd1.Service", "NRestarts"))
            restarts = total if self._restarts is None or total < self._restarts else total - self._restarts
            self._restarts = total
            measurements.append(probe.Measurement("restarts", restarts, "{restart}"))
            if problem is None and o.max_restarts is not None and restarts > o.max_restarts:
                since = "since the last check" if total != restarts else "since it started"
                problem = ("restarting", f"{state}: restarted {restarts} times {since} (at most {o.max_restarts})")
        if unit.endswith(".timer"):
            timer_problem, age = _timer(bus, path, unit, o.max_age)
            if age is not None:
                measurements.append(probe.Measurement("age", age, "s"))
            problem = problem or timer_problem
        if problem is not None:
            return probe.Result(probe.Status.CRITICAL, problem[1], problem[0], tuple(measurements))
        return probe.Result.ok(state, *measurements)


def _timer(bus: _Bus, path: str, unit: str, max_age: float | None) -> tuple[tuple[str, str] | None, float | None]:
    """(problem, seconds since the last trigger) of a timer: its service's last result, then its age."""
    timer = bus.properties(path, "org.freedesktop.systemd1.Timer")
    last = int(timer["LastTriggerUSec"])
    age = max(0.0, time.time() - last / 1e6) if last else None
    target = str(timer["Unit"])
    if last:
        target_path = bus.call(_MANAGER, "org.freedesktop.systemd1.Manager", "LoadUnit", "s", target)[0]
        if target.endswith(".service"):
            result = bus.get(target_path, "org.freedesktop.systemd1.Service", "Result")
            if result != "success":
                code = int(bus.get(target_path, "org.freedesktop.systemd1.Service", "ExecMainStatus"))
                return ("last_run_failed", f"{unit}: the last run of {target} failed ({result}, "
                                           f"exit status {code})"), age
    if max_age is not None and (age is None or age > max_age):
        when = "never triggered" if age is None else f"last triggered {format_duration(age)} ago"
        return ("stale", f"{unit}: {when} (at most {format_duration(max_age)})"), age
    return None, age


def _failed_units(bus: _Bus) -> probe.Result:
    units = bus.call(_MANAGER, "org.freedesktop.systemd1.Manager", "ListUnitsFiltered", "as", ["failed"])[0]
    names = sorted(str(u[0]) for u in units)
    count = probe.Measurement("failed_units", len(names), "{unit}")
    if names:
        shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
        return probe.Result.critical(f"{len(names)} failed units: {shown}", count, reason="failed_units",
                                     details={"failed": names})
    return probe.Result.ok("no failed units", count)


class _Bus:
    """One connection to the bus, with D-Bus errors turned into :class:`Failure`."""

    def __init__(self, bus: str, timeout: float) -> None:
        self.address = "SYSTEM" if bus == "system" else bus
        self.timeout = max(0.1, timeout)

    def __enter__(self) -> _Bus:
        try:
            from jeepney.io.blocking import open_dbus_connection
        except ImportError:
            raise Failure(probe.Status.UNKNOWN, "missing_dependency", _NEEDS_JEEPNEY) from None
        try:
            self.conn = open_dbus_connection(self.address, auth_timeout=self.timeout)
        except PermissionError as exc:
            raise Failure(probe.Status.UNKNOWN, "permission_denied",
                          f"cannot connect to the {self._name()}: {exc.strerror or exc}") from None
        except (OSError, ValueError, KeyError) as exc:
            raise Failure(probe.Status.UNKNOWN, "no_bus",
                          f"cannot connect to the {self._name()}: {getattr(exc, 'strerror', None) or exc}") from None
        except Exception as exc:  # jeepney's AuthenticationError and friends: the bus refused us
            raise Failure(probe.Status.UNKNOWN, "permission_denied",
                          f"the {self._name()} refused the connection: {exc}") from None
        return self

    def __exit__(self, *exc: object) -> None:
        self.conn.close()

    def _name(self) -> str:
        if self.address != "SYSTEM":
            return f"bus at {self.address}"
        from jeepney.bus import get_bus

        return f"system bus ({get_bus('SYSTEM')})"  # $DBUS_SYSTEM_BUS_ADDRESS or the standard socket

    def call(self, path: str, interface: str, method: str, signature: str, *args: Any) -> tuple[Any, ...]:
        from jeepney import DBusAddress, DBusErrorResponse, new_method_call
        from jeepney.wrappers import unwrap_msg

        address = DBusAddress(path, bus_name=_SYSTEMD, interface=interface)
        try:
            reply = self.conn.send_and_get_reply(new_method_call(address, method, signature, args),
                                                 timeout=self.timeout)
            return tuple(unwrap_msg(reply))
        except DBusErrorResponse as exc:
            raise _failure(exc.name, str(exc.data[0]) if exc.data else exc.name) from None
        except TimeoutError:
            raise Failure(probe.Status.UNKNOWN, "timeout", f"no answer from systemd within "
                                                            f"{format_duration(self.timeout)}") from None
        except OSError as exc:
            raise Failure(probe.Status.UNKNOWN, "no_bus", f"the {self._name()} went away: {exc}") from None

    def properties(self, path: str, interface: str) -> dict[str, Any]:
        values = self.call(path, "org.freedesktop.DBus.Properties", "GetAll", "s", interface)[0]
        return {name: value for name, (_, value) in values.items()}

    def get(self, path: str, interface: str, name: str) -> Any:
        return self.call(path, "org.freedesktop.DBus.Properties", "Get", "ss", interface, name)[0][1]


def _failure(name: str, message: str) -> Failure:
    if name.endswith((".AccessDenied", ".InteractiveAuthorizationRequired")):
        return Failure(probe.Status.UNKNOWN, "permission_denied", f"systemd refused: {message}")
    if name in ("org.freedesktop.systemd1.NoSuchUnit", "org.freedesktop.DBus.Error.InvalidArgs"):
        return Failure(probe.Status.CRITICAL, "not_found", message)
    if name in ("org.freedesktop.DBus.Error.ServiceUnknown", "org.freedesktop.DBus.Error.NameHasNoOwner"):
        return Failure(probe.Status.UNKNOWN, "no_systemd", f"no systemd on this bus: {message}")
    return Failure(probe.Status.UNKNOWN, "dbus_error", f"{name}: {message}")


@probe.hookimpl
def register_checks(register: CheckRegistrar) -> None:
    register(SystemdCheck)
