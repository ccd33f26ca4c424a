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
import time
from collections.abc import Callable, Sequence
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
from simulators.weather import Weather, load_weather

DAY_NS = 86_400_000_000_000
SETTLE_STEPS = 4  # oracle: candidate intervals simulated before judging a candidate (20 min at 5-min decisions)
ORACLE_HEADROOM_K = 0.5  # oracle: load can rise before its next re-optimisation


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


class OracleController:
    """Picks, each decision, the setpoints with the lowest true facility power that keep every constraint.

    It asks the physics through the facility's what-if interface when the facility has one (``what_if``, a whole
    candidate grid in one vectorised call); otherwise it evaluates each candidate on a copy of the facility stepped
    through the ordinary stepping interface, with a local pattern search to keep the number of copies small.
    """

    name = "oracle"

    def __init__(self, setup: EvalSetup, grid: int = 9, reopt_s: float = 1800.0) -> None:
        self.setup = setup
        self.reopt_s = reopt_s
        self.last_ns: int | None = None
        self.lim = setup.limits
        self.fac: Facility | None = None
        self.grid = grid
        self.rack_lim: np.ndarray | None = None
        self.sp: Setpoints | None = None

    def bind(self, fac: Facility) -> None:
        """Use this facility for the next decisions."""
        self.fac = fac
        self.last_ns = None
        self.rack_lim = self.setup.rack_limits(fac)

    def _score(self, cands: Sequence[Setpoints]) -> np.ndarray:
        """Facility kW after one interval at each candidate, +inf where a constraint breaks."""
        assert self.fac is not None
        assert self.rack_lim is not None
        lim, cfg = self.lim, self.lim.cfg
        out = np.empty(len(cands))
        dt = cfg.interval_s
        fac = self.fac
        # Share what a step never changes (weather, workload, parameters, site objects) instead of copying it.
        shared = [fac.weather, fac.workload, fac.params, fac.tz, self.setup.site, *self.setup.site.devices]
        for j, sp in enumerate(cands):
            twin = copy.deepcopy(fac, {id(o): o for o in shared})
            plant = SimPlant(self.setup.site, lim, self.setup.builder, twin)
            plant.current = Setpoints(np.full_like(sp.tcs_c, np.nan), np.full_like(sp.dp_kpa, np.nan), math.nan)
            plant.apply(sp)
            # Settle: the FWS loop lags by minutes, so a warm candidate only shows its GPU temperatures later.
            hottest, throttled = -math.inf, 0
            sub = max(1, round(dt / self.setup.step_s))
            for _ in range(SETTLE_STEPS * sub):
                twin.step(dt / sub)  # the evaluation's own step, so transients are judged as they are counted
                over = np.maximum.reduceat(twin.gpu_temp_c, twin.rack_offsets) - self.rack_lim
                hottest = max(hottest, float(over.max()))
                throttled += int(twin.rack_throttled.sum())
            ok = hottest <= -cfg.gpu_margin_k - ORACLE_HEADROOM_K and throttled == 0
            dew = dew_point_c(twin.drybulb_c, twin.wetbulb_c)
            ok = ok and float(twin.tcs_supply_c.min()) >= dew + cfg.dew_margin_k
            out[j] = twin.facility_power_w / 1000.0 if ok else math.inf
        return out

    def decide(self, snap: Snapshot) -> Decision:
        """Pattern search from the last choice over (TCS, dp, FWS), uniform over CDUs."""
        lim = self.lim
        n = len(snap.cdu_names)
        if self.sp is not None and self.last_ns is not None and (snap.t_ns - self.last_ns) / 1e9 < self.reopt_s - 1:
            hot = bool((snap.gpu_max_c > lim.gpu_ceiling_c - ORACLE_HEADROOM_K).any())
            # Between re-optimisations, keep the choice only while the physics says it stays feasible.
            if not hot and math.isfinite(self._score([self.sp])[0]):
                return Decision(self.sp.copy(), state="holding")
        self.last_ns = snap.t_ns
        dew = dew_point_c(snap.drybulb_c, snap.wetbulb_c) + 0.3
        sp = self.sp if self.sp is not None else lim.safe.copy()
        sp = lim.clip(sp, dew)
        best = self._score([sp])[0]
        if not math.isfinite(best):
            sp = lim.clip(lim.safe.copy(), dew)
            best = self._score([sp])[0]
        for step in ((2.0, 20.0, 2.0), (1.0, 10.0, 1.0)):
            improved = True
            while improved:
                improved = False
                cands = []
                for axis in range(3):
                    for sgn in (-1.0, 1.0):
                        t, d, f = float(sp.tcs_c.mean()), float(sp.dp_kpa.mean()), sp.fws_c
                        if axis == 0:
                            t += sgn * step[0]
                        elif axis == 1:
                            d += sgn * step[1]
                        else:
                            f += sgn * step[2]
                            t += sgn * step[2]  # move TCS with FWS so the approach stays feasible
                        c = lim.clip(Setpoints(np.full(n, t), np.full(n, d), f), dew)
                        cands.append(c)
                scores = self._score(cands)
                j = int(np.argmin(scores))
                if scores[j] < best - 0.05:
                    best, sp, improved = float(scores[j]), cands[j], True
        self.sp = sp
        return Decision(sp.copy(), state="deciding", predicted_facility_kw=best)


