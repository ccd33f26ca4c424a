"""Facility physics: energy balance, setpoint responses, throttling, heartbeats, overrides and device points."""

from __future__ import annotations

import itertools
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aidc.config import Site, site_from_dict
from aidc.errors import ConfigError
from aidc.sitegen import SiteTemplate, render_site
from simulators import physics as ph
from simulators.facility import Facility
from simulators.interface import FacilityPhysics
from simulators.weather import Weather, constant_weather, load_weather
from simulators.workload import ConstantWorkload
from tests.conftest import DATA

WEATHER_DIR = DATA / "weather"
HOT = (30.0, 40.0)  # dry bulb °C, RH %: the chiller runs, free cooling at most partial
COLD = (2.0, 70.0)


# A fixed simulated start keeps the workload phase (checkpoint dips) the same in every run.
START = "2026-07-01T00:00:00Z"


def make_site(racks: int = 4, plant: str = "chiller_drycooler", physics: dict[str, Any] | None = None) -> Site:
    """A generated site, optionally with another plant type and physics overrides."""
    data = tomllib.loads(render_site(SiteTemplate(racks=racks, start=START)))
    data["plant"]["type"] = plant
    if physics is not None:
        data["simulation"]["physics"] = physics
    return site_from_dict(data)


def make_facility(
    weather: tuple[float, float] = HOT, util: float = 0.9, plant: str = "chiller_drycooler", racks: int = 4
) -> Facility:
    """A facility under constant weather and constant utilisation."""
    site = make_site(racks, plant)
    return Facility(site, weather=constant_weather(*weather), workload=ConstantWorkload(util, racks))


def num(fac: Facility, device: str, point: str) -> float:
    """A scalar point value of a device as a float."""
    v = fac.device_values(device)[point]
    assert isinstance(v, int | float)
    return float(v)


def settle(fac: Facility, seconds: float = 7200.0, dt: float = 60.0) -> None:
    """Step until the loop lags have died out."""
    for _ in range(int(seconds / dt)):
        fac.step(dt)


@pytest.mark.parametrize("plant", ["chiller_drycooler", "chiller_tower", "chiller_only"])
@pytest.mark.parametrize("weather", [HOT, COLD, (18.0, 60.0)])
@pytest.mark.parametrize("util", [0.1, 0.95])
def test_energy_balance_closes(plant: str, weather: tuple[float, float], util: float) -> None:
    """Heat rejected (from loop flows and temperatures plus losses) matches electrical input within 1 %."""
    fac = make_facility(weather, util, plant)
    fac.write_point("plant-1", "fws_supply_temp_setpoint_c", 20.0)  # a change the lags must absorb
    settle(fac)
    electrical = fac.facility_power_w
    rho_cp = fac.params.fws_density_kg_m3 * fac.params.fws_cp_j_kgk
    fws = rho_cp * fac.fws_flow_lpm / 60000.0 * (fac.fws_return_c - fac.fws_supply_c)
    heat = fws + fac.air_heat_w + fac.chiller_w + fac.fws_pump_w + fac.hr_fan_w + fac.tx_loss_w
    assert heat == pytest.approx(electrical, rel=0.01)
    assert fac.heat_rejected_w() == pytest.approx(electrical, rel=0.01)


def test_energy_balance_over_two_days_of_weather_and_training() -> None:
    """Integrated over two days of real weather and a training workload, heat out matches energy in within 1 %."""
    site = make_site(4)
    fac = Facility(site)
    heat_wh = 0.0
    for _ in range(2 * 1440):
        fac.step(60.0)
        heat_wh += fac.heat_rejected_w() / 60.0
    assert heat_wh == pytest.approx(fac.energy_wh["facility"], rel=0.01)


