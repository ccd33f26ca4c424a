"""Power-capped GPUs: the board power limit turns temperature into clocks, work done counts the clocks."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from aidc.errors import ConfigError
from aidc.profiles import builtin_profiles
from aidc.roles import Role
from simulators import physics as ph
from simulators.facility import Facility
from simulators.gpus import GPU_MODELS
from simulators.interface import Setpoints
from simulators.weather import constant_weather
from simulators.workload import ConstantWorkload
from tests.test_physics import make_site, settle

RACKS = 2
RACK = "rack-h1-r01-01"


def facility(util: float, physics: dict[str, Any] | None = None) -> Facility:
    """A two-rack GB200 facility on a warm day at constant utilisation."""
    return Facility(
        make_site(RACKS, physics=physics), weather=constant_weather(25.0, 40.0), workload=ConstantWorkload(util, RACKS)
    )


def at_water(fac: Facility, fws_c: float, seconds: float = 3 * 3600.0) -> Facility:
    """Hold FWS at ``fws_c`` and every TCS supply 3 K above it, and settle."""
    fac.write_point("plant-1", "fws_supply_temp_setpoint_c", fws_c)
    for cdu in fac.cdu_names:
        fac.write_point(cdu, "tcs_supply_temp_setpoint_c", fws_c + 3.0)
    settle(fac, seconds)
    return fac


def power_from_clock(fac: Facility) -> np.ndarray:
    """Board power from the documented law at each GPU's clock and temperature (docs/physics.md)."""
    p = fac.params
    leak = p.leak_ref_frac * fac._g_tdp
    leakage = leak * (np.exp(p.leak_beta_per_k * (fac.gpu_temp_c - p.leak_ref_temp_c)) - 1.0)
    dynamic = (fac._g_tdp - fac._g_idle) * fac.gpu_util * fac.gpu_clock.astype(np.float64) ** p.clock_power_exponent
    return np.asarray(fac._g_idle + dynamic + leakage)


def test_every_model_defaults_to_its_maximum_board_power() -> None:
    """Each GPU model's board power limit defaults to the vendor's maximum board power (its tdp_w)."""
    for model in GPU_MODELS.values():
        assert model.power_limit_w == model.tdp_w


def test_at_the_cap_colder_coolant_raises_clocks_and_work_not_watts() -> None:
    """Fully loaded GPUs at the board limit: colder water leaves every GPU at the limit and raises clocks and work."""
    warm = at_water(facility(1.0, {"power_limit_frac": 0.8}), 36.0)
    cold = at_water(facility(1.0, {"power_limit_frac": 0.8}), 20.0)
    limit = 0.8 * GPU_MODELS["GB200"].power_limit_w
    for fac in (warm, cold):
        assert (fac.rack_power_capped == fac.rack_gpus).all()
        np.testing.assert_allclose(fac.gpu_power_w, limit, rtol=1e-6)
        assert fac.rack_throttled.sum() == 0
    assert cold.gpu_temp_c.mean() < warm.gpu_temp_c.mean() - 10.0
    assert (cold.gpu_clock > warm.gpu_clock).all()
    assert (cold.rack_clock_pct > warm.rack_clock_pct).all()
    assert 80.0 < warm.rack_clock_pct.max() < 100.0
    assert cold.work_rate > warm.work_rate
    assert cold.work_rate < float(cold.gpu_util.sum())


def test_at_the_default_limit_hot_fully_loaded_gpus_hold_their_maximum_board_power() -> None:
    """With the default limits, fully loaded GPUs on warm water hold exactly 1,200 W (GB200) at reduced clocks."""
    fac = at_water(facility(1.0), 36.0)
    capped = fac.gpu_clock < 1.0
    assert capped.sum() > 0.5 * fac.gpu_clock.size
    np.testing.assert_allclose(fac.gpu_power_w[capped], 1200.0, rtol=1e-6)
    assert fac.gpu_power_w.max() <= 1200.0 * (1 + 1e-6)
    assert fac.rack_power_capped.sum() == capped.sum()


