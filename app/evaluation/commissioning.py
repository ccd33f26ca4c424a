"""Commissioning the baselines as an engineer would, on the simulated facility: a pump test and a bin table.

* :func:`pump_test`: every CDU's dp setpoint written at its profile maximum, the dp and pump speed the CDU reports
  read back once the loop has settled: where the pump runs at full speed short of the setpoint, the dp it reaches
  is the most it can hold. :func:`commissioned_trim_respond` ends trim & respond's dp range there
  (``PUMP_TEST_MARGIN_KPA`` below the weakest pump), so its top end is one the pumps reach.
* :func:`commission_bin_table`: an outdoor-reset schedule from steady-state tests at full (design) load on a tuning
  weather year (the site's own weather file unless another is given): for each outdoor bin, at the bin's warmest
  hour, the setpoints with the lowest facility power that keep every GPU ``gpu_margin_k`` +
  ``BIN_HEADROOM_K`` below its limit, the dew-point margin, the W-class and every dp reached.

Reads the simulated physics (its telemetry and what-if interface), as an engineer's on-site tests would.
"""

from __future__ import annotations

import numpy as np

from aidc.roles import Role
from app.evaluation.harness import EvalSetup, site_weather
from app.evaluation.oracle import coarse_grid, neighbourhood, whatif_ok
from control.baselines import BinTable, TrimRespondController, trim_respond_config
from control.policy import Limits
from simulators.facility import Facility
from simulators.interface import Setpoints as SimSetpoints
from simulators.weather import Weather
from simulators.workload import ConstantWorkload

PUMP_TEST_SETTLE_S = 300.0  # the pump test reads the CDUs this long after writing the dp setpoints
PUMP_FULL_SPEED_PCT = 99.0  # a pump at or above this speed is at full speed
PUMP_TEST_MARGIN_KPA = 2.0  # commissioned dp maximum below the weakest pump's: sensor accuracy, not-reached band
BIN_K = 2.0  # width of an outdoor bin, K
BIN_HEADROOM_K = 0.5  # bin table: GPU headroom beyond the margin at full load (write resolution, load steps)
_NS_PER_H = 3_600_000_000_000


def _point(limits: Limits, setup: EvalSetup, cdu: str, role: Role) -> str | None:
    """The simulator key of the point with ``role`` on ``cdu`` (None where its profile has none)."""
    dev = next(d for d in setup.site.devices if d.name == cdu)
    for p in dev.profile.points:
        if dev.role_of(p.name) is role:
            return p.sim or p.name
    return None


