"""The safety guard: input checks, the independent hard-limit check before any write, and the thermal guard.

Two layers, after DeepMind's published design for data-centre cooling: the supervisor's own constraints (the
learned model's pessimistic hottest GPU, the approach, the dew point, rate limits) choose the setpoints; then this
module, which shares no code path with the optimiser, verifies every value against the hard limits just before it
is written and refuses anything it cannot verify. Bad or stale inputs make the supervisor hold, and a hold that
lasts ``hold_revert_s`` reverts to the safe defaults: site-wide inputs (facility water, outdoor air, facility power)
for the whole site, a CDU's own inputs (its racks' GPU series, its TCS supply and setpoints, its alarm word) for that
CDU only. The thermal guard runs at the collectors' rate and, when a
measured GPU or coolant temperature crosses its alarm limit, moves at once to colder water and more flow, skipping
the rate limit in the safe direction only.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from control.policy import Limits, dew_point_c
from control.types import Arr, Setpoints, Snapshot

_TOL = 1e-6


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of a check: ``ok`` or the reasons it failed (each names the device, point and value)."""

    ok: bool
    reasons: tuple[str, ...] = ()


def check_site_inputs(snap: Snapshot, limits: Limits, age_s: float | None = None) -> Verdict:
    """Site-wide inputs fit to decide on: facility water, outdoor air, facility power and the FWS setpoint finite,
    and none older than ``stale_s`` (``age_s``: the oldest site-wide reading; None: the snapshot's oldest of all)."""
    reasons: list[str] = []
    age = snap.max_age_s if age_s is None else age_s
    if age > limits.cfg.stale_s:
        reasons.append(f"stale input: oldest reading {age:.0f} s old (limit {limits.cfg.stale_s:g} s)")
    for name, v in (("FWS supply", snap.fws_supply_c), ("outdoor dry bulb", snap.drybulb_c),
                    ("outdoor wet bulb", snap.wetbulb_c), ("facility power", snap.facility_kw),
                    ("FWS setpoint", snap.current.fws_c)):
        if not math.isfinite(v):
            reasons.append(f"bad input: {name} missing or NaN")
    return Verdict(not reasons, tuple(reasons))


def check_cdu_inputs(snap: Snapshot, limits: Limits, ages_s: Arr | None = None) -> list[tuple[str, ...]]:
    """Per CDU, why its own inputs are unfit (empty: fit): its hottest GPU, GPU utilisation, TCS supply and
    setpoints finite, and (with ``ages_s``: the oldest reading of each CDU and its racks) none older than
    ``stale_s``."""
    stale = limits.cfg.stale_s
    out: list[tuple[str, ...]] = []
    for i in range(len(snap.cdu_names)):
        r: list[str] = []
        if ages_s is not None and ages_s[i] > stale:
            r.append(f"stale input: oldest reading {ages_s[i]:.0f} s old (limit {stale:g} s)")
        for name, arr in (("hottest GPU", snap.gpu_max_c), ("GPU utilisation", snap.gpu_util_pct),
                          ("TCS supply", snap.tcs_supply_c), ("TCS setpoint", snap.current.tcs_c),
                          ("dp setpoint", snap.current.dp_kpa)):
            if not math.isfinite(arr[i]):
                r.append(f"bad input: {name} missing or NaN")
        out.append(tuple(r))
    return out


def alarmed_cdus(snap: Snapshot, mask: int = ~0) -> dict[str, str]:
    """CDUs whose device alarm word has a bit of ``mask`` set, with the snapshot's note (``"<cdu>: alarm word N"``,
    as :class:`control.snapshot.SnapshotBuilder` writes it)."""
    names = set(snap.cdu_names)
    out: dict[str, str] = {}
    for note in snap.alarms:
        cdu, _, rest = note.partition(":")
        word = rest.strip().removeprefix("alarm word").strip()
        if cdu in names and (not word.lstrip("-").isdigit() or int(word) & mask):
            out[cdu] = note.strip()
    return out


