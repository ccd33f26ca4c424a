"""In-process evaluation of supervisory controllers on the simulated facility (``aidc evaluate-control``).

Every controller runs on the same days (every ``stride``-th day of the weather year, each after an uncounted
warm-up) against a fresh :class:`simulators.facility.Facility` driven only through the stepping interface
(``step``, ``device_values``, ``write_point``). Controllers see what collectors would read (the same
:class:`control.snapshot.SnapshotBuilder` as the live supervisor) and decide every ``interval_s``; the facility
steps at ``step_s`` so the temperature KPIs have minute resolution. KPIs are those the building-control
benchmarking community reports (BOPTEST): energy by kind, PUE, thermal discomfort (here K·h and minutes of any GPU
above limit − margin), minutes at or above the throttle limit, throttling, peak power, emissions, setpoint changes
and controller time. This is the only module of ``control/`` that imports ``simulators/``; the oracle is the only
controller that reads the physics, through the what-if interface when the facility offers one.
"""

from __future__ import annotations

import copy
import math
import multiprocessing as mp
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from aidc.config import Site
from aidc.errors import DataError
from aidc.live import LiveState
from aidc.model import Batch, SeriesKey
from control.policy import Limits, dew_point_c
from control.snapshot import Readings, SnapshotBuilder
from control.types import Controller, Decision, Setpoints, Snapshot
from simulators.facility import Facility
from simulators.interface import Setpoints as SimSetpoints
from simulators.interface import WhatIf
from simulators.weather import Weather, load_weather

DAY_NS = 86_400_000_000_000
ORACLE_HEADROOM_K = 1.0  # oracle: load can rise before its next re-optimisation
BEST_FIXED_TRIES = 5  # best fixed: candidates run through the full evaluation at most


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
        self.current = sp.copy()
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


# --- the oracle: optimises each decision with the true physics ----------------------------------------------

TCS_OFFSETS_K = np.array([3.0, 4.5, 6.0, 8.0, 11.0])  # TCS supply setpoint − FWS supply setpoint on the coarse grid


def uniform_candidates(fac: Facility, fws: np.ndarray, offset: np.ndarray, dp: np.ndarray,
                       lim: Limits) -> SimSetpoints:
    """What-if candidates with one TCS and dp for every CDU: FWS, TCS = FWS + offset and dp, clipped to the
    site's absolute bounds (the chilled-water setpoint stays where it is)."""
    f = np.clip(fws, lim.fws_lo, lim.fws_hi)
    t = np.clip(f + offset, lim.tcs_lo, lim.tcs_hi)
    d = np.clip(dp, lim.dp_lo, lim.dp_hi)
    return SimSetpoints.grid(fac.setpoints(), fws_supply_c=f, tcs_supply_c=t, dp_kpa=d)