def pump_test(setup: EvalSetup) -> np.ndarray:
    """Highest dp (kPa) each CDU's pump holds, per CDU in ``limits.cdu_names`` order, from its telemetry.

    On a fresh facility at the first evaluated day, every CDU's dp setpoint is written at the profile maximum and,
    after ``PUMP_TEST_SETTLE_S``, the achieved dp the CDU reports is read. A CDU whose pump reports less than full
    speed reached the setpoint: its value is the profile maximum.
    """
    lim = setup.limits
    fac = setup.facility(setup.day_starts()[0])
    for cdu in lim.cdu_names:
        fac.write_point(cdu, lim.dp_point, lim.dp_hi)
    for _ in range(int(PUMP_TEST_SETTLE_S // 60.0)):
        fac.step(60.0)
    out = np.full(len(lim.cdu_names), lim.dp_hi)
    for i, cdu in enumerate(lim.cdu_names):
        dp_key = _point(lim, setup, cdu, Role.TCS_DP)
        speed_key = _point(lim, setup, cdu, Role.CDU_PUMP_SPEED)
        vals = fac.device_values(cdu)
        dp = vals.get(dp_key) if dp_key else None
        speed = vals.get(speed_key) if speed_key else None
        if not isinstance(dp, int | float):
            continue  # no dp reading: nothing measured, the profile's range stands
        full = speed is None or not isinstance(speed, int | float) or float(speed) >= PUMP_FULL_SPEED_PCT
        if full and float(dp) < lim.dp_hi - 0.5:
            out[i] = float(dp)
    return out


def commissioned_dp_max(setup: EvalSetup) -> float:
    """The highest dp setpoint every CDU reaches: the weakest pump's, less ``PUMP_TEST_MARGIN_KPA``."""
    lim = setup.limits
    reach = float(pump_test(setup).min())
    if reach >= lim.dp_hi:
        return lim.dp_hi
    return float(np.clip(np.floor(reach - PUMP_TEST_MARGIN_KPA), lim.dp_lo, lim.dp_hi))


def commissioned_trim_respond(setup: EvalSetup) -> TrimRespondController:
    """Trim & respond whose dp range ends at what the pump test found (``trim_respond`` in the evaluation)."""
    return TrimRespondController(setup.limits, trim_respond_config(setup.limits, commissioned_dp_max(setup)))


# --- the bin table ----------------------------------------------------------------------------------------------


def _record_times(weather: Weather, year_start_ns: int) -> np.ndarray:
    """The UTC instant of every hourly record of ``weather`` (a typical year's in the evaluated year)."""
    origin = weather.start_ns if weather.start_ns is not None else year_start_ns
    return origin + np.round((np.arange(weather.hours) + weather.offset_h) * _NS_PER_H).astype(np.int64)


def _candidates(
    fac: Facility, f: np.ndarray, o: np.ndarray, d: np.ndarray, chw: np.ndarray, lim: Limits
) -> SimSetpoints:
    fws = np.clip(f, lim.fws_lo, lim.fws_hi)
    return SimSetpoints.grid(
        fac.setpoints(),
        fws_supply_c=fws,
        tcs_supply_c=np.clip(fws + o, lim.tcs_lo, lim.tcs_hi),
        dp_kpa=np.clip(d, lim.dp_lo, lim.dp_hi),
        chw_supply_c=chw,
    )


def _bin_optimum(
    fac: Facility, lim: Limits, rack_lim: np.ndarray, dew_c: float, chw0: float
) -> tuple[float, float, float, float] | None:
    """(FWS, TCS, dp, chw) with the lowest facility power at the facility's state that keeps every constraint with
    ``BIN_HEADROOM_K``: the coarse grid, two refinements, then the chilled water; None where nothing is feasible."""
    approach = lim.cfg.cdu_approach_k

    def best(f: np.ndarray, o: np.ndarray, d: np.ndarray, chw: np.ndarray) -> int | None:
        keep = o >= approach - 1e-9  # the guard lifts TCS to FWS + the CDU approach: test only what it keeps
        cands = _candidates(fac, f, o, d, chw, lim)
        w = fac.what_if(cands)
        ok = keep & whatif_ok(w, rack_lim, lim, dew_c, BIN_HEADROOM_K)
        return int(np.argmin(np.where(ok, w.facility_power_w, np.inf))) if ok.any() else None

    f, o, d = coarse_grid(lim)
    j = best(f, o, d, np.full(len(f), chw0))
    if j is None:
        return None
    c = (float(f[j]), float(o[j]), float(d[j]))
    for step in (1.0, 0.5):
        f, o, d = neighbourhood(*c, step, 15.0 * step)
        k = best(f, o, d, np.full(len(f), chw0))
        if k is not None:
            c = (float(f[k]), float(o[k]), float(d[k]))
    chw = chw0
    if lim.chw_point is not None:
        grid = np.arange(lim.chw_lo, lim.chw_hi + 1e-9, 1.0)
        k = best(np.full(len(grid), c[0]), np.full(len(grid), c[1]), np.full(len(grid), c[2]), grid)
        if k is not None:
            chw = float(grid[k])
    fws = float(np.clip(c[0], lim.fws_lo, lim.fws_hi))
    return fws, float(np.clip(fws + c[1], lim.tcs_lo, lim.tcs_hi)), float(np.clip(c[2], lim.dp_lo, lim.dp_hi)), chw


def commission_bin_table(setup: EvalSetup, weather: Weather | None = None, bin_k: float = BIN_K) -> BinTable:
    """The outdoor-reset schedule of the setup's site, tuned on ``weather`` (default: the site's own weather file).

    Bins of ``bin_k`` K span the tuning year's outdoor sink (dry bulb; wet bulb with a cooling tower). Each bin is
    tested at its warmest hour (the most humid of equals): the plant settled there at full load, the cheapest
    setpoints that keep the margin with ``BIN_HEADROOM_K`` (:func:`_bin_optimum`). At full load the cheapest water
    follows the outdoor air (free cooling makes cold water cheap in cold weather, the chiller makes it dear in hot,
    up to the warmest the GPUs allow), so the schedule is drawn monotone as an engineer draws it, toward safety
    where the tests were not: FWS and TCS never warmer than in any warmer bin, dp never lower than in any colder
    bin. Chilled water only prices the air side and is kept as tested. A bin where nothing is feasible takes the
    next warmer bin's setpoints (the profile's safe defaults above the warmest).
    """
    lim, site = setup.limits, setup.site
    tune = weather if weather is not None else site_weather(site, site.config.site.weather)
    sink_name = "wetbulb" if site.config.plant.type == "chiller_tower" else "drybulb"
    sink = np.asarray(tune.wetbulb_c if sink_name == "wetbulb" else tune.drybulb_c, dtype=np.float64)
    times = _record_times(tune, setup.year_start_ns)
    lo = np.floor(np.nanmin(sink) / bin_k) * bin_k
    upper = np.arange(lo + bin_k, np.nanmax(sink) + bin_k, bin_k)
    which = np.minimum(np.searchsorted(upper, sink, side="left"), len(upper) - 1)
    n_racks = sum(1 for _ in site.racks())
    fac = Facility(site, weather=tune, workload=ConstantWorkload(1.0, n_racks), start_ns=int(times[0]))
    rack_lim = setup.rack_limits(fac)
    safe = lim.safe
    chw0 = float(safe.chw_c) if np.isfinite(safe.chw_c) else float(fac.setpoints().chw_supply_c[0])
    rows: list[tuple[float, float, float, float] | None] = []
    for b in range(len(upper)):
        idx = np.flatnonzero(which == b)
        if not len(idx):
            rows.append(None)
            continue
        dews = np.array([tune.dewpoint_at(int(times[i])) for i in idx])
        k = int(np.lexsort((dews, sink[idx]))[-1])  # the warmest hour, then the most humid
        fac.settle_at(int(times[idx[k]]))
        rows.append(_bin_optimum(fac, lim, rack_lim, float(dews[k]), chw0))
    fallback = (float(safe.fws_c), float(safe.tcs_c.min()), float(safe.dp_kpa.max()), chw0)
    table = np.array([r if r is not None else (np.nan,) * 4 for r in rows])
    # Empty or infeasible bins take the next warmer tested bin's row (the safe defaults above the warmest).
    nxt = np.array(fallback)
    for b in range(len(rows) - 1, -1, -1):
        if np.isnan(table[b]).any():
            table[b] = nxt
        nxt = table[b]
    # Monotone toward safety: no colder bin's water warmer than a warmer bin's, no warmer bin's dp lower than a
    # colder bin's (each lowers a temperature or raises a dp where the tests were not monotone).
    for col in (0, 1):
        table[:, col] = np.minimum.accumulate(table[::-1, col])[::-1]
    table[:, 2] = np.maximum.accumulate(table[:, 2])
    return BinTable(sink_name, upper, table[:, 0], table[:, 1], table[:, 2], table[:, 3])
