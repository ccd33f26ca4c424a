"""The evaluation harness: a simulated facility seen as collectors see it, stepped minute by minute, and the KPIs.

Every controller runs on the same spans against a fresh :class:`simulators.facility.Facility` driven only through
the stepping interface (``step``, ``device_values``, ``write_point``): first the **commissioning days** (the
``commissioning_days`` before the first evaluated day's warm-up, one contiguous run from the safe defaults in
steady state), then every ``stride``-th day of the weather year, each after an uncounted warm-up. The commissioning
days count in every controller's KPIs: aidc explores in them (its commissioning is part of what it costs), and every
other controller runs the same days, so energy stays comparable row to row.

What a controller sees (``EvalSetup.telemetry``): ``exact`` reads the facility's values at each snapshot (for
diagnosis); ``field`` publishes what the collectors would (:mod:`control.field`: register resolution, quality
flags, sensor noise, poll latency, lost polls) into a live state and the supervisor's input reader, and builds the
snapshot from them as the live supervisor does. The baselines and the oracle keep their ``decide(snapshot)`` loop
(:class:`SimPlant`); aidc runs as deployed (:class:`SupervisedRun`): the :class:`control.supervisor.Supervisor`
of ``aidc run`` in auto mode, with its input checks, holds, rate limits, hard-limit check, thermal guard, heartbeats
and the learning core's commissioning, writing through an in-process writer that holds what the registers hold.

Time: the facility steps at ``step_s`` (60 s by default: the temperature KPIs have minute resolution); decisions
every ``interval_s``; the supervisor's thermal guard and fast path check at every facility step (60 s), since the
plant's state only changes when it steps: the devices poll every ``poll_interval_s`` (10 s) on their own grids and
the latest poll of each step reaches the guard. Around a load change (the hall's utilisation moving by
:data:`LOAD_CHANGE` within a step) aidc's step splits into the supervisor's guard ticks (the collectors' rate,
10 s), each with the polls due and a guard tick, as deployed: a 10 s step everywhere would cost about six times
as much (measured: see the report of issue 22). KPIs are those the building-control benchmarking
community reports (BOPTEST): energy by kind, PUE, thermal discomfort (here K·h and minutes of any GPU above limit −
margin), minutes at or above the throttle limit, throttling, peak power, emissions, setpoint changes, controller
time, and for aidc the supervisor's holds, thermal-guard actions, refusals and write errors. The field telemetry
(:mod:`control.field`) is control's own and imports no simulator module.
"""

from __future__ import annotations

import asyncio
import logging
import math
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from aidc.clock import SteppedClock
from aidc.config import Site
from aidc.errors import DataError
from aidc.live import LiveState
from aidc.model import Batch, SeriesKey
from control.baselines import ConstantController, FixedController
from control.field import FieldModel, FieldTelemetry, FieldWriter
from control.live_reader import LiveReader
from control.policy import Limits, dew_point_c
from control.snapshot import Readings, SnapshotBuilder
from control.types import Controller, Setpoints, Snapshot
from simulators.facility import Facility
from simulators.weather import Weather, load_weather

DAY_NS = 86_400_000_000_000
TELEMETRY = ("exact", "field")
# The evaluated supervisor's counters not reported among aidc's KPIs (the others are, summed over the counted time:
# holds, thermal-guard actions, refusals, write errors and whatever else the supervisor counts).
UNREPORTED_COUNTS = frozenset({"decisions", "writes"})



