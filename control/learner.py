"""The aidc controller core: learns the plant from its own telemetry and picks the cheapest safe setpoints.

States: **commissioning** (no model yet: safe exploration, bounded random steps around the current setpoints,
backing off when GPUs run warm), **deciding** (score a grid of rate-limited candidates with the online plant model in
one vectorised call and take the lowest predicted total facility power whose pessimistic hottest GPU keeps the
margin), **learning** (the model is not trusted where the plant now operates, e.g. a summer-trained model in
winter: explore within bounds as in commissioning until retraining covers it). Every snapshot becomes a training
row (the setpoints in force during the last interval and what they produced); the model is refitted every
``retrain_h`` hours on the last ``train_window_days`` of rows.

For AI halls (issue 22): every candidate's GPU constraint is judged at the load the hall can step to before the
next decision (:mod:`control.stepload`), and :meth:`LearningController.step_ready` gives the supervisor's fast path
the setpoints predicted safe at full load; candidates are scored by predicted facility power per unit of work
(utilisation × SM clock, where the site reports clocks), so a saving bought with lost clocks does not count; the
CRAH chilled-water setpoint is a candidate dimension where the plant has one, and CDUs with more GPU headroom than
the hottest get a warmer TCS; commissioning explores within a reach that widens with time around an outdoor-reset
rule (the safe defaults where the plant has no free cooler), and an untrusted model dithers around the same rule.

The rule is the core's prior (:meth:`LearningController._rule_step`): the expert rule of :mod:`control.baselines`
(FWS at the free cooler's sink plus its approach, TCS at FWS plus the CDU approach under a trim & respond cap on the
hottest GPU) with TCS lifted with load (the CDU approach again times utilisation, a warmer return to the free
cooler, within the GPU headroom measured at full load) and a pump reset (CDU dp toward the pumps' floor at idle, and
a cut below the safe dp at full load, by the share the GPU headroom measured at the hall's own full-load snapshots
allows; :meth:`LearningController.step_ready` restores the safe dp at a load step at once). Past commissioning the
model's choice replaces the rule only where the model predicts it safe at the step-to load and clearly cheaper per
unit of work, with TCS and FWS no colder than the rule's and dp its pump reset (a rate step at a time); otherwise the
core takes one rate step toward the rule, so it is never worse than the rule it learnt around by its own
prediction.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from aidc.errors import DataError
from analytics.plant_model import OnlinePlantModel
from control.baselines import ExpertController
from control.policy import Limits, dew_point_c
from control.stepload import FULL_LOAD_PCT, FULL_SEEN_PCT, LoadMemory
from control.types import Decision, Setpoints, Snapshot

NS_H = 3_600_000_000_000
_OFFS_T = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
_OFFS_F = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
_OFFS_D = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])
_OFFS_C = np.array([-1.0, 0.0, 1.0])  # chilled-water offsets (× half the plant's rate step), where writable
EXPLORE_BACKOFF_K = 3.0  # exploration turns back toward colder water within this of limit − margin
SPREAD_SIGMAS = 1.0  # ensemble standard deviations added to the predicted hottest GPU
STEP_OUT_HEADROOM_K = 4.0  # measured GPU headroom that lets a candidate step past the training data
GUARD_BAND_K = 0.5  # extra GPU headroom on top of the model's pessimistic quantile
SATURATED_VALVE_PCT = 98.0  # a CDU whose FWS valve is this open cannot cool its TCS any further
APPROACH_DECAY_K = 0.01  # the learnt CDU approach relaxes this much per snapshot toward the site's policy value
MAX_APPROACH_K = 10.0  # a learnt approach above this is a sensor or valve fault, not the exchanger
MAX_BIAS_K = 3.0  # the measured-minus-predicted GPU margin added to predictions is capped at this
HALF_LIFE_DAYS = 7.0  # training rows count half as much every this many days of data back
# Commissioning's reach (share of the way from its centre, the outdoor-reset rule, to each bound) grows linearly from
# COMM_MIN_REACH to COMM_MAX_REACH over this share of the commissioning period. Small perturbations around a good
# rule, not a walk over the envelope: the commissioning days count in every KPI, and an untrusted model falls back
# to the same rule (set on Chicago: the whole envelope cost 1.3 % of commissioning's facility energy against 0.3;
# under ai-steps, field telemetry, days 0 and 182 with the 14 commissioning days, a reach of 0.3 cost 0.33 % of the
# facility energy against 0.1 and 0.1 cost 0.04 % against 0.05: at a bound, e.g. TCS at its floor in cold weather, the
# reach only goes one way, so its mean sits off the rule; 0.1 keeps some data for the model). Without a rule (no
# free cooler with an outdoor reset, or its type unknown) the centre is the safe defaults, no good setpoints to stay
# near, and the model needs the wider data to find its savings: COMM_MAX_REACH_NO_RULE.
COMM_REACH_SHARE = 0.5
COMM_MIN_REACH = 0.02
COMM_MAX_REACH = 0.1
COMM_MAX_REACH_NO_RULE = 0.3
# The chilled-water setpoint serves only the CRAH air loop (a small share of a liquid-cooled hall's heat, and a steep
# cost where the coils run short of capacity): commissioning dithers it within this of its safe default, and the
# core moves it only where the predicted gain exceeds the model's spread (frozen, not tuned on a scored year).
CHW_EXPLORE_K = 2.0
CHW_SIGMAS = 2.0  # the predicted gain of a chilled-water move must exceed this many ensemble spreads
CHW_MIN_GAIN = 0.002  # ... and this share of facility power per unit of work (set on Chicago, steady training load)
RULE_PLANTS = frozenset({"chiller_drycooler", "chiller_tower"})  # plants whose free cooler has an outdoor reset
MIN_WORK_PCT = 1.0  # the work rate a candidate's power is divided by is at least this (an idle hall)
# The rule prior: where the plant has an outdoor reset, the core follows the commissioning engineer's rule (the
# expert rule of control.baselines: FWS at the sink plus the free cooler's approach, TCS at FWS plus the CDU approach
# under a trim & respond cap on the hottest GPU) unless the model predicts a candidate cheaper per unit of work by
# more than RULE_SIGMAS of its spread and RULE_MIN_GAIN of the rule's power: never worse than the rule it learnt
# around, by its own prediction (set on Chicago only).
RULE_SIGMAS = 1.0
RULE_MIN_GAIN = 0.001
# The rule's pump reset: below full load the CDU dp falls linearly with hall utilisation toward the pumps' floor
# (dp at the floor at idle, the safe dp from RULE_DP_FULL_PCT up), by the share of that reset the hottest GPU's
# headroom at the load the hall can step to allows: none below RULE_DP_HEADROOM_K, all from RULE_DP_GRADE_K above
# it (graded: a warm day keeps part of the reset rather than none). The headroom is measured at the hall's own
# full-load snapshots where it has run at full load within the load memory's window (RULE_DP_MEASURED, see
# LoadMemory.full_load_headroom_k), else estimated from the rise of now. The fast path restores the safe dp at a
# load step at once (:meth:`LearningController.step_ready`). Set on Chicago only.
RULE_DP_FULL_PCT = 60.0
# ... and reaches the pumps' floor at this utilisation and below: an idle hall reads a few % (the scenarios' idle is
# 5 %, DCGM's utilisation of an idle GPU is rarely 0), and a line to 0 % left its pumps 7 kPa above their floor.
RULE_DP_IDLE_PCT = 10.0
# ... and never less than this below the safe dp (at full load too): a hall whose hottest GPU has the reset's
# headroom at full load needs less flow than the safe dp gives (the all-writable oracle's full-load dp in cold
# weather: 107 kPa on Chicago, 105 on Phoenix, against the safe 120). Set on Chicago.
RULE_DP_FULL_CUT_KPA = 15.0
RULE_DP_HEADROOM_K = 4.0
RULE_DP_GRADE_K = 8.0
RULE_DP_MEASURED = True
# Nor more than this many rate steps of dp above the rule's reset: the model, which does not cross dp with load,
# traded warmer water for dp of 100-160 kPa at idle where the reset runs 47 (set on Chicago under ai-steps: +0.16 % of
# facility energy without this bound, 1,138,612 kWh against 1,136,844). Under RULE_DP_BOUND the model's dp walks to
# the reset a rate step at a time, and this bound sends the core to the rule's step while its dp is further above.
RULE_DP_MAX_ABOVE_STEPS = 1.0


USE_CHW = False  # see LearningController.__init__
# With a rule prior, the model chooses TCS and FWS only on the rule's warm side: its pessimistic margin at the
# step-to load bought cold water the rule does without, which never throttled under ai-steps (set on Chicago, the core
# after commissioning: July day 182 -0.26 % facility energy, January day 0 unchanged, 0 throttle either day).
RULE_COLD_BOUND = True
# A commissioning target (or an untrusted model's dither around the rule) moves with the rule it was drawn around
# until the next draw, rather than stay where the rule was (an idle hall kept the dp drawn around the safe dp of the
# full load before it for up to 3 h). Set on Chicago.
EXPLORE_FOLLOWS_CENTRE = True
# Commissioning around a rule draws its target as wide either side of the rule and clips it to the envelope, so a rule
# at a bound keeps about half its targets there (set on Chicago under ai-steps with the 14 commissioning days: idle
# TCS 18.7 °C and dp 52 kPa against 19.2 and 56 one-sided, -0.04 % facility energy).
EXPLORE_SYMMETRIC = True
# ... and with a rule prior, step_ready (the fast path's target at a load step) is the rule's TCS and FWS at the safe
# dp, not the model's coolest candidate (set on Chicago: a July day's steps went 4 K colder than the rule at 162 kPa).
RULE_STEP_READY = True
# ... and its CDU dp is the rule's pump reset: the model traded dp for warmer water where warmer water buys nothing
# (set on Chicago: January idle at -3 °C, dp 155 kPa against the rule's 92 for FWS 16 °C against 12; without the
# trade day 0 -0.6 %, July day 182 +0.1 %, December day 364 -0.1 %, the three together -0.2 %).
RULE_DP_BOUND = True
# An untrusted model (weather the model was not trained for, e.g. a December-trained model in July) backs off on
# short headroom to the rule's own setpoints, not a rate step colder and at more dp than the rule: the step-to
# headroom at full load reads short all of a hot afternoon (the rule's hottest GPU runs within 2 K of limit −
# margin), and the rule, whose trim & respond cap answers GPUs that do run hot, never throttled under ai-steps.
UNTRUSTED_BACKOFF_TO_RULE = True
# The rule's TCS rises with hall load above FWS + the CDU approach by the approach again times utilisation: the CDU
# then returns warmer facility water, and the free cooler's fans (P ∝ speed³) fall faster than GPU leakage rises
# (the all-writable oracle keeps TCS 5.6-6.0 K above FWS at full load and 2.3-3.4 K at idle on Chicago and Phoenix).
# Bounded by RULE_LIFT_BAND_K of GPU headroom at full load (commissioning's back-off, EXPLORE_BACKOFF_K, which is
# above the rule's trim & respond requests: the lift asks for neither) and by the rule's cap. Set on Chicago (a band
# of 3 K against 4: 1,135,868 kWh against 1,135,948, full load at 20-30 C: TCS 32.6 against 31.9, 0 violation).
RULE_LIFT_SHARE = 1.0
RULE_LIFT_BAND_K = EXPLORE_BACKOFF_K
# The rule's FWS offset above the free cooler's sink is measured on site, not taken from the design table
# (DEFAULT_HR_APPROACH_K: 5 K for a dry cooler, 4 K for a tower). A free cooler that cannot make the rule's water at
# full load (the plant reports free cooling partial or off, Role.FREE_COOLING_STATE) has the chiller trim the rest
# and its fans at full speed: the offset at full load rises by RULE_APPROACH_UP_K_H per hour of such snapshots, and
# relaxes by RULE_APPROACH_DOWN_K_H per hour of full free cooling, never below the design value. Only snapshots at
# full load (stepload.FULL_SEEN_PCT) whose FWS setpoint is the rule's unclipped sink + offset count (not one the
# trim & respond cap or the FWS bounds moved, nor the model's colder choice); below full load the offset falls
# linearly with hall utilisation to the design value at idle (the free cooler's approach grows with its heat: the
# all-writable oracle's FWS sits 6-7 K above the dry bulb at full load and 2-5 K at idle on phoenix-a100, a 6.5 K
# dry cooler). Frozen from the physics (a 1.5 K shortfall learnt within about 3 h of full load), not tuned on a
# scored year.
RULE_APPROACH_MEASURED = True
RULE_APPROACH_UP_K_H = 0.6
RULE_APPROACH_DOWN_K_H = 0.12
RULE_APPROACH_MAX_K = 12.0  # an offset above this is a fault of the free cooler or its reading, not its approach
RULE_APPROACH_TOL_K = 0.3  # the FWS setpoint in force counts as the rule's within this
# ... and where the plant reports its free cooler's fan speed (Role.FREE_COOLER_FAN_SPEED), the offset also rises
# while the fans run at RULE_APPROACH_FAN_HI_PCT or faster with the GPUs' measured full-load headroom more than
# RULE_APPROACH_ROOM_K above the lift's band (warmer water then costs the GPUs less than the fans save: fan power goes
# with speed cubed, half of full at 80 %), and relaxes while they run below RULE_APPROACH_FAN_LO_PCT (a fifth of full
# power) or the GPUs are short of the band. The free-cooling edge alone kept phoenix-a100's dry cooler (30 W/kW fans)
# flat out at FWS = dry bulb + 5 K where the all-writable oracle runs 8-9 K above it.
RULE_APPROACH_FAN_HI_PCT = 80.0
RULE_APPROACH_FAN_LO_PCT = 60.0
RULE_APPROACH_ROOM_K = 1.0
FREE_COOLING_FULL = 2.0  # Role.FREE_COOLING_STATE: 0 chiller only, 1 partial, 2 full
# The rule's TCS is never warmer than the TCS supply at which the hall's own full-load snapshots of the load memory's
# window put the hottest GPU at limit − margin (LoadMemory.full_load_tcs_c), less RULE_FULL_LOAD_BAND_K, at any load:
# on a warm humid day the rule's water (a tower's wet bulb + its approach + the CDU approach) can be warmer than a
# leaky GPU tolerates at full load, and its trim & respond cap learns that only after the GPUs ran hot, one step at
# a time (chicago-tower under ai-steps: 265 minutes above limit − margin and 4 throttled at steps from idle on warm
# days). The fast path's step target is the rule's, so a step finds the water already cold enough. The band covers
# the field telemetry's 0.1 K registers and noise (set from the sensors, not tuned on a scored year).
RULE_FULL_LOAD_BOUND = True
RULE_FULL_LOAD_BAND_K = 1.0

def _hall_util(snap: Snapshot, missing: float = math.nan) -> float:
    """The hall's mean GPU utilisation (%), ``missing`` where no CDU reports one."""
    return float(np.nanmean(snap.gpu_util_pct)) if np.isfinite(snap.gpu_util_pct).any() else missing


