"""The evaluation's hindsight and foresight references: the oracle and the best fixed setpoints.

The oracle optimises each decision with the true physics through the facility's what-if interface; the best fixed
setpoints are searched in hindsight over the evaluated days. Both read the simulated physics, which no deployed
controller can: they bound what a controller could achieve (see :mod:`app.evaluation` for why the evaluation lives
in the composition root).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import numpy as np

from aidc.errors import DataError
from app.evaluation.harness import EvalSetup, Kpis, SimPlant, evaluate
from control.policy import Limits, dew_point_c
from control.types import Decision, Setpoints, Snapshot
from simulators.facility import Facility
from simulators.interface import Setpoints as SimSetpoints
from simulators.interface import WhatIf

# The CRAH chilled-water setpoint is not searched yet: priced at steady state under the load of now, warm chilled
# water is cheaper at idle (Phoenix, July, 5 % load: 1,541 kW at 18 °C against 1,549 kW at 14 °C), but under
# hall-wide steps the CRAH loop then meets full load warm, where it costs far more (5,199 kW at 14 °C, 6,672 kW at
# 18 °C): on Phoenix day 182 under ai-steps the oracle searching it used 14.6 % more facility energy than without.
# Searching it needs the chilled-water loop's recovery priced over the look-ahead (issue 22 follow-up).
SEARCH_CHW = False
RESEARCH_UTIL_PCT = 15.0  # all-writable oracle: a hall utilisation change this large since its last full search
ORACLE_HEADROOM_K = 1.0  # oracle: load can rise before its next re-optimisation
BEST_FIXED_TRIES = 5  # best fixed: candidates run through the full evaluation at most
SCOPES = ("all-writable", "uniform")  # what the oracle searches (OracleController.scope)
DP_PER_K = 15.0  # kPa of dp moved with each K of temperature in a local step
MAX_SWEEPS = 6  # coordinate-descent sweeps at 1 K after a full search (2 more at 0.5 K)
WARMUP_REOPT = 3.0  # all-writable: full searches this many times rarer in the uncounted warm-up
TWIN_EXTRA_STEPS = 2  # all-writable: the transient check steps this many steps past the interval
MAX_CDU_GROUPS = 8  # all-writable: up to this many CDUs each get their own TCS and dp, beyond it alike ones share

# --- the oracle: optimises each decision with the true physics ----------------------------------------------

TCS_OFFSETS_K = np.array([3.0, 4.5, 6.0, 8.0, 11.0])  # TCS supply setpoint − FWS supply setpoint on the coarse grid


def uniform_candidates(fac: Facility, fws: np.ndarray, offset: np.ndarray, dp: np.ndarray,
                       lim: Limits, chw: np.ndarray | None = None) -> SimSetpoints:
    """What-if candidates with one TCS and dp for every CDU: FWS, TCS = FWS + offset and dp, clipped to the
    site's absolute bounds (the chilled-water setpoint ``chw``, or where it is when None)."""
    f = np.clip(fws, lim.fws_lo, lim.fws_hi)
    t = np.clip(f + offset, lim.tcs_lo, lim.tcs_hi)
    d = np.clip(dp, lim.dp_lo, lim.dp_hi)
    return SimSetpoints.grid(fac.setpoints(), fws_supply_c=f, tcs_supply_c=t, dp_kpa=d, chw_supply_c=chw)


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


