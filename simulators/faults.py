"""Run-time fault injection per simulated device: what real equipment does to a collector on a bad day.

Faults are set and cleared while the servers run (through the runner's control API or ``aidc fault``):

- ``drop``: the device closes every connection that talks to it (on a shared OPC-UA server or a Modbus
  gateway that is every client of that endpoint, as when the real gateway resets);
- ``delay``: replies come ``value`` seconds late;
- ``exception``: Modbus requests are answered with exception code ``value`` (2, 3, 4, 6, ...); OPC-UA nodes go
  Bad (BadDeviceFailure);
- ``stuck``: values freeze at their last reading;
- ``nan``: floats read NaN and integers their "no reading" sentinel;
- ``counter_reset``: energy counters restart at 0 (an event; clearing faults does not undo it, as on a meter);
- ``restart``: the device's server goes away for ``value`` seconds and comes back (an event).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aidc.errors import AidcError
from aidc.profiles import DataType, Profile
from simulators.interface import PointValue

MODBUS_EXCEPTION_CODES = (1, 2, 3, 4, 5, 6, 8, 10, 11)
MAX_FAULT_SECONDS = 600.0


class FaultError(AidcError):
    """A fault request names an unknown device or fault, or a bad value."""


class Fault(enum.StrEnum):
    """Kinds of fault a device can be given."""

    DROP = "drop"
    DELAY = "delay"
    EXCEPTION = "exception"
    STUCK = "stuck"
    NAN = "nan"
    COUNTER_RESET = "counter_reset"
    RESTART = "restart"


@dataclass
class DeviceFaults:
    """The faults active on one device and what they need to remember."""

    drop: bool = False
    delay_s: float = 0.0
    exception_code: int | None = None
    stuck: dict[str, PointValue] | None = None
    nan: bool = False
    counter_offsets: dict[str, float] = field(default_factory=dict)
    restarts: int = 0

    def active(self) -> dict[str, Any]:
        """Active faults as a JSON-ready dict (empty when healthy)."""
        out: dict[str, Any] = {}
        if self.drop:
            out["drop"] = True
        if self.delay_s:
            out["delay"] = self.delay_s
        if self.exception_code is not None:
            out["exception"] = self.exception_code
        if self.stuck is not None:
            out["stuck"] = True
        if self.nan:
            out["nan"] = True
        if self.counter_offsets:
            out["counter_reset"] = dict(self.counter_offsets)
        if self.restarts:
            out["restarts"] = self.restarts
        return out


RestartHook = Callable[[str, float], None]


class FaultBook:
    """Fault state of every simulated device; servers consult it on each request and tick."""

    def __init__(self, profiles: Mapping[str, Profile], on_restart: RestartHook | None = None) -> None:
        self._profiles = dict(profiles)
        self._state = {name: DeviceFaults() for name in profiles}
        self._last_in: dict[str, dict[str, PointValue]] = {}
        self._last_out: dict[str, dict[str, PointValue]] = {}
        self.on_restart = on_restart

    def _device(self, device: str) -> DeviceFaults:
        if device not in self._state:
            raise FaultError(f"unknown device {device!r} (known: {len(self._state)} devices, e.g. "
                             f"{', '.join(sorted(self._state)[:3])})")
        return self._state[device]

    def inject(self, device: str, fault: str, value: float | None = None) -> dict[str, Any]:
        """Switch a fault on; returns the device's active faults. FaultError names a bad device, fault or value."""
        st = self._device(device)
        try:
            kind = Fault(fault)
        except ValueError:
            raise FaultError(f"unknown fault {fault!r} (one of {', '.join(f.value for f in Fault)})") from None
        if value is not None and (not isinstance(value, int | float) or isinstance(value, bool) or math.isnan(value)):
            raise FaultError(f"fault {fault}: value {value!r} is not a number")
        if kind is Fault.DROP:
            st.drop = True
        elif kind is Fault.DELAY:
            st.delay_s = _seconds(kind, value, default=None)
        elif kind is Fault.EXCEPTION:
            code = 4 if value is None else value
            if code not in MODBUS_EXCEPTION_CODES:
                raise FaultError(f"fault exception: code {value!r} is not a Modbus exception code "
                                 f"({', '.join(map(str, MODBUS_EXCEPTION_CODES))})")
            st.exception_code = int(code)
        elif kind is Fault.STUCK:
            st.stuck = dict(self._last_out.get(device, {}))
        elif kind is Fault.NAN:
            st.nan = True
        elif kind is Fault.COUNTER_RESET:
            last = self._last_in.get(device, {})
            for p in self._profiles[device].points:
                key = p.sim or p.name
                if p.counter and isinstance(last.get(key), int | float):
                    st.counter_offsets[key] = float(last[key])  # type: ignore[arg-type]
        elif kind is Fault.RESTART:
            seconds = _seconds(kind, value, default=2.0)
            st.restarts += 1
            if self.on_restart is not None:
                self.on_restart(device, seconds)
        return st.active()

    def clear(self, device: str, fault: str | None = None) -> dict[str, Any]:
        """Clear one fault or all switchable faults of a device (counter resets stay, as on a real meter)."""
        st = self._device(device)
        if fault is not None and fault not in {f.value for f in Fault}:
            raise FaultError(f"unknown fault {fault!r} (one of {', '.join(f.value for f in Fault)})")
        if fault in (None, "drop"):
            st.drop = False
        if fault in (None, "delay"):
            st.delay_s = 0.0
        if fault in (None, "exception"):
            st.exception_code = None
        if fault in (None, "stuck"):
            st.stuck = None
        if fault in (None, "nan"):
            st.nan = False
        return st.active()

    def clear_all(self) -> None:
        """Clear the switchable faults of every device."""
        for name in self._state:
            self.clear(name)

    def active(self, device: str) -> dict[str, Any]:
        """Active faults of a device."""
        return self._device(device).active()

    def dropping(self, device: str) -> bool:
        """Whether connections to the device are being dropped."""
        return self._state[device].drop

    def delay_s(self, device: str) -> float:
        """Seconds by which the device delays its replies."""
        return self._state[device].delay_s

    def exception_code(self, device: str) -> int | None:
        """Modbus exception code the device answers with, if any."""
        return self._state[device].exception_code

    def apply(self, device: str, values: Mapping[str, PointValue]) -> dict[str, PointValue]:
        """The values a device shows given its faults (counter offsets, stuck, NaN), from the physics values."""
        st = self._state[device]
        self._last_in[device] = dict(values)
        if st.stuck is not None:
            out = dict(st.stuck)
        else:
            out = dict(values)
            for key, off in st.counter_offsets.items():
                v = out.get(key)
                if isinstance(v, int | float):
                    out[key] = max(0.0, float(v) - off)
            self._last_out[device] = dict(out)
        if st.nan:
            out = {k: _nan_like(k, v, self._profiles[device]) for k, v in out.items()}
        return out


def _seconds(kind: Fault, value: float | None, default: float | None) -> float:
    if value is None:
        if default is None:
            raise FaultError(f"fault {kind.value} needs a value in seconds")
        return default
    if not 0 < value <= MAX_FAULT_SECONDS:
        raise FaultError(f"fault {kind.value}: {value!r} s is outside (0, {MAX_FAULT_SECONDS:g}]")
    return float(value)


def _nan_like(key: str, value: PointValue, profile: Profile) -> PointValue:
    if isinstance(value, bool):
        return value
    for p in profile.points:
        if (p.sim or p.name) == key and p.type is DataType.BOOL:
            return value
    if isinstance(value, int | float):
        return math.nan
    return [math.nan] * len(value)