@pytest.mark.parametrize(("low", "high"), [(28.0, 34.0), (30.0, 38.0)])
def test_warmer_tcs_supply_heats_gpus_and_saves_chiller_power(low: float, high: float) -> None:
    """Raising the TCS supply setpoint raises GPU temperatures and lowers chiller power on a hot day."""
    results = []
    for sp in (low, high):
        fac = make_facility(HOT)
        for cdu in fac.cdu_names:
            fac.write_point(cdu, "tcs_supply_temp_setpoint_c", sp)
        settle(fac)
        assert fac.chiller_w > 0
        results.append((float(fac.gpu_temp_c.mean()), fac.chiller_w, fac.it_power_w))
    (t_low, ch_low, it_low), (t_high, ch_high, it_high) = results
    assert t_high > t_low + 3.0
    assert ch_high < ch_low
    assert it_high > it_low  # leakage grows with temperature


@pytest.mark.parametrize(("low", "high"), [(80.0, 120.0), (120.0, 200.0)])
def test_more_flow_cools_gpus_and_costs_pump_power(low: float, high: float) -> None:
    """A higher dp setpoint gives more flow, cooler GPUs and more CDU pump power (cube law)."""
    results = []
    for dp in (low, high):
        fac = make_facility(HOT)
        fac.write_point("cdu-h1-01", "dp_setpoint_kpa", dp)
        settle(fac)
        results.append((fac.cdu_flow_lpm[0], float(fac.gpu_temp_c.mean()), float(fac.cdu_pump_w[0])))
    (f_low, t_low, p_low), (f_high, t_high, p_high) = results
    assert f_high > f_low
    assert t_high < t_low
    assert p_high / p_low == pytest.approx((f_high / f_low) ** 3, rel=1e-6)


def test_gpus_throttle_when_coolant_is_too_hot() -> None:
    """With very warm coolant and low flow GPUs cap their power to stay at the throttle limit."""
    fac = make_facility(HOT, util=1.0)
    settle(fac, 600)
    assert fac.rack_throttled.sum() == 0
    fac.write_point("plant-1", "fws_supply_temp_setpoint_c", 40.0)
    fac.write_point("cdu-h1-01", "tcs_supply_temp_setpoint_c", 45.0)
    fac.write_point("cdu-h1-01", "dp_setpoint_kpa", 40.0)
    settle(fac)
    assert fac.rack_throttled.sum() > 0
    assert fac.gpu_temp_c.max() <= 87.0 + 1e-6
    assert fac.device_values("rack-h1-r01-01")["gpus_throttled"] == fac.rack_throttled[0]


def test_gpu_power_model_spans_idle_to_tdp_plus_leakage() -> None:
    """At the reference temperature power runs from idle to TDP with utilisation; hotter chips leak more, up to
    the board power limit, where a fully loaded GPU stays."""
    p = ph.PhysicsParams()
    util = np.array([0.0, 1.0])
    r_zero = np.zeros(2)

    def solve(temp_c: float) -> np.ndarray:
        return ph.gpu_power_and_temp(
            util, np.full(2, temp_c), r_zero, idle_w=160.0, tdp_w=1200.0, min_w=300.0, limit_c=87.0,
            power_limit_w=1200.0, p=p,
        ).power_w

    power = solve(p.leak_ref_temp_c)
    assert power == pytest.approx([160.0, 1200.0])
    hot = solve(80.0)
    assert hot[0] > power[0]
    assert hot[1] == pytest.approx(1200.0)


@pytest.mark.parametrize("dt", [1.0, 10.0, 300.0, 3600.0])
def test_steps_are_stable_at_any_size(dt: float) -> None:
    """Exact exponential lags: 1 s ticks and hour-long steps settle to the same steady state."""
    fac = make_facility(HOT)
    fac.write_point("plant-1", "fws_supply_temp_setpoint_c", 20.0)
    steps = max(int(3600 / dt), 4)
    for _ in range(steps):
        fac.step(dt)
    ref = make_facility(HOT)
    ref.write_point("plant-1", "fws_supply_temp_setpoint_c", 20.0)
    settle(ref, 3600)
    assert fac.fws_supply_c == pytest.approx(ref.fws_supply_c, abs=0.01)
    assert fac.facility_power_w == pytest.approx(ref.facility_power_w, rel=1e-3)