class LearningController:
    """Supervisory core of aidc; see the module docstring."""

    name = "aidc"

    def __init__(self, limits: Limits, *, seed: int = 0, plant_type: str | None = None) -> None:
        self.lim = limits
        # The plant's type names the outdoor sink its free cooler follows (commissioning's outdoor-reset centre);
        # None: commissioning explores around the profiles' safe defaults. The supervisor sets it from the site.
        self.plant_type = plant_type
        self.cfg = limits.cfg
        self.rng = np.random.default_rng(seed)
        maxlen = int(self.cfg.train_window_days * 86400 / self.cfg.interval_s) + 1
        # (t, features, facility kW, GPU margin K, IT kW, work rate %: NaN without clocks)
        self.rows: deque[tuple[int, np.ndarray, float, float, float, float]] = deque(maxlen=maxlen)
        self.model: OnlinePlantModel | None = None
        self.first_ns: int | None = None
        self.last_fit_ns: int | None = None
        self.explore_target: np.ndarray | None = None
        self.explore_until_ns = 0
        # Where the target was drawn around (TCS, dp, FWS: the rule's centre then, or zeros for a dither around the
        # current setpoints): the target moves with the centre until the next draw (EXPLORE_FOLLOWS_CENTRE).
        self.explore_anchor = np.zeros(3)
        self.state = "commissioning"
        self.fit_error = ""
        self.last: Decision | None = None
        self.approach_k = self.cfg.cdu_approach_k
        self.load = LoadMemory(self.cfg.interval_s)
        self.bias_k = 0.0
        # The chilled-water setpoint as a feature and a candidate dimension: off until the oracle can search it too
        # (app/evaluation/oracle.py SEARCH_CHW: warm chilled water at idle meets a load step expensively).
        self.use_chw = USE_CHW and limits.chw_point is not None
        self._rule: ExpertController | None = None  # the rule prior, made at the first decision (plant known then)
        # The rule's FWS offset above the sink at full load, measured on site (RULE_APPROACH_MEASURED); None until
        # the rule is made (then the design value of its plant type).
        self.approach_full_k: float | None = None
        self._rule_fws_free: float = math.nan  # the rule's unclipped FWS (sink + offset) at the last decision
        self._rule_t_ns: int | None = None  # ... and its time
        self._rule_sp: Setpoints | None = None  # the rule's setpoints at this decision (None: no rule)

    # --- data --------------------------------------------------------------------------------------------

    def _features(self, snap: Snapshot, sp: Setpoints) -> np.ndarray:
        # TCS: the coldest CDU's, which is the hottest CDU's (the others may carry a warmer trim, see stepload).
        cols = [float(np.nanmean(snap.gpu_util_pct)), snap.drybulb_c, snap.wetbulb_c,
                float(sp.tcs_c.min()), float(sp.dp_kpa.mean()), float(sp.fws_c)]
        if self.use_chw:
            cols.append(float(sp.chw_c) if math.isfinite(sp.chw_c) else float(self.lim.safe.chw_c))
        return np.array(cols)

    def observe(self, snap: Snapshot) -> None:
        """Keep the snapshot as a training row: the setpoints in force and what they produced."""
        if not snap.finite or not math.isfinite(snap.facility_kw):
            return
        margin = float(np.max(snap.gpu_max_c - self.lim.gpu_limit_c))
        # Train on what the plant achieved (measured supply temperatures), not on what was asked: the loops lag
        # their setpoints by minutes, and candidates are scored as steady states where achieved = setpoint.
        achieved = Setpoints(snap.tcs_supply_c, snap.current.dp_kpa, snap.fws_supply_c, snap.current.chw_c)
        x = self._features(snap, achieved)
        if not np.isfinite(x).all():
            return
        work = snap.work_pct if snap.has_clocks else math.nan
        self.rows.append((snap.t_ns, x, snap.facility_kw, margin, snap.it_kw, work))
        # The CDU exchanger's approach where the TCS could not reach its setpoint with the FWS valve wide open (a
        # saturated exchanger; a loop still settling after a setpoint change is not): candidates keep clear of it.
        sat = (snap.tcs_supply_c > snap.current.tcs_c + 0.3) & (snap.valve_pct >= SATURATED_VALVE_PCT)
        self.approach_k = max(self.cfg.cdu_approach_k, self.approach_k - APPROACH_DECAY_K)
        if sat.any():
            seen = float(np.max(snap.tcs_supply_c[sat] - snap.fws_supply_c)) + 0.3
            self.approach_k = min(max(self.approach_k, seen), MAX_APPROACH_K)

    def retrain(self, now_ns: int) -> None:
        """Refit the online model on the rows kept."""
        if len(self.rows) < 200:
            return
        x = np.stack([r[1] for r in self.rows])
        facility = np.array([r[2] for r in self.rows])
        it = np.array([r[4] for r in self.rows])
        margin = np.array([r[3] for r in self.rows])
        work = np.array([r[5] for r in self.rows])
        y: dict[str, np.ndarray]
        if np.isfinite(it).all():
            # IT and the rest apart: IT power depends on load and coolant only, the rest on the plant and weather.
            y = {"it_power_kw": it, "nonit_power_kw": facility - it, "gpu_margin_c": margin}
        else:
            y = {"facility_power_kw": facility, "gpu_margin_c": margin}
        if np.isfinite(work).all():  # clocks reported throughout the window: learn the work rate beside the power
            y["work_rate_pct"] = work
        from aidc.clock import format_ns

        try:
            self.model = OnlinePlantModel.fit(
                x, y, window=(format_ns(self.rows[0][0]), format_ns(self.rows[-1][0])), seed=len(self.rows),
                half_life_rows=HALF_LIFE_DAYS * 86400.0 / self.cfg.interval_s,
            )
            self.fit_error = ""
        except (DataError, np.linalg.LinAlgError) as exc:
            self.fit_error = str(exc)
        self.last_fit_ns = now_ns

    # --- deciding ----------------------------------------------------------------------------------------

    def _dew(self, snap: Snapshot) -> float:
        return dew_point_c(snap.drybulb_c, snap.wetbulb_c) + 0.3

    def _reach(self, snap: Snapshot) -> float:
        """Commissioning's reach: the share of the way from the safe defaults to each bound it may explore now."""
        span = COMM_REACH_SHARE * self.cfg.commissioning_days * 86400e9
        if self.first_ns is None or span <= 0:
            return 1.0
        top = COMM_MAX_REACH if self._rule_sp is not None else COMM_MAX_REACH_NO_RULE
        return top * float(np.clip((snap.t_ns - self.first_ns) / span, COMM_MIN_REACH, 1.0))

    def _setpoints(self, snap: Snapshot, t: float, d: float, f: float, c: float) -> Setpoints:
        """Hall-level choices as per-CDU setpoints (CDUs with room get a warmer TCS), clipped and rate-limited."""
        n = len(snap.cdu_names)
        sp = Setpoints(t + self.load.trims_k(n), np.full(n, d), f, c if self.use_chw else math.nan)
        return self.lim.step_toward(sp, snap.current, self._dew(snap))

    def _rule_step(self, snap: Snapshot) -> Setpoints | None:
        """The rule prior's setpoints for ``snap`` (its trim & respond cap advances once per decision), or None where
        the plant has no free cooler with an outdoor reset or its type or the outdoor reading is unknown."""
        sink = snap.wetbulb_c if self.plant_type == "chiller_tower" else snap.drybulb_c
        if self.plant_type not in RULE_PLANTS or not math.isfinite(sink):
            return None
        if self._rule is None or self._rule.plant_type != self.plant_type:
            self._rule = ExpertController(self.lim, str(self.plant_type))
            self.approach_full_k = self._rule.design_approach_k
        self._learn_approach(snap, sink)
        self._rule.hr_approach_k = self._rule_approach_k(snap)
        self._rule_fws_free, self._rule_t_ns = sink + self._rule.hr_approach_k, snap.t_ns
        sp = self._rule.decide(snap).setpoints
        # The lift is above FWS + the CDU approach: where the TCS floor already holds TCS further above a cold FWS
        # (the free cooler at its floor, its fans slow), there is no return to warm.
        tcs = np.maximum(sp.tcs_c, sp.fws_c + self.lim.cfg.cdu_approach_k + self._rule_lift_k(snap, sp))
        fws = sp.fws_c
        top = self.load.full_load_tcs_c() - RULE_FULL_LOAD_BAND_K if RULE_FULL_LOAD_BOUND else math.nan
        if math.isfinite(top) and float(tcs.max()) > top:
            # Never warmer than the hall's own full-load snapshots show safe at full load (a pre-positioned margin:
            # a step finds the water already cold enough), with the FWS the CDU approach below it.
            tcs = np.minimum(tcs, max(top, self.lim.tcs_lo))
            fws = min(fws, float(tcs.min()) - self.lim.cfg.cdu_approach_k)
        return Setpoints(tcs, np.full(len(sp.dp_kpa), self._rule_dp(snap)), fws, sp.chw_c)

    def _rule_approach_k(self, snap: Snapshot) -> float:
        """The rule's FWS offset above the sink at the hall's utilisation now: the design value at idle, the
        measured full-load offset (:data:`RULE_APPROACH_MEASURED`) at full load, linear between."""
        assert self._rule is not None
        design = self._rule.design_approach_k
        full = self.approach_full_k if self.approach_full_k is not None else design
        u = _hall_util(snap, 100.0)
        return design + (full - design) * float(np.clip(u / 100.0, 0.0, 1.0))

    def _learn_approach(self, snap: Snapshot, sink: float) -> None:
        """Move the measured full-load offset by what the plant's free-cooling state says of the rule's water at
        the last decision (see :data:`RULE_APPROACH_MEASURED`)."""
        if not RULE_APPROACH_MEASURED or self._rule is None or self.approach_full_k is None:
            return
        state, u = snap.free_cooling_state, _hall_util(snap)
        rule_fws, lim = self._rule_fws_free, self.lim
        if not (math.isfinite(state) and math.isfinite(u) and math.isfinite(rule_fws)) or u < FULL_SEEN_PCT:
            return
        if not lim.fws_lo + RULE_APPROACH_TOL_K <= rule_fws <= lim.fws_hi - RULE_APPROACH_TOL_K:
            return  # the rule's water was at an FWS bound: its offset was not what the plant made
        # The time since the last decision (at most two intervals: a gap in the snapshots is not evidence).
        dt_s = (snap.t_ns - self._rule_t_ns) / 1e9 if self._rule_t_ns is not None else 0.0
        fws, hours = float(snap.current.fws_c), min(max(dt_s, 0.0), 2.0 * self.cfg.interval_s) / 3600.0
        design = self._rule.design_approach_k
        offset = self._rule.hr_approach_k  # the offset in force (this decision has not set its own yet)
        fan, room = snap.free_cooler_fan_pct, self._step_headroom_k(snap) - RULE_LIFT_BAND_K
        fans_high = math.isfinite(fan) and fan >= RULE_APPROACH_FAN_HI_PCT and room >= RULE_APPROACH_ROOM_K
        fans_low = math.isfinite(fan) and (fan < RULE_APPROACH_FAN_LO_PCT or not room >= 0.0)
        if ((state < FREE_COOLING_FULL or fans_high) and fws >= rule_fws - RULE_APPROACH_TOL_K
                and offset >= self.approach_full_k - RULE_APPROACH_TOL_K):
            # The free cooler could not make the rule's full-load water (or warmer): the chiller trimmed it; or its
            # fans ran near full speed with the GPUs' room to spare.
            self.approach_full_k = min(self.approach_full_k + RULE_APPROACH_UP_K_H * hours, RULE_APPROACH_MAX_K)
        elif (state >= FREE_COOLING_FULL and abs(fws - rule_fws) <= RULE_APPROACH_TOL_K
              and (fans_low or not math.isfinite(fan))):
            self.approach_full_k = max(self.approach_full_k - RULE_APPROACH_DOWN_K_H * hours, design)

    def _rule_lift_k(self, snap: Snapshot, sp: Setpoints) -> float:
        """How far the rule's TCS rises above FWS + the CDU approach with hall load (:data:`RULE_LIFT_SHARE`): the
        CDU approach again times the utilisation, no further than keeps the hottest GPU :data:`RULE_LIFT_BAND_K`
        below limit − margin at full load (measured at the hall's own full-load snapshots of the load memory's
        window; none where it holds none), nor above the rule's trim & respond cap or the TCS bound."""
        u = _hall_util(snap)
        ceiling = self.load.full_load_tcs_c() if RULE_LIFT_SHARE > 0 else math.nan
        if not (math.isfinite(u) and math.isfinite(ceiling)) or self._rule is None:
            return 0.0
        lim = self.lim
        base = float(sp.fws_c) + lim.cfg.cdu_approach_k
        cap = lim.tcs_hi - self._rule.tr.x * (lim.tcs_hi - lim.tcs_lo)
        lift = RULE_LIFT_SHARE * lim.cfg.cdu_approach_k * float(np.clip(u / 100.0, 0.0, 1.0))
        top = min(ceiling - RULE_LIFT_BAND_K, cap, lim.tcs_hi)
        return float(np.clip(min(lift, top - base), 0.0, None))

    def _rule_dp(self, snap: Snapshot) -> float:
        """The rule's pump reset (:data:`RULE_DP_FULL_PCT`): the safe dp at and above that hall utilisation, down
        toward the pumps' floor at idle (:data:`RULE_DP_IDLE_PCT` and below) by the share of the reset the headroom
        at the step-to load allows (:meth:`_step_headroom_k`: none below :data:`RULE_DP_HEADROOM_K`, all from
        :data:`RULE_DP_GRADE_K` above it)."""
        lim = self.lim
        safe = float(lim.safe.dp_kpa.mean())
        u = _hall_util(snap)
        if not math.isfinite(u):
            return safe
        share = float(np.clip((self._step_headroom_k(snap) - RULE_DP_HEADROOM_K) / RULE_DP_GRADE_K, 0.0, 1.0))
        lo = min(lim.dp_lo, safe)
        idle = (RULE_DP_FULL_PCT - u) / (RULE_DP_FULL_PCT - RULE_DP_IDLE_PCT)
        cut = max((safe - lo) * float(np.clip(idle, 0.0, 1.0)), min(RULE_DP_FULL_CUT_KPA, safe - lo))
        return safe - share * cut

    def _step_headroom_k(self, snap: Snapshot) -> float:
        """Hottest GPU's headroom at the step-to load: measured at the hall's own full-load snapshots where the
        load memory's window holds some (:meth:`LoadMemory.full_load_headroom_k`), else estimated from the rise of
        now (:meth:`LoadMemory.headroom_at_step_k`, pessimistic by several K)."""
        full = self.load.full_load_headroom_k(snap) if RULE_DP_MEASURED else math.nan
        return full if math.isfinite(full) else self.load.headroom_at_step_k(snap, self.lim.gpu_ceiling_c)

    def _centre(self, snap: Snapshot) -> np.ndarray:
        """(TCS, dp, FWS) commissioning explores around: the rule a commissioning engineer sets up before any model
        exists (the rule prior, :meth:`_rule_step`: FWS at the free cooler's sink, dry bulb or wet bulb with a
        tower, plus its approach; TCS at FWS plus the CDU approach, capped by a trim & respond on the hottest GPU;
        the safe dp), so the commissioning days already run where a good rule runs rather than at the fixed
        defaults. The safe defaults where the plant has no free cooler or its type or the outdoor reading is
        unknown."""
        lim = self.lim
        safe = np.array([float(lim.safe.tcs_c.min()), float(lim.safe.dp_kpa.mean()), float(lim.safe.fws_c)])
        rule = self._rule_sp
        if rule is None:
            return safe
        return np.array([float(rule.tcs_c.min()), float(rule.dp_kpa.mean()), float(rule.fws_c)])

    def _explore(self, snap: Snapshot, *, local: bool = False) -> Decision:
        """Bounded random walk near :meth:`_centre` (a reach that widens with commissioning time); colder and
        more flow when GPUs would run warm at the load the hall can step to. Around a rule: a target drawn as wide
        either side and clipped to the envelope, which moves with the rule until the next draw, and the walk back
        to the rule at the full rate.

        ``local``: the model is not trusted where the plant now operates, so dither by up to a rate step around the
        outdoor-reset rule where the plant is known (a good rule for any weather, the model's own choices being
        untested here), else around the current setpoints (which were chosen while it was trusted), enough for the
        next retraining to learn from.
        """
        lim, cfg, cur = self.lim, self.cfg, snap.current
        # Headroom if the hall stepped to its step-to load now. Around a rule: as its pump reset judges it (measured
        # at full load where the hall has run there within the load memory's window), or backing off on the idle
        # estimate, which reads short at the reset's low dp, would undo the reset every idle hour. Without a rule
        # (a walk from the safe defaults with nothing else to keep it near good setpoints): the rise of now scaled
        # to the step-to load, the more cautious estimate.
        at_step = (self._step_headroom_k(snap) if self._rule_sp is not None
                   else self.load.headroom_at_step_k(snap, lim.gpu_ceiling_c))
        headroom = min(float(np.min(lim.gpu_ceiling_c - snap.gpu_max_c)), at_step)
        t, d, f = float(cur.tcs_c.min()), float(cur.dp_kpa.mean()), float(cur.fws_c)
        c = float(cur.chw_c) if math.isfinite(cur.chw_c) else float(lim.safe.chw_c)
        safe = self._centre(snap)
        lo_env = np.array([lim.tcs_lo, lim.dp_lo, lim.fws_lo])
        hi_env = np.array([lim.tcs_hi, lim.dp_hi, lim.fws_hi])
        r = 1.0 if local else self._reach(snap)
        lo, hi = safe - r * (safe - lo_env), safe + r * (hi_env - safe)
        step = np.array([cfg.max_step_tcs_k, cfg.max_step_dp_kpa, cfg.max_step_fws_k])
        if local and self._rule_sp is not None:
            # An untrusted model with a rule: dither and back off within a rate step of the rule, whose own trim &
            # respond cap answers hot GPUs. Backing off to the envelope's cold edge instead chilled water the rule
            # keeps warm (Phoenix, July, idle: FWS 26 °C against the rule's 32, the chiller +30 %), since the
            # step-to headroom estimated at idle overstates a step's rise by several K.
            lo, hi = np.maximum(lo_env, safe - step), np.minimum(hi_env, safe + step)
        if headroom < EXPLORE_BACKOFF_K and local and self._rule_sp is not None and UNTRUSTED_BACKOFF_TO_RULE:
            # An untrusted model with a rule backs off to the rule itself, at the full rate either way, not past it
            # (:data:`UNTRUSTED_BACKOFF_TO_RULE`): the rule's own trim & respond cap answers hot GPUs.
            now = np.array([t, d, f])
            t, d, f = (float(v) for v in now + np.clip(safe - now, -step, step))
            self.explore_target = None
        elif headroom < EXPLORE_BACKOFF_K:
            # Back off toward colder water and more flow: inside the reach, and without a rule prior at least as
            # far as the profiles' safe defaults; with one, to the cold edge of the reach around the rule, whose own
            # trim & respond cap answers hot GPUs (the expert baseline's: it never throttled under ai-steps), where
            # the safe defaults' cold water costs the chiller all summer.
            floor = self._rule_sp is None
            t = max(t - cfg.max_step_tcs_k, min(t, lo[0], float(lim.safe.tcs_c.min()) if floor else lo[0]))
            d = min(d + cfg.max_step_dp_kpa, max(d, hi[1], float(lim.safe.dp_kpa.mean())))
            f = max(f - cfg.max_step_fws_k, min(f, lo[2], float(lim.safe.fws_c) if floor else lo[2]))
            self.explore_target = None
        else:
            if self.explore_target is None or snap.t_ns >= self.explore_until_ns:
                if local:
                    at = safe if self.plant_type in RULE_PLANTS else np.array([t, d, f])
                    lo = np.maximum(lo_env, at - step)
                    hi = np.minimum(hi_env, at + step)
                if not local and self._rule_sp is not None and EXPLORE_SYMMETRIC:
                    # Around a rule: a perturbation as wide either side (the reach of the wider side), clipped to
                    # the envelope, so a rule at a bound (TCS at its floor in cold weather, dp at the pumps' floor
                    # at idle) is explored from about as often as it is left, rather than only left.
                    half = np.maximum(safe - lo, hi - safe)
                    target = np.clip(self.rng.uniform(safe - half, safe + half), lo_env, hi_env)
                else:
                    target = self.rng.uniform(lo, np.maximum(lo, hi))
                if self.use_chw:
                    cs = lim.safe.chw_c
                    span = r * CHW_EXPLORE_K
                    target = np.append(target, self.rng.uniform(max(cs - span, lim.chw_lo), min(cs + span, lim.chw_hi)))
                self.explore_target = target
                self.explore_until_ns = snap.t_ns + int(self.rng.uniform(0.5, 1.5 if local else 3.0) * NS_H)
                follows = EXPLORE_FOLLOWS_CENTRE and (not local or self.plant_type in RULE_PLANTS)
                self.explore_anchor = safe.copy() if follows else np.zeros(3)
            # A target drawn around the rule moves with it (the rule's pump reset follows the load, which steps
            # within the hours a target is held; its FWS follows the weather): a perturbation of the rule, not a
            # point the rule has since left. Kept within the envelope.
            shift = safe - self.explore_anchor if self.explore_anchor.any() else np.zeros(3)
            tt, dd, ff = np.clip(self.explore_target[:3] + shift, lo_env, hi_env)
            # Warmer only while there is room: the step toward the target shrinks with the headroom.
            scale = min(1.0, (headroom - EXPLORE_BACKOFF_K) / 4.0)
            up = step * np.array([scale, -scale, scale])  # the step allowed toward warmer water and less dp
            if self._rule_sp is not None:
                # Back to the rule at the full rate (only the walk past it waits for headroom): its own trim &
                # respond cap answers hot GPUs and the fast path meets a step with its setpoints. Otherwise the
                # short step-to headroom estimated at idle held the walk colder and at more dp than the rule
                # after every back-off (set on Chicago: July idle FWS 1.4-1.8 K below the rule).
                back = np.clip((safe - np.array([t, d, f])) * np.array([1.0, -1.0, 1.0]), 0.0, step)
                up = np.maximum(np.abs(up), back) * np.array([1.0, -1.0, 1.0])
            t += float(np.clip(tt - t, -cfg.max_step_tcs_k, up[0]))
            d += float(np.clip(dd - d, up[1], cfg.max_step_dp_kpa))
            f += float(np.clip(ff - f, -cfg.max_step_fws_k, up[2]))
            if self.use_chw and len(self.explore_target) > 3:
                c = float(self.explore_target[3])
        sp = self._setpoints(snap, t, d, f, c)
        why = "warm GPUs" if headroom < EXPLORE_BACKOFF_K else "random step"
        return Decision(sp, state=self.state, hold_reason=f"exploring: {why}")

    def _candidates(self, snap: Snapshot) -> np.ndarray:
        """The rate-limited grid of TCS, FWS and dp around the current setpoints, one feature row per candidate
        (load of now; the chilled-water setpoint held, see :meth:`_chw_candidates`)."""
        lim, cfg, cur = self.lim, self.cfg, snap.current
        t0, d0, f0 = float(cur.tcs_c.min()), float(cur.dp_kpa.mean()), float(cur.fws_c)
        mesh = np.meshgrid(_OFFS_T * cfg.max_step_tcs_k / 2, _OFFS_F * cfg.max_step_fws_k / 2,
                           _OFFS_D * cfg.max_step_dp_kpa, indexing="ij")
        tt, ff, dd = mesh[0].ravel(), mesh[1].ravel(), mesh[2].ravel()
        f = np.clip(f0 + ff, lim.fws_lo, lim.fws_hi)
        approach = max(cfg.cdu_approach_k, self.approach_k)
        lo_t = np.maximum(np.maximum(lim.tcs_lo, f + approach), self._dew(snap) + cfg.dew_margin_k)
        t = np.clip(t0 + tt, np.minimum(lo_t, lim.tcs_hi), lim.tcs_hi)
        d = np.clip(d0 + dd, lim.dp_lo, lim.dp_hi)
        util = float(np.nanmean(snap.gpu_util_pct))
        cols = [np.full_like(t, util), np.full_like(t, snap.drybulb_c), np.full_like(t, snap.wetbulb_c), t, d, f]
        if self.use_chw:
            cols.append(np.full_like(t, float(cur.chw_c) if math.isfinite(cur.chw_c) else float(lim.safe.chw_c)))
        return np.stack(cols, axis=1)

    def _chw_candidates(self, row: np.ndarray) -> np.ndarray:
        """``row`` with the chilled-water setpoint moved by each of :data:`_OFFS_C` (the CRAH air loop is nearly
        separable from the liquid loop, so it is searched as a second coordinate: 125 + 3 candidates, not 375)."""
        x = np.repeat(row[None, :], len(_OFFS_C), axis=0)
        x[:, 6] = np.clip(row[6] + _OFFS_C * self.cfg.max_step_fws_k / 2, self.lim.chw_lo, self.lim.chw_hi)
        return x

    def _score(self, snap: Snapshot, x: np.ndarray, at_pct: float) -> dict[str, np.ndarray]:
        """Every candidate's predicted power, work rate (load of now) and pessimistic GPU margin at ``at_pct``, in
        one vectorised call with the plant now and the fixed baseline; also sets ``now_k`` and ``base_kw``."""
        assert self.model is not None
        n_c = len(x)
        x_step = x.copy()
        x_step[:, 0] = max(at_pct, float(x[0, 0]))
        achieved = Setpoints(snap.tcs_supply_c, snap.current.dp_kpa, snap.fws_supply_c, snap.current.chw_c)
        now_x = self._features(snap, achieved)[None, :]
        base = self._features(snap, self.lim.safe)[None, :]
        pred = self.model.predict(np.vstack([x, x_step, now_x, base]))
        g_mu = np.maximum(pred["gpu_margin_c"][0][:n_c], pred["gpu_margin_c"][0][n_c:2 * n_c])
        g_sd = np.maximum(pred["gpu_margin_c"][1][:n_c], pred["gpu_margin_c"][1][n_c:2 * n_c])
        g_hi = g_mu + SPREAD_SIGMAS * g_sd + self.model.resid_q["gpu_margin_c"][1] + GUARD_BAND_K + self.bias_k
        util = float(x[0, 0])
        # Work done per unit time: the learnt work rate where the site reports clocks, else utilisation (which no
        # setpoint changes, so the score is then the power alone).
        work = pred["work_rate_pct"][0][:n_c] if "work_rate_pct" in pred else np.full(n_c, util)
        p = pred["facility_power_kw"]
        return {
            "p_mu": p[0][:n_c], "p_sd": p[1][:n_c], "g_hi": g_hi, "g_sd": g_sd,
            "work": np.maximum(work, MIN_WORK_PCT), "now_g": pred["gpu_margin_c"][0][2 * n_c:2 * n_c + 1],
            "now_x": now_x[0], "base_kw": p[0][-1:], "base_work": np.maximum(
                pred["work_rate_pct"][0][-1:] if "work_rate_pct" in pred else np.array([util]), MIN_WORK_PCT),
        }

    def _trusted(self, snap: Snapshot, x: np.ndarray, sc: dict[str, np.ndarray]) -> np.ndarray:
        """Candidates near enough the data for the model to be believed (or one measured-safe step past it)."""
        assert self.model is not None
        cfg = self.cfg
        dist = self.model.distance(x)
        trusted = (dist <= cfg.max_distance) & (sc["p_sd"] <= cfg.max_spread_kw) & (sc["g_sd"] <= cfg.max_spread_k)
        # Measured headroom is evidence too: with the hottest GPU well below its ceiling, one rate-limited step past
        # the data is safe by measurement (the thermal guard backs it), and it is how the model learns new ground.
        measured = float(np.min(self.lim.gpu_ceiling_c - snap.gpu_max_c))
        if measured >= STEP_OUT_HEADROOM_K:
            # Only the setpoints may step out: load and weather must be like the data (a July model in January is
            # not trusted however cool the GPUs run).
            known = self.model.context_distance(x[:1]) <= cfg.max_distance
            trusted |= known & (dist <= 2.0 * cfg.max_distance) & (sc["g_sd"] <= cfg.max_spread_k)
        return np.asarray(trusted, dtype=bool)

    def _row_setpoints(self, snap: Snapshot, row: np.ndarray) -> Setpoints:
        return self._setpoints(snap, float(row[3]), float(row[4]), float(row[5]),
                               float(row[6]) if self.use_chw else math.nan)

    def step_ready(self, snap: Snapshot) -> Setpoints:
        """The setpoints the core predicts safe if the hall stepped to full load now (for the supervisor's fast
        path, which writes them when utilisation jumps between decisions): the cheapest per unit of work among the
        rate-limited candidates safe at full load, else the coolest one; without a model, one rate step toward
        the safe defaults' colder side; with a rule prior, the rule's TCS and FWS at the safe dp
        (:data:`RULE_STEP_READY`). Pure: it changes no state of the core."""
        lim, cur = self.lim, snap.current
        if self.model is None or not snap.finite:
            c = min(cur.chw_c, lim.safe.chw_c) if math.isfinite(cur.chw_c) else lim.safe.chw_c
            sp = Setpoints(np.minimum(cur.tcs_c, lim.safe.tcs_c), np.maximum(cur.dp_kpa, lim.safe.dp_kpa),
                           min(cur.fws_c, lim.safe.fws_c), c if self.use_chw else math.nan)
            sp = lim.step_toward(sp, cur, self._dew(snap))
        else:
            x = self._candidates(snap)
            sc = self._score(snap, x, max(FULL_LOAD_PCT, self.load.step_to_pct(float(x[0, 0]))))
            ok = self._trusted(snap, x, sc) & (sc["g_hi"] <= -self.cfg.gpu_margin_k)
            score = np.where(ok, sc["p_mu"] / sc["work"], np.inf)
            j = int(np.argmin(score)) if ok.any() else int(np.argmin(sc["g_hi"]))
            sp = self._row_setpoints(snap, x[j])
        # The rule prior at full load is a floor on the cold side: its TCS and FWS (which do not follow load) and
        # the safe dp its pump reset lowered at idle, at once (the fast path's cold direction skips the rate limit).
        rule = self._rule_sp
        if rule is None:
            return sp
        if RULE_STEP_READY:
            # The rule's own setpoints, neither colder nor at more dp: the model's pessimistic margin at full load
            # found no candidate safe most of the time and asked for its coolest, two or three rate steps colder
            # and at more dp than the rule (which never throttled under ai-steps), held by the lock-out for 30 min.
            return Setpoints(rule.tcs_c.copy(), lim.safe.dp_kpa.copy(), rule.fws_c, sp.chw_c)
        return Setpoints(np.minimum(sp.tcs_c, rule.tcs_c), np.maximum(sp.dp_kpa, lim.safe.dp_kpa),
                         min(sp.fws_c, rule.fws_c), sp.chw_c)

    def _rule_prior(self, snap: Snapshot, best: float, best_sd: float
                    ) -> tuple[Setpoints, np.ndarray, dict[str, np.ndarray]] | None:
        """The rule's setpoints (one rate step toward them), their feature row and score, where the model's best
        candidate (``best`` predicted kW per unit of work, spread ``best_sd``) does not beat the rule's prediction
        clearly; None where it does or there is no rule."""
        if self._rule_sp is None:
            return None
        r = self._rule_sp
        sp = self._setpoints(snap, float(r.tcs_c.min()), float(r.dp_kpa.mean()), float(r.fws_c),
                             float(self.lim.safe.chw_c))
        x = self._features(snap, Setpoints(sp.tcs_c, sp.dp_kpa, sp.fws_c,
                                           sp.chw_c if math.isfinite(sp.chw_c) else self.lim.safe.chw_c))[None, :]
        x[0, 0] = float(np.nanmean(snap.gpu_util_pct))
        sc = self._score(snap, x, float(x[0, 0]))
        s_rule = float(sc["p_mu"][0] / sc["work"][0])
        noise = RULE_SIGMAS * (best_sd + float(sc["p_sd"][0] / sc["work"][0]))
        if best < s_rule - max(noise, RULE_MIN_GAIN * s_rule):
            return None
        return sp, x, sc

    def decide(self, snap: Snapshot) -> Decision:
        """One decision; see the module docstring."""
        self.observe(snap)
        if snap.finite:
            self.load.update(snap, self.lim.gpu_ceiling_c)
        if self.first_ns is None:
            self.first_ns = snap.t_ns
        self._rule_sp = self._rule_step(snap)
        commissioning_done = (snap.t_ns - self.first_ns) >= self.cfg.commissioning_days * 86400e9
        due = self.last_fit_ns is None or (snap.t_ns - self.last_fit_ns) >= self.cfg.retrain_h * NS_H
        if commissioning_done and (self.model is None or due or (self.state == "learning" and
                                                                   snap.t_ns - (self.last_fit_ns or 0) >= 3 * NS_H)):
            self.retrain(snap.t_ns)
        if self.model is None or not commissioning_done:
            self.state = "commissioning"
            self.last = self._explore(snap)
            return self.last
        x = self._candidates(snap)
        if RULE_DP_BOUND and self._rule_sp is not None:
            # The CDU dp is the rule's pump reset, a rate step at a time: the model chooses TCS and FWS only.
            d0, step = float(snap.current.dp_kpa.mean()), self.cfg.max_step_dp_kpa
            x[:, 4] = np.clip(float(self._rule_sp.dp_kpa.mean()), max(d0 - step, self.lim.dp_lo),
                              min(d0 + step, self.lim.dp_hi))
        # The GPU constraint is judged at the load the hall can step to before the next decision (the highest of
        # the last days, or full load once it has stepped); the power and work are priced at the load of now.
        step_to = self.load.step_to_pct(float(x[0, 0]))
        sc = self._score(snap, x, step_to)
        # The model at what the plant does now, against what it measures: a positive miss is added to every
        # candidate's GPU prediction (offset-free feedback, as model-predictive controllers correct their models).
        measured_margin = float(np.max(snap.gpu_max_c - self.lim.gpu_limit_c))
        if np.isfinite(sc["now_x"]).all() and math.isfinite(measured_margin):
            miss = measured_margin - float(sc["now_g"][0])
            self.bias_k = 0.7 * self.bias_k + 0.3 * float(np.clip(miss, 0.0, MAX_BIAS_K))
        cfg = self.cfg
        g_hi = sc["g_hi"]
        trusted = self._trusted(snap, x, sc)
        ok = trusted & (g_hi <= -cfg.gpu_margin_k)
        margin_ok = bool(ok.any())  # some candidate keeps the margin (before the rule's bounds)
        if self._rule_sp is not None:
            # Less pump dp than the rule's reset is not the model's to choose: a GPU's rise over its coolant grows
            # with load times the loss of flow, which the model's features do not cross, and a step at low flow
            # heats the GPUs within one poll (set on Chicago: the model's dp 40 kPa at warm water throttled a step).
            ok &= x[:, 4] >= float(self._rule_sp.dp_kpa.mean()) - 1e-6
            ok &= x[:, 4] <= float(self._rule_sp.dp_kpa.mean()) + RULE_DP_MAX_ABOVE_STEPS * cfg.max_step_dp_kpa + 1e-6
            if RULE_COLD_BOUND:
                # Nor colder water than the rule: the model's pessimistic margin at the step-to load bought cold
                # water the rule (never throttled under ai-steps) does without.
                r = self._rule_sp
                ok &= (x[:, 3] >= float(r.tcs_c.min()) - 1e-6) & (x[:, 5] >= float(r.fws_c) - 1e-6)
        if not ok.any() and trusted.any():
            # The model is believed but no candidate keeps the margin at the step-to load (an idle hall at warm
            # water): the rule prior where there is one (see _rule_prior), else its coolest candidate, one rate
            # step toward safety, rather than explore.
            rule = self._rule_prior(snap, math.inf, 0.0)
            if rule is not None:
                self.state = "deciding"
                self.last = Decision(rule[0], state="deciding", predicted_facility_kw=float(rule[2]["p_mu"][0]),
                                     binding=("rule prior",) if margin_ok else
                                     (f"gpu margin at {step_to:.0f} % load: rule prior",),
                                     candidates=len(x) + 1)
                return self.last
            j = int(np.argmin(np.where(trusted, g_hi, np.inf)))
            self.state = "deciding"
            self.last = Decision(self._row_setpoints(snap, x[j]), state="deciding",
                                 predicted_facility_kw=float(sc["p_mu"][j]),
                                 binding=(f"gpu margin at {step_to:.0f} % load: coolest candidate",),
                                 candidates=len(x))
            return self.last
        if not ok.any():
            self.state = "learning"
            if self.explore_target is not None and self.last is not None and self.last.state == "deciding":
                self.explore_target = None  # start a fresh local dither from where deciding left off
            self.last = self._explore(snap, local=True)
            return self.last
        # Facility energy per unit of work: a candidate that saves power by losing clocks does not win.
        score = np.where(ok, sc["p_mu"] / sc["work"], np.inf)
        j = int(np.argmin(score))
        if self.use_chw:  # second coordinate: the chilled-water setpoint at the chosen TCS, FWS and dp
            x2 = self._chw_candidates(x[j])
            sc2 = self._score(snap, x2, step_to)
            ok2 = self._trusted(snap, x2, sc2) & (sc2["g_hi"] <= -cfg.gpu_margin_k)
            s2 = sc2["p_mu"] / sc2["work"]
            k = int(np.argmin(np.where(ok2, s2, np.inf)))
            held = int(np.flatnonzero(_OFFS_C == 0.0)[0])
            # Only a clear gain moves it: the air loop's effect is small beside the model's noise, and the coils'
            # capacity limit is a cliff the smooth model does not see.
            gain = s2[held] - s2[k]
            noise = CHW_SIGMAS * (sc2["p_sd"][k] + sc2["p_sd"][held]) / sc2["work"][k]
            if ok2[k] and gain > max(noise, CHW_MIN_GAIN * s2[held]):
                x, sc, g_hi, j = x2, sc2, sc2["g_hi"], k
        chosen = self._row_setpoints(snap, x[j])
        binding = []
        rule = self._rule_prior(snap, float(sc["p_mu"][j] / sc["work"][j]), float(sc["p_sd"][j] / sc["work"][j]))
        if rule is not None:
            chosen, x, sc, g_hi, j = rule[0], rule[1], rule[2], rule[2]["g_hi"], 0
            binding.append("rule prior")
        if x[j, 5] >= self.lim.fws_hi - 1e-6:
            binding.append("fws at W-class/profile max")
        if g_hi[j] > -cfg.gpu_margin_k - 0.5:
            binding.append(f"gpu margin at {step_to:.0f} % load")
        if x[j, 3] <= self._dew(snap) + cfg.dew_margin_k + 1e-6:
            binding.append("dew point")
        p_j = float(sc["p_mu"][j])
        # The saving is at equal work: the baseline's power scaled to the chosen candidate's work rate.
        base_kw = float(sc["base_kw"][0]) * float(sc["work"][j]) / float(sc["base_work"][0])
        self.state = "deciding"
        self.last = Decision(
            chosen, state="deciding", predicted_facility_kw=p_j, predicted_saving_kw=base_kw - p_j,
            binding=tuple(binding), candidates=len(x),
        )
        return self.last
