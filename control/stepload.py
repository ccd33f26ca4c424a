"""What the hall can step to before the next decision: the load memory behind aidc's pre-positioned GPU margin.

An AI hall's load is not a slow curve: a training job starts, stalls at a checkpoint or fails, and every rack steps
between idle and full within seconds. A core that decides every few minutes from feedback, and judges the GPU
constraint at the load of the last hour, sits warm at idle and throttles when the job comes back. So the margin is
pre-positioned: every candidate's GPU constraint is judged at the *step-to load*, the highest hall utilisation of
the last :data:`STEP_WINDOW_NS`, or rated full load once the hall has shown a step in that window (and before the
memory spans a whole window: a new core does not yet know what the hall can step to).

Without a model (commissioning), the headroom a step would leave is estimated from measurement: the hottest GPU's
rise over its TCS supply, ΔT = T_gpu − T_tcs (K), scales with GPU power, P ∝ a + (1 − a)·u (u utilisation 0-1,
a = :data:`IDLE_POWER_SHARE`), so at the step-to load s the headroom is
h_s = (T_ceiling − T_gpu) − ΔT·[(a + (1 − a)·s) / (a + (1 − a)·u) − 1] (K).

That estimate is pessimistic by several K at full load (5-9 K on the generated 32-rack site: the GPU's idle power is
more than :data:`IDLE_POWER_SHARE` of its board power, and at the low pump dp of an idle hall the idle rise reads
high), so where the hall has run at full load within the window the memory measures instead
(:meth:`LoadMemory.full_load_headroom_k`): per CDU, the TCS supply at which its hottest GPU would have reached the
ceiling at full load, c = T_ceiling − (T_gpu − T_tcs), the window's lowest (every full-load snapshot counts, the
warmest weather and the least flow among them); the headroom at a step now is c − T_tcs,now (GPU temperature
follows TCS about 1:1).

The same memory keeps, per CDU, the GPU headroom relative to the hottest CDU at a common TCS supply (the windowed
minimum, so every load seen in the window counts), from which CDUs with room get a warmer TCS than the hottest.
"""

from __future__ import annotations

import numpy as np

from control.types import Arr, Snapshot

# Frozen constants (not tuned on the scored Leesburg/Phoenix years; chosen from the physics and DCGM data sheets).
STEP_WINDOW_NS = 2 * 86_400_000_000_000  # a day or more: the load a hall reached two days ago can come back now
GAP_SLACK_NS = 3_600_000_000_000  # the window's oldest snapshot may be this much younger than the window (a gap)
STEP_RISE_PCT = 30.0  # hall utilisation rising this much between two snapshots is a step (a job started)
FULL_LOAD_PCT = 100.0  # rated full load: what a hall that has stepped can step to
IDLE_POWER_SHARE = 0.08  # GPU power at idle over board power (H100/B200 data sheets: 60-100 W of 700-1000 W; the
# low end on purpose, which overstates the rise a step adds)
FULL_SEEN_PCT = 85.0  # a snapshot at or above this hall utilisation measures the headroom at full load
TRIM_BAND_K = 1.0  # a trimmed CDU keeps at least this much more headroom than the hottest CDU
TRIM_MAX_K = 6.0  # largest TCS trim above the hottest CDU's setpoint


