"""Baseline controllers with the same interface as the aidc supervisor (``decide(snapshot) -> Decision``).

* :class:`FixedController`: the profiles' commissioning defaults (safe setpoints), never changed.
* :class:`ConstantController`: any constant setpoints; the evaluation's hindsight search picks the best one.
* :class:`TrimRespondController`: ASHRAE Guideline 36 §5.1.14 trim & respond on one 0-1 plant reset variable,
  requests from CDUs whose hottest GPU is within a margin of its limit or whose FWS valve is nearly open.
* :class:`ExpertController`: what a good commissioning engineer sets up: FWS at the outdoor dry bulb (wet bulb with
  a tower) plus the heat-rejection approach, TCS at FWS plus the CDU approach, both capped by a trim & respond on the
  hottest GPU.
* :class:`BinTableController`: an outdoor-reset schedule, FWS, TCS, dp and chilled water looked up by outdoor
  dry-bulb bin (wet bulb with a tower), commissioned from steady-state tests at full load
  (:func:`app.evaluation.commissioning.commission_bin_table`).

Commissioned trim & respond: :func:`trim_respond_config` ends its dp range at what the pump test
(:func:`app.evaluation.commissioning.pump_test`) found the CDU pumps reach, not at the profile's maximum, and counts
every CDU's request from 3 K before limit − margin.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from control.policy import Limits, TrimRespondConfig, dew_point_c
from control.types import Decision, Setpoints, Snapshot

# Coldest facility water a free cooler makes above its sink, when the site does not say (typical design values).
DEFAULT_HR_APPROACH_K = {"chiller_drycooler": 5.0, "chiller_tower": 4.0, "chiller_only": 0.0}


class FixedController:
    """The commissioning defaults, held for ever."""

    name = "fixed"

    def __init__(self, limits: Limits) -> None:
        self.sp = limits.safe.copy()

    def decide(self, snap: Snapshot) -> Decision:
        """Always the safe defaults."""
        return Decision(self.sp.copy(), state="fixed")


class ConstantController:
    """Constant setpoints (uniform over CDUs; chilled water NaN: left where it is), clipped to the site's limits."""

    def __init__(self, limits: Limits, tcs_c: float, dp_kpa: float, fws_c: float, name: str = "constant",
                 chw_c: float = math.nan) -> None:
        n = len(limits.cdu_names)
        self.name = name
        self.sp = limits.clip(Setpoints(np.full(n, tcs_c), np.full(n, dp_kpa), fws_c, chw_c))

    def decide(self, snap: Snapshot) -> Decision:
        """The same setpoints every time."""
        return Decision(self.sp.copy(), state="fixed")


class TrimRespond:
    """The G36 trim & respond state machine on a reset variable in [sp_min, sp_max]."""

    def __init__(self, cfg: TrimRespondConfig) -> None:
        self.cfg = cfg
        self.x = cfg.sp0
        self.start_ns: int | None = None
        self.last_ns: int | None = None

    def update(self, t_ns: int, requests: int) -> float:
        """Advance to ``t_ns`` with ``requests`` requests; returns the reset variable."""
        c = self.cfg
        if self.start_ns is None:
            self.start_ns = t_ns
        if (t_ns - self.start_ns) / 1e9 < c.td_s:
            return self.x
        if self.last_ns is not None and (t_ns - self.last_ns) / 1e9 < c.t_s - 1e-6:
            return self.x
        self.last_ns = t_ns
        counted = requests if c.r is None else min(requests, c.r)
        if counted <= c.i:
            self.x += c.sp_trim
        else:
            self.x += min(c.sp_res * (counted - c.i), c.sp_res_max)
        self.x = float(np.clip(self.x, c.sp_min, c.sp_max))
        return self.x


def _requests(snap: Snapshot, limits: Limits, cfg: TrimRespondConfig) -> int:
    hot = snap.gpu_max_c > limits.gpu_limit_c - cfg.request_margin_k
    valve = np.nan_to_num(snap.valve_pct, nan=0.0) >= cfg.request_valve_pct
    # A missing GPU reading is a request: the safe direction is more cooling.
    return int(np.count_nonzero(hot | valve | ~np.isfinite(snap.gpu_max_c)))