def cdu_groups(setup: EvalSetup, max_groups: int = MAX_CDU_GROUPS) -> tuple[tuple[int, ...], ...]:
    """CDUs that share one TCS and dp in the all-writable search (indices into ``limits.cdu_names``).

    Up to ``max_groups`` CDUs, every CDU has its own (their racks' loads differ even where their GPUs are alike);
    beyond that, CDUs whose racks are alike (the same multiset of GPU model, GPU count, rated power and workload)
    share one, so the search stays tractable at 1,000 racks.
    """
    site, lim = setup.site, setup.limits
    if len(lim.cdu_names) <= max_groups:
        return tuple((i,) for i in range(len(lim.cdu_names)))
    default = site.config.simulation.workload
    rack_key: dict[str, tuple[str, int, float, str]] = {}
    for hall, rack in site.racks():
        kind = rack.workload or getattr(hall, "workload", None) or default
        rack_key[rack.name] = (rack.gpu_model.upper(), int(rack.gpus), float(rack.rated_kw), str(kind))
    racks = {d.name: tuple(getattr(d.config, "racks", ())) for d in site.devices}
    groups: dict[tuple[tuple[str, int, float, str], ...], list[int]] = {}
    for i, cdu in enumerate(lim.cdu_names):
        key = tuple(sorted(rack_key[r] for r in racks.get(cdu, ()) if r in rack_key))
        groups.setdefault(key, []).append(i)
    return tuple(tuple(g) for g in groups.values())


def _objective(w: WhatIf) -> np.ndarray:
    """What the oracle minimises over candidates (lower is better): true facility power per unit of work (W per
    full-clock GPU), so a saving bought with clocks lost at the power cap or to heat does not count; with every
    clock at 100 % this orders candidates as facility power does (the load is the same for all of them)."""
    work = np.maximum(np.asarray(w.work_rate, dtype=np.float64), 1e-6)
    return np.asarray(w.facility_power_w, dtype=np.float64) / work


def _rows(sp: SimSetpoints, idx: np.ndarray) -> SimSetpoints:
    """Candidates ``idx`` of ``sp``."""
    return SimSetpoints(sp.tcs_supply_c[idx], sp.dp_kpa[idx], sp.fws_supply_c[idx], sp.chw_supply_c[idx])


