"""The evaluation's hindsight and foresight references: the oracle and the best fixed setpoints.

The oracle optimises each decision with the true physics through the facility's what-if interface; the best fixed
setpoints are searched in hindsight over the evaluated days. Both read the simulated physics, which no deployed
controller can: they bound what a controller could achieve. One of the three modules of ``control/`` that import
``simulators/`` (with :mod:`control.harness` and :mod:`control.evaluate`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import numpy as np

from control.harness import EvalSetup, Kpis, SimPlant, evaluate
from control.policy import Limits, dew_point_c
from control.types import Decision, Setpoints, Snapshot
from simulators.facility import Facility
from simulators.interface import Setpoints as SimSetpoints
from simulators.interface import WhatIf

ORACLE_HEADROOM_K = 1.0  # oracle: load can rise before its next re-optimisation
BEST_FIXED_TRIES = 5  # best fixed: candidates run through the full evaluation at most

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