def test_below_the_cap_colder_coolant_lowers_power_at_full_clocks() -> None:
    """At part load no GPU reaches its limit: colder water lowers power through leakage and clocks stay at 100 %."""
    warm = at_water(facility(0.5), 36.0)
    cold = at_water(facility(0.5), 20.0)
    assert cold.it_power_w < warm.it_power_w
    assert (cold.gpu_power_w < warm.gpu_power_w).all()
    for fac in (warm, cold):
        assert fac.rack_power_capped.sum() == 0
        assert (fac.gpu_clock == 1.0).all()
        np.testing.assert_array_equal(fac.rack_clock_pct, 100.0)
        assert fac.work_rate == pytest.approx(float(fac.gpu_util.sum()), rel=1e-12)


def test_clock_satisfies_the_power_law_at_the_cap_and_when_throttled() -> None:
    """The reported clock solves P = P_idle + (P_tdp − P_idle)·u·c^γ + leakage(T) at the held power."""
    capped = at_water(facility(1.0, {"power_limit_frac": 0.8}), 30.0)
    np.testing.assert_allclose(power_from_clock(capped), capped.gpu_power_w, rtol=1e-5)
    hot = throttled_facility()
    slow = hot.gpu_clock < 1.0
    np.testing.assert_allclose(power_from_clock(hot)[slow], hot.gpu_power_w[slow], rtol=1e-5)


def test_clock_law_holds_where_only_a_few_gpus_reach_the_limit() -> None:
    """With few GPUs at the limit (cold water, full load) their clocks solve the power law and the rest run at 100 %."""
    fac = at_water(facility(1.0), 20.0)
    capped = fac.gpu_clock < 1.0
    assert 0 < capped.sum() < 0.25 * capped.size
    assert fac.rack_power_capped.sum() == capped.sum()
    np.testing.assert_allclose(fac.gpu_power_w[capped], 1200.0, rtol=1e-6)
    np.testing.assert_allclose(power_from_clock(fac), fac.gpu_power_w, rtol=1e-5)
    assert fac.work_rate == pytest.approx(float((fac.gpu_util * fac.gpu_clock).sum()), rel=1e-9)


def throttled_facility() -> Facility:
    """Fully loaded GPUs on very warm, slow coolant: above the throttle temperature at their board limit."""
    fac = facility(1.0)
    fac.write_point("plant-1", "fws_supply_temp_setpoint_c", 40.0)
    for cdu in fac.cdu_names:
        fac.write_point(cdu, "tcs_supply_temp_setpoint_c", 45.0)
        fac.write_point(cdu, "dp_setpoint_kpa", 40.0)
    settle(fac, 3 * 3600.0)
    return fac


def test_thermal_throttling_sets_rack_throttled_and_lowers_work() -> None:
    """Above the throttle temperature GPUs slow down: rack_throttled counts them and work falls below Σ u."""
    fac = throttled_facility()
    assert fac.rack_throttled.sum() > 0
    assert fac.gpu_temp_c.max() <= 87.0 + 1e-6
    throttled_rack = int(np.argmax(fac.rack_throttled))
    assert fac.rack_clock_pct[throttled_rack] < 99.0
    assert fac.work_rate < float(fac.gpu_util.sum()) * 0.99
    # A GPU counts as throttled or power capped, never both.
    assert (fac.rack_throttled + fac.rack_power_capped <= fac.rack_gpus).all()


def test_power_capping_does_not_set_rack_throttled() -> None:
    """Clock loss at the board limit counts only in work done: no GPU counts as throttled."""
    fac = at_water(facility(1.0, {"power_limit_frac": 0.8}), 36.0)
    assert fac.rack_power_capped.sum() == fac.gpu_clock.size
    assert fac.rack_throttled.sum() == 0
    assert fac.device_values(RACK)["gpus_throttled"] == 0
    assert fac.work_rate < float(fac.gpu_util.sum())