class OracleController:
    """Picks, each decision, the setpoints with the lowest true facility power that keep every constraint.

    It asks the physics through the facility's what-if interface, whole candidate sets in one vectorised call:
    each candidate is priced at steady state under the current weather and load and must be feasible under the
    highest load of the interval ahead (perfect foresight), with ``ORACLE_HEADROOM_K`` of extra GPU margin. A coarse
    grid over the site's range runs every ``reopt_s`` and a local search around the last choice at every decision,
    so it follows load and weather between full searches. The choice is then checked by stepping a copy of the
    plant through the interval; where a transient would cross limit − margin, it chooses again with more headroom.

    What it searches (``scope``):

    ========================  =====================================================================================
    scope                     setpoints searched
    ========================  =====================================================================================
    ``"all-writable"``        the plant's FWS supply, the CRAH chilled-water supply (where the plant's profile has
                              it writable), and TCS supply and dp per CDU (:func:`cdu_groups`: beyond
                              ``MAX_CDU_GROUPS`` CDUs, those with alike racks share one). Every ``reopt_s`` the
                              uniform coarse grid, then coordinate descent on every one of them (sweeps to
                              convergence, then one sweep a decision); feasible over two intervals of foresight,
                              the warm-up searched more coarsely (it is not counted).
    ``"uniform"``             FWS, and one TCS and dp for every CDU (FWS × TCS − FWS × dp); chilled water left at
                              its setpoint. The issue-21 oracle (the same choices), kept for comparison.
    ========================  =====================================================================================

    Rack power limits and GPU clocks are not cooling setpoints and are never written.
    """

    name = "oracle"

    def __init__(self, setup: EvalSetup, reopt_s: float = 3600.0, scope: str = "all-writable") -> None:
        if scope not in SCOPES:
            raise DataError(f"oracle scope {scope!r}: expected one of {', '.join(SCOPES)}")
        self.setup = setup
        self.scope = scope
        self.reopt_s = reopt_s
        self.lim = setup.limits
        self.fac: Facility | None = None
        self.rack_lim: np.ndarray | None = None
        self.last_full_ns: int | None = None
        self.util_at_full = math.nan
        self.choice: tuple[float, float, float] | None = None  # uniform (FWS, TCS − FWS, dp)
        self.x: np.ndarray | None = None  # all-writable: [FWS, chw, TCS per group..., dp per group...]
        self.grid = coarse_grid(self.lim)
        self.groups = cdu_groups(setup) if scope == "all-writable" else (tuple(range(len(self.lim.cdu_names))),)
        self.cdu_group = np.zeros(len(self.lim.cdu_names), dtype=np.int64)
        for g, members in enumerate(self.groups):
            self.cdu_group[list(members)] = g
        self.search_chw = SEARCH_CHW and scope == "all-writable" and self.lim.chw_point is not None
        self.part = 0  # which half of the coordinates the next sweep moves
        # Intervals of perfect foresight a candidate must be feasible over. Per-CDU setpoints leave no CDU the slack
        # one shared TCS leaves the cooler CDUs, so a load step just after the interval would find a CDU at its edge
        # with lags too slow to follow: the all-writable oracle looks one interval further.
        self.lookahead = 2.0 if scope == "all-writable" else 1.0
        self.count_from_ns = 0  # the evaluated day's start: decisions before it are the uncounted warm-up

    def bind(self, fac: Facility) -> None:
        """Use this facility for the next decisions."""
        self.fac = fac
        self.last_full_ns = None
        self.util_at_full = math.nan
        self.choice = None
        self.x = None
        self.part = 0
        self.rack_lim = self.setup.rack_limits(fac)
        self.count_from_ns = fac.t_ns + int(self.setup.warmup_h * 3.6e12)

    # --- scoring ------------------------------------------------------------------------------------------------

    def _score(self, cands: SimSetpoints, dew: float, headroom_k: float
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Objective of each candidate (inf where infeasible under the interval's peak), its facility power (W, NaN
        where not priced) and the peak result's worst GPU excess over its limit (for choosing when nothing is
        feasible)."""
        assert self.fac is not None
        assert self.rack_lim is not None
        # Feasible under the highest load of the interval ahead (perfect foresight), priced at the load of now;
        # only the feasible are priced (the what-if is per candidate, so the prices are the same).
        peak = self.fac.what_if(cands, peak_s=self.lim.cfg.interval_s * self.lookahead)
        ok = whatif_ok(peak, self.rack_lim, self.lim, dew, headroom_k)
        cost = np.full(cands.n, np.inf)
        power = np.full(cands.n, np.nan)
        idx = np.flatnonzero(ok)
        if len(idx):
            w = self.fac.what_if(_rows(cands, idx))
            cost[idx] = _objective(w)
            power[idx] = w.facility_power_w
        return cost, (peak.gpu_temp_max_c - self.rack_lim).max(axis=1), power

    def _pick(self, cands: SimSetpoints, dew: float, headroom_k: float) -> tuple[int, float, bool]:
        """Index of the best feasible candidate (else the coolest), its facility power in kW and feasibility."""
        cost, excess, power = self._score(cands, dew, headroom_k)
        if np.isfinite(cost).any():
            j = int(np.argmin(cost))
            return j, float(power[j]) / 1000.0, True
        j = int(np.argmin(excess))  # nothing feasible: the coolest candidate
        assert self.fac is not None
        return j, float(self.fac.what_if(_rows(cands, np.array([j]))).facility_power_w[0]) / 1000.0, False

    # --- uniform search ----------------------------------------------------------------------------------------

    def _best(self, f: np.ndarray, o: np.ndarray, d: np.ndarray, dew: float, headroom_k: float = ORACLE_HEADROOM_K
              ) -> tuple[tuple[float, float, float], float, bool]:
        assert self.fac is not None
        j, kw, ok = self._pick(uniform_candidates(self.fac, f, o, d, self.lim), dew, headroom_k)
        return (float(f[j]), float(o[j]), float(d[j])), kw, ok

    @staticmethod
    def _local(c: tuple[float, float, float], step: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return neighbourhood(*c, step, 15.0 * step)

    def _uniform_search(self, full: bool, dew: float, headroom_k: float) -> tuple[float, bool]:
        """The coarse grid (``full``), then the 27-point neighbourhood at 1 K / 15 kPa (and half that after a full
        search); returns the objective (kW) and feasibility of the choice."""
        kw, ok = math.nan, False
        if full or self.choice is None:
            self.choice, kw, ok = self._best(*self.grid, dew, headroom_k)
        assert self.choice is not None
        for step in (1.0, 0.5) if full else (1.0,):
            self.choice, kw, ok = self._best(*self._local(self.choice, step), dew, headroom_k)
        return kw, ok

    # --- all-writable search -----------------------------------------------------------------------------------

    def _x_of_choice(self) -> np.ndarray:
        """The uniform choice as an all-writable vector (chilled water where it is now)."""
        assert self.choice is not None
        assert self.fac is not None
        tcs, dp, fws = uniform_setpoints(*self.choice, self.lim)
        ng = len(self.groups)
        chw = float(self.fac.setpoints().chw_supply_c[0])
        return np.concatenate([[fws, chw], np.full(ng, tcs), np.full(ng, dp)])

    def _clip_x(self, x: np.ndarray) -> np.ndarray:
        """Rows of ``x`` inside the site's bounds, each TCS at least 1 K above its FWS."""
        lim, ng = self.lim, len(self.groups)
        x = np.array(x, dtype=np.float64, ndmin=2)
        x[:, 0] = np.clip(x[:, 0], lim.fws_lo, lim.fws_hi)
        if self.search_chw:
            x[:, 1] = np.clip(x[:, 1], lim.chw_lo, lim.chw_hi)
        tcs = x[:, 2:2 + ng]
        x[:, 2:2 + ng] = np.clip(np.maximum(tcs, x[:, :1] + 1.0), lim.tcs_lo, lim.tcs_hi)
        x[:, 2 + ng:] = np.clip(x[:, 2 + ng:], lim.dp_lo, lim.dp_hi)
        return x

    def _cands(self, x: np.ndarray) -> SimSetpoints:
        """What-if candidates of the rows of ``x``: each CDU at its group's TCS and dp."""
        assert self.fac is not None
        ng = len(self.groups)
        return SimSetpoints.grid(self.fac.setpoints(), fws_supply_c=x[:, 0], chw_supply_c=x[:, 1],
                                 tcs_supply_c=x[:, 2:2 + ng][:, self.cdu_group],
                                 dp_kpa=x[:, 2 + ng:][:, self.cdu_group])

    def _moves(self, step: float, part: int) -> tuple[np.ndarray, np.ndarray]:
        """Coordinate moves of one sweep and the block of each (moves of one block change the same coordinates;
        −1: a joint move, tried alone). Every sweep moves FWS and chilled water; sweeps alternate between the
        temperatures (``part`` 0: each group's TCS, and FWS with every TCS) and the pressures (1: each group's dp,
        and every dp together), which halves a sweep's what-if candidates."""
        ng = len(self.groups)
        dim = 2 + 2 * ng
        rows: list[np.ndarray] = []
        blocks: list[int] = []

        def add(cols: list[int], delta: float, block: int) -> None:
            for sign in (-1.0, 1.0):
                m = np.zeros(dim)
                m[cols] = sign * delta
                rows.append(m)
                blocks.append(block)

        add([0], step, 0)
        if self.search_chw:
            add([1], step, 1)
        if part == 0:
            for g in range(ng):
                add([2 + g], step, 2 + g)
            add([0, *range(2, 2 + ng)], step, -1)
        else:
            for g in range(ng):
                add([2 + ng + g], DP_PER_K * step, 2 + ng + g)
            if ng > 1:
                add(list(range(2 + ng, dim)), DP_PER_K * step, -1)
        return np.array(rows), np.array(blocks)

    def _sweep(self, step: float, dew: float, headroom_k: float) -> tuple[float, bool, bool]:
        """One coordinate-descent sweep from ``self.x``: every move priced in one what-if call, then the best move
        of every block together; keeps the cheapest feasible. Returns (facility kW, feasible, improved)."""
        assert self.x is not None
        moves, blocks = self._moves(step, self.part)
        self.part ^= 1
        x = self._clip_x(np.vstack([self.x, self.x + moves]))
        cost, excess, power = self._score(self._cands(x), dew, headroom_k)
        base = cost[0]
        # Blocks change disjoint coordinates: their best improving moves taken together.
        combined = self.x.copy()
        n_better = 0
        for b in np.unique(blocks[blocks >= 0]):
            rows = np.flatnonzero(blocks == b) + 1
            k = rows[int(np.argmin(cost[rows]))]
            if cost[k] < base:
                combined += moves[k - 1]
                n_better += 1
        if n_better > 1:
            xc = self._clip_x(combined)
            cc, _, pc = self._score(self._cands(xc), dew, headroom_k)
            x, cost, power = np.vstack([x, xc]), np.concatenate([cost, cc]), np.concatenate([power, pc])
        if np.isfinite(cost).any():
            j = int(np.argmin(cost))
            self.x = x[j]
            return float(power[j]) / 1000.0, True, j != 0
        self.x = x[int(np.argmin(excess))]  # nothing feasible: toward the coolest
        return math.nan, False, True

    def _all_search(self, full: bool, dew: float, headroom_k: float) -> tuple[float, bool]:
        """Coordinate descent on every writable setpoint. A full search starts it from the better of the uniform
        grid's best and the last choice and sweeps until neither part improves (at 1 K / 15 kPa, then half that);
        otherwise one sweep from the last choice, and a full search where that finds nothing feasible."""
        kw, ok = math.nan, False
        if full or self.x is None:
            assert self.fac is not None
            j, _, _ = self._pick(uniform_candidates(self.fac, *self.grid, self.lim), dew, headroom_k)
            self.choice = (float(self.grid[0][j]), float(self.grid[1][j]), float(self.grid[2][j]))
            start = self._x_of_choice()
            if self.x is not None:  # the last choice may be better than the grid's best: start at the better
                both = self._clip_x(np.vstack([start, self.x]))
                cost, _, _ = self._score(self._cands(both), dew, headroom_k)
                start = both[1] if cost[1] < cost[0] else both[0]
            self.x = start
            for step, most in ((1.0, MAX_SWEEPS), (0.5, 2)):
                quiet = 0  # sweeps in a row that did not improve: both parts quiet ends this step size
                for _ in range(most):
                    kw, ok, better = self._sweep(step, dew, headroom_k)
                    quiet = 0 if better else quiet + 1
                    if quiet >= 2:
                        break
            return kw, ok
        kw, ok, _ = self._sweep(1.0, dew, headroom_k)
        if not ok:  # load or weather moved the choice out of reach: search again from the grid
            return self._all_search(True, dew, headroom_k)
        return kw, ok

    # --- decisions ---------------------------------------------------------------------------------------------

    def _search(self, full: bool, dew: float, headroom_k: float) -> tuple[float, bool]:
        if self.scope == "uniform":
            return self._uniform_search(full, dew, headroom_k)
        return self._all_search(full, dew, headroom_k)

    def decide(self, snap: Snapshot) -> Decision:
        """Full search every ``reopt_s``, then a local search around the choice."""
        n = len(snap.cdu_names)
        dew = dew_point_c(snap.drybulb_c, snap.wetbulb_c)
        if not math.isfinite(dew):
            dew = -40.0
        # All-writable: the uncounted warm-up only brings the plant to a good state for the day, so it searches
        # in full every WARMUP_REOPT × reopt_s, skips the transient check, and the day starts with a full search.
        warm = self.scope == "all-writable" and snap.t_ns < self.count_from_ns
        since = math.inf if self.last_full_ns is None else (snap.t_ns - self.last_full_ns) / 1e9
        util = float(np.nanmean(snap.gpu_util_pct)) if np.isfinite(snap.gpu_util_pct).any() else math.nan
        # A load step moves the optimum further than the descent's one-coordinate steps travel between full searches
        # (under ai-steps it stayed at full-load setpoints through the idle hours): search in full after one.
        stepped = not abs(util - self.util_at_full) <= RESEARCH_UTIL_PCT
        full = (self.choice is None or since >= self.reopt_s * (WARMUP_REOPT if warm else 1.0)
                or (not warm and self.scope == "all-writable" and snap.t_ns - since * 1e9 < self.count_from_ns)
                or (self.scope == "all-writable" and stepped))
        if full:
            self.last_full_ns = snap.t_ns
            self.util_at_full = util
        kw, ok = self._search(full, dew, ORACLE_HEADROOM_K)
        sp = self._setpoints(n)
        # Steady states miss the loops' transients: step a copy of the plant through the interval at the choice
        # and, where any GPU would pass limit − margin, take more headroom and choose again.
        extra = 0.0
        excess = -math.inf if warm else self._interval_excess(sp)
        best = (excess, sp)
        while excess > 0 and extra < 4.0:
            extra += 1.0
            # A local step first; the all-writable search, whose steps move one coordinate, then searches in full.
            if extra == 1.0 or self.scope == "uniform":
                kw, ok = self._search(False, dew, ORACLE_HEADROOM_K + extra)
            if not ok or (extra > 1.0 and self.scope == "all-writable"):
                kw, ok = self._search(True, dew, ORACLE_HEADROOM_K + extra)
            sp = self._setpoints(n)
            excess = self._interval_excess(sp)
            best = min(best, (excess, sp), key=lambda e: e[0])
        if excess > 0 and self.scope == "all-writable":
            # Nothing chosen passes: hold the setpoints in force where they do better (a dp cut acts at once), else
            # the choice that crossed least.
            assert self.fac is not None
            held = self.fac.setpoints()
            now = Setpoints(held.tcs_supply_c[0], held.dp_kpa[0], float(held.fws_supply_c[0]),
                            float(held.chw_supply_c[0]) if self.search_chw else math.nan)
            best = min(best, (self._interval_excess(now), now), key=lambda e: e[0])
            sp = best[1]
        return Decision(sp, state="deciding" if ok else "fallback", predicted_facility_kw=kw)

    def _setpoints(self, n: int) -> Setpoints:
        if self.scope == "uniform" or self.x is None:
            assert self.choice is not None
            tcs, dp, fws = uniform_setpoints(*self.choice, self.lim)
            return Setpoints(np.full(n, tcs), np.full(n, dp), fws)
        ng = len(self.groups)
        x = self.x
        chw = float(x[1]) if self.search_chw else math.nan
        return Setpoints(x[2:2 + ng][self.cdu_group].copy(), x[2 + ng:][self.cdu_group].copy(), float(x[0]), chw)

    def _interval_ok(self, sp: Setpoints) -> bool:
        """Whether a copy of the plant stepped through the next interval at ``sp`` keeps every GPU below
        limit − margin (:meth:`_interval_excess`)."""
        return self._interval_excess(sp) <= 0.0

    def _interval_excess(self, sp: Setpoints) -> float:
        """How far (K) the hottest GPU of a copy of the plant stepped through the next interval at ``sp``
        (all-writable: and ``TWIN_EXTRA_STEPS`` more) passes limit − margin (less 0.2 K), at the first step where
        one does; ≤ 0 where none does (the evaluation's own steps)."""
        assert self.fac is not None
        assert self.rack_lim is not None
        fac = self.fac
        shared = [fac.weather, fac.workload, fac.params, fac.tz, self.setup.site, *self.setup.site.devices]
        twin = copy.deepcopy(fac, {id(o): o for o in shared})
        plant = SimPlant(self.setup.site, self.lim, self.setup.builder, twin)
        plant.current = Setpoints(np.full_like(sp.tcs_c, np.nan), np.full_like(sp.dp_kpa, np.nan), math.nan)
        plant.apply(sp)
        sub = max(1, round(self.lim.cfg.interval_s / self.setup.step_s))
        dt = self.lim.cfg.interval_s / sub
        ceiling = self.rack_lim - self.lim.cfg.gpu_margin_k - 0.2
        # All-writable: and the next decision's first steps, which its setpoints come too late to change.
        for _ in range(sub + (TWIN_EXTRA_STEPS if self.scope == "all-writable" else 0)):
            twin.step(dt)
            over = float((np.maximum.reduceat(twin.gpu_temp_c, twin.rack_offsets) - ceiling).max())
            if over > 0:
                return over
        return over


