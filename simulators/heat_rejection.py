"""Heat-rejection and coil curves of the plant, vectorised over what-if candidates (equations: docs/physics.md).

* Free coolers (a dry cooler on dry bulb, or a cooling tower with its plate exchanger on wet bulb) use the
  effectiveness-NTU method for a crossflow coil with both streams unmixed: the air-side conductance grows as
  airflow^0.6 (finned-coil air-side correlations, the air side dominates UA), so the approach falls as the fans
  speed up, while fan power grows as speed³ (fan laws). The coil is sized from one design point: design
  rejection with the design water ΔT, the catalogue approach at full fan speed. A cooling tower is treated the
  same way on wet bulb with an effective air capacity (Braun's effectiveness model for counterflow towers).
* The local loop sets fan speed to meet the supply setpoint with free cooling alone where it can; where it
  cannot, the fans run at full speed to precool the return water and the chiller trims the rest.
* Condenser fans of a running chiller follow the condenser heat (compressor load plus work), not 100 %.
* CRAH coils: a counterflow coil, air the smaller capacity stream; the fans move the airflow that lets the coil
  hold the supply-air temperature at the chilled-water temperature given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from simulators.physics import Arr

AIR_UA_EXPONENT = 0.6  # UA ∝ airflow^0.6: air-side h ∝ Re^0.6 on finned tubes (Kays & London)
_GRID = 33  # fan speeds at which the local loop evaluates the free cooler
_AIR_GRID = np.geomspace(0.02, 3.0, 72)  # CRAH airflow / design at which the coil is evaluated


def crossflow_effectiveness(ntu: Arr, cr: Arr) -> Arr:
    """Crossflow, both fluids unmixed: ε = 1 − exp(NTU^0.22/Cr·(exp(−Cr·NTU^0.78) − 1)) (Incropera, table 11.3)."""
    cr = np.maximum(cr, 1e-6)
    return 1.0 - np.exp(ntu**0.22 / cr * (np.exp(-cr * ntu**0.78) - 1.0))


def counterflow_effectiveness(ntu: Arr, cr: Arr) -> Arr:
    """Counterflow: ε = (1 − e^(−NTU(1−Cr))) / (1 − Cr·e^(−NTU(1−Cr))), ε = NTU/(1+NTU) at Cr = 1."""
    cr = np.minimum(np.maximum(cr, 0.0), 0.999)
    e = np.exp(-ntu * (1.0 - cr))
    return (1.0 - e) / (1.0 - cr * e)


def _solve_ntu(eps: float, cr: float, counterflow: bool) -> float:
    """The NTU at which the coil reaches effectiveness ``eps`` at capacity ratio ``cr`` (design sizing)."""
    f = counterflow_effectiveness if counterflow else crossflow_effectiveness
    lo, hi = 1e-4, 50.0
    for _ in range(80):
        mid = math.sqrt(lo * hi)
        if float(f(np.array(mid), np.array(cr))) < eps:
            lo = mid
        else:
            hi = mid
    return math.sqrt(lo * hi)


@dataclass(frozen=True, slots=True)
class FreeCooler:
    """A dry cooler or cooling tower sized for ``design_w`` at ``approach_k`` above its sink at full fan speed."""

    design_w: float  # heat rejected at the design point (W)
    water_dt_k: float  # water ΔT at the design point (K)
    approach_k: float  # leaving water − sink at design load, full fan speed (K)
    fan_w: float  # fan power at full speed (W)
    air_ratio: float  # air capacity rate / water capacity rate at design (> 1: water is C_min)
    min_speed: float

    @property
    def c_water_design(self) -> float:
        """Water capacity rate at design (W/K)."""
        return self.design_w / self.water_dt_k

    @property
    def ua_design(self) -> float:
        """Conductance UA at full fan speed (W/K), from the design point."""
        eps = self.water_dt_k / (self.water_dt_k + self.approach_k)
        return _solve_ntu(eps, 1.0 / self.air_ratio, counterflow=False) * self.c_water_design

    def leaving(self, t_in: Arr, sink: Arr | float, c_water: Arr, speed: Arr, ua_design: float) -> Arr:
        """Leaving water temperature (°C) at fan ``speed`` for entering water ``t_in`` and water rate ``c_water``."""
        c_air = np.maximum(speed, 1e-3) * self.air_ratio * self.c_water_design
        c_min, c_max = np.minimum(c_water, c_air), np.maximum(c_water, c_air)
        ua = ua_design * np.maximum(speed, 1e-3) ** AIR_UA_EXPONENT
        eps = crossflow_effectiveness(ua / np.maximum(c_min, 1e-9), c_min / np.maximum(c_max, 1e-9))
        q = eps * c_min * np.maximum(t_in - sink, 0.0)
        return t_in - q / np.maximum(c_water, 1e-9)

    def run(self, t_in: Arr, t_target: Arr, sink: Arr | float, c_water: Arr, ua_design: float) -> tuple[Arr, Arr]:
        """Fan speed and leaving temperature of the local loop aiming the leaving water at ``t_target``.

        Where full speed cannot reach the target the fans run flat out (most free cooling) and the chiller
        trims; where the slowest speed overshoots, the fans idle at minimum and a bypass holds the target.
        The speed comes from the leaving temperature on a grid of speeds (one vectorised evaluation),
        interpolated linearly between the two grid speeds that bracket the target.
        """
        target = np.asarray(t_target)
        no_load = t_in <= target
        full_leave = self.leaving(t_in, sink, c_water, np.ones(np.shape(t_in)), ua_design)
        if not (full_leave <= target).any():  # the common hot case: flat out, the chiller trims
            speed = np.where(no_load, self.min_speed, 1.0)
            return speed, np.where(no_load, t_in, full_leave)
        grid, c_air, ua = _speed_table(self.min_speed, self.air_ratio * self.c_water_design, ua_design)
        t_in2, c2 = np.asarray(t_in)[..., None], np.asarray(c_water)[..., None]
        sink2 = np.asarray(sink)[..., None] if np.ndim(sink) else sink
        c_min, c_max = np.minimum(c2, c_air), np.maximum(c2, c_air)
        eps = crossflow_effectiveness(ua / np.maximum(c_min, 1e-9), c_min / np.maximum(c_max, 1e-9))
        leave = t_in2 - eps * c_min * np.maximum(t_in2 - sink2, 0.0) / np.maximum(c2, 1e-9)  # (N, grid), falling
        below = leave <= target[..., None]
        j = np.argmax(below, axis=-1)  # first grid speed that reaches the target (0 when none does)
        i = np.maximum(j - 1, 0)
        rows = np.arange(len(j))
        li, lj = leave[rows, i], leave[rows, j]
        frac = np.minimum(np.maximum((li - target) / np.maximum(li - lj, 1e-12), 0.0), 1.0)
        speed = grid[i] + (grid[j] - grid[i]) * frac  # j = 0: the minimum speed already overshoots
        reaches = below[:, -1]
        speed = np.where(reaches & ~no_load, speed, np.where(no_load, self.min_speed, 1.0))
        leaving = np.where(reaches | no_load, np.minimum(t_in, target), full_leave)
        return speed, leaving


@lru_cache(maxsize=16)
def _speed_table(min_speed: float, c_air_full: float, ua_design: float) -> tuple[Arr, Arr, Arr]:
    """Grid speeds with their air capacity rates and conductances (fixed per free cooler, computed once)."""
    grid = np.linspace(min_speed, 1.0, _GRID)
    g = np.maximum(grid, 1e-3)
    return grid, g * c_air_full, ua_design * g**AIR_UA_EXPONENT


def fan_power(fan_w: float, speed: Arr) -> Arr:
    """Fan power (W) at a speed fraction: the fan laws, P ∝ speed³."""
    return fan_w * speed**3


def condenser_fans(q_cond: Arr, design_w: float, min_speed: float) -> tuple[Arr, Arr]:
    """Speed of condenser fans following the condenser heat, and the load per unit airflow (1 at design).

    With airflow proportional to heat the air's temperature rise across the condenser, and so the condensing
    approach, stays at its design value; at the minimum speed the approach shrinks with the load.
    """
    load = q_cond / design_w
    speed = np.where(q_cond > 0.0, np.minimum(np.maximum(load, min_speed), 1.0), 0.0)
    per_air = np.where(speed > 0.0, load / np.maximum(speed, 1e-9), 0.0)
    return speed, per_air


@dataclass(frozen=True, slots=True)
class CrahCoil:
    """Chilled-water CRAH coils sized for ``design_w`` with air ΔT ``air_dt_k`` at chilled water ``chw_c``."""

    design_w: float
    air_dt_k: float
    water_dt_k: float
    chw_c: float  # chilled-water supply of the design point
    supply_air_c: float
    margin: float  # coil selected for margin × design_w at chw_c with the design air ΔT

    @property
    def ua_design(self) -> float:
        """Coil conductance at design airflow (W/K): NTU·C_a at margin × design, scaled back by airflow^0.6."""
        c_air = self.design_w / self.air_dt_k
        eps = self.air_dt_k / (self.supply_air_c + self.air_dt_k - self.chw_c)
        ntu = _solve_ntu(eps, self.water_dt_k / self.air_dt_k, counterflow=True)
        return ntu * c_air * self.margin ** (1.0 - AIR_UA_EXPONENT)

    def airflow(self, q_w: Arr, chw_c: Arr, ua_design: float) -> Arr:
        """Airflow as a fraction of design that removes ``q_w`` holding the supply air, at chilled water ``chw_c``.

        The fans run at least the airflow that holds the design air ΔT (return-air control). The coil then has
        to cool that air from T_return = T_supply + Q/C_a to T_supply: counterflow with air the smaller stream
        it can when ε(C_a)·(C_a·(T_supply − T_chw) + Q) ≥ Q. Where it cannot (chilled water too warm) the fans
        speed up, lowering the ΔT the coil must make, until it can: warmer chilled water costs fan power.
        """
        c_design = self.design_w / self.air_dt_k
        x_dt = np.asarray(q_w) / self.design_w
        if self._sufficient(q_w, chw_c, x_dt, ua_design).all():  # return-air control alone holds the supply air
            return np.where(np.asarray(q_w) > 0.0, x_dt, 0.0)
        lift = np.maximum(self.supply_air_c - chw_c, 0.5)[..., None]
        q = np.maximum(np.asarray(q_w), 1.0)[..., None]
        x = _AIR_GRID
        c_air = x * c_design
        cr = self.water_dt_k * c_air / q
        eps = counterflow_effectiveness(ua_design * x**AIR_UA_EXPONENT / c_air, cr)
        slack = eps * (c_air * lift + q) - q  # ≥ 0 where the coil can remove q at that airflow
        short = slack < 0.0
        last = len(x) - 1 - np.argmax(short[..., ::-1], axis=-1)  # the highest airflow at which it cannot
        j = np.minimum(last + 1, len(x) - 1)
        si = np.take_along_axis(slack, last[..., None], -1)[..., 0]
        sj = np.take_along_axis(slack, j[..., None], -1)[..., 0]
        frac = np.where(sj > si, -si / np.maximum(sj - si, 1e-12), 1.0)
        x_coil = np.where(short.any(axis=-1), x[last] + (x[j] - x[last]) * np.clip(frac, 0.0, 1.0), 0.0)
        return np.where(np.asarray(q_w) > 0.0, np.maximum(x_dt, x_coil), 0.0)

    def _sufficient(self, q_w: Arr, chw_c: Arr, x: Arr, ua_design: float) -> Arr:
        """Whether the coil can remove ``q_w`` at airflow fraction ``x`` (the slack of :meth:`airflow` ≥ 0)."""
        q = np.maximum(np.asarray(q_w), 1.0)
        xs = np.maximum(x, 1e-3)
        c_air = xs * self.design_w / self.air_dt_k
        eps = counterflow_effectiveness(ua_design * xs**AIR_UA_EXPONENT / c_air, self.water_dt_k * c_air / q)
        return np.asarray(eps * (c_air * np.maximum(self.supply_air_c - chw_c, 0.5) + q) >= q - 1e-6 * q)