def verify(sp: Setpoints, prev: Setpoints, snap: Snapshot, limits: Limits, *, rate: bool = True,
           exempt: Collection[tuple[str, str]] = (), cold_free: bool = False) -> Verdict:
    """Independent hard-limit check of setpoints about to be written.

    The rate check (change from ``prev`` per interval) is skipped for every point with ``rate`` False, for the
    ``(device, point)`` pairs in ``exempt`` (an operator override exempts only its own point; a CDU reverting to its
    safe defaults), and with ``cold_free`` for moves toward colder water or more flow (the thermal guard's and the
    fast path's safe direction); the bounds, approach and dew-point checks always apply.
    """
    c = limits.cfg
    r: list[str] = []
    p = limits.plant_device

    def rated(dev: str, point: str, step: float) -> bool:
        """Whether a move of ``step`` (positive: warmer or less flow) on this point is rate-checked."""
        return rate and (dev, point) not in exempt and not (cold_free and step <= 0)
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
        if (math.isfinite(prev.tcs_c[i]) and rated(cdu, limits.tcs_point, t - prev.tcs_c[i])
                and abs(t - prev.tcs_c[i]) > c.max_step_tcs_k + _TOL):
            r.append(f"{cdu}.{limits.tcs_point}: step {t - prev.tcs_c[i]:+.2f} K exceeds {c.max_step_tcs_k:g} K")
        if (math.isfinite(prev.dp_kpa[i]) and rated(cdu, limits.dp_point, prev.dp_kpa[i] - d)
                and abs(d - prev.dp_kpa[i]) > c.max_step_dp_kpa + _TOL):
            r.append(f"{cdu}.{limits.dp_point}: step {d - prev.dp_kpa[i]:+.1f} kPa exceeds {c.max_step_dp_kpa:g}")
    if (math.isfinite(prev.fws_c) and rated(p, limits.fws_point, sp.fws_c - prev.fws_c)
            and abs(sp.fws_c - prev.fws_c) > c.max_step_fws_k + _TOL):
        r.append(f"{p}.{limits.fws_point}: step {sp.fws_c - prev.fws_c:+.2f} K exceeds {c.max_step_fws_k:g} K")
    if limits.chw_point is not None and math.isfinite(sp.chw_c):  # NaN: the chilled-water setpoint is left alone
        q = f"{p}.{limits.chw_point}"
        if not limits.chw_lo - _TOL <= sp.chw_c <= limits.chw_hi + _TOL:
            r.append(f"{q}: {sp.chw_c:g} outside [{limits.chw_lo:g}, {limits.chw_hi:g}] °C")
        if (math.isfinite(prev.chw_c) and rated(p, limits.chw_point, sp.chw_c - prev.chw_c)
                and abs(sp.chw_c - prev.chw_c) > c.max_step_fws_k + _TOL):
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


def hot_cdus(snap: Snapshot, limits: Limits) -> npt.NDArray[np.bool_]:
    """Per CDU: whether its hottest GPU or its TCS supply is past the thermal guard's alarm limit."""
    c = limits.cfg
    with np.errstate(invalid="ignore"):
        return np.asarray((snap.gpu_max_c >= limits.gpu_limit_c - c.alarm_gpu_k) | (snap.tcs_supply_c > c.alarm_tcs_c))


def cooling_response(snap: Snapshot, limits: Limits) -> Setpoints:
    """Setpoints the thermal guard writes at once: never warmer than now nor than the safe defaults, with the
    alarmed CDUs two rate steps colder and at more pressure (the cold direction skips the rate limit)."""
    c, cur, safe = limits.cfg, snap.current, limits.safe
    base_t = np.where(np.isfinite(cur.tcs_c), np.minimum(cur.tcs_c, safe.tcs_c), safe.tcs_c)
    base_d = np.where(np.isfinite(cur.dp_kpa), np.maximum(cur.dp_kpa, safe.dp_kpa), safe.dp_kpa)
    hot = hot_cdus(snap, limits)
    tcs = np.where(hot, base_t - 2 * c.max_step_tcs_k, base_t)
    dp = np.where(hot, base_d + 2 * c.max_step_dp_kpa, base_d)
    fws = min(cur.fws_c if math.isfinite(cur.fws_c) else safe.fws_c, safe.fws_c)
    if hot.any():
        fws -= 2 * c.max_step_fws_k
    chw = min(cur.chw_c, safe.chw_c) if math.isfinite(cur.chw_c) else safe.chw_c
    dew = dew_point_c(snap.drybulb_c, snap.wetbulb_c) if math.isfinite(snap.wetbulb_c) else None
    return limits.clip(Setpoints(tcs, dp, fws, chw), dew)