COMMISSIONED_REQUEST_LEAD_K = 3.0  # commissioned trim & respond: requests start this far before limit − margin


def trim_respond_config(limits: Limits, dp_max_kpa: float) -> TrimRespondConfig:
    """The site's trim & respond settings as commissioned for a GPU hall.

    The dp range ends at ``dp_max_kpa`` (what the pumps reach, from the pump test) where that is below the range's
    own end: above it the reset moves a setpoint no pump follows, a dead band that lets the GPUs run hot. Where the
    site's ``[control.trim_respond]`` does not set them: no request is ignored (``i`` = 0; G36's ignored requests
    are for rogue comfort zones, where every CDU here carries critical load), and a CDU requests from
    ``COMMISSIONED_REQUEST_LEAD_K`` before limit − margin (``request_margin_k`` = margin + lead).
    """
    cfg = limits.cfg.trim_respond
    lo, hi = cfg.dp_range_kpa or (limits.dp_lo, limits.dp_hi)
    hi = float(min(hi, max(dp_max_kpa, lo)))
    update: dict[str, object] = {"dp_range_kpa": (lo, hi)}
    if "i" not in cfg.model_fields_set:
        update["i"] = 0
    if "request_margin_k" not in cfg.model_fields_set:
        update["request_margin_k"] = limits.cfg.gpu_margin_k + COMMISSIONED_REQUEST_LEAD_K
    return cfg.model_copy(update=update)


class TrimRespondController:
    """G36 trim & respond mapped onto dp (first half of the reset range) and supply temperatures (second half)."""

    name = "trim_respond"

    def __init__(self, limits: Limits, cfg: TrimRespondConfig | None = None) -> None:
        self.limits = limits
        self.cfg = cfg or limits.cfg.trim_respond
        self.tr = TrimRespond(self.cfg)
        c = self.cfg
        self.tcs = c.tcs_range_c or (limits.tcs_lo, limits.tcs_hi)
        self.dp = c.dp_range_kpa or (limits.dp_lo, limits.dp_hi)
        self.fws = c.fws_range_c or (limits.fws_lo, limits.fws_hi)

    def setpoints(self, x: float, n: int) -> Setpoints:
        """Setpoints for reset ``x`` (0: warm, low dp; 1: cold, high dp)."""
        a = min(max(2.0 * x, 0.0), 1.0)  # dp part
        b = min(max(2.0 * x - 1.0, 0.0), 1.0)  # temperature part
        dp = self.dp[0] + a * (self.dp[1] - self.dp[0])
        tcs = self.tcs[1] - b * (self.tcs[1] - self.tcs[0])
        fws = self.fws[1] - b * (self.fws[1] - self.fws[0])
        return Setpoints(np.full(n, tcs), np.full(n, dp), fws)

    def decide(self, snap: Snapshot) -> Decision:
        """One trim & respond step from the requests in ``snap``."""
        x = self.tr.update(snap.t_ns, _requests(snap, self.limits, self.cfg))
        dew = dew_point_c(snap.drybulb_c, snap.wetbulb_c) if np.isfinite(snap.wetbulb_c) else None
        sp = self.limits.clip(self.setpoints(x, len(snap.cdu_names)), dew)
        return Decision(sp, state="deciding", binding=(f"reset={x:.2f}",))