def coarse_grid(lim: Limits, fws_step: float = 2.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FWS × (TCS − FWS) × dp over the site's whole feasible range, flattened."""
    fws = np.arange(lim.fws_lo, lim.fws_hi + 1e-9, fws_step)
    dp = np.linspace(lim.dp_lo, lim.dp_hi, 5)[1:]  # the lowest dp starves the racks; start one step above it
    f, o, d = (a.ravel() for a in np.meshgrid(fws, TCS_OFFSETS_K, dp, indexing="ij"))
    return f, o, d


def neighbourhood(f0: float, o0: float, d0: float, step_k: float, step_kpa: float
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The 27 points of FWS ± step_k × (TCS − FWS) ± step_k × dp ± step_kpa around one (offset at least 1 K)."""
    f, o, d = (a.ravel() for a in np.meshgrid(f0 + step_k * np.array([-1.0, 0.0, 1.0]),
                                               o0 + step_k * np.array([-1.0, 0.0, 1.0]),
                                               d0 + step_kpa * np.array([-1.0, 0.0, 1.0]), indexing="ij"))
    return f, np.maximum(o, 1.0), d


def uniform_setpoints(f: float, o: float, d: float, lim: Limits) -> tuple[float, float, float]:
    """(TCS, dp, FWS) of one grid point, clipped to the bounds as :func:`uniform_candidates` clips it."""
    fws = float(np.clip(f, lim.fws_lo, lim.fws_hi))
    return float(np.clip(fws + o, lim.tcs_lo, lim.tcs_hi)), float(np.clip(d, lim.dp_lo, lim.dp_hi)), fws


def whatif_ok(w: WhatIf, rack_lim: np.ndarray, lim: Limits, outdoor_dew_c: float, headroom_k: float) -> np.ndarray:
    """Candidates that keep every constraint the evaluation counts, with ``headroom_k`` more GPU margin."""
    cfg = lim.cfg
    ok = (w.gpu_temp_max_c <= rack_lim - cfg.gpu_margin_k - headroom_k).all(axis=1)
    ok &= (w.gpus_throttled == 0).all(axis=1)
    ok &= (w.tcs_supply_c >= outdoor_dew_c + cfg.dew_margin_k + 0.2).all(axis=1)
    ok &= ~w.condensation_risk.any(axis=1) & ~w.dp_not_reached.any(axis=1) & ~w.above_class
    return np.asarray(ok, dtype=bool)


class OracleController:
    """Picks, each decision, the setpoints with the lowest true facility power that keep every constraint.

    It asks the physics through the facility's what-if interface, a whole candidate grid in one vectorised call:
    each candidate is priced at steady state under the current weather and load and must be feasible under the
    highest load of the interval ahead (perfect foresight), with ``ORACLE_HEADROOM_K`` of extra GPU margin. A coarse
    grid over the site's range runs every ``reopt_s`` and a local search around the last choice at every decision,
    so it follows load and weather between full searches. The choice is then checked by stepping a copy of the
    plant through the interval; where a transient would cross limit − margin, it chooses again with more headroom.
    """

    name = "oracle"

    def __init__(self, setup: EvalSetup, reopt_s: float = 3600.0) -> None:
        self.setup = setup
        self.reopt_s = reopt_s
        self.lim = setup.limits
        self.fac: Facility | None = None
        self.rack_lim: np.ndarray | None = None
        self.last_full_ns: int | None = None
        self.choice: tuple[float, float, float] | None = None
        self.grid = coarse_grid(self.lim)

    def bind(self, fac: Facility) -> None:
        """Use this facility for the next decisions."""
        self.fac = fac
        self.last_full_ns = None
        self.choice = None
        self.rack_lim = self.setup.rack_limits(fac)

    def _best(self, f: np.ndarray, o: np.ndarray, d: np.ndarray, dew: float, headroom_k: float = ORACLE_HEADROOM_K
              ) -> tuple[tuple[float, float, float], float, bool]:
        assert self.fac is not None
        assert self.rack_lim is not None
        cands = uniform_candidates(self.fac, f, o, d, self.lim)
        w = self.fac.what_if(cands)
        # Feasible under the highest load of the interval ahead (perfect foresight), priced at the load of now.
        peak = self.fac.what_if(cands, peak_s=self.lim.cfg.interval_s)
        ok = whatif_ok(peak, self.rack_lim, self.lim, dew, headroom_k)
        if ok.any():
            j = int(np.argmin(np.where(ok, w.facility_power_w, np.inf)))
        else:  # nothing feasible: the coolest candidate
            j = int(np.argmin((peak.gpu_temp_max_c - self.rack_lim).max(axis=1)))
        return (float(f[j]), float(o[j]), float(d[j])), float(w.facility_power_w[j]) / 1000.0, bool(ok.any())

    def decide(self, snap: Snapshot) -> Decision:
        """Coarse grid every ``reopt_s``, then a local search around the choice."""
        n = len(snap.cdu_names)
        dew = dew_point_c(snap.drybulb_c, snap.wetbulb_c)
        if not math.isfinite(dew):
            dew = -40.0
        full = (self.choice is None or self.last_full_ns is None
                or (snap.t_ns - self.last_full_ns) / 1e9 >= self.reopt_s)
        if full:
            self.choice, kw, ok = self._best(*self.grid, dew)
            self.last_full_ns = snap.t_ns
        # A local search around the choice every decision; after a full search, refined at half the step too.
        assert self.choice is not None
        for step in (1.0, 0.5) if full else (1.0,):
            self.choice, kw, ok = self._best(*self._local(self.choice, step), dew)
        sp = self._setpoints(n)
        # Steady states miss the loops' transients: step a copy of the plant through the interval at the choice
        # and, where any GPU would pass limit − margin, take more headroom and choose again.
        extra = 0.0
        while not self._interval_ok(sp) and extra < 4.0:
            extra += 1.0
            self.choice, kw, ok = self._best(*self._local(self.choice, 1.0), dew, ORACLE_HEADROOM_K + extra)
            if not ok:
                self.choice, kw, ok = self._best(*self.grid, dew, ORACLE_HEADROOM_K + extra)
            sp = self._setpoints(n)
        return Decision(sp, state="deciding" if ok else "fallback", predicted_facility_kw=kw)

    def _setpoints(self, n: int) -> Setpoints:
        assert self.choice is not None
        tcs, dp, fws = uniform_setpoints(*self.choice, self.lim)
        return Setpoints(np.full(n, tcs), np.full(n, dp), fws)

    @staticmethod
    def _local(c: tuple[float, float, float], step: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return neighbourhood(*c, step, 15.0 * step)

    def _interval_ok(self, sp: Setpoints) -> bool:
        """Whether a copy of the plant stepped through the next interval at ``sp`` keeps every GPU below
        limit − margin (the evaluation's own steps)."""
        assert self.fac is not None
        assert self.rack_lim is not None
        fac = self.fac
        shared = [fac.weather, fac.workload, fac.params, fac.tz, self.setup.site, *self.setup.site.devices]
        twin = copy.deepcopy(fac, {id(o): o for o in shared})
        plant = SimPlant(self.setup.site, self.lim, self.setup.builder, twin)
        plant.current = Setpoints(np.full_like(sp.tcs_c, np.nan), np.full_like(sp.dp_kpa, np.nan), math.nan)
        plant.apply(sp)
        sub = max(1, round(self.lim.cfg.interval_s / self.setup.step_s))
        ceiling = self.rack_lim - self.lim.cfg.gpu_margin_k - 0.2
        for _ in range(sub):
            twin.step(self.lim.cfg.interval_s / sub)
            if (np.maximum.reduceat(twin.gpu_temp_c, twin.rack_offsets) > ceiling).any():
                return False
        return True


# --- all controllers -------------------------------------------------------------------------------------------


def best_fixed(setup: EvalSetup, say: Callable[[str], None] | None = None) -> tuple[tuple[float, float, float], Kpis]:
    """The constant setpoint with the lowest facility energy and no violation over the evaluated days (hindsight).

    Every hour of every evaluated day, the plant is settled at the hour's weather and load and a grid of constant
    setpoints is scored at steady state through the what-if interface (feasibility under the hour's peak load);
    the grid is refined around the best. The cheapest candidate at each sampled GPU headroom (0 K, 0.5 K, ... up
    to the most headroom of all) is then run through the full evaluation, from the least headroom up, until one
    keeps every constraint minute by minute (at most ``BEST_FIXED_TRIES``). Where none does, the one with the
    fewest bad minutes is returned and its KPIs say so.
    """
    from control.baselines import ConstantController

    lim = setup.limits
    fac = setup.facility(setup.day_starts()[0])
    rack_lim = setup.rack_limits(fac)
    hours = [d + h * 3_600_000_000_000 for d in setup.day_starts() for h in range(24)]

    def scan(f: np.ndarray, o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Sampled energy of each candidate and its worst GPU headroom (K below limit − margin) over the hours."""
        energy = np.zeros(len(f))
        headroom = np.full(len(f), np.inf)
        for t in hours:
            fac.settle_at(t)
            cands = uniform_candidates(fac, f, o, d, lim)
            energy += fac.what_if(cands).facility_power_w
            peak = fac.what_if(cands, peak_s=3600.0)  # the hour's highest load and warmest weather
            ok = whatif_ok(peak, rack_lim, lim, dew_point_c(fac.drybulb_c, fac.wetbulb_c), 0.0)
            room = (rack_lim - lim.cfg.gpu_margin_k - peak.gpu_temp_max_c).min(axis=1)
            headroom = np.minimum(headroom, np.where(ok, room, -np.inf))
        return energy, headroom

    f, o, d = coarse_grid(lim)
    e, room = scan(f, o, d)
    if (room >= 0).any():
        j = int(np.argmin(np.where(room >= 0, e, np.inf)))
        rf, ro, rd = neighbourhood(float(f[j]), float(o[j]), float(d[j]), 1.0, 20.0)
        re_, rroom = scan(rf, ro, rd)
        f, o, d = np.concatenate([f, rf]), np.concatenate([o, ro]), np.concatenate([d, rd])
        e, room = np.concatenate([e, re_]), np.concatenate([room, rroom])
    # Try the cheapest candidate at each sampled headroom (steady states miss minute-scale transients), from the
    # least headroom up, until one keeps every constraint minute by minute.
    order: list[int] = []
    for need in (0.0, 0.5, 1.0, 2.0, 3.0, 5.0):
        if (room >= need).any():
            order.append(int(np.argmin(np.where(room >= need, e, np.inf))))
    order.append(int(np.argmax(room)))  # the most headroom of all
    tried: list[tuple[tuple[float, float, float], Kpis]] = []
    for i in dict.fromkeys(order):
        sp = uniform_setpoints(float(f[i]), float(o[i]), float(d[i]), lim)
        if any(sp == t[0] for t in tried):
            continue
        if len(tried) >= BEST_FIXED_TRIES:
            break
        k = evaluate(setup, ConstantController(lim, *sp))
        tried.append((sp, k))
        if say is not None:
            say(f"  best fixed candidate TCS {sp[0]:.1f} dp {sp[1]:.0f} FWS {sp[2]:.1f}: "
                f"{k.facility_kwh:,.0f} kWh, {k.violation_minutes:.0f} violation minutes")
        if _bad(k) == 0:
            return sp, k
    if not tried:
        sp = (float(lim.safe.tcs_c[0]), float(lim.safe.dp_kpa[0]), lim.safe.fws_c)
        return sp, evaluate(setup, ConstantController(lim, *sp))
    # Nothing constant keeps every constraint here: the one with the fewest bad minutes (they are reported).
    return min(tried, key=lambda t: (_bad(t[1]), t[1].facility_kwh))


def _bad(k: Kpis) -> float:
    return k.violation_minutes + k.throttle_minutes + k.below_dew_minutes + k.above_class_minutes


CONTROLLERS = ("fixed", "best_fixed", "trim_respond", "expert", "aidc", "oracle")
_LONGEST_FIRST = ("oracle", "aidc", "best_fixed", "trim_respond", "expert", "fixed")


def run_controller(setup: EvalSetup, name: str, say: Callable[[str], None]) -> tuple[dict[str, Any], dict[str, Any]]:
    """KPIs of one named controller on the setup's days, and what goes on the document's top level (aidc's
    commissioning)."""
    from control.baselines import ExpertController, FixedController, TrimRespondController
    from control.learner import LearningController

    site, limits, warmup_h = setup.site, setup.limits, setup.warmup_h
    extra: dict[str, Any] = {}
    if name == "fixed":
        k = evaluate(setup, FixedController(limits))
    elif name == "best_fixed":
        sp, k = best_fixed(setup, say)
        return {**k.as_dict(), "setpoints": {"tcs_c": sp[0], "dp_kpa": sp[1], "fws_c": sp[2]}}, extra
    elif name == "trim_respond":
        k = evaluate(setup, TrimRespondController(limits))
    elif name == "expert":
        k = evaluate(setup, ExpertController(limits, site.config.plant.type))
    elif name == "aidc":
        ctl = LearningController(limits)
        comm = Kpis()
        n_comm = math.ceil(limits.cfg.commissioning_days)
        # Commissioning ends where the first evaluated day's warm-up begins (the weather year wraps into December).
        start = setup.day_starts()[0] - int(warmup_h * 3.6e12) - n_comm * DAY_NS
        for d in range(n_comm):
            run_day(setup, ctl, start + d * DAY_NS, comm, warmup_h=0.0)
        extra["commissioning"] = {"days": n_comm, **comm.as_dict()}
        k = evaluate(setup, ctl)
        if ctl.model is not None:
            k.extra = {"model_rows": float(ctl.model.provenance["rows"])}  # type: ignore[arg-type]
    elif name == "oracle":
        o = OracleController(setup)
        k = evaluate(setup, o, o.bind)
    else:
        raise DataError(f"--controllers: unknown controller {name!r} ({', '.join(CONTROLLERS)})")
    return k.as_dict(), extra


_JOB: dict[str, Any] = {}  # the setup handed to forked workers (fork shares it without pickling)


def _job(name: str) -> tuple[str, dict[str, Any], dict[str, Any], float, list[str]]:
    said: list[str] = []
    t0 = time.perf_counter()
    kpis, extra = run_controller(_JOB["setup"], name, said.append)
    return name, kpis, extra, time.perf_counter() - t0, said


def default_jobs() -> int:
    """Worker processes for the evaluation: one per CPU this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def evaluate_all(site: Site, limits: Limits, weather: Weather, names: Sequence[str], *, days: int, stride: int,
                 warmup_h: float, carbon: Carbon, year: int, progress: object = None,
                 jobs: int = 1) -> dict[str, Any]:
    """KPIs of every named controller on the same days, as the ``--json`` document.

    ``jobs`` > 1 runs the controllers in that many forked worker processes (each controller is independent: its
    own facility, the same days); the document is the same, in the order of ``names``.
    """
    for name in names:
        if name not in CONTROLLERS:
            raise DataError(f"--controllers: unknown controller {name!r} ({', '.join(CONTROLLERS)})")
    setup = EvalSetup(site, limits, weather, year, days, stride, 0, warmup_h, 60.0, carbon)
    # Refused before any controller runs: a short weather file is never repeated to fill the days (issue 21, item 7).
    weather.check_span(*setup.weather_span(names), f"the evaluation ({len(setup.day_starts())} days of {year})")

    def say(msg: str) -> None:
        if progress is not None:
            print(msg, file=progress, flush=True)  # type: ignore[call-overload]

    results: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    order = sorted(dict.fromkeys(names), key=lambda n: _LONGEST_FIRST.index(n))
    if jobs > 1 and len(order) > 1 and "fork" in mp.get_all_start_methods():
        _JOB["setup"] = setup
        try:
            with ProcessPoolExecutor(min(jobs, len(order)), mp_context=mp.get_context("fork")) as pool:
                for name, kpis, extra, spent, said in pool.map(_job, order):
                    for line in said:
                        say(line)
                    say(f"{name}: {spent:.0f} s")
                    results[name] = (kpis, extra)
        finally:
            _JOB.clear()
    else:
        for name in order:
            t0 = time.perf_counter()
            results[name] = run_controller(setup, name, say)
            say(f"{name}: {time.perf_counter() - t0:.0f} s")
    out = {name: results[name][0] for name in dict.fromkeys(names)}
    top: dict[str, Any] = {}
    for _, ex in results.values():
        top.update(ex)
    return {"controllers": out, "evaluated_minutes": 1440.0 * len(setup.day_starts()), **top}
