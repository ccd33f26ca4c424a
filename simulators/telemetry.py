"""Training telemetry from the simulated facility, identical in shape to what the collectors produce.

Runs :class:`simulators.facility.Facility` in-process (no sockets), samples every point of every device every
``sample_s`` seconds and names each value with the collectors' series id (``SeriesKey.of(profile.measurement,
point.name, device.tags)``; array points add ``gpu=<i>``). Counters wrap at their register modulus and integer
registers are quantised to their scale, as a collector would decode them.

A learned plant model needs setpoint variety, so an :class:`ExplorationSchedule` nudges the cooling setpoints
(TCS supply temperature and differential pressure on every CDU, FWS supply temperature on the plant) by small random
steps, held for tens of minutes, inside a band around each point's safe default that never leaves the profile's
min/max or the site's ASHRAE W-class, keeps the CDU approach (TCS at least ``approach_k`` above FWS) and backs off
toward the safe defaults whenever the hottest GPU gets within ``gpu_margin_k`` of ``gpu_limit_c``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from aidc.config import DeviceRef, Site
from aidc.model import Batch, SeriesKey
from aidc.profiles import DataType, Point
from aidc.roles import Role
from simulators.facility import Facility
from simulators.interface import PointValue

SETPOINT_ROLES = (Role.TCS_SUPPLY_TEMP_SETPOINT, Role.TCS_DP_SETPOINT, Role.FWS_SUPPLY_TEMP_SETPOINT)
_INTEGER_TYPES = {DataType.INT16, DataType.UINT16, DataType.INT32, DataType.UINT32, DataType.INT64, DataType.UINT64}


@dataclass(frozen=True, slots=True)
class ExplorationSchedule:
    """Safe setpoint exploration: random-walk steps held ``hold_min_s``..``hold_max_s`` within ``band`` of default."""

    hold_min_s: float = 1200.0
    hold_max_s: float = 3600.0
    # Largest step per change and half-width of the band around the safe default, per setpoint role.
    step: tuple[float, float, float] = (2.0, 25.0, 2.0)
    band: tuple[float, float, float] = (7.0, 70.0, 7.0)
    approach_k: float = 3.0
    gpu_limit_c: float = 85.0
    gpu_margin_k: float = 5.0
    seed: int = 0


@dataclass(frozen=True, slots=True)
class _Setpoint:
    device: DeviceRef
    point: Point
    slot: int  # index into SETPOINT_ROLES


class Explorer:
    """Applies an :class:`ExplorationSchedule` to a facility through its writable points (as the writer would)."""

    def __init__(self, site: Site, fac: Facility, schedule: ExplorationSchedule) -> None:
        self.fac = fac
        self.s = schedule
        self.rng = np.random.default_rng(schedule.seed)
        self.points: list[_Setpoint] = []
        for dev in site.devices:
            for p in dev.profile.points:
                role = dev.role_of(p.name)
                if p.writable and role in SETPOINT_ROLES:
                    self.points.append(_Setpoint(dev, p, SETPOINT_ROLES.index(role)))
        w_limit = site.config.site.max_fws_supply_c
        self.lo = [np.inf] * 3
        self.hi = [-np.inf] * 3
        self.default = [0.0] * 3
        for sp in self.points:
            d = float(sp.point.safe_default or 0.0)
            half = schedule.band[sp.slot]
            lo, hi = max(float(sp.point.min or d), d - half), min(float(sp.point.max or d), d + half)
            if sp.slot == 2 and w_limit is not None:
                hi = min(hi, w_limit)
            self.lo[sp.slot], self.hi[sp.slot], self.default[sp.slot] = lo, hi, d
        self.value = list(self.default)
        self.next_change_ns = fac.t_ns

    def _clamp(self) -> None:
        for k in range(3):
            self.value[k] = float(np.clip(self.value[k], self.lo[k], self.hi[k]))
        # A CDU cannot deliver TCS colder than the facility water feeding it plus its approach.
        self.value[0] = max(self.value[0], min(self.value[2] + self.s.approach_k, self.hi[0]))

    def update(self, hottest_gpu_c: float) -> None:
        """Change setpoints when the hold expires; back off toward safe defaults when GPUs run hot."""
        hot = hottest_gpu_c > self.s.gpu_limit_c - self.s.gpu_margin_k
        if not hot and self.fac.t_ns < self.next_change_ns:
            return
        for k in range(3):
            if hot:
                # Colder water and more pressure both cool the GPUs.
                self.value[k] += self.s.step[k] if k == 1 else -self.s.step[k]
            else:
                pull = 0.1 * (self.default[k] - self.value[k])
                self.value[k] += float(self.rng.uniform(-self.s.step[k], self.s.step[k])) + pull
        self._clamp()
        for sp in self.points:
            self.fac.write_point(sp.device.name, sp.point.name, self.value[sp.slot])
        hold = self.rng.uniform(self.s.hold_min_s, self.s.hold_max_s)
        self.next_change_ns = self.fac.t_ns + int(hold * 1e9)


def _columns(site: Site, fac: Facility, keep: Callable[[DeviceRef, Point], bool]) -> list[tuple[DeviceRef, Point]]:
    out = []
    for dev in site.devices:
        values = fac.device_values(dev.name)
        for p in dev.profile.points:
            if (p.sim or p.name) in values and keep(dev, p):
                out.append((dev, p))
    return out


def _decode(p: Point, value: float) -> float:
    """What a collector would read: counters wrapped at the register modulus, integers quantised to the scale."""
    if p.modulus:
        value = value % p.modulus
    if p.type in _INTEGER_TYPES and p.scale:
        value = round(value / p.scale) * p.scale
    return value


@dataclass
class Telemetry:
    """Wide telemetry (index: UTC sample times, columns: series ids) and the role of every series."""

    frame: pd.DataFrame
    roles: dict[str, Role]

    def batches(self, rows_per_batch: int = 288) -> Iterator[Batch]:
        """The same data as collector batches (good quality), ``rows_per_batch`` sample times at a time."""
        series = np.array(self.frame.columns, dtype=object)
        ts = pd.DatetimeIndex(self.frame.index).as_unit("ns").asi8
        values = self.frame.to_numpy(dtype=np.float64)
        for a in range(0, len(ts), rows_per_batch):
            block = values[a : a + rows_per_batch]
            n_t, n_s = block.shape
            yield Batch(
                np.tile(series, n_t),
                np.repeat(ts[a : a + rows_per_batch], n_s).astype(np.int64),
                block.reshape(-1),
                np.zeros(n_t * n_s, dtype=np.uint8),
            )


def generate(
    site: Site,
    *,
    duration_s: float,
    sample_s: float = 300.0,
    start_ns: int | None = None,
    schedule: ExplorationSchedule | None = ExplorationSchedule(),
    keep: Callable[[DeviceRef, Point], bool] | None = None,
    facility: Facility | None = None,
) -> Telemetry:
    """Simulate ``duration_s`` seconds and sample every ``sample_s``; ``keep`` selects points (default: all)."""
    fac = facility if facility is not None else Facility(site, start_ns=start_ns)
    fac.weather.check_span(fac.t_ns, fac.t_ns + round(duration_s * 1e9), "the simulated telemetry")
    cols = _columns(site, fac, keep or (lambda _d, _p: True))
    explorer = Explorer(site, fac, schedule) if schedule is not None else None
    n = int(duration_s // sample_s)
    names: list[str] = []
    roles: dict[str, Role] = {}
    widths: list[int] = []
    for dev, p in cols:
        v = fac.device_values(dev.name)[p.sim or p.name]
        width = len(v) if p.array and isinstance(v, list | tuple | np.ndarray) else 0
        widths.append(width)
        keys = (
            [SeriesKey.of(dev.profile.measurement, p.name, dev.tags)]
            if not width
            else [
                SeriesKey.of(dev.profile.measurement, p.name, {**dev.tags, p.array_tag: str(i)}) for i in range(width)
            ]
        )
        role = dev.role_of(p.name)
        for k in keys:
            names.append(k.id)
            if role is not None:
                roles[k.id] = role
    data = np.empty((n, len(names)), dtype=np.float64)
    times = np.empty(n, dtype=np.int64)
    for i in range(n):
        if explorer is not None:
            explorer.update(float(np.max(fac.gpu_temp_c)))
        fac.step(sample_s)
        times[i] = fac.t_ns
        j = 0
        cache: dict[str, dict[str, PointValue]] = {}
        for (dev, p), width in zip(cols, widths, strict=True):
            values = cache.get(dev.name)
            if values is None:
                values = cache[dev.name] = dict(fac.device_values(dev.name))
            v = values[p.sim or p.name]
            if width:
                data[i, j : j + width] = np.asarray(v, dtype=np.float64)
                j += width
            else:
                data[i, j] = _decode(p, float(v))  # type: ignore[arg-type]
                j += 1
    frame = pd.DataFrame(data, index=pd.to_datetime(times, unit="ns", utc=True), columns=names)
    return Telemetry(frame, roles)