def test_fws_supply_moves_towards_new_setpoint_over_following_steps() -> None:
    """A written FWS setpoint moves the FWS supply temperature gradually over the following ticks."""
    fac = make_facility(COLD)
    assert fac.fws_supply_c == pytest.approx(24.0)
    fac.write_point("plant-1", "fws_supply_temp_setpoint_c", 28.0)
    seen = []
    for _ in range(30):
        fac.step(10.0)
        seen.append(num(fac, "plant-1", "fws_supply_temp_c"))
    assert 24.0 < seen[0] < 25.0
    assert all(b > a for a, b in itertools.pairwise(seen))
    settle(fac, 3600)
    assert fac.fws_supply_c == pytest.approx(28.0, abs=0.01)


def test_cdu_supply_cannot_go_below_fws_supply_plus_approach() -> None:
    """A TCS setpoint below the FWS supply is not reached: supply stays FWS supply + approach."""
    fac = make_facility(COLD)
    fac.write_point("cdu-h1-01", "tcs_supply_temp_setpoint_c", 18.0)
    settle(fac)
    supply = num(fac, "cdu-h1-01", "tcs_supply_temp_c")
    assert supply == pytest.approx(24.0 + fac.cdu_approach_c[0], abs=0.01)
    assert 2.0 <= supply - 24.0 <= 5.0


@pytest.mark.parametrize(
    ("device", "point", "written", "safe"),
    [("cdu-h1-01", "tcs_supply_temp_setpoint_c", 35.0, 30.0), ("plant-1", "fws_supply_temp_setpoint_c", 27.0, 24.0)],
)
def test_stopped_heartbeat_reverts_to_safe_setpoint(device: str, point: str, written: float, safe: float) -> None:
    """When the heartbeat stops for longer than its timeout the device reverts and flags fallback."""
    fac = make_facility(COLD)
    timeout = fac.points.watch[device].timeout_ns / 1e9
    for beat in range(1, 6):
        fac.write_point(device, "heartbeat", beat)
        fac.write_point(device, point, written)
        fac.step(timeout / 2)
    assert fac.device_values(device)[point] == written
    assert not fac.points.fallback_active(device)
    fac.step(timeout / 2)
    fac.step(timeout / 2 + 1)
    vals = fac.device_values(device)
    assert vals[point] == safe
    assert fac.points.fallback_active(device)
    if device.startswith("cdu"):
        assert vals["fallback_active"] is True
        assert int(num(fac, device, "alarm_word")) & 0b1000
    fac.write_point(device, point, written)  # ignored while in local fallback
    assert fac.device_values(device)[point] == safe
    fac.write_point(device, "heartbeat", 99)
    fac.write_point(device, point, written)
    assert not fac.points.fallback_active(device)
    assert fac.device_values(device)[point] == written


def test_heartbeat_not_armed_until_first_write() -> None:
    """A device nobody has sent a heartbeat to keeps its setpoints (the watchdog arms on the first beat)."""
    fac = make_facility(COLD)
    fac.write_point("cdu-h1-01", "tcs_supply_temp_setpoint_c", 33.0)
    fac.step(3600.0)
    assert fac.device_values("cdu-h1-01")["tcs_supply_temp_setpoint_c"] == 33.0


@pytest.mark.parametrize(("value", "stored"), [(99.0, 45.0), (-5.0, 18.0), (31.5, 31.5)])
def test_writes_are_clamped_to_profile_limits(value: float, stored: float) -> None:
    """Setpoint writes are clamped to the profile's min and max."""
    fac = make_facility(COLD)
    fac.write_point("cdu-h1-01", "tcs_supply_temp_setpoint_c", value)
    assert fac.device_values("cdu-h1-01")["tcs_supply_temp_setpoint_c"] == stored


