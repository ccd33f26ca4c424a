"""The contract between the facility physics and the protocol servers that expose it.

The servers never compute physics and the physics never touches sockets. Each tick the runner advances
the physics, then every server asks for its devices' values keyed by point name (``Point.sim`` when set)
and encodes them per the device's profile. Writes from clients flow back through :meth:`write_point`.

What-if (public, stable names; for the oracle, ``app/evaluation/evaluate.py`` and ``bench/``):

* :class:`Setpoints` — N candidate setpoint sets as arrays: ``tcs_supply_c`` and ``dp_kpa`` (N, n_cdu) in the
  order of the plant's ``cdu_names``, ``fws_supply_c`` and ``chw_supply_c`` (CRAH chilled water) (N,).
  ``Setpoints.grid(plant.setpoints(), fws_supply_c=..., ...)`` builds candidates around the current set.
* :class:`WhatIfPlant` — ``setpoints()`` (the set in force, N = 1) and ``what_if(sp, dt_s=None)``: the steady
  state at ``sp`` under the current weather and load, or with ``dt_s`` one step from the current state exactly
  as ``step(dt_s)`` would give with ``sp`` held. Neither advances time, energy, setpoints or heartbeats.
* :class:`WhatIf` — the result, arrays over candidates: ``facility_power_w``, ``it_power_w``,
  ``cooling_power_w``, ``chiller_power_w``, ``hr_fan_power_w``, ``cdu_pump_power_w`` (N,); ``gpu_temp_max_c``
  and ``gpus_throttled`` (N, n_racks, thermal slowdown only) with ``gpu_limit_c`` (n_racks,); ``work_rate`` (N,),
  the work the GPUs do in full-clock GPU equivalents (Σ utilisation · clock: clocks lost at the board power limit
  or to thermal throttling lower it), so ``facility_power_w / work_rate`` is facility power per unit of work;
  ``fws_supply_c`` (N,); achieved ``tcs_supply_c`` and ``dp_kpa``, ``dewpoint_margin_k`` (TCS supply − hall dew
  point), ``condensation_risk`` and ``dp_not_reached`` (N, n_cdu); ``above_class`` (FWS above the site's W-class)
  and ``free_cooling_state`` (N,); ``feasible(gpu_margin_k=3.0)`` combines the constraints (hottest GPU ≤ limit −
  margin, none throttled, no condensation risk, every dp reached, FWS within the W-class).
* Helpers: ``Setpoints.take(start, stop)`` and ``WhatIf.concat(parts)``. ``simulators.facility.Facility``
  implements :class:`WhatIfPlant` (candidates go through in chunks of 48) and adds ``settle_at(t_ns)``: jump to
  another instant and settle there at the current setpoints, counting no energy (for sampled-year studies).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

Arr = npt.NDArray[np.float64]

# A point value: a number, a flag, or one number per GPU for array nodes.
PointValue = float | int | bool | Sequence[float]


class FacilityPhysics(Protocol):
    """What the servers need from the simulated facility."""

    t_ns: int

    def step(self, dt_s: float) -> None:
        """Advance the facility by ``dt_s`` simulated seconds."""
        ...

    def device_values(self, device: str) -> dict[str, PointValue]:
        """Current values of every point of ``device`` keyed by point name (or its ``sim`` name)."""
        ...

    def write_point(self, device: str, point: str, value: float) -> None:
        """A client wrote a writable point (setpoint or heartbeat); the physics takes it from now on."""
        ...


# --- what-if: the plant at given setpoints, without advancing it ---------------------------------------------


@dataclass(frozen=True, slots=True)
class Setpoints:
    """N candidate setpoint sets (row i is candidate i); a single set is N = 1.

    ``tcs_supply_c`` and ``dp_kpa`` are (N, n_cdu) in the order of ``cdu_names``; ``fws_supply_c`` (plant FWS
    supply) and ``chw_supply_c`` (CRAH chilled-water supply) are (N,).
    """

    tcs_supply_c: Arr
    dp_kpa: Arr
    fws_supply_c: Arr
    chw_supply_c: Arr

    def __post_init__(self) -> None:
        n = len(self.fws_supply_c)
        if self.tcs_supply_c.ndim != 2 or self.dp_kpa.shape != self.tcs_supply_c.shape:
            raise ValueError(
                f"Setpoints: tcs_supply_c {self.tcs_supply_c.shape} and dp_kpa {self.dp_kpa.shape} "
                "must both be (N, n_cdu)"
            )
        if self.tcs_supply_c.shape[0] != n or self.chw_supply_c.shape != (n,):
            raise ValueError(f"Setpoints: every array needs the same N candidates, got {n} FWS setpoints")

    @property
    def n(self) -> int:
        """Number of candidates."""
        return len(self.fws_supply_c)

    def take(self, start: int, stop: int) -> Setpoints:
        """Candidates ``start`` to ``stop`` (exclusive)."""
        return Setpoints(
            self.tcs_supply_c[start:stop],
            self.dp_kpa[start:stop],
            self.fws_supply_c[start:stop],
            self.chw_supply_c[start:stop],
        )

    @classmethod
    def grid(
        cls,
        base: Setpoints,
        *,
        tcs_supply_c: Arr | None = None,
        dp_kpa: Arr | None = None,
        fws_supply_c: Arr | None = None,
        chw_supply_c: Arr | None = None,
    ) -> Setpoints:
        """Candidates that take ``base`` (one set, N = 1) and replace the given fields with per-candidate values.

        ``tcs_supply_c`` and ``dp_kpa`` given as (N,) apply the same value to every CDU of a candidate.
        """
        given = [a for a in (tcs_supply_c, dp_kpa, fws_supply_c, chw_supply_c) if a is not None]
        n = len(given[0]) if given else 1
        nc = base.tcs_supply_c.shape[1]

        def per_cdu(a: Arr | None, b: Arr) -> Arr:
            if a is None:
                return np.repeat(b[:1], n, axis=0)
            a = np.asarray(a, dtype=np.float64)
            return np.repeat(a[:, None], nc, axis=1) if a.ndim == 1 else a

        def scalar(a: Arr | None, b: Arr) -> Arr:
            return np.full(n, float(b[0])) if a is None else np.asarray(a, dtype=np.float64)

        return cls(
            per_cdu(tcs_supply_c, base.tcs_supply_c),
            per_cdu(dp_kpa, base.dp_kpa),
            scalar(fws_supply_c, base.fws_supply_c),
            scalar(chw_supply_c, base.chw_supply_c),
        )


@dataclass(frozen=True, slots=True)
class WhatIf:
    """The plant at N candidate setpoint sets: arrays over candidates (and racks or CDUs)."""

    facility_power_w: Arr  # (N,) utility meter
    it_power_w: Arr  # (N,) rack inputs
    cooling_power_w: Arr  # (N,) cooling sub-meter: chillers, fans, pumps, CRAH
    chiller_power_w: Arr  # (N,)
    hr_fan_power_w: Arr  # (N,) free-cooler plus condenser fans
    cdu_pump_power_w: Arr  # (N,)
    gpu_temp_max_c: Arr  # (N, n_racks) hottest GPU per rack
    gpu_limit_c: Arr  # (n_racks,) throttle temperature of each rack's GPUs
    gpus_throttled: npt.NDArray[np.int64]  # (N, n_racks) thermally throttled GPUs per rack
    work_rate: Arr  # (N,) Σ utilisation · clock over GPUs: full-clock GPU equivalents (facility W / this = W per GPU)
    fws_supply_c: Arr  # (N,)
    tcs_supply_c: Arr  # (N, n_cdu) achieved (never below FWS supply + CDU approach)
    dp_kpa: Arr  # (N, n_cdu) achieved
    dewpoint_margin_k: Arr  # (N, n_cdu) TCS supply − hall dew point
    condensation_risk: npt.NDArray[np.bool_]  # (N, n_cdu) margin below the site's dew-point margin
    dp_not_reached: npt.NDArray[np.bool_]  # (N, n_cdu) pump at full speed short of the dp setpoint
    above_class: npt.NDArray[np.bool_]  # (N,) FWS supply above the site's ASHRAE W-class limit
    free_cooling_state: npt.NDArray[np.int64]  # (N,) 0 chiller only, 1 partial, 2 full

    @classmethod
    def concat(cls, parts: Sequence[WhatIf]) -> WhatIf:
        """Candidates of several results, in order (``gpu_limit_c`` is per rack and shared)."""
        names = [f for f in cls.__dataclass_fields__ if f != "gpu_limit_c"]
        joined = {f: np.concatenate([getattr(p, f) for p in parts]) for f in names}
        return cls(gpu_limit_c=parts[0].gpu_limit_c, **joined)

    def feasible(self, gpu_margin_k: float = 3.0) -> npt.NDArray[np.bool_]:
        """(N,) candidates that keep every GPU ``gpu_margin_k`` below its limit, none throttled, no
        condensation risk, FWS within the W-class and every dp setpoint reached."""
        return (
            (self.gpu_temp_max_c <= self.gpu_limit_c - gpu_margin_k).all(axis=1)
            & (self.gpus_throttled == 0).all(axis=1)
            & ~self.condensation_risk.any(axis=1)
            & ~self.dp_not_reached.any(axis=1)
            & ~self.above_class
        )


class WhatIfPlant(Protocol):
    """A plant that can be asked what it would do at other setpoints without advancing it.

    ``what_if(sp, dt_s=300.0)`` evaluates one step of ``dt_s`` from the current state (the weather and load at
    ``t_ns + dt_s``, the loop lags applied), as ``step(dt_s)`` would with those setpoints held;
    ``what_if(sp)`` (``dt_s=None``) gives the steady state at the current weather and load. Neither moves
    time, energy counters, setpoints or heartbeats.
    """

    cdu_names: list[str]
    rack_names: list[str]

    def setpoints(self) -> Setpoints:
        """The setpoints in force now, as one candidate."""
        ...

    def what_if(self, sp: Setpoints, *, dt_s: float | None = None, peak_s: float = 0.0) -> WhatIf:
        """The plant at each candidate of ``sp``: one step of ``dt_s``, or steady state when None (under the
        highest load and warmest weather of the next ``peak_s`` seconds when that is given)."""
        ...