# --- all controllers -------------------------------------------------------------------------------------------


def best_fixed(setup: EvalSetup, say: Callable[[str], None] | None = None
               ) -> tuple[tuple[float, float, float, float], Kpis]:
    """The constant setpoints (TCS, dp, FWS, chilled water) with the lowest facility energy and no violation over
    the evaluated days (hindsight); chilled water NaN where the plant has no writable one.

    Every hour of every evaluated day, the plant is settled at the hour's weather and load and a grid of constant
    setpoints is scored at steady state through the what-if interface (feasibility under the hour's peak load);
    the grid is refined around the best. A constant chilled-water setpoint is then chosen the same way at the
    best point (it prices only the air side: no constraint depends on it) and held by every candidate. The
    cheapest candidate at each sampled GPU headroom (0 K, 0.5 K, ... up to the most headroom of all) is then run
    through the full evaluation, from the least headroom up, until one keeps every constraint minute by minute (at
    most ``BEST_FIXED_TRIES``). Where none does, the one with the fewest bad minutes is returned and its KPIs say so.
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
    chw = math.nan
    if lim.chw_point is not None and (room >= 0).any():
        j = int(np.argmin(np.where(room >= 0, e, np.inf)))
        grid = np.arange(lim.chw_lo, lim.chw_hi + 1e-9, 1.0)
        price = np.zeros(len(grid))
        for t in hours:
            fac.settle_at(t)
            one = np.ones(len(grid))
            cands = uniform_candidates(fac, f[j] * one, o[j] * one, d[j] * one, lim, grid)
            price += fac.what_if(cands).facility_power_w
        chw = float(grid[int(np.argmin(price))])
    # Try the cheapest candidate at each sampled headroom (steady states miss minute-scale transients), from the
    # least headroom up, until one keeps every constraint minute by minute.
    order: list[int] = []
    for need in (0.0, 0.5, 1.0, 2.0, 3.0, 5.0):
        if (room >= need).any():
            order.append(int(np.argmin(np.where(room >= need, e, np.inf))))
    order.append(int(np.argmax(room)))  # the most headroom of all
    tried: list[tuple[tuple[float, float, float, float], Kpis]] = []
    for i in dict.fromkeys(order):
        sp = (*uniform_setpoints(float(f[i]), float(o[i]), float(d[i]), lim), chw)
        if any(sp == t[0] for t in tried):
            continue
        if len(tried) >= BEST_FIXED_TRIES:
            break
        k = evaluate(setup, ConstantController(lim, sp[0], sp[1], sp[2], chw_c=sp[3]))
        tried.append((sp, k))
        if say is not None:
            say(f"  best fixed candidate TCS {sp[0]:.1f} dp {sp[1]:.0f} FWS {sp[2]:.1f} CHW {sp[3]:.1f}: "
                f"{k.facility_kwh:,.0f} kWh, {k.violation_minutes:.0f} violation minutes")
        if _bad(k) == 0:
            return sp, k
    if not tried:
        sp = (float(lim.safe.tcs_c[0]), float(lim.safe.dp_kpa[0]), lim.safe.fws_c, lim.safe.chw_c)
        return sp, evaluate(setup, ConstantController(lim, sp[0], sp[1], sp[2], chw_c=sp[3]))
    # Nothing constant keeps every constraint here: the one with the fewest bad minutes (they are reported).
    return min(tried, key=lambda t: (_bad(t[1]), t[1].facility_kwh))


def _bad(k: Kpis) -> float:
    return k.violation_minutes + k.throttle_minutes + k.below_dew_minutes + k.above_class_minutes