@dataclass(frozen=True)
class Carbon:
    """Grid carbon intensity, g CO2 / kWh: a constant or an hourly series looked up by hour of the year."""

    constant_g_kwh: float = 400.0
    hourly: np.ndarray | None = None
    source: str = "constant 400 g/kWh"

    # The UTC year of the last lookup, [start, end) in ns: the hour of the year is then one division (this is asked
    # every simulated minute of every controller).
    _year: list[int] = field(default_factory=lambda: [0, 0], compare=False, repr=False)

    def at(self, t_ns: int) -> float:
        """Intensity at a UTC time."""
        if self.hourly is None:
            return self.constant_g_kwh
        start, end = self._year
        if not start <= t_ns < end:
            year = pd.Timestamp(t_ns, unit="ns", tz="UTC").year
            start = int(pd.Timestamp(f"{year}-01-01", tz="UTC").value)
            self._year[:] = [start, int(pd.Timestamp(f"{year + 1}-01-01", tz="UTC").value)]
        hour = (t_ns - start) // 3_600_000_000_000  # (day of the year − 1) · 24 + hour: UTC has no DST
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
    work_done: float = 0.0  # GPU-hours at full clock: utilisation × clock summed over GPUs (power cap, throttling)
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

    def count(self, m: Minute) -> None:
        """Add one facility step."""
        self.facility_kwh += m.facility_kwh
        self.cooling_kwh += m.cooling_kwh
        self.it_kwh += m.it_kwh
        self.work_done += m.work_done
        self.kgco2 += m.kgco2
        self.minutes += m.minutes
        if m.worst_k > 0:
            self.violation_minutes += m.minutes
            self.violation_kh += m.violation_kh
        if m.at_limit:
            self.at_limit_minutes += m.minutes
        if m.throttled:
            self.throttle_minutes += m.minutes
        if m.above_class:
            self.above_class_minutes += m.minutes
        if m.below_dew:
            self.below_dew_minutes += m.minutes
        self.peak_facility_kw = max(self.peak_facility_kw, m.facility_kw)

    def as_dict(self) -> dict[str, float]:
        """The JSON fields (issue names first)."""
        return {
            "facility_kwh": round(self.facility_kwh, 2),
            "cooling_kwh": round(self.cooling_kwh, 2),
            "it_kwh": round(self.it_kwh, 2),
            "pue": round(self.facility_kwh / self.it_kwh, 5) if self.it_kwh > 0 else math.nan,
            "work_done": round(self.work_done, 2),
            # Facility energy per unit of work: kWh per full-clock GPU-hour (what the controllers are compared on).
            "kwh_per_work": round(self.facility_kwh / self.work_done, 6) if self.work_done > 0 else math.nan,
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


class KpiLog(Kpis):
    """Kpis that also keep every step added, so runs done apart (in other processes) can be counted into one
    :class:`Kpis` in their order (:meth:`replay`), with the same sums as counted in one go."""

    def __init__(self) -> None:
        super().__init__()
        self.steps: list[Minute] = []

    def count(self, m: Minute) -> None:
        """Keep and add one facility step."""
        self.steps.append(m)
        super().count(m)

    def replay(self, k: Kpis) -> None:
        """Count this log's steps and decisions into ``k``."""
        for m in self.steps:
            k.count(m)
        k.decisions += self.decisions
        k.decision_s += self.decision_s
        k.setpoint_changes += self.setpoint_changes


class ExactTelemetry:
    """Every point of the named devices exactly as the facility serves it, all good, stamped with the facility's
    time (``--telemetry exact``, for diagnosis): the series ids are built once per device and reused, so the sinks
    map each batch without a lookup per series."""

    def __init__(self, site: Site, values: Callable[[str], dict[str, Any]],
                 points: dict[str, set[str]] | None = None) -> None:
        self.values = values
        self.devices = [d for d in site.devices if points is None or d.name in points]
        self.points = {d.name: [p for p in d.profile.points if points is None or p.name in points[d.name]]
                       for d in self.devices}
        self._ids: dict[tuple[str, str, int], list[str]] = {}
        self._series: tuple[tuple[tuple[str, str, int], ...], np.ndarray] | None = None

    def _point_ids(self, dev: Any, p: Any, n: int) -> list[str]:
        key = (dev.name, p.name, n)
        ids = self._ids.get(key)
        if ids is None:
            if p.array:
                ids = [SeriesKey.of(dev.profile.measurement, p.name, {**dev.tags, p.array_tag: str(i)}).id
                       for i in range(n)]
            else:
                ids = [SeriesKey.of(dev.profile.measurement, p.name, dev.tags).id]
            self._ids[key] = ids
        return ids

    def batch(self, t_ns: int) -> Batch:
        """One batch of every point now."""
        layout: list[tuple[str, str, int]] = []
        vals: list[Any] = []
        for dev in self.devices:
            values = self.values(dev.name)
            for p in self.points[dev.name]:
                v = values.get(p.sim or p.name)
                if v is None:
                    continue
                if p.array:
                    arr = np.asarray(v, dtype=np.float64).ravel()
                    layout.append((dev.name, p.name, len(arr)))
                    vals.append(arr)
                else:
                    layout.append((dev.name, p.name, 0))
                    vals.append(np.array([float(v)]))
        key = tuple(layout)
        if self._series is None or self._series[0] != key:
            by_name = {d.name: d for d in self.devices}
            ids: list[str] = []
            for name, point, n in layout:
                dev = by_name[name]
                ids += self._point_ids(dev, dev.profile.point(point), n)
            self._series = (key, np.array(ids, dtype=object))
        series = self._series[1]
        values_arr = np.concatenate(vals) if vals else np.empty(0)
        n = len(series)
        return Batch(series, np.full(n, t_ns, dtype=np.int64), values_arr, np.zeros(n, dtype=np.uint8))

    def feed(self, t_ns: int, *sinks: Callable[[Batch], None]) -> int:
        """Publish one batch to every sink; 1."""
        b = self.batch(t_ns)
        for sink in sinks:
            sink(b)
        return 1


_EXACT: dict[int, tuple[Site, Any, ExactTelemetry]] = {}


def feed_live(live: LiveState | Callable[[Batch], None], site: Site, fac: Facility,
              *sinks: Callable[[Batch], None]) -> None:
    """Publish every point of every device into a live state as collectors would (one series per GPU for arrays),
    stamped with the facility's time; for benches and tests of the live supervisor without sockets. The series ids
    are built once per site and facility (:class:`ExactTelemetry`)."""
    hit = _EXACT.get(id(fac))
    if hit is None or hit[0] is not site or hit[1] is not fac:
        if len(_EXACT) > 16:
            _EXACT.clear()
        hit = (site, fac, ExactTelemetry(site, fac.device_arrays))
        _EXACT[id(fac)] = hit
    hit[2].feed(fac.t_ns, live, *sinks)


class SimPlant:
    """A facility seen as a collector would see it, written as the setpoint writer would write it.

    Exact telemetry (the default) reads the points a snapshot needs at each snapshot. With ``field`` (a
    :class:`control.field.FieldTelemetry` over the same facility) each snapshot first takes the polls due since the
    last one into a live state and the supervisor's input reader (:class:`control.live_reader.LiveReader`), then
    reads the snapshot from them as the supervisor does; writes then hold what the register holds (``held``).
    """

    def __init__(self, site: Site, limits: Limits, builder: SnapshotBuilder, fac: Facility, *,
                 field: FieldTelemetry | None = None, live: LiveState | None = None) -> None:
        self.fac = fac
        self.limits = limits
        self.builder = builder
        devs = {d.name: d for d in site.devices}
        self.keys = {
            name: [(p.name, p.sim or p.name) for p in devs[name].profile.points if p.name in wanted]
            for name, wanted in builder.needed().items()
        }
        self.current = limits.safe.copy()
        self.field = field
        if field is not None:
            self.live = live if live is not None else LiveState()
            self.reader = LiveReader(site, builder)
            self.writer = FieldWriter(site, fac.write_point, fac.device_values, lambda: fac.t_ns)

    def readings(self) -> Readings:
        """Every point the snapshot needs, keyed by point name."""
        out: dict[str, dict[str, object]] = {}
        for name, keys in self.keys.items():
            vals = self.fac.device_arrays(name)
            out[name] = {p: vals.get(k) for p, k in keys}
        return out  # type: ignore[return-value]

    def exact_snapshot(self) -> Snapshot:
        """The current snapshot from the facility's own values (no polls, no noise)."""
        return self.builder.build(self.fac.t_ns, self.readings())

    def snapshot(self) -> Snapshot:
        """The current snapshot."""
        if self.field is None:
            return self.exact_snapshot()
        now = self.fac.t_ns
        # The live state is read only until the reader has seen a batch (LiveReader.read): feeding it after that
        # costs a lookup per sample and changes nothing a controller sees.
        self.field.feed(now, *((self.reader,) if self.reader.seen else (self.live, self.reader)))
        readings, age = self.reader.read(self.live, now)
        return self.builder.build(now, readings, max_age_s=age)

    def _write(self, device: str, point: str, value: float) -> None:
        if self.field is not None:
            value = self.writer.held(device, point, value)
        self.fac.write_point(device, point, value)

    def apply(self, sp: Setpoints) -> int:
        """Write the setpoints that changed; returns how many."""
        lim, n = self.limits, 0
        for i, cdu in enumerate(lim.cdu_names):
            if not abs(sp.tcs_c[i] - self.current.tcs_c[i]) <= 1e-9:
                self._write(cdu, lim.tcs_point, float(sp.tcs_c[i]))
                n += 1
            if not abs(sp.dp_kpa[i] - self.current.dp_kpa[i]) <= 1e-9:
                self._write(cdu, lim.dp_point, float(sp.dp_kpa[i]))
                n += 1
        if not abs(sp.fws_c - self.current.fws_c) <= 1e-9:
            self._write(lim.plant_device, lim.fws_point, float(sp.fws_c))
            n += 1
        if lim.chw_point is not None and math.isfinite(sp.chw_c) and not abs(sp.chw_c - self.current.chw_c) <= 1e-9:
            self._write(lim.plant_device, lim.chw_point, float(sp.chw_c))
            n += 1
        self.current = sp if math.isfinite(sp.chw_c) else sp.with_chw(self.current.chw_c)
        self.current = self.current.copy()
        return n


@dataclass
class EvalSetup:
    """What every controller is evaluated on.

    ``telemetry``: ``exact`` (the facility's values, for diagnosis) or ``field`` (:mod:`control.field`: register
    resolution, quality flags, noise, poll latency and lost polls, seeded by ``seed``); ``field_model`` tunes the
    field telemetry. ``workload``: the utilisation source every facility runs (a scenario; None: the site's).
    ``commissioning_days``: the contiguous days before the first evaluated day's warm-up that every controller runs
    and that count in every KPI (aidc commissions in them); None: ``ceil(control.commissioning_days)``.
    """

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
    telemetry: str = "exact"
    workload: Any = None
    seed: int = 0
    commissioning_days: int | None = None
    field_model: FieldModel = field(default_factory=FieldModel)

    def __post_init__(self) -> None:
        if self.telemetry not in TELEMETRY:
            raise DataError(f"--telemetry {self.telemetry!r}: choose {' or '.join(TELEMETRY)}")
        if self.commissioning_days is None:
            self.commissioning_days = math.ceil(self.limits.cfg.commissioning_days)
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

    @property
    def commissioning_start_ns(self) -> int:
        """Start of the commissioning days: they end where the first evaluated day's warm-up begins (the weather
        year wraps into December)."""
        return self.day_starts()[0] - int(self.warmup_h * 3.6e12) - int(self.commissioning_days or 0) * DAY_NS

    def spans(self) -> list[tuple[int, int, float]]:
        """(start, days, warm-up hours) of every counted run, the same for every controller: the commissioning days
        (one contiguous run from the safe defaults in steady state, no warm-up), then each evaluated day."""
        out = [(self.commissioning_start_ns, int(self.commissioning_days or 0), 0.0)] if self.commissioning_days else []
        return out + [(d, 1, self.warmup_h) for d in self.day_starts()]

    def counted_minutes(self) -> float:
        """Minutes every controller is scored on (commissioning and evaluated days)."""
        return 1440.0 * sum(n for _s, n, _w in self.spans())

    def weather_span(self, names: Sequence[str]) -> tuple[int, int]:
        """First and last instant the evaluation of ``names`` reads weather at: the commissioning days, warm-ups
        and the hour the oracle and the best fixed setpoints look ahead."""
        days = self.day_starts()
        start = min(days[0] - int(self.warmup_h * 3.6e12), self.commissioning_start_ns)
        ahead = 3_600_000_000_000 if {"oracle", "best_fixed"} & set(names) else 0
        return start, days[-1] + DAY_NS + ahead

    def facility(self, start_ns: int) -> Facility:
        """A fresh facility at the safe defaults, starting at ``start_ns``."""
        return Facility(self.site, weather=self.weather, workload=self.workload, start_ns=start_ns)

    def field_telemetry(self, fac: Facility) -> FieldTelemetry | None:
        """Field telemetry of the points a snapshot reads from ``fac`` (None with exact telemetry), seeded by the
        setup's seed and the facility's start so every controller sees the same noise and losses on a day."""
        if self.telemetry != "field":
            return None
        return FieldTelemetry(self.site, fac.device_arrays, seed=_mix(self.seed, fac.t_ns), model=self.field_model,
                              points=self.builder.needed(), start_ns=fac.t_ns)

    def live_state(self) -> LiveState:
        """One live state for every run of this process: the series are the same each run, and a live state parses
        each new series id once (thousands per run otherwise). Snapshots read a fresh input reader per run, fed before
        each snapshot, so samples of an earlier run do not reach a controller."""
        live = getattr(self, "_live", None)
        if live is None:
            live = self._live = LiveState()
        return live

    def rack_limits(self, fac: Facility) -> np.ndarray:
        """Throttle limit of each simulated rack, in the facility's rack order."""
        return np.array([self._rack_limit.get(r, float(self.limits.gpu_limit_c.min())) for r in fac.rack_names])


def _mix(seed: int, t_ns: int) -> int:
    return (seed * 1_000_003 + t_ns // 1_000_000_000) % (2**63)


class Minute(NamedTuple):
    """What one facility step adds to the KPIs (:meth:`Kpis.count`)."""

    facility_kwh: float
    cooling_kwh: float
    it_kwh: float
    work_done: float
    kgco2: float
    minutes: float
    worst_k: float  # the hottest GPU's excess over limit − margin (counted where > 0)
    violation_kh: float
    at_limit: bool
    throttled: bool
    above_class: bool
    below_dew: bool
    facility_kw: float


def _minute(setup: EvalSetup, fac: Facility, dt: float, before: dict[str, float], rack_lim: np.ndarray,
            dew_c: float) -> Minute:
    e = fac.energy_wh
    hot = np.maximum.reduceat(fac.gpu_temp_c, fac.rack_offsets)
    worst = float((hot - (rack_lim - setup.limits.cfg.gpu_margin_k)).max())
    w = setup.limits.w_class_c
    return Minute(
        (e["facility"] - before["facility"]) / 1000.0,
        (e["cooling"] - before["cooling"]) / 1000.0,
        (e["it"] - before["it"]) / 1000.0,
        fac.work_gpu_h - before["work_gpu_h"],
        (e["facility"] - before["facility"]) / 1000.0 * setup.carbon.at(fac.t_ns) / 1000.0,
        dt / 60.0,
        worst,
        worst * dt / 3600.0,
        bool((hot >= rack_lim).any()),
        int(fac.rack_throttled.sum()) > 0,
        w is not None and fac.fws_supply_c > w + 1e-6,
        float(fac.tcs_supply_c.min()) < dew_c + setup.limits.cfg.dew_margin_k - 1e-6,
        fac.facility_power_w / 1000.0,
    )


def _account(setup: EvalSetup, fac: Facility, k: Kpis, dt: float, before: dict[str, float], rack_lim: np.ndarray,
             dew_c: float) -> None:
    k.count(_minute(setup, fac, dt, before, rack_lim, dew_c))


ControllerFactory = Callable[[Facility], Controller]


def run_day(setup: EvalSetup, ctl: Controller | None, day_ns: int, k: Kpis | None,
            bind: Callable[[Facility], None] | None = None, *, warmup_h: float | None = None, days: int = 1) -> None:
    """Warm up, then run and (when ``k`` is given) count ``days`` days from ``day_ns``; ``ctl`` None holds the safe
    defaults. With field telemetry the controller's snapshots come from the polls due since its last one."""
    warm = setup.warmup_h if warmup_h is None else warmup_h
    fac = setup.facility(day_ns - int(warm * 3.6e12))
    if bind is not None:
        bind(fac)
    plant = SimPlant(setup.site, setup.limits, setup.builder, fac, field=setup.field_telemetry(fac),
                     live=setup.live_state())
    rack_lim = setup.rack_limits(fac)
    interval = setup.limits.cfg.interval_s
    sub = max(1, round(interval / setup.step_s))
    dt = interval / sub
    end = day_ns + days * DAY_NS
    # A controller that reads nothing of its snapshot (constant setpoints) gets the exact one: with field telemetry
    # its polls would cost more than the physics and change nothing it does.
    blind = isinstance(ctl, FixedController | ConstantController)
    while fac.t_ns < end:
        counting = k is not None and fac.t_ns >= day_ns
        if ctl is not None:
            snap = plant.exact_snapshot() if blind else plant.snapshot()
            t0 = time.perf_counter()
            dec = ctl.decide(snap)
            spent = time.perf_counter() - t0
            changes = plant.apply(dec.setpoints)
            if counting and k is not None:
                k.decisions += 1
                k.decision_s += spent
                k.setpoint_changes += changes
        for _ in range(sub):
            before = {**fac.energy_wh, "work_gpu_h": fac.work_gpu_h}
            fac.step(dt)
            if counting and k is not None:
                _account(setup, fac, k, dt, before, rack_lim, dew_point_c(fac.drybulb_c, fac.wetbulb_c))


def evaluate(setup: EvalSetup, ctl: Controller, bind: Callable[[Facility], None] | None = None) -> Kpis:
    """KPIs of ``ctl`` over every counted span (the commissioning days, then every evaluated day)."""
    k = Kpis()
    for start, days, warm in setup.spans():
        run_day(setup, ctl, start, k, bind, warmup_h=warm, days=days)
    return k


class SupervisedRun:
    """aidc as deployed in the evaluated loop: :class:`control.supervisor.Supervisor` in ``auto`` mode (input
    checks, holds and revert, the learning core with its commissioning, rate limits, the independent hard-limit
    check, the thermal guard, heartbeats) on a :class:`aidc.clock.SteppedClock`, reading a live state fed by the
    setup's telemetry, writing through an in-process :class:`control.field.FieldWriter`.

    One core across every run (its training rows and model persist); each run (a day or the commissioning days) is
    a fresh facility and a freshly started supervisor, as after a restart. The loop per facility step, as
    ``Supervisor.run`` has it: publish the telemetry due, then a decision every ``interval_s`` or else the guard
    tick (the guard acts at every facility step, ``step_s``), a heartbeat every ``heartbeat_s`` (at most once a
    step), then the step. Audit lines go to
    ``audit_dir`` (default: a temporary directory removed by :meth:`close`), never under the site's data directory.
    """

    def __init__(self, setup: EvalSetup, *, audit_dir: Path | None = None, core: Any = None) -> None:
        from control.learner import LearningController

        self.setup = setup
        self.core = core if core is not None else LearningController(setup.limits)
        self._tmp = tempfile.TemporaryDirectory(prefix="aidc-eval-audit-") if audit_dir is None else None
        self.audit_dir = Path(self._tmp.name) if self._tmp is not None else audit_dir
        self.counts: dict[str, float] = {}
        self.supervisor: Any = None  # the last run's supervisor and telemetry feed (tests contrive faults on them)
        self.feed: FieldTelemetry | ExactTelemetry | None = None

    @property
    def audit_path(self) -> Path:
        """The supervisor's audit file (``control.jsonl``)."""
        assert self.audit_dir is not None
        return self.audit_dir / "control.jsonl"

    def close(self) -> None:
        """Remove the temporary audit directory (if this run made it)."""
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def evaluate(self) -> Kpis:
        """KPIs over every counted span (commissioning days included)."""
        k = Kpis()
        for start, days, warm in self.setup.spans():
            self.run_day(start, k, warmup_h=warm, days=days)
        k.extra.update(self.counts)
        if self.core.model is not None:
            k.extra["model_rows"] = float(self.core.model.provenance["rows"])  # type: ignore[arg-type]
        return k

    def run_day(self, day_ns: int, k: Kpis | None, *, warmup_h: float | None = None, days: float = 1,
                hook: Callable[[Facility], None] | None = None) -> None:
        """Warm up, then run and (when ``k`` is given) count ``days`` days from ``day_ns``; ``hook(fac)`` runs
        before every step (tests use it to contrive faults)."""
        with _quiet_supervisor():
            asyncio.run(self._run(day_ns, k, self.setup.warmup_h if warmup_h is None else warmup_h, days, hook))

    async def _run(self, day_ns: int, k: Kpis | None, warm: float, days: float,
                   hook: Callable[[Facility], None] | None) -> None:
        from collectors.writer import Actor
        from control.supervisor import Supervisor

        setup, lim = self.setup, self.setup.limits
        fac = setup.facility(day_ns - int(warm * 3.6e12))
        clock = SteppedClock(fac.t_ns)
        live = setup.live_state()
        field = setup.field_telemetry(fac)
        feed = field if field is not None else ExactTelemetry(setup.site, fac.device_arrays, setup.builder.needed())
        self.feed = feed
        writer = FieldWriter(setup.site, fac.write_point, fac.device_values, clock.now_ns)
        sup = Supervisor(setup.site, live, writer, clock, limits=lim, core=self.core, audit_dir=self.audit_dir,
                         actor=Actor("aidc-evaluation", "operator"))
        # Between decisions the supervisor's own guard tick, as Supervisor.run has it (the thermal guard, and the
        # fast path where the supervisor has one).
        guard = getattr(sup, "guard_tick", None) or sup.thermal_check
        self.supervisor = sup
        if sup.mode != "auto":
            sup.set_mode("auto", "evaluation")
        rack_lim = setup.rack_limits(fac)
        dt = setup.step_s
        interval_ns, beat_ns = int(lim.cfg.interval_s * 1e9), int(lim.cfg.heartbeat_s * 1e9)
        next_decision = next_beat = fac.t_ns
        end = day_ns + int(days * DAY_NS)
        base: dict[str, int] | None = None
        changes0 = 0
        while fac.t_ns < end:
            counting = k is not None and fac.t_ns >= day_ns
            if counting and base is None:
                base, changes0 = dict(sup.counts), writer.changes
            # The supervisor reads the live state only until its input sink has seen a batch (as SimPlant).
            feed.feed(fac.t_ns, *((sup.sink,) if sup.sink.seen else (live, sup.sink)))
            if fac.t_ns >= next_decision:
                t0 = time.perf_counter()
                await sup.decide_once()
                if counting and k is not None:
                    k.decisions += 1
                    k.decision_s += time.perf_counter() - t0
                next_decision += interval_ns
            else:
                await guard()
            if fac.t_ns >= next_beat:
                await sup.heartbeat()
                next_beat = fac.t_ns + beat_ns
            if hook is not None:
                hook(fac)
            # Around a load change the guard and the fast path act at the deployed rate, the collectors' polls
            # (``Supervisor.guard_s``, 10 s), as Supervisor.run has them; elsewhere at every facility step (cheaper).
            n_sub = substeps(fac, dt, sup.guard_s)
            for i in range(n_sub):
                if i:
                    feed.feed(fac.t_ns, sup.sink)
                    await guard()
                before = {**fac.energy_wh, "work_gpu_h": fac.work_gpu_h}
                fac.step(dt / n_sub)
                clock.t_ns = fac.t_ns
                if counting and k is not None:
                    _account(setup, fac, k, dt / n_sub, before, rack_lim, dew_point_c(fac.drybulb_c, fac.wetbulb_c))
        if k is not None and base is not None:
            k.setpoint_changes += writer.changes - changes0
            for name, n in sup.counts.items():
                if name not in UNREPORTED_COUNTS:
                    self.counts[name] = self.counts.get(name, 0.0) + float(n - base.get(name, 0))


LOAD_CHANGE = 0.05  # a hall utilisation change of this (0-1) within a facility step is a load change


def substeps(fac: Facility, dt: float, guard_s: float) -> int:
    """How many parts the facility step from now splits into: ``dt / guard_s`` where the hall's mean utilisation
    changes by :data:`LOAD_CHANGE` or more between now and the step's end (a load step the fast path must meet at
    the collectors' rate), else one."""
    if guard_s <= 0 or guard_s >= dt:
        return 1
    u0 = float(np.mean(fac.workload.rack_util(fac.t_ns)))
    u1 = float(np.mean(fac.workload.rack_util(fac.t_ns + int(dt * 1e9))))
    return max(1, round(dt / guard_s)) if abs(u1 - u0) >= LOAD_CHANGE else 1


@contextmanager
def _quiet_supervisor() -> Iterator[None]:
    """The evaluated supervisor's warnings (guard actions, reverts) are in its audit; keep them off the console."""
    logger = logging.getLogger("control.supervisor")
    old = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(old)
