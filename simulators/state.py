"""The dynamic state of the simulated facility, batched over what-if candidates, and the conditions it runs in.

Every array has a leading candidate axis N: the facility's own state is N = 1, a what-if evaluation is N
candidates. :mod:`simulators.plant` computes a new :class:`PlantState` from the previous one; the facility and
the device-point mapping read it, so neither needs the other (no import cycle).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from simulators.physics import Arr

BoolArr = npt.NDArray[np.bool_]
IntArr = npt.NDArray[np.int64]
F32Arr = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Env:
    """What the setpoints do not change at one instant: weather, humidity, load and lighting."""

    t_ns: int
    drybulb_c: float
    wetbulb_c: float
    outdoor_dewpoint_c: float
    hall_dewpoint_c: float
    rack_util: Arr  # (n_racks,)
    gpu_util: Arr  # (n_gpus,) including each GPU's own spread, at most 1
    other_power_w: float  # lighting and offices


class PlantState:
    """Temperatures that carry over between steps (the loop lags) and everything computed from them."""

    # Carried between steps.
    tcs_supply_c: Arr  # (N, n_cdu)
    tcs_return_c: Arr  # (N, n_cdu)
    fws_supply_c: Arr  # (N,)
    fws_return_c: Arr  # (N,)
    air_return_c: Arr  # (N,)
    chw_supply_c: Arr  # (N,) CRAH chilled-water supply
    rack_rise_c: Arr  # (N, n_racks)
    gpu_temp_c: Arr  # (N, n_gpus)
    # Racks and GPUs.
    gpu_power_w: Arr  # (N, n_gpus)
    gpu_clock: F32Arr  # (N, n_gpus) clock fraction of the maximum (power cap or thermal throttle below 1)
    gpu_power_capped: BoolArr  # (N, n_gpus) held at the board power limit (not thermally throttled)
    rack_throttled: IntArr  # (N, n_racks) GPUs in thermal slowdown
    rack_work: Arr  # (N, n_racks) work rate: Σ utilisation · clock, full-clock GPU equivalents
    work_rate: Arr  # (N,) the facility's work rate, full-clock GPU equivalents
    rack_power_w: Arr  # (N, n_racks)
    rack_flow_lpm: Arr  # (N, n_racks)
    rack_inlet_c: Arr  # (N, n_racks)
    rack_outlet_c: Arr  # (N, n_racks)
    # CDUs.
    cdu_flow_lpm: Arr  # (N, n_cdu)
    cdu_dp_kpa: Arr  # achieved dp
    cdu_speed: Arr  # pump speed 0-1
    cdu_pump_w: Arr
    dp_not_reached: BoolArr
    cdu_approach_c: Arr
    cdu_heat_w: Arr
    cdu_fws_flow_lpm: Arr
    cdu_valve_pct: Arr
    cdu_fws_return_c: Arr
    dewpoint_margin_k: Arr  # TCS supply − hall dew point
    condensation_risk: BoolArr
    # Electrical.
    it_power_w: Arr  # (N,)
    ups_output_w: Arr
    ups_loss_w: Arr
    ups_input_w: Arr
    # Plant.
    fws_flow_lpm: Arr  # (N,)
    fws_heat_w: Arr
    fws_pump_w: Arr
    fws_above_class: BoolArr
    crah_air_m3s: Arr
    crah_fan_w: Arr
    air_heat_w: Arr
    chw_return_c: Arr
    free_share: Arr  # share of the FWS heat the free cooler removes
    chw_free_share: Arr  # share of the CRAH chilled-water heat the free cooler removes
    free_cooling_state: IntArr  # 0 chiller only, 1 partial, 2 full (FWS loop)
    free_cooler_speed: Arr  # FWS free-cooler fans, 0-1
    chw_cooler_speed: Arr  # CRAH chilled-water free-cooler fans, 0-1
    condenser_speed: Arr  # condenser fans of the FWS trim chiller, 0-1
    chw_condenser_speed: Arr  # condenser fans of the chilled-water chiller, 0-1
    chiller_w: Arr
    chiller_load_w: Arr
    chiller_cop: Arr
    hr_fan_w: Arr
    plant_cooling_w: Arr
    cooling_power_w: Arr
    tx_loss_w: Arr
    facility_power_w: Arr

    def row(self, i: int) -> PlantState:
        """Candidate ``i`` as a state of its own (N = 1)."""
        out = PlantState()
        for name in _ANNOTATED:
            if hasattr(self, name):
                setattr(out, name, getattr(self, name)[i : i + 1])
        return out

    def shallow(self) -> PlantState:
        """A new state object sharing this one's arrays (for replacing some of them)."""
        out = PlantState()
        for name in _ANNOTATED:
            if hasattr(self, name):
                setattr(out, name, getattr(self, name))
        return out

    def repeat(self, n: int) -> PlantState:
        """This (N = 1) state copied for ``n`` candidates."""
        out = PlantState()
        for name in _ANNOTATED:
            if hasattr(self, name):
                a = getattr(self, name)
                setattr(out, name, np.repeat(a[:1], n, axis=0))
        return out


_ANNOTATED = tuple(PlantState.__annotations__)
