"""What every controller sees and returns: a telemetry snapshot and a set of cooling setpoints.

A :class:`Snapshot` is built from telemetry only (the live state in production, the same device points in the
in-process evaluation), with per-CDU quantities as numpy arrays so a 1,000-rack site costs no Python loop per CDU.
Every controller (baselines, the aidc supervisor's core, the oracle) implements :class:`Controller`, so the
evaluation runs them all through one loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np
import numpy.typing as npt

Arr = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Setpoints:
    """Cooling setpoints: TCS supply temperature and differential pressure per CDU, FWS supply for the plant and
    the CRAH chilled-water supply (``chw_c``; NaN where the site has no writable one or the controller leaves it)."""

    tcs_c: Arr
    dp_kpa: Arr
    fws_c: float
    chw_c: float = math.nan

    def copy(self) -> Setpoints:
        """An independent copy (the arrays are not shared)."""
        return Setpoints(self.tcs_c.copy(), self.dp_kpa.copy(), float(self.fws_c), float(self.chw_c))

    def with_chw(self, chw_c: float) -> Setpoints:
        """The same setpoints with another chilled-water setpoint."""
        return Setpoints(self.tcs_c, self.dp_kpa, self.fws_c, float(chw_c))

    def changes(self, other: Setpoints, tol: float = 1e-6) -> int:
        """How many individual setpoints differ from ``other``."""
        return int(
            np.count_nonzero(np.abs(self.tcs_c - other.tcs_c) > tol)
            + np.count_nonzero(np.abs(self.dp_kpa - other.dp_kpa) > tol)
            + (abs(self.fws_c - other.fws_c) > tol)
            + (math.isfinite(self.chw_c) and not abs(self.chw_c - other.chw_c) <= tol)
        )

    def by_point(self, cdu_names: tuple[str, ...], tcs_point: str, dp_point: str, plant: str, fws_point: str,
                 chw_point: str | None = None) -> dict[str, dict[str, float]]:
        """``{device: {point: value}}`` with the profiles' point names, for the audit and the status page."""
        out = {n: {tcs_point: round(float(self.tcs_c[i]), 3), dp_point: round(float(self.dp_kpa[i]), 3)}
               for i, n in enumerate(cdu_names)}
        out[plant] = {fws_point: round(float(self.fws_c), 3)}
        if chw_point is not None and math.isfinite(self.chw_c):
            out[plant][chw_point] = round(float(self.chw_c), 3)
        return out

    def as_dict(self, cdu_names: tuple[str, ...]) -> dict[str, float]:
        """``{"<cdu>.tcs_c": ..., "<cdu>.dp_kpa": ..., "plant.fws_c": ...}`` for logs and audit lines."""
        out: dict[str, float] = {}
        for i, n in enumerate(cdu_names):
            out[f"{n}.tcs_c"] = round(float(self.tcs_c[i]), 3)
            out[f"{n}.dp_kpa"] = round(float(self.dp_kpa[i]), 3)
        out["plant.fws_c"] = round(float(self.fws_c), 3)
        if math.isfinite(self.chw_c):
            out["plant.chw_c"] = round(float(self.chw_c), 3)
        return out


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The facility as telemetry shows it at ``t_ns`` (NaN where a value is missing or not good)."""

    t_ns: int
    cdu_names: tuple[str, ...]
    gpu_max_c: Arr  # hottest GPU on the racks of each CDU
    gpu_util_pct: Arr  # mean GPU utilisation on the racks of each CDU
    tcs_supply_c: Arr
    valve_pct: Arr
    heat_kw: Arr
    current: Setpoints  # the setpoints the devices report
    fws_supply_c: float
    drybulb_c: float
    wetbulb_c: float
    facility_kw: float
    it_kw: float
    cooling_kw: float
    max_age_s: float = 0.0  # age of the oldest input at ``t_ns``
    alarms: tuple[str, ...] = field(default=())
    # Mean SM clock as % of max per CDU (DCGM), NaN where the site reports none: optional, so it is not in
    # :attr:`finite` and a site without clock points decides as before (work rate = utilisation).
    gpu_clock_pct: Arr | None = None
    # The plant's free-cooling state on the FWS loop (0 chiller only, 1 partial, 2 full; Role.FREE_COOLING_STATE),
    # NaN where the plant reports none: optional like the clocks, so not in :attr:`finite`.
    free_cooling_state: float = math.nan
    # ... and its fans' speed, % of full (Role.FREE_COOLER_FAN_SPEED), NaN where not reported.
    free_cooler_fan_pct: float = math.nan

    @property
    def work_pct(self) -> float:
        """Hall work rate: mean utilisation × clock / 100 where every CDU reports clocks, else mean utilisation."""
        util = self.gpu_util_pct
        clk = self.gpu_clock_pct
        if clk is not None and len(clk) == len(util) and bool(np.isfinite(clk).all()):
            return float(np.nanmean(util * clk / 100.0))
        return float(np.nanmean(util))

    @property
    def has_clocks(self) -> bool:
        """Whether every CDU reports a finite GPU clock."""
        clk = self.gpu_clock_pct
        return clk is not None and len(clk) == len(self.cdu_names) and bool(np.isfinite(clk).all())

    @property
    def finite(self) -> bool:
        """Whether every input the controllers use is a finite number."""
        arrays = (self.gpu_max_c, self.gpu_util_pct, self.tcs_supply_c, self.current.tcs_c, self.current.dp_kpa)
        scalars = (self.fws_supply_c, self.drybulb_c, self.wetbulb_c, self.facility_kw, self.current.fws_c)
        return all(bool(np.isfinite(a).all()) for a in arrays) and all(np.isfinite(s) for s in scalars)

    def with_current(self, sp: Setpoints) -> Snapshot:
        """The same snapshot with other current setpoints (tests and what-if scoring)."""
        return replace(self, current=sp)


@dataclass(frozen=True, slots=True)
class Decision:
    """A controller's choice with what it expected, for the audit and the status page."""

    setpoints: Setpoints
    state: str = "deciding"  # commissioning / learning / deciding / holding / fallback
    predicted_facility_kw: float | None = None
    predicted_saving_kw: float | None = None
    binding: tuple[str, ...] = ()
    hold_reason: str = ""
    candidates: int = 0


class Controller(Protocol):
    """A supervisory cooling controller: one decision per interval from a snapshot."""

    name: str

    def decide(self, snap: Snapshot) -> Decision:
        """The setpoints to hold until the next decision."""
        ...
