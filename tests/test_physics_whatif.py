"""The what-if interface: the plant at given setpoints without advancing it, vectorised over candidates."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from simulators.facility import Facility
from simulators.interface import Setpoints, WhatIfPlant
from simulators.weather import constant_weather
from simulators.workload import ConstantWorkload
from tests.test_physics import make_site, settle

FIELDS = ("facility_power_w", "it_power_w", "cooling_power_w", "chiller_power_w", "hr_fan_power_w", "fws_supply_c")


def _facility(racks: int = 4) -> Facility:
    """A facility on the bundled Leesburg weather and training load, started in July."""
    return Facility(make_site(racks))


def test_one_step_what_if_equals_the_step_with_setpoints_held() -> None:
    """what_if(sp, dt_s) at the current setpoints gives exactly the state that step(dt_s) then reaches."""
    fac = _facility()
    settle(fac, 1800.0, 60.0)
    fac.write_point("plant-1", "fws_supply_temp_setpoint_c", 27.0)  # a transient: lags are mid-way
    w = fac.what_if(fac.setpoints(), dt_s=300.0)
    fac.step(300.0)
    assert w.facility_power_w[0] == pytest.approx(fac.facility_power_w, rel=1e-12)
    assert w.cooling_power_w[0] == pytest.approx(fac.cooling_power_w, rel=1e-12)
    assert w.fws_supply_c[0] == pytest.approx(fac.fws_supply_c, rel=1e-12)
    np.testing.assert_allclose(w.tcs_supply_c[0], fac.tcs_supply_c, rtol=1e-12)
    hottest = [fac.gpu_temp_c[a : a + n].max() for a, n in zip(fac.rack_offsets, fac.rack_gpus, strict=True)]
    np.testing.assert_allclose(w.gpu_temp_max_c[0], hottest, rtol=1e-12)


def test_steady_what_if_equals_stepping_to_steady_state() -> None:
    """The steady-state what-if at new setpoints matches holding them and stepping until the lags die out."""
    site = make_site(4)
    fac = Facility(site, weather=constant_weather(22.0, 60.0), workload=ConstantWorkload(0.8, 4))
    sp = Setpoints.grid(fac.setpoints(), fws_supply_c=np.array([28.0]), tcs_supply_c=np.array([33.0]))
    w = fac.what_if(sp)
    fac.write_point("plant-1", "fws_supply_temp_setpoint_c", 28.0)
    for name in fac.cdu_names:
        fac.write_point(name, "tcs_supply_temp_setpoint_c", 33.0)
    settle(fac, 4 * 3600.0, 60.0)
    assert w.facility_power_w[0] == pytest.approx(fac.facility_power_w, rel=1e-4)
    assert w.cooling_power_w[0] == pytest.approx(fac.cooling_power_w, rel=1e-3)
    assert w.fws_supply_c[0] == pytest.approx(fac.fws_supply_c, abs=1e-3)
    np.testing.assert_allclose(w.tcs_supply_c[0], fac.tcs_supply_c, atol=1e-3)
    assert w.gpu_temp_max_c[0].max() == pytest.approx(float(fac.gpu_temp_c.max()), abs=0.01)


def test_what_if_changes_nothing_in_the_facility() -> None:
    """Evaluating candidates leaves time, energy, setpoints and state as they were."""
    fac = _facility()
    fac.step(60.0)
    before = (fac.t_ns, dict(fac.energy_wh), fac.setpoints(), copy.copy(fac.snapshot()))
    sp = Setpoints.grid(fac.setpoints(), fws_supply_c=np.linspace(18.0, 32.0, 8))
    fac.what_if(sp)
    fac.what_if(sp, dt_s=300.0)
    after = (fac.t_ns, dict(fac.energy_wh), fac.setpoints(), fac.snapshot())
    assert before[0] == after[0]
    assert before[1] == after[1]
    assert before[3] == after[3]
    np.testing.assert_array_equal(before[2].tcs_supply_c, after[2].tcs_supply_c)
    assert before[2].fws_supply_c[0] == after[2].fws_supply_c[0]


def test_each_candidate_is_evaluated_as_if_alone() -> None:
    """Row i of a batched what-if equals a what-if of candidate i on its own."""
    fac = _facility()
    base = fac.setpoints()
    sp = Setpoints.grid(base, fws_supply_c=np.array([20.0, 26.0, 31.0]), dp_kpa=np.array([90.0, 150.0, 200.0]))
    w = fac.what_if(sp)
    for i in range(sp.n):
        one = Setpoints(
            sp.tcs_supply_c[i : i + 1], sp.dp_kpa[i : i + 1], sp.fws_supply_c[i : i + 1], sp.chw_supply_c[i : i + 1]
        )
        w1 = fac.what_if(one)
        for f in FIELDS:
            assert getattr(w, f)[i] == pytest.approx(getattr(w1, f)[0], rel=1e-9), f


def test_feasible_flags_each_constraint() -> None:
    """feasible() rejects candidates above the W-class, below the dew point margin or short of their dp."""
    fac = Facility(make_site(4, physics={"hall_dewpoint_min_c": 19.0, "hall_dewpoint_max_c": 19.0}))
    base = fac.setpoints()
    sp = Setpoints.grid(
        base,
        fws_supply_c=np.array([24.0, 35.0, 18.0, 24.0]),
        tcs_supply_c=np.array([30.0, 38.0, 18.0, 30.0]),
        dp_kpa=np.array([120.0, 120.0, 120.0, 250.0]),
    )
    w = fac.what_if(sp)
    assert w.above_class.tolist() == [False, True, False, False]
    assert w.dp_not_reached.any(axis=1).tolist() == [False, False, False, True]
    assert w.condensation_risk.any(axis=1).tolist() == [False, False, True, False]  # 18 °C TCS, 19 °C hall dew point
    np.testing.assert_array_equal(w.dewpoint_margin_k, w.tcs_supply_c - 19.0)
    assert w.feasible().tolist() == [True, False, False, False]


def test_facility_satisfies_the_what_if_protocol() -> None:
    """Facility is a WhatIfPlant, the interface the oracle and the evaluation code use."""
    plant: WhatIfPlant = _facility(1)
    assert plant.setpoints().n == 1


def test_bad_setpoint_shapes_are_one_clear_error() -> None:
    """Setpoints for the wrong number of CDUs, or with mismatched candidate counts, are refused with a message."""
    fac = _facility()
    with pytest.raises(ValueError, match="CDUs"):
        fac.what_if(Setpoints(np.full((1, 3), 30.0), np.full((1, 3), 120.0), np.array([24.0]), np.array([14.0])))
    with pytest.raises(ValueError, match="same N"):
        Setpoints(np.full((2, 1), 30.0), np.full((2, 1), 120.0), np.array([24.0]), np.array([14.0]))


class _StepWorkload:
    """Every rack at ``low`` until ``at_ns``, then at ``high``."""

    def __init__(self, racks: int, at_ns: int, low: float, high: float) -> None:
        self.racks, self.at_ns, self.low, self.high = racks, at_ns, low, high

    def rack_util(self, t_ns: int) -> np.ndarray:
        """The step."""
        return np.full(self.racks, self.high if t_ns >= self.at_ns else self.low)


def test_peak_what_if_is_the_steady_state_under_the_highest_load_ahead() -> None:
    """what_if(peak_s=T) equals the steady state at the highest load of the next T seconds, and no peak ahead
    changes nothing."""
    site = make_site(4)
    start = Facility(site, weather=constant_weather(22.0, 60.0)).t_ns
    step = _StepWorkload(4, start + 240 * 10**9, 0.4, 0.9)
    fac = Facility(site, weather=constant_weather(22.0, 60.0), workload=step)  # type: ignore[arg-type]
    high = Facility(site, weather=constant_weather(22.0, 60.0), workload=ConstantWorkload(0.9, 4))
    sp = fac.setpoints()
    now, ahead, short = fac.what_if(sp), fac.what_if(sp, peak_s=300.0), fac.what_if(sp, peak_s=120.0)
    np.testing.assert_allclose(ahead.gpu_temp_max_c, high.what_if(sp).gpu_temp_max_c, atol=0.05)  # steady from another start
    assert ahead.gpu_temp_max_c.max() > now.gpu_temp_max_c.max() + 1.0
    np.testing.assert_allclose(short.gpu_temp_max_c, now.gpu_temp_max_c, rtol=1e-12)
    with pytest.raises(ValueError, match="peak_s"):
        fac.what_if(sp, dt_s=60.0, peak_s=300.0)