def test_work_gpu_h_accumulates_utilisation_times_clock_times_time() -> None:
    """work_gpu_h adds Σ u·c over GPUs × the step in hours: at full clocks a hand sum of utilisation × hours."""
    fac = facility(0.6)
    assert fac.work_gpu_h == 0.0
    for _ in range(90):
        fac.step(60.0)
    n_gpus = RACKS * 72
    # Hand computation: 144 GPUs at 60 % (each GPU's fixed ±2 % share around it) for 1.5 h at full clocks.
    assert fac.work_gpu_h == pytest.approx(0.6 * n_gpus * 1.5, rel=0.01)
    assert fac.work_gpu_h == pytest.approx(float(fac.gpu_util.sum()) * 1.5, rel=1e-12)
    np.testing.assert_allclose(fac.rack_work_gpu_h.sum(), fac.work_gpu_h, rtol=1e-12)
    # At the cap the clocks scale it: the step's work is Σ u·c · dt.
    capped = at_water(facility(1.0, {"power_limit_frac": 0.8}), 30.0)
    before = capped.work_gpu_h
    capped.step(600.0)
    by_hand = float((capped.gpu_util * capped.gpu_clock).sum()) * 600.0 / 3600.0
    assert capped.work_gpu_h - before == pytest.approx(by_hand, rel=1e-9)
    assert by_hand < float(capped.gpu_util.sum()) * 600.0 / 3600.0


def test_steady_what_if_work_rate_equals_the_stepped_facility() -> None:
    """what_if's work_rate at new setpoints matches holding them and stepping to steady state, at the cap."""
    fac = at_water(facility(1.0, {"power_limit_frac": 0.8}), 36.0)
    now = fac.what_if(fac.setpoints())
    assert now.work_rate[0] == pytest.approx(fac.work_rate, rel=1e-6)
    sp = Setpoints.grid(fac.setpoints(), fws_supply_c=np.array([20.0, 36.0]), tcs_supply_c=np.array([23.0, 39.0]))
    w = fac.what_if(sp)
    assert w.work_rate.shape == (2,)
    assert w.work_rate[0] > w.work_rate[1]
    at_water(fac, 20.0, 4 * 3600.0)
    assert w.work_rate[0] == pytest.approx(fac.work_rate, rel=1e-5)
    one_step = fac.what_if(fac.setpoints(), dt_s=60.0)
    fac.step(60.0)
    assert one_step.work_rate[0] == pytest.approx(fac.work_rate, rel=1e-12)


def test_rack_serves_its_mean_clock_as_a_percentage() -> None:
    """The GPU rack profile has a per-rack mean SM clock point (role gpu_clock) and the simulator serves it."""
    profile = builtin_profiles()["gpu-rack-opcua"]
    (point,) = profile.by_role(Role.GPU_CLOCK)
    assert (point.name, point.unit, point.array, point.writable) == ("gpu_clock_pct", "%", False, False)
    fac = at_water(facility(1.0, {"power_limit_frac": 0.8}), 36.0)
    values = fac.device_values(RACK)
    r = fac.rack_index[RACK.removeprefix("rack-")]
    assert values["gpu_clock_pct"] == pytest.approx(float(fac.rack_clock_pct[r]))
    assert isinstance(values["gpu_clock_pct"], float)
    assert 80.0 < values["gpu_clock_pct"] < 100.0
    idle = facility(0.3)
    assert idle.device_values(RACK)["gpu_clock_pct"] == 100.0


def test_power_limit_frac_outside_its_range_is_one_clear_error() -> None:
    """A power limit below 30 % of the maximum board power is refused naming the key and the range."""
    with pytest.raises(ConfigError, match=r"simulation\.physics\.power_limit_frac: 0\.1 is outside \[0\.3, 1\.0\]"):
        ph.params_from_overrides({"power_limit_frac": 0.1})
    assert math.isclose(ph.params_from_overrides({"power_limit_frac": 0.9}).power_limit_frac, 0.9)