class LoadMemory:
    """Hall utilisation and per-CDU relative headroom over the last :data:`STEP_WINDOW_NS` (ring buffers: a
    decision reads the window with two array reductions, not a Python loop over a day of snapshots)."""

    def __init__(self, interval_s: float) -> None:
        self.size = int(STEP_WINDOW_NS / 1e9 / interval_s) + 2
        self.t_ns = np.full(self.size, np.iinfo(np.int64).min, dtype=np.int64)
        self.util = np.full(self.size, np.nan)
        self.rel: np.ndarray | None = None  # (size, CDUs), allocated at the first snapshot
        # (size, CDUs): at full load, the TCS supply at which each CDU's hottest GPU would reach the ceiling (NaN
        # below full load)
        self.full_c: np.ndarray | None = None
        self.k = 0  # next slot
        self.last_util = float("nan")
        self.first_ns: int | None = None
        self.last_ns: int | None = None
        self.last_step_ns: int | None = None

    def update(self, snap: Snapshot, ceiling_c: Arr) -> None:
        """Remember this snapshot's hall utilisation and relative headroom; note a step when the load jumps."""
        u = float(np.nanmean(snap.gpu_util_pct)) if np.isfinite(snap.gpu_util_pct).any() else float("nan")
        if np.isfinite(u) and np.isfinite(self.last_util) and u - self.last_util >= STEP_RISE_PCT:
            self.last_step_ns = snap.t_ns
        if np.isfinite(u):
            self.last_util = u
        # Headroom as if every CDU had the hottest CDU's TCS supply (GPU temperature follows TCS about 1:1), so a
        # trim applied now does not read as lost headroom at the next decision.
        h = ceiling_c - snap.gpu_max_c + (snap.tcs_supply_c - np.nanmin(snap.tcs_supply_c))
        n = len(h)
        if self.rel is None or self.rel.shape[1] != n:
            self.rel = np.full((self.size, n), np.nan)
        if self.full_c is None or self.full_c.shape[1] != n:
            self.full_c = np.full((self.size, n), np.nan)
        self.t_ns[self.k] = snap.t_ns
        self.util[self.k] = u
        self.rel[self.k] = h - h.min() if np.isfinite(h).all() else np.nan
        full = np.isfinite(u) and u >= FULL_SEEN_PCT
        self.full_c[self.k] = ceiling_c - snap.gpu_max_c + snap.tcs_supply_c if full else np.nan
        self.k = (self.k + 1) % self.size
        self.last_ns = snap.t_ns
        if self.first_ns is None:
            self.first_ns = snap.t_ns

    def _window(self) -> np.ndarray:
        if self.last_ns is None:
            return np.zeros(self.size, dtype=bool)
        return np.asarray(self.t_ns >= self.last_ns - STEP_WINDOW_NS, dtype=bool)

    @property
    def stepped(self) -> bool:
        """Whether the hall stepped up within the window (then it may step to full load at any time)."""
        last, now = self.last_step_ns, self.last_ns
        return last is not None and now is not None and now - last <= STEP_WINDOW_NS

    @property
    def young(self) -> bool:
        """Whether the memory spans less than a window: what the hall can step to is not known yet. A gap counts:
        after days without snapshots (a restart) the window holds only the hours since, which may all be idle."""
        if self.first_ns is None or self.last_ns is None or self.last_ns - self.first_ns < STEP_WINDOW_NS:
            return True
        seen = self.t_ns[self._window()]
        return bool(self.last_ns - int(seen.min()) < STEP_WINDOW_NS - GAP_SLACK_NS)

    def step_to_pct(self, now_pct: float) -> float:
        """The hall utilisation the GPU constraint is judged at: the window's highest, or full load after a step."""
        seen = self.util[self._window()]
        seen = seen[np.isfinite(seen)]
        peak = max(now_pct, float(seen.max())) if len(seen) else now_pct
        return max(peak, FULL_LOAD_PCT) if self.stepped or self.young else peak

    def headroom_at_step_k(self, snap: Snapshot, ceiling_c: Arr) -> float:
        """Hottest GPU's headroom (K below limit − margin) if the load stepped now to the step-to load, from
        measurement alone (commissioning has no model): the GPU's rise over its TCS supply scales with GPU power."""
        u = np.clip(np.nan_to_num(snap.gpu_util_pct, nan=FULL_LOAD_PCT) / 100.0, 0.0, 1.0)
        hall = float(np.nanmean(snap.gpu_util_pct)) if np.isfinite(snap.gpu_util_pct).any() else FULL_LOAD_PCT
        s = np.maximum(self.step_to_pct(hall) / 100.0, u)
        rise = np.maximum(snap.gpu_max_c - snap.tcs_supply_c, 0.0)
        grow = (IDLE_POWER_SHARE + (1 - IDLE_POWER_SHARE) * s) / (IDLE_POWER_SHARE + (1 - IDLE_POWER_SHARE) * u)
        h = ceiling_c - snap.gpu_max_c - rise * (grow - 1.0)
        return float(np.min(h)) if np.isfinite(h).all() else float("-inf")

    def full_load_headroom_k(self, snap: Snapshot) -> float:
        """Hottest GPU's headroom (K below limit − margin) at full load at the TCS of now, measured at the hall's
        own full-load snapshots of the window (see the module docstring); NaN where the window holds none (or not
        for every CDU). TCS of now: each CDU's setpoint or supply, whichever is warmer."""
        if self.full_c is None or self.full_c.shape[1] != len(snap.tcs_supply_c):
            return float("nan")
        c = self.full_c[self._window()]
        c = c[np.isfinite(c).all(axis=1)]
        if not len(c):
            return float("nan")
        tcs = np.fmax(snap.current.tcs_c, snap.tcs_supply_c)
        h = c.min(axis=0) - tcs
        return float(np.min(h)) if np.isfinite(h).all() else float("nan")

    def full_load_tcs_c(self) -> float:
        """The TCS supply at which the hottest GPU would reach limit − margin at full load: the lowest over the
        window's full-load snapshots and every CDU (see the module docstring); NaN where the window holds none."""
        if self.full_c is None:
            return float("nan")
        c = self.full_c[self._window()]
        c = c[np.isfinite(c).all(axis=1)]
        return float(c.min()) if len(c) else float("nan")

    def trims_k(self, n: int) -> Arr:
        """Per-CDU TCS trim above the hottest CDU's setpoint: the window's least relative headroom less a band."""
        if self.rel is None or self.rel.shape[1] != n:
            return np.zeros(n)
        rel = self.rel[self._window()]
        rel = rel[np.isfinite(rel).all(axis=1)]
        if not len(rel):
            return np.zeros(n)
        return np.asarray(np.clip(rel.min(axis=0) - TRIM_BAND_K, 0.0, TRIM_MAX_K), dtype=np.float64)