def test_write_to_read_only_point_is_refused() -> None:
    """Writing a measured value raises ValueError naming the point."""
    fac = make_facility(COLD)
    with pytest.raises(ValueError, match="tcs_supply_temp_c"):
        fac.write_point("cdu-h1-01", "tcs_supply_temp_c", 20.0)


def test_every_profile_point_of_every_device_has_a_value() -> None:
    """device_values returns every point of every device's profile, keyed by sim name or point name."""
    site = make_site(8)
    fac = Facility(site)
    fac.step(300.0)
    for dev in site.devices:
        vals = fac.device_values(dev.name)
        assert set(vals) == {p.sim or p.name for p in dev.profile.points}, dev.name
        for p in dev.profile.points:
            v = vals[p.sim or p.name]
            if p.array:
                assert isinstance(v, list)
                assert len(v) == 72
            else:
                assert isinstance(v, bool | int | float), (dev.name, p.name)


def test_meters_pdus_and_ups_agree_with_facility_totals() -> None:
    """Meters by purpose, PDU inlets and UPS energies add up to the facility's totals."""
    site = make_site(4)
    fac = Facility(site)
    for _ in range(12):
        fac.step(300.0)
    util = fac.device_values("meter-utility")
    assert util["active_power_w"] == pytest.approx(fac.facility_power_w)
    assert util["energy_kwh"] == pytest.approx(fac.energy_wh["facility"] / 1000.0)
    assert fac.device_values("meter-cooling")["active_power_w"] == pytest.approx(fac.cooling_power_w)
    assert fac.device_values("meter-other")["active_power_w"] == pytest.approx(fac.other_power_w)
    pdu = "pdu-h1-r01-01"
    inlets = num(fac, pdu, "inlet1_active_power_w") + num(fac, pdu, "inlet2_active_power_w")
    assert inlets == pytest.approx(num(fac, pdu, "active_power_w"))
    pdu_wh = sum(num(fac, f"pdu-{r}", "active_energy_wh") for r in fac.rack_names)
    assert pdu_wh == pytest.approx(fac.energy_wh["it"])
    ups_in, ups_out = num(fac, "ups-1", "input_energy_kwh"), num(fac, "ups-1", "output_energy_kwh")
    assert ups_in > ups_out > fac.energy_wh["it"] / 1000.0
    assert 90.0 < num(fac, "ups-1", "efficiency_pct") < 99.0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"no_such_knob": 1.0}, "simulation.physics.no_such_knob: unknown parameter"),
        ({"cdu_pump_eff": 2.0}, "simulation.physics.cdu_pump_eff: 2.0 is outside"),
        ({"leak_beta_per_k": float("nan")}, "simulation.physics.leak_beta_per_k: nan is outside"),
        ({"day_start_h": 20.0}, "simulation.physics.day_end_h"),
    ],
)
def test_bad_physics_override_is_one_clear_line(overrides: dict[str, Any], message: str) -> None:
    """An unknown or out-of-range [simulation.physics] key raises a one-line ConfigError naming it."""
    site = make_site(4, physics=overrides)
    with pytest.raises(ConfigError) as err:
        Facility(site, weather=constant_weather(*COLD))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_physics_override_changes_the_physics() -> None:
    """A valid override reaches the equations: a worse pump efficiency draws more pump power."""
    base = Facility(make_site(4), weather=constant_weather(*COLD))
    worse = Facility(make_site(4, physics={"cdu_pump_eff": 0.3}), weather=constant_weather(*COLD))
    assert worse.params.cdu_pump_eff == 0.3
    assert worse.cdu_pump_w[0] == pytest.approx(base.cdu_pump_w[0] * 0.55 / 0.3)