# --- all controllers -------------------------------------------------------------------------------------------


def best_fixed(setup: EvalSetup) -> tuple[tuple[float, float, float], Kpis]:
    """The constant setpoint with the lowest facility energy and no violation over the evaluated days (hindsight).

    A coarse grid on a quick pass (no warm-up beyond two hours, 5-minute steps), then the best few on the full
    evaluation, so the search is honest about the KPIs it reports.
    """
    from control.baselines import ConstantController

    lim = setup.limits
    quick = EvalSetup(setup.site, lim, setup.weather, setup.year, setup.days, max(setup.stride, 1) * 3,
                      setup.first_day, 2.0, lim.cfg.interval_s, setup.carbon)
    tried: list[tuple[float, tuple[float, float, float]]] = []
    for fws in np.arange(max(lim.fws_lo, 14.0), lim.fws_hi + 0.01, 3.0):
        for dtcs in (3.0, 7.0):
            for dp in (90.0, 150.0, 210.0):
                tcs = min(fws + dtcs, lim.tcs_hi)
                k = evaluate(quick, ConstantController(lim, tcs, dp, fws))
                bad = k.violation_minutes + k.throttle_minutes + k.below_dew_minutes + k.above_class_minutes
                tried.append((k.facility_kwh if bad == 0 else math.inf, (tcs, dp, float(fws))))
    tried.sort(key=lambda r: r[0])
    best: tuple[tuple[float, float, float], Kpis] | None = None
    for _, sp in tried[:3]:
        k = evaluate(setup, ConstantController(lim, *sp))
        bad = k.violation_minutes + k.throttle_minutes + k.below_dew_minutes + k.above_class_minutes
        if bad == 0 and (best is None or k.facility_kwh < best[1].facility_kwh):
            best = (sp, k)
    if best is None:
        k = evaluate(setup, ConstantController(lim, float(lim.safe.tcs_c[0]), float(lim.safe.dp_kpa[0]),
                                               lim.safe.fws_c))
        best = ((float(lim.safe.tcs_c[0]), float(lim.safe.dp_kpa[0]), lim.safe.fws_c), k)
    return best


def evaluate_all(site: Site, limits: Limits, weather: Weather, names: Sequence[str], *, days: int, stride: int,
                 warmup_h: float, carbon: Carbon, year: int, progress: object = None) -> dict[str, Any]:
    """KPIs of every named controller on the same days, as the ``--json`` document."""
    from control.baselines import ExpertController, FixedController, TrimRespondController
    from control.learner import LearningController

    known = ("fixed", "best_fixed", "trim_respond", "expert", "aidc", "oracle")
    for name in names:
        if name not in known:
            raise DataError(f"--controllers: unknown controller {name!r} ({', '.join(known)})")
    setup = EvalSetup(site, limits, weather, year, days, stride, 0, warmup_h, 60.0, carbon)
    out: dict[str, dict[str, Any]] = {}
    extra: dict[str, Any] = {}

    def say(msg: str) -> None:
        if progress is not None:
            print(msg, file=progress, flush=True)  # type: ignore[call-overload]

    for name in names:
        t0 = time.perf_counter()
        if name == "fixed":
            k = evaluate(setup, FixedController(limits))
        elif name == "best_fixed":
            sp, k = best_fixed(setup)
            k.extra = {}
            out[name] = {**k.as_dict(), "setpoints": {"tcs_c": sp[0], "dp_kpa": sp[1], "fws_c": sp[2]}}
            say(f"{name}: {time.perf_counter() - t0:.0f} s")
            continue
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
            osetup = EvalSetup(site, limits, weather, year, days, stride, 0, min(warmup_h, 3.0), 60.0, carbon)
            o.setup = osetup
            k = evaluate(osetup, o, o.bind)
        else:  # pragma: no cover - names are checked above
            raise AssertionError(name)
        out[name] = k.as_dict()
        say(f"{name}: {time.perf_counter() - t0:.0f} s")
    minutes = Kpis()
    for d in setup.day_starts():
        minutes.minutes += 1440.0
        del d
    return {"controllers": out, "evaluated_minutes": minutes.minutes, **extra}
