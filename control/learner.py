"""The aidc controller core: learns the plant from its own telemetry and picks the cheapest safe setpoints.

States: **commissioning** (no model yet: safe exploration, bounded random steps around the current setpoints,
backing off when GPUs run warm), **deciding** (score a grid of rate-limited candidates with the online plant model in
one vectorised call and take the lowest predicted total facility power whose pessimistic hottest GPU keeps the
margin), **learning** (the model is not trusted where the plant now operates, e.g. a summer-trained model in
winter: explore within bounds as in commissioning until retraining covers it). Every snapshot becomes a training
row (the setpoints in force during the last interval and what they produced); the model is refitted every
``retrain_h`` hours on the last ``train_window_days`` of rows.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from aidc.errors import DataError
from analytics.plant_model import OnlinePlantModel
from control.policy import Limits, dew_point_c
from control.types import Decision, Setpoints, Snapshot

NS_H = 3_600_000_000_000
_OFFS_T = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
_OFFS_F = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
_OFFS_D = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])
EXPLORE_BACKOFF_K = 3.0  # exploration turns back toward colder water within this of limit − margin
SPREAD_SIGMAS = 1.0  # ensemble standard deviations added to the predicted hottest GPU
STEP_OUT_HEADROOM_K = 4.0  # measured GPU headroom that lets a candidate step past the training data
GUARD_BAND_K = 0.5  # extra GPU headroom on top of the model's pessimistic quantile
PEAK_WINDOW_NS = 3_600_000_000_000  # the GPU constraint is judged at the highest load of the last hour
SATURATED_VALVE_PCT = 98.0  # a CDU whose FWS valve is this open cannot cool its TCS any further
APPROACH_DECAY_K = 0.01  # the learnt CDU approach relaxes this much per snapshot toward the site's policy value
MAX_APPROACH_K = 10.0  # a learnt approach above this is a sensor or valve fault, not the exchanger
MAX_BIAS_K = 3.0  # the measured-minus-predicted GPU margin added to predictions is capped at this
HALF_LIFE_DAYS = 7.0  # training rows count half as much every this many days of data back


class LearningController:
    """Supervisory core of aidc; see the module docstring."""

    name = "aidc"

    def __init__(self, limits: Limits, *, seed: int = 0) -> None:
        self.lim = limits
        self.cfg = limits.cfg
        self.rng = np.random.default_rng(seed)
        maxlen = int(self.cfg.train_window_days * 86400 / self.cfg.interval_s) + 1
        self.rows: deque[tuple[int, np.ndarray, float, float, float]] = deque(maxlen=maxlen)
        self.model: OnlinePlantModel | None = None
        self.first_ns: int | None = None
        self.last_fit_ns: int | None = None
        self.explore_target: np.ndarray | None = None
        self.explore_until_ns = 0
        self.state = "commissioning"
        self.fit_error = ""
        self.last: Decision | None = None
        self.approach_k = self.cfg.cdu_approach_k
        self.recent_util: deque[tuple[int, float]] = deque(maxlen=64)
        self.bias_k = 0.0

    # --- data --------------------------------------------------------------------------------------------

    def _features(self, snap: Snapshot, sp: Setpoints) -> np.ndarray:
        return np.array([
            float(np.nanmean(snap.gpu_util_pct)), snap.drybulb_c, snap.wetbulb_c,
            float(sp.tcs_c.mean()), float(sp.dp_kpa.mean()), float(sp.fws_c),
        ])

    def observe(self, snap: Snapshot) -> None:
        """Keep the snapshot as a training row: the setpoints in force and what they produced."""
        if not snap.finite or not math.isfinite(snap.facility_kw):
            return
        margin = float(np.max(snap.gpu_max_c - self.lim.gpu_limit_c))
        # Train on what the plant achieved (measured supply temperatures), not on what was asked: the loops lag
        # their setpoints by minutes, and candidates are scored as steady states where achieved = setpoint.
        achieved = Setpoints(snap.tcs_supply_c, snap.current.dp_kpa, snap.fws_supply_c)
        x = self._features(snap, achieved)
        if not np.isfinite(x).all():
            return
        self.rows.append((snap.t_ns, x, snap.facility_kw, margin, snap.it_kw))
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
        if np.isfinite(it).all():
            # IT and the rest apart: IT power depends on load and coolant only, the rest on the plant and weather.
            y = {"it_power_kw": it, "nonit_power_kw": facility - it, "gpu_margin_c": margin}
        else:
            y = {"facility_power_kw": facility, "gpu_margin_c": margin}
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

    def _explore(self, snap: Snapshot, *, local: bool = False) -> Decision:
        """Bounded random walk around the current setpoints; colder and more flow when GPUs run warm.

        ``local``: the model is not trusted where the plant now operates, so stay near the current setpoints (which
        were chosen while it was) and dither by half a rate step, enough for the next retraining to learn from.
        """
        lim, cfg, cur = self.lim, self.cfg, snap.current
        n = len(snap.cdu_names)
        headroom = float(np.min(lim.gpu_ceiling_c - snap.gpu_max_c))
        t, d, f = float(cur.tcs_c.mean()), float(cur.dp_kpa.mean()), float(cur.fws_c)
        if headroom < EXPLORE_BACKOFF_K:
            t, d, f = t - cfg.max_step_tcs_k, d + cfg.max_step_dp_kpa, f - cfg.max_step_fws_k
            self.explore_target = None
        else:
            if self.explore_target is None or snap.t_ns >= self.explore_until_ns:
                lo = np.array([lim.tcs_lo, lim.dp_lo, lim.fws_lo])
                hi = np.array([lim.tcs_hi, lim.dp_hi, lim.fws_hi])
                if local:
                    step = np.array([cfg.max_step_tcs_k, cfg.max_step_dp_kpa, cfg.max_step_fws_k])
                    lo = np.maximum(lo, np.array([t, d, f]) - step)
                    hi = np.minimum(hi, np.array([t, d, f]) + step)
                self.explore_target = self.rng.uniform(lo, np.maximum(lo, hi))
                self.explore_until_ns = snap.t_ns + int(self.rng.uniform(0.5, 1.5 if local else 3.0) * NS_H)
            tt, dd, ff = self.explore_target
            # Warmer only while there is room: the step toward the target shrinks with the headroom.
            scale = min(1.0, (headroom - EXPLORE_BACKOFF_K) / 4.0)
            t += float(np.clip(tt - t, -cfg.max_step_tcs_k, cfg.max_step_tcs_k * scale))
            d += float(np.clip(dd - d, -cfg.max_step_dp_kpa * scale, cfg.max_step_dp_kpa))
            f += float(np.clip(ff - f, -cfg.max_step_fws_k, cfg.max_step_fws_k * scale))
        sp = lim.step_toward(Setpoints(np.full(n, t), np.full(n, d), f), cur, self._dew(snap))
        why = "warm GPUs" if headroom < EXPLORE_BACKOFF_K else "random step"
        return Decision(sp, state=self.state, hold_reason=f"exploring: {why}")

    def _candidates(self, snap: Snapshot) -> tuple[np.ndarray, list[Setpoints]]:
        lim, cfg, cur = self.lim, self.cfg, snap.current
        t0, d0, f0 = float(cur.tcs_c.mean()), float(cur.dp_kpa.mean()), float(cur.fws_c)
        tt, ff, dd = np.meshgrid(_OFFS_T * cfg.max_step_tcs_k / 2, _OFFS_F * cfg.max_step_fws_k / 2,
                                 _OFFS_D * cfg.max_step_dp_kpa, indexing="ij")
        f = np.clip(f0 + ff.ravel(), lim.fws_lo, lim.fws_hi)
        approach = max(cfg.cdu_approach_k, self.approach_k)
        lo_t = np.maximum(np.maximum(lim.tcs_lo, f + approach), self._dew(snap) + cfg.dew_margin_k)
        t = np.clip(t0 + tt.ravel(), np.minimum(lo_t, lim.tcs_hi), lim.tcs_hi)
        d = np.clip(d0 + dd.ravel(), lim.dp_lo, lim.dp_hi)
        util = float(np.nanmean(snap.gpu_util_pct))
        x = np.stack([np.full_like(t, util), np.full_like(t, snap.drybulb_c), np.full_like(t, snap.wetbulb_c),
                      t, d, f], axis=1)
        return x, []

    def decide(self, snap: Snapshot) -> Decision:
        """One decision; see the module docstring."""
        self.observe(snap)
        if self.first_ns is None:
            self.first_ns = snap.t_ns
        commissioning_done = (snap.t_ns - self.first_ns) >= self.cfg.commissioning_days * 86400e9
        due = self.last_fit_ns is None or (snap.t_ns - self.last_fit_ns) >= self.cfg.retrain_h * NS_H
        if commissioning_done and (self.model is None or due or (self.state == "learning" and
                                                                   snap.t_ns - (self.last_fit_ns or 0) >= 3 * NS_H)):
            self.retrain(snap.t_ns)
        if self.model is None or not commissioning_done:
            self.state = "commissioning"
            self.last = self._explore(snap)
            return self.last
        x, _ = self._candidates(snap)
        n_c = len(x)
        # The GPU constraint is judged at the highest load of the last hour (load moves between decisions); the
        # power is priced at the load of now.
        util = float(np.nanmean(snap.gpu_util_pct))
        while self.recent_util and snap.t_ns - self.recent_util[0][0] > PEAK_WINDOW_NS:
            self.recent_util.popleft()
        self.recent_util.append((snap.t_ns, util))
        x_peak = x.copy()
        x_peak[:, 0] = max(u for _, u in self.recent_util)
        # The model at what the plant does now, against what it measures: a positive miss is added to every
        # candidate's GPU prediction (offset-free feedback, as model-predictive controllers correct their models).
        achieved = Setpoints(snap.tcs_supply_c, snap.current.dp_kpa, snap.fws_supply_c)
        now_x = self._features(snap, achieved)[None, :]
        # One vectorised call scores every candidate, the peak-load copies, the plant now and the fixed baseline.
        base = self._features(snap, self.lim.safe)[None, :]
        pred = self.model.predict(np.vstack([x, x_peak, now_x, base]))
        base_kw = float(pred["facility_power_kw"][0][-1])
        g_now = float(pred["gpu_margin_c"][0][-2])
        measured_margin = float(np.max(snap.gpu_max_c - self.lim.gpu_limit_c))
        if np.isfinite(now_x).all() and math.isfinite(measured_margin):
            self.bias_k = 0.7 * self.bias_k + 0.3 * float(np.clip(measured_margin - g_now, 0.0, MAX_BIAS_K))
        dist = self.model.distance(x)
        p_mu, p_sd = pred["facility_power_kw"][0][:n_c], pred["facility_power_kw"][1][:n_c]
        g_mu = np.maximum(pred["gpu_margin_c"][0][:n_c], pred["gpu_margin_c"][0][n_c:2 * n_c])
        g_sd = np.maximum(pred["gpu_margin_c"][1][:n_c], pred["gpu_margin_c"][1][n_c:2 * n_c])
        g_hi = (g_mu + SPREAD_SIGMAS * g_sd + self.model.resid_q["gpu_margin_c"][1] + GUARD_BAND_K
                + self.bias_k)
        cfg = self.cfg
        trusted = (dist <= cfg.max_distance) & (p_sd <= cfg.max_spread_kw) & (g_sd <= cfg.max_spread_k)
        # Measured headroom is evidence too: with the hottest GPU well below its ceiling, one rate-limited step past
        # the data is safe by measurement (the thermal guard backs it), and it is how the model learns new ground.
        measured = float(np.min(self.lim.gpu_ceiling_c - snap.gpu_max_c))
        if measured >= STEP_OUT_HEADROOM_K:
            # Only the setpoints may step out: load and weather must be like the data (a July model in January is
            # not trusted however cool the GPUs run).
            known = self.model.context_distance(x[:1]) <= cfg.max_distance
            trusted |= known & (dist <= 2.0 * cfg.max_distance) & (g_sd <= cfg.max_spread_k)
        safe = g_hi <= -cfg.gpu_margin_k
        ok = trusted & safe
        n = len(snap.cdu_names)
        if not ok.any():
            self.state = "learning"
            if self.explore_target is not None and self.last is not None and self.last.state == "deciding":
                self.explore_target = None  # start a fresh local dither from where deciding left off
            self.last = self._explore(snap, local=True)
            return self.last
        score = np.where(ok, p_mu, np.inf)
        j = int(np.argmin(score))
        chosen = Setpoints(np.full(n, x[j, 3]), np.full(n, x[j, 4]), float(x[j, 5]))
        chosen = self.lim.step_toward(chosen, snap.current, self._dew(snap))
        binding = []
        if x[j, 5] >= self.lim.fws_hi - 1e-6:
            binding.append("fws at W-class/profile max")
        if g_hi[j] > -cfg.gpu_margin_k - 0.5:
            binding.append("gpu margin")
        if x[j, 3] <= self._dew(snap) + cfg.dew_margin_k + 1e-6:
            binding.append("dew point")
        self.state = "deciding"
        self.last = Decision(
            chosen, state="deciding", predicted_facility_kw=float(p_mu[j]),
            predicted_saving_kw=base_kw - float(p_mu[j]), binding=tuple(binding), candidates=len(x),
        )
        return self.last