def free_cooling_hours(weather: Weather) -> float:
    """Full free-cooling hours in a year at one-hour steps for a one-rack dry-cooler site."""
    site = make_site(1)
    fac = Facility(site, weather=weather, start_ns=1_767_225_600_000_000_000)  # 2026-01-01T00:00Z
    for _ in range(8760):
        fac.step(3600.0)
    return fac.free_cooling_s["full"] / 3600.0


def test_chicago_has_more_free_cooling_hours_than_phoenix() -> None:
    """Over a year the cooler Chicago climate gives more free-cooling hours than Phoenix."""
    chicago = free_cooling_hours(load_weather(str(WEATHER_DIR / "USA_IL_Chicago.OHare.epw.gz")))
    phoenix = free_cooling_hours(load_weather(str(WEATHER_DIR / "USA_AZ_Phoenix-Sky.Harbor.epw.gz")))
    assert chicago > phoenix + 1000
    assert 0 < phoenix < 8760


def test_facility_satisfies_the_server_protocol() -> None:
    """Facility is a FacilityPhysics: the servers can drive it through step, device_values and write_point."""
    phys: FacilityPhysics = make_facility(COLD)
    t0 = phys.t_ns
    phys.step(1.0)
    assert phys.t_ns == t0 + 1_000_000_000


def test_pump_fault_starves_racks_and_raises_alarms() -> None:
    """A CDU pump fault collapses flow, heats the GPUs it serves and sets the pump-fault and leak bits."""
    fac = make_facility(HOT)
    before = float(fac.gpu_temp_c.max())
    fac.set_fault("cdu-h1-01", "pump_fault")
    fac.set_fault("rack-h1-r01-02", "leak")
    settle(fac, 600)
    assert float(fac.gpu_temp_c.max()) > before
    assert num(fac, "cdu-h1-01", "flow_lpm") < 0.1 * fac.cdu_design_flow[0]
    assert int(num(fac, "cdu-h1-01", "alarm_word")) & 0b110 == 0b110
    assert fac.device_values("rack-h1-r01-02")["leak_detected"] is True
    assert fac.device_values("rack-h1-r01-01")["leak_detected"] is False


def _site_with_custom_meter(tmp_path: Path, extra_point: str) -> Site:
    """A site whose utility meter uses a profile with one extra point."""
    profile = (Path(__file__).resolve().parents[1] / "collectors" / "profiles" / "meter-generic.toml").read_text()
    profile = profile.replace('name = "meter-generic"', 'name = "meter-custom"', 1) + extra_point
    (tmp_path / "meter-custom.toml").write_text(profile, encoding="utf-8")
    data = tomllib.loads(render_site(SiteTemplate(racks=4, start=START)))
    data["site"]["profile_dirs"] = [str(tmp_path)]
    data["meters"][0]["profile"] = "meter-custom"
    return site_from_dict(data)


def test_sim_name_maps_a_point_to_a_simulated_quantity(tmp_path: Path) -> None:
    """A profile point with ``sim`` set reads that quantity and is keyed by the sim name."""
    extra = '\n[[points]]\nname = "supply_voltage_v"\ntable = "input"\naddress = 20\nsim = "voltage_v"\n'
    fac = Facility(_site_with_custom_meter(tmp_path, extra), weather=constant_weather(*COLD))
    vals = fac.device_values("meter-utility")
    assert "supply_voltage_v" not in vals
    assert 13000.0 < num(fac, "meter-utility", "voltage_v") < 14500.0


def test_point_the_physics_cannot_produce_is_a_config_error(tmp_path: Path) -> None:
    """A profile point with no simulated quantity stops start-up with one line naming device and point."""
    extra = '\n[[points]]\nname = "frequency_hz"\ntable = "input"\naddress = 20\n'
    with pytest.raises(ConfigError) as err:
        Facility(_site_with_custom_meter(tmp_path, extra), weather=constant_weather(*COLD))
    assert "meters[0]" in str(err.value)
    assert "frequency_hz" in str(err.value)
    assert "\n" not in str(err.value)
