"""The evaluation harness: a simulated facility seen as collectors see it, stepped minute by minute, and the KPIs.

Every controller runs on the same days (every ``stride``-th day of the weather year, each after an uncounted
warm-up) against a fresh :class:`simulators.facility.Facility` driven only through the stepping interface
(``step``, ``device_values``, ``write_point``). Controllers see what collectors would read (the same
:class:`control.snapshot.SnapshotBuilder` as the live supervisor) and decide every ``interval_s``; the facility
steps at ``step_s`` so the temperature KPIs have minute resolution. KPIs are those the building-control
benchmarking community reports (BOPTEST): energy by kind, PUE, thermal discomfort (here K·h and minutes of any GPU
above limit − margin), minutes at or above the throttle limit, throttling, peak power, emissions, setpoint changes
and controller time. With :mod:`control.oracle` and :mod:`control.evaluate`, one of the three modules of
``control/`` that import ``simulators/`` (the evaluation's, never the live supervisor's).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from aidc.config import Site
from aidc.errors import DataError
from aidc.live import LiveState
from aidc.model import Batch, SeriesKey
from control.policy import Limits, dew_point_c
from control.snapshot import Readings, SnapshotBuilder
from control.types import Controller, Setpoints, Snapshot
from simulators.facility import Facility
from simulators.weather import Weather, load_weather

DAY_NS = 86_400_000_000_000



@dataclass(frozen=True)
class Carbon:
    """Grid carbon intensity, g CO2 / kWh: a constant or an hourly series looked up by hour of the year."""

    constant_g_kwh: float = 400.0
    hourly: np.ndarray | None = None
    source: str = "constant 400 g/kWh"

    def at(self, t_ns: int) -> float:
        """Intensity at a UTC time."""
        if self.hourly is None:
            return self.constant_g_kwh
        ts = pd.Timestamp(t_ns, unit="ns", tz="UTC")
        hour = (ts.dayofyear - 1) * 24 + ts.hour
        return float(self.hourly[hour % len(self.hourly)])


def load_carbon(spec: str) -> Carbon:
    """``<number>`` (g/kWh) or a CSV(.gz) with an hourly ``avg_CI`` column (data/carbon/*_hourly_2022.csv.gz)."""
    try:
        return Carbon(float(spec), None, f"constant {float(spec):g} g/kWh")
    except ValueError:
        pass
    path = Path(spec)
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read carbon intensity: {exc}") from None
    if "avg_CI" not in df.columns:
        raise DataError(f"{path}: no avg_CI column (columns: {', '.join(map(str, df.columns))})")
    ci = pd.to_numeric(df["avg_CI"], errors="coerce").to_numpy(dtype=np.float64)
    wild = np.flatnonzero((ci < 0) | (ci > 3000))  # inf and -1e300 too; an empty cell is a gap, interpolated below
    if len(wild):
        i = int(wild[0])
        raise DataError(f"{path}: line {i + 2}: avg_CI {df['avg_CI'].iloc[i]} is not a gCO2/kWh value (0 to 3000)")
    if len(ci) < 24 or not np.isfinite(ci).any():
        raise DataError(f"{path}: avg_CI has no usable hourly values")
    ci = pd.Series(ci).interpolate(limit_direction="both").to_numpy()
    return Carbon(float(np.nanmean(ci)), ci, f"{path.name} hourly avg_CI")


def site_weather(site: Site, spec: str) -> Weather:
    """The weather ``spec`` names (``builtin:<name>`` or a path; relative paths against the site file's folder)."""
    return load_weather(spec, site.path.parent if site.path else None, site.config.site.elevation_m)


@dataclass
class Kpis:
    """Accumulated KPIs of one controller over the counted (evaluated) minutes."""

    facility_kwh: float = 0.0
    cooling_kwh: float = 0.0
    it_kwh: float = 0.0
    kgco2: float = 0.0
    violation_kh: float = 0.0
    violation_minutes: float = 0.0
    at_limit_minutes: float = 0.0
    throttle_minutes: float = 0.0
    above_class_minutes: float = 0.0
    below_dew_minutes: float = 0.0
    peak_facility_kw: float = 0.0
    setpoint_changes: int = 0
    decisions: int = 0
    decision_s: float = 0.0
    minutes: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, float]:
        """The JSON fields (issue names first)."""
        return {
            "facility_kwh": round(self.facility_kwh, 2),
            "cooling_kwh": round(self.cooling_kwh, 2),
            "it_kwh": round(self.it_kwh, 2),
            "pue": round(self.facility_kwh / self.it_kwh, 5) if self.it_kwh > 0 else math.nan,
            "violation_minutes": self.violation_minutes,
            "violation_kh": round(self.violation_kh, 4),
            "at_limit_minutes": self.at_limit_minutes,
            "throttle_minutes": self.throttle_minutes,
            "above_class_minutes": self.above_class_minutes,
            "below_dew_minutes": self.below_dew_minutes,
            "peak_facility_kw": round(self.peak_facility_kw, 1),
            "kgco2": round(self.kgco2, 1),
            "setpoint_changes": self.setpoint_changes,
            "decision_ms": round(1000 * self.decision_s / max(self.decisions, 1), 3),
            **self.extra,
        }


class SimPlant:
    """A facility seen as a collector would see it, written as the setpoint writer would write it."""

    def __init__(self, site: Site, limits: Limits, builder: SnapshotBuilder, fac: Facility) -> None:
        self.fac = fac
        self.limits = limits
        self.builder = builder
        devs = {d.name: d for d in site.devices}
        self.keys = {
            name: [(p.name, p.sim or p.name) for p in devs[name].profile.points if p.name in wanted]
            for name, wanted in builder.needed().items()
        }
        self.current = limits.safe.copy()

    def readings(self) -> Readings:
        """Every point the snapshot needs, keyed by point name."""
        out: dict[str, dict[str, object]] = {}
        for name, keys in self.keys.items():
            vals = self.fac.device_values(name)
            out[name] = {p: vals.get(k) for p, k in keys}
        return out  # type: ignore[return-value]

    def snapshot(self) -> Snapshot:
        """The current snapshot."""
        return self.builder.build(self.fac.t_ns, self.readings())

    def apply(self, sp: Setpoints) -> int:
        """Write the setpoints that changed; returns how many."""
        lim, n = self.limits, 0
        for i, cdu in enumerate(lim.cdu_names):
            if not abs(sp.tcs_c[i] - self.current.tcs_c[i]) <= 1e-9:
                self.fac.write_point(cdu, lim.tcs_point, float(sp.tcs_c[i]))
                n += 1
            if not abs(sp.dp_kpa[i] - self.current.dp_kpa[i]) <= 1e-9:
                self.fac.write_point(cdu, lim.dp_point, float(sp.dp_kpa[i]))
                n += 1
        if not abs(sp.fws_c - self.current.fws_c) <= 1e-9:
            self.fac.write_point(lim.plant_device, lim.fws_point, float(sp.fws_c))
            n += 1
        if lim.chw_point is not None and math.isfinite(sp.chw_c) and not abs(sp.chw_c - self.current.chw_c) <= 1e-9:
            self.fac.write_point(lim.plant_device, lim.chw_point, float(sp.chw_c))
            n += 1
        self.current = sp if math.isfinite(sp.chw_c) else sp.with_chw(self.current.chw_c)
        self.current = self.current.copy()
        return n


def feed_live(live: LiveState | Callable[[Batch], None], site: Site, fac: Facility,
              *sinks: Callable[[Batch], None]) -> None:
    """Publish every point of every device into a live state as collectors would (one series per GPU for arrays),
    stamped with the facility's time; for benches and tests of the live supervisor without sockets."""
    ids: list[str] = []
    vals: list[float] = []
    for dev in site.devices:
        values = fac.device_values(dev.name)
        for p in dev.profile.points:
            v = values.get(p.sim or p.name)
            if v is None:
                continue
            if p.array:
                arr = np.asarray(v, dtype=np.float64)
                ids += [SeriesKey.of(dev.profile.measurement, p.name, {**dev.tags, p.array_tag: str(i)}).id
                        for i in range(len(arr))]
                vals += arr.tolist()
            else:
                ids.append(SeriesKey.of(dev.profile.measurement, p.name, dev.tags).id)
                vals.append(float(v))  # type: ignore[arg-type]
    n = len(ids)
    batch = Batch(np.array(ids, dtype=object), np.full(n, fac.t_ns, dtype=np.int64),
                  np.array(vals, dtype=np.float64), np.zeros(n, dtype=np.uint8))
    for sink in (live, *sinks):
        sink(batch)


@dataclass
class EvalSetup:
    """What every controller is evaluated on."""

    site: Site
    limits: Limits
    weather: Weather
    year: int = 2026
    days: int = 365
    stride: int = 7
    first_day: int = 0
    warmup_h: float = 24.0
    step_s: float = 60.0
    carbon: Carbon = field(default_factory=Carbon)

    def __post_init__(self) -> None:
        self.builder = SnapshotBuilder(self.site, self.limits)
        rack_limit = {r: self.limits.gpu_limit_c[i] for i, d in enumerate(self.limits.cdu_names)
                      for r in self._cdu_racks(d)}
        self._rack_limit = rack_limit

    def _cdu_racks(self, cdu: str) -> tuple[str, ...]:
        dev = next(d for d in self.site.devices if d.name == cdu)
        return tuple(getattr(dev.config, "racks", ()))

    @property
    def year_start_ns(self) -> int:
        """UTC midnight of 1 January of the evaluated year."""
        return int(pd.Timestamp(f"{self.year}-01-01", tz="UTC").value)

    def day_starts(self) -> list[int]:
        """UTC start of every evaluated day."""
        return [self.year_start_ns + d * DAY_NS for d in range(self.first_day, self.days, self.stride)]

    def weather_span(self, names: Sequence[str]) -> tuple[int, int]:
        """First and last instant the evaluation of ``names`` reads weather at: warm-ups, aidc's commissioning days
        and the hour the oracle and the best fixed setpoints look ahead."""
        days = self.day_starts()
        start = days[0] - int(self.warmup_h * 3.6e12)
        if "aidc" in names:
            start -= math.ceil(self.limits.cfg.commissioning_days) * DAY_NS
        ahead = 3_600_000_000_000 if {"oracle", "best_fixed"} & set(names) else 0
        return start, days[-1] + DAY_NS + ahead

    def facility(self, start_ns: int) -> Facility:
        """A fresh facility at the safe defaults, starting at ``start_ns``."""
        return Facility(self.site, weather=self.weather, start_ns=start_ns)

    def rack_limits(self, fac: Facility) -> np.ndarray:
        """Throttle limit of each simulated rack, in the facility's rack order."""
        return np.array([self._rack_limit.get(r, float(self.limits.gpu_limit_c.min())) for r in fac.rack_names])


def _account(setup: EvalSetup, fac: Facility, k: Kpis, dt: float, before: dict[str, float], rack_lim: np.ndarray,
             dew_c: float) -> None:
    e = fac.energy_wh
    k.facility_kwh += (e["facility"] - before["facility"]) / 1000.0
    k.cooling_kwh += (e["cooling"] - before["cooling"]) / 1000.0
    k.it_kwh += (e["it"] - before["it"]) / 1000.0
    k.kgco2 += (e["facility"] - before["facility"]) / 1000.0 * setup.carbon.at(fac.t_ns) / 1000.0
    minutes = dt / 60.0
    k.minutes += minutes
    hot = np.maximum.reduceat(fac.gpu_temp_c, fac.rack_offsets)
    over = hot - (rack_lim - setup.limits.cfg.gpu_margin_k)
    worst = float(over.max())
    if worst > 0:
        k.violation_minutes += minutes
        k.violation_kh += worst * dt / 3600.0
    if bool((hot >= rack_lim).any()):
        k.at_limit_minutes += minutes
    if int(fac.rack_throttled.sum()) > 0:
        k.throttle_minutes += minutes
    w = setup.limits.w_class_c
    if w is not None and fac.fws_supply_c > w + 1e-6:
        k.above_class_minutes += minutes
    if float(fac.tcs_supply_c.min()) < dew_c + setup.limits.cfg.dew_margin_k - 1e-6:
        k.below_dew_minutes += minutes
    k.peak_facility_kw = max(k.peak_facility_kw, fac.facility_power_w / 1000.0)


ControllerFactory = Callable[[Facility], Controller]


def run_day(setup: EvalSetup, ctl: Controller | None, day_ns: int, k: Kpis | None,
            bind: Callable[[Facility], None] | None = None, *, warmup_h: float | None = None) -> None:
    """Warm up, then run and (when ``k`` is given) count one day; ``ctl`` None holds the safe defaults."""
    warm = setup.warmup_h if warmup_h is None else warmup_h
    fac = setup.facility(day_ns - int(warm * 3.6e12))
    if bind is not None:
        bind(fac)
    plant = SimPlant(setup.site, setup.limits, setup.builder, fac)
    rack_lim = setup.rack_limits(fac)
    interval = setup.limits.cfg.interval_s
    sub = max(1, round(interval / setup.step_s))
    dt = interval / sub
    end = day_ns + DAY_NS
    while fac.t_ns < end:
        counting = k is not None and fac.t_ns >= day_ns
        if ctl is not None:
            snap = plant.snapshot()
            t0 = time.perf_counter()
            dec = ctl.decide(snap)
            spent = time.perf_counter() - t0
            changes = plant.apply(dec.setpoints)
            if counting and k is not None:
                k.decisions += 1
                k.decision_s += spent
                k.setpoint_changes += changes
        for _ in range(sub):
            before = dict(fac.energy_wh)
            fac.step(dt)
            if counting and k is not None:
                _account(setup, fac, k, dt, before, rack_lim, dew_point_c(fac.drybulb_c, fac.wetbulb_c))


def evaluate(setup: EvalSetup, ctl: Controller, bind: Callable[[Facility], None] | None = None) -> Kpis:
    """KPIs of ``ctl`` over every evaluated day."""
    k = Kpis()
    for day in setup.day_starts():
        run_day(setup, ctl, day, k, bind)
    return k
