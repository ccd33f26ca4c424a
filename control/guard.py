"""The safety guard: input checks, the independent hard-limit check before any write, and the thermal guard.

Two layers, after DeepMind's published design for data-centre cooling: the supervisor's own constraints (the
learned model's pessimistic hottest GPU, the approach, the dew point, rate limits) choose the setpoints; then this
module, which shares no code path with the optimiser, verifies every value against the hard limits just before it
is written and refuses anything it cannot verify. Bad or stale inputs make the supervisor hold, and a hold that
lasts ``hold_revert_s`` reverts to the safe defaults. The thermal guard runs at the collectors' rate and, when a
measured GPU or coolant temperature crosses its alarm limit, moves at once to colder water and more flow, skipping
the rate limit in the safe direction only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from control.policy import Limits, dew_point_c
from control.types import Setpoints, Snapshot

_TOL = 1e-6


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of a check: ``ok`` or the reasons it failed (each names the device, point and value)."""

    ok: bool
    reasons: tuple[str, ...] = ()


def check_inputs(snap: Snapshot, limits: Limits) -> Verdict:
    """Inputs fit to decide on: every value finite and none older than ``stale_s``."""
    reasons: list[str] = []
    if snap.max_age_s > limits.cfg.stale_s:
        reasons.append(f"stale input: oldest reading {snap.max_age_s:.0f} s old (limit {limits.cfg.stale_s:g} s)")
    for name, arr in (("hottest GPU", snap.gpu_max_c), ("GPU utilisation", snap.gpu_util_pct),
                      ("TCS supply", snap.tcs_supply_c), ("TCS setpoint", snap.current.tcs_c),
                      ("dp setpoint", snap.current.dp_kpa)):
        bad = ~np.isfinite(arr)
        if bad.any():
            cdus = ", ".join(snap.cdu_names[i] for i in np.flatnonzero(bad)[:3])
            reasons.append(f"bad input: {name} missing or NaN on {cdus}")
    for name, v in (("FWS supply", snap.fws_supply_c), ("outdoor dry bulb", snap.drybulb_c),
                    ("outdoor wet bulb", snap.wetbulb_c), ("facility power", snap.facility_kw),
                    ("FWS setpoint", snap.current.fws_c)):
        if not math.isfinite(v):
            reasons.append(f"bad input: {name} missing or NaN")
    return Verdict(not reasons, tuple(reasons))


def verify(sp: Setpoints, prev: Setpoints, snap: Snapshot, limits: Limits, *, rate: bool = True) -> Verdict:
    """Independent hard-limit check of setpoints about to be written (``rate`` False: operator override)."""
    c = limits.cfg
    r: list[str] = []
    p = limits.plant_device
    if not math.isfinite(sp.fws_c) or not limits.fws_lo - _TOL <= sp.fws_c <= limits.fws_hi + _TOL:
        r.append(f"{p}.{limits.fws_point}: {sp.fws_c:g} outside [{limits.fws_lo:g}, {limits.fws_hi:g}] °C"
                 + (f" (W-class {limits.w_class_c:g})" if limits.w_class_c is not None else ""))
    dew = dew_point_c(snap.drybulb_c, snap.wetbulb_c) if math.isfinite(snap.wetbulb_c) else math.nan
    for i, cdu in enumerate(limits.cdu_names):
        t, d = float(sp.tcs_c[i]), float(sp.dp_kpa[i])
        if not math.isfinite(t) or not limits.tcs_lo - _TOL <= t <= limits.tcs_hi + _TOL:
            r.append(f"{cdu}.{limits.tcs_point}: {t:g} outside [{limits.tcs_lo:g}, {limits.tcs_hi:g}] °C")
        if not math.isfinite(d) or not limits.dp_lo - _TOL <= d <= limits.dp_hi + _TOL:
            r.append(f"{cdu}.{limits.dp_point}: {d:g} outside [{limits.dp_lo:g}, {limits.dp_hi:g}] kPa")
        if math.isfinite(t) and t < sp.fws_c + c.cdu_approach_k - _TOL and t < limits.tcs_hi - _TOL:
            r.append(f"{cdu}.{limits.tcs_point}: {t:g} below FWS {sp.fws_c:g} + approach {c.cdu_approach_k:g} K")
        if math.isfinite(dew) and t < dew + c.dew_margin_k - _TOL:
            r.append(f"{cdu}.{limits.tcs_point}: {t:g} below dew point {dew:.1f} + {c.dew_margin_k:g} K")
        if rate and math.isfinite(prev.tcs_c[i]) and abs(t - prev.tcs_c[i]) > c.max_step_tcs_k + _TOL:
            r.append(f"{cdu}.{limits.tcs_point}: step {t - prev.tcs_c[i]:+.2f} K exceeds {c.max_step_tcs_k:g} K")
        if rate and math.isfinite(prev.dp_kpa[i]) and abs(d - prev.dp_kpa[i]) > c.max_step_dp_kpa + _TOL:
            r.append(f"{cdu}.{limits.dp_point}: step {d - prev.dp_kpa[i]:+.1f} kPa exceeds {c.max_step_dp_kpa:g}")
    if rate and math.isfinite(prev.fws_c) and abs(sp.fws_c - prev.fws_c) > c.max_step_fws_k + _TOL:
        r.append(f"{p}.{limits.fws_point}: step {sp.fws_c - prev.fws_c:+.2f} K exceeds {c.max_step_fws_k:g} K")
    if limits.chw_point is not None and math.isfinite(sp.chw_c):  # NaN: the chilled-water setpoint is left alone
        q = f"{p}.{limits.chw_point}"
        if not limits.chw_lo - _TOL <= sp.chw_c <= limits.chw_hi + _TOL:
            r.append(f"{q}: {sp.chw_c:g} outside [{limits.chw_lo:g}, {limits.chw_hi:g}] °C")
        if rate and math.isfinite(prev.chw_c) and abs(sp.chw_c - prev.chw_c) > c.max_step_fws_k + _TOL:
            r.append(f"{q}: step {sp.chw_c - prev.chw_c:+.2f} K exceeds {c.max_step_fws_k:g} K")
    return Verdict(not r, tuple(r))