class ExpertController:
    """FWS at the free-cooling limit, TCS at FWS + approach, capped by a trim & respond on the hottest GPU."""

    name = "expert"

    def __init__(self, limits: Limits, plant_type: str, hr_approach_k: float | None = None) -> None:
        self.limits = limits
        self.plant_type = plant_type
        self.design_approach_k = DEFAULT_HR_APPROACH_K.get(plant_type, 5.0) if hr_approach_k is None else hr_approach_k
        self.hr_approach_k = self.design_approach_k  # the FWS offset above the sink (aidc's rule prior moves it)
        cfg = limits.cfg.trim_respond.model_copy(update={"request_valve_pct": 101.0})
        self.tr = TrimRespond(cfg)
        self.cfg = cfg

    def decide(self, snap: Snapshot) -> Decision:
        """Free-cooling-limit FWS and approach-tracking TCS under the trim & respond cap."""
        lim = self.limits
        if self.plant_type == "chiller_only":
            fws = lim.fws_hi  # no free cooling: the warmest water gives the best chiller COP
        else:
            sink = snap.wetbulb_c if self.plant_type == "chiller_tower" else snap.drybulb_c
            fws = float(np.clip(sink + self.hr_approach_k, lim.fws_lo, lim.fws_hi))
        x = self.tr.update(snap.t_ns, _requests(snap, lim, self.cfg))
        cap = lim.tcs_hi - x * (lim.tcs_hi - lim.tcs_lo)  # x = 1: coldest
        tcs = min(fws + lim.cfg.cdu_approach_k, cap)
        fws = min(fws, tcs - lim.cfg.cdu_approach_k)
        n = len(snap.cdu_names)
        dew = dew_point_c(snap.drybulb_c, snap.wetbulb_c) if np.isfinite(snap.wetbulb_c) else None
        sp = lim.clip(Setpoints(np.full(n, tcs), lim.safe.dp_kpa.copy(), fws), dew)
        return Decision(sp, state="deciding", binding=(f"cap={cap:.1f}",))


@dataclass(frozen=True)
class BinTable:
    """An outdoor-reset schedule: setpoints per bin of the outdoor sink temperature (dry bulb, or wet bulb for a
    cooling-tower plant).

    Bin ``b`` covers sink temperatures above ``upper_c[b-1]`` up to ``upper_c[b]`` (ascending); the first bin extends
    down and the last up without bound. The lookup steps (no interpolation): each bin's setpoints were tested at
    the warmest hour of its bin, so within the bin they hold, where a value interpolated toward a warmer bin's
    was never tested. ``chw_c`` is NaN where the plant has no writable chilled-water setpoint.
    """

    sink: str  # "drybulb" or "wetbulb"
    upper_c: np.ndarray
    fws_c: np.ndarray
    tcs_c: np.ndarray
    dp_kpa: np.ndarray
    chw_c: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.upper_c)
        if n == 0 or any(len(a) != n for a in (self.fws_c, self.tcs_c, self.dp_kpa, self.chw_c)):
            raise ValueError(f"BinTable: every column needs the same number of bins ({n})")
        if np.any(np.diff(self.upper_c) <= 0):
            raise ValueError("BinTable: bin upper edges must be ascending")
        if self.sink not in ("drybulb", "wetbulb"):
            raise ValueError(f"BinTable: sink {self.sink!r} is neither drybulb nor wetbulb")

    def index(self, sink_c: float) -> int:
        """The bin of a sink temperature; an unknown one (NaN) takes the warmest bin, whose setpoints were tested
        at the year's warmest hour and hold in any weather."""
        if not math.isfinite(sink_c):
            return len(self.upper_c) - 1
        return min(int(np.searchsorted(self.upper_c, sink_c, side="left")), len(self.upper_c) - 1)

    def as_dict(self) -> dict[str, object]:
        """The schedule for the JSON document and logs."""
        return {"sink": self.sink, **{k: np.round(getattr(self, k), 2).tolist()
                                      for k in ("upper_c", "fws_c", "tcs_c", "dp_kpa", "chw_c")}}


class BinTableController:
    """An outdoor-reset schedule: each decision the setpoints of the outdoor bin, clipped to the limits and the
    dew-point margin like the other baselines."""

    name = "bin_table"

    def __init__(self, limits: Limits, table: BinTable) -> None:
        self.limits = limits
        self.table = table

    def decide(self, snap: Snapshot) -> Decision:
        """The bin's setpoints for the outdoor temperature in ``snap``."""
        t = self.table
        b = t.index(snap.wetbulb_c if t.sink == "wetbulb" else snap.drybulb_c)
        n = len(snap.cdu_names)
        sp = Setpoints(np.full(n, float(t.tcs_c[b])), np.full(n, float(t.dp_kpa[b])), float(t.fws_c[b]),
                       float(t.chw_c[b]))
        dew = dew_point_c(snap.drybulb_c, snap.wetbulb_c) if np.isfinite(snap.wetbulb_c) else None
        return Decision(self.limits.clip(sp, dew), state="deciding", binding=(f"bin={b}",))
