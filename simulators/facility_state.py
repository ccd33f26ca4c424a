"""What the facility's state looks like to the device points: setpoints, the state rows and the instant's conditions.

:class:`FacilityState` is the part of :class:`simulators.facility.Facility` that
:class:`simulators.facility_points.DevicePoints` reads and writes; both modules import it, neither imports the
other. Its state attributes (``gpu_temp_c``, ``fws_supply_c``, ...) read the facility's own candidate (row 0)
of the batched :class:`simulators.state.PlantState`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from simulators.layout import Layout
from simulators.physics import Arr
from simulators.state import Env, PlantState


class _Row:
    """A facility attribute that reads the facility's own candidate (row 0) of a batched state array."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, obj: FacilityState, owner: type | None = None) -> Any:
        return getattr(obj.state, self.name)[0]


class _Scalar(_Row):
    """A per-candidate scalar of the state as a Python number."""

    def __get__(self, obj: FacilityState, owner: type | None = None) -> Any:
        return getattr(obj.state, self.name)[0].item()


class FacilityState(Layout):
    """Setpoints, the current state and the current conditions of a facility (no dynamics)."""

    t_ns: int
    state: PlantState
    _env: Env
    energy_wh: dict[str, float]
    rack_energy_wh: Arr
    work_gpu_h: float  # work done: GPU-hours at full clock (Σ utilisation · clock · time)
    rack_work_gpu_h: Arr  # the same per rack
    cdu_pump_fault: npt.NDArray[np.bool_]
    fws_above_class_s: float  # time with FWS supply above the site's W-class limit

    # Current setpoints (set from the profiles' safe defaults and by writes through :class:`DevicePoints`).
    tcs_sp: Arr  # per CDU, °C
    dp_sp: Arr  # per CDU, kPa
    fws_sp: float  # plant, °C
    chw_sp: float  # plant, CRAH chilled-water supply, °C

    # The facility's own state: row 0 of :attr:`state` (descriptors installed below the class).
    tcs_supply_c: Arr
    tcs_return_c: Arr
    rack_rise_c: Arr
    gpu_temp_c: Arr
    gpu_power_w: Arr
    gpu_clock: npt.NDArray[np.float32]
    gpu_power_capped: npt.NDArray[np.bool_]
    rack_throttled: npt.NDArray[np.int64]
    rack_work: Arr
    work_rate: float
    rack_power_w: Arr
    rack_flow_lpm: Arr
    rack_inlet_c: Arr
    rack_outlet_c: Arr
    cdu_flow_lpm: Arr
    cdu_dp_kpa: Arr
    cdu_speed: Arr
    cdu_pump_w: Arr
    dp_not_reached: npt.NDArray[np.bool_]
    cdu_approach_c: Arr
    cdu_heat_w: Arr
    cdu_fws_flow_lpm: Arr
    cdu_valve_pct: Arr
    cdu_fws_return_c: Arr
    dewpoint_margin_k: Arr
    condensation_risk: npt.NDArray[np.bool_]
    fws_supply_c: float
    fws_return_c: float
    air_return_c: float
    chw_supply_c: float
    chw_return_c: float
    it_power_w: float
    ups_output_w: float
    ups_loss_w: float
    ups_input_w: float
    fws_flow_lpm: float
    fws_heat_w: float
    fws_pump_w: float
    fws_above_class: bool
    crah_air_m3s: float
    crah_fan_w: float
    air_heat_w: float
    free_share: float
    chw_free_share: float
    free_cooling_state: int
    free_cooler_speed: float
    chw_cooler_speed: float
    condenser_speed: float
    chw_condenser_speed: float
    chiller_w: float
    chiller_load_w: float
    chiller_cop: float
    hr_fan_w: float
    plant_cooling_w: float
    cooling_power_w: float
    tx_loss_w: float
    facility_power_w: float

    # --- conditions of the current instant -----------------------------------------------------------------

    @property
    def drybulb_c(self) -> float:
        """Outdoor dry bulb now (°C)."""
        return self._env.drybulb_c

    @property
    def wetbulb_c(self) -> float:
        """Outdoor wet bulb now (°C)."""
        return self._env.wetbulb_c

    @property
    def hall_dewpoint_c(self) -> float:
        """Hall dew point now (°C)."""
        return self._env.hall_dewpoint_c

    @property
    def rack_util(self) -> Arr:
        """Rack utilisation now (0-1)."""
        return self._env.rack_util

    @property
    def gpu_util(self) -> Arr:
        """GPU utilisation now (0-1)."""
        return self._env.gpu_util

    @property
    def rack_power_capped(self) -> npt.NDArray[np.int64]:
        """GPUs per rack held at the board power limit and not thermally throttled (clock loss counted in work)."""
        return np.add.reduceat(self.gpu_power_capped, self.rack_offsets, dtype=np.int64)

    @property
    def rack_clock_pct(self) -> Arr:
        """Mean clock of each rack's GPUs, % of the model's maximum (below 100 at the power limit or throttled)."""
        return np.add.reduceat(self.gpu_clock, self.rack_offsets, dtype=np.float64) * (100.0 / self.rack_gpus)

    @property
    def other_power_w(self) -> float:
        """Lighting and office power now (W)."""
        return self._env.other_power_w


for _name, _kind in FacilityState.__annotations__.items():
    if _name in PlantState.__annotations__:
        setattr(FacilityState, _name, (_Row if _kind.startswith(("Arr", "npt")) else _Scalar)(_name))