def thermal_alarms(snap: Snapshot, limits: Limits) -> tuple[str, ...]:
    """Measured temperatures past their alarm limits (GPU within ``alarm_gpu_k`` of throttle, hot TCS supply)."""
    c = limits.cfg
    out = [
        f"{cdu}: hottest GPU {snap.gpu_max_c[i]:.1f} °C ≥ alarm {limits.gpu_limit_c[i] - c.alarm_gpu_k:.1f} °C"
        for i, cdu in enumerate(limits.cdu_names)
        if math.isfinite(snap.gpu_max_c[i]) and snap.gpu_max_c[i] >= limits.gpu_limit_c[i] - c.alarm_gpu_k
    ]
    out += [
        f"{cdu}: TCS supply {snap.tcs_supply_c[i]:.1f} °C > alarm {c.alarm_tcs_c:g} °C"
        for i, cdu in enumerate(limits.cdu_names)
        if math.isfinite(snap.tcs_supply_c[i]) and snap.tcs_supply_c[i] > c.alarm_tcs_c
    ]
    return tuple(out)


def cooling_response(snap: Snapshot, limits: Limits) -> Setpoints:
    """Setpoints the thermal guard writes at once: never warmer than now nor than the safe defaults, with the
    alarmed CDUs two rate steps colder and at more pressure (the cold direction skips the rate limit)."""
    c, cur, safe = limits.cfg, snap.current, limits.safe
    base_t = np.where(np.isfinite(cur.tcs_c), np.minimum(cur.tcs_c, safe.tcs_c), safe.tcs_c)
    base_d = np.where(np.isfinite(cur.dp_kpa), np.maximum(cur.dp_kpa, safe.dp_kpa), safe.dp_kpa)
    hot = (snap.gpu_max_c >= limits.gpu_limit_c - c.alarm_gpu_k) | (snap.tcs_supply_c > c.alarm_tcs_c)
    tcs = np.where(hot, base_t - 2 * c.max_step_tcs_k, base_t)
    dp = np.where(hot, base_d + 2 * c.max_step_dp_kpa, base_d)
    fws = min(cur.fws_c if math.isfinite(cur.fws_c) else safe.fws_c, safe.fws_c)
    if hot.any():
        fws -= 2 * c.max_step_fws_k
    chw = min(cur.chw_c, safe.chw_c) if math.isfinite(cur.chw_c) else safe.chw_c
    dew = dew_point_c(snap.drybulb_c, snap.wetbulb_c) if math.isfinite(snap.wetbulb_c) else None
    return limits.clip(Setpoints(tcs, dp, fws, chw), dew)
