"""Plant physics an HVAC engineer expects: modulating free coolers, load-following condenser fans, the CRAH
chilled-water loop, dew point, W-class minutes and pump limits, read through the profiles and over Modbus."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pymodbus.client import AsyncModbusTcpClient

from aidc.config import load_site
from aidc.errors import ConfigError
from simulators.facility import Facility
from simulators.faults import FaultBook
from simulators.heat_rejection import CrahCoil, FreeCooler
from simulators.interface import Setpoints
from simulators.modbus_server import ModbusPort
from simulators.physics import params_from_overrides
from simulators.weather import constant_weather
from simulators.workload import ConstantWorkload
from tests.sim_helpers import site_doc, write_site
from tests.test_physics import make_site, num, settle


def _fac(
    drybulb: float, rh: float = 50.0, util: float = 0.9, plant: str = "chiller_drycooler", racks: int = 4, **phys: float
) -> Facility:
    """A facility under constant weather and load, with optional physics overrides."""
    site = make_site(racks, plant, physics=phys or None)
    return Facility(site, weather=constant_weather(drybulb, rh), workload=ConstantWorkload(util, racks))


def test_free_cooler_approach_falls_as_fan_speed_rises() -> None:
    """The dry cooler's leaving water gets closer to the dry bulb as the fans speed up (ε-NTU, UA ∝ airflow^0.6)."""
    dc = FreeCooler(1e6, 10.0, 5.0, 20e3, 1.3, 0.15)
    ua = dc.ua_design
    speeds = np.linspace(0.2, 1.0, 9)
    leaving = dc.leaving(np.full(9, 35.0), 20.0, np.full(9, dc.c_water_design), speeds, ua)
    assert np.all(np.diff(leaving) < 0)
    assert leaving[-1] == pytest.approx(25.0, abs=1e-6)  # the design approach at design load, full speed


def test_fans_hold_the_fws_setpoint_and_slow_down_when_it_rises() -> None:
    """In full free cooling the fans run just fast enough for the FWS setpoint: a warmer setpoint, slower fans."""
    fac = _fac(4.0)
    sp = Setpoints.grid(fac.setpoints(), fws_supply_c=np.array([20.0, 24.0, 28.0]))
    st = fac.what_if(sp)
    assert st.free_cooling_state.tolist() == [2, 2, 2]
    assert st.chiller_power_w.tolist() == [0.0, 0.0, 0.0]
    assert np.all(np.diff(st.hr_fan_power_w) < 0)
    assert st.hr_fan_power_w[0] < 0.9 * fac.fws_cooler.fan_w + fac.chw_cooler.fan_w  # not flat out


def test_raising_fws_setpoint_in_partial_free_cooling_lowers_chiller_power() -> None:
    """With the free cooler flat out and the chiller trimming, a warmer FWS setpoint lowers chiller power."""
    fac = _fac(25.0)
    sp = Setpoints.grid(fac.setpoints(), fws_supply_c=np.array([24.0, 25.0, 26.0]))
    w = fac.what_if(sp)
    assert w.free_cooling_state.tolist() == [1, 1, 1]
    assert np.all(np.diff(w.chiller_power_w) < 0)
    fac.write_point("plant-1", "fws_supply_temp_setpoint_c", 24.0)
    settle(fac)
    assert fac.free_cooler_speed == pytest.approx(1.0)


def test_condenser_fans_follow_the_chiller_load() -> None:
    """With the chiller running the condenser fans track the condenser heat instead of running at 100 %."""
    loads = []
    speeds = []
    for util in (0.3, 0.6, 0.9):
        fac = _fac(38.0, 20.0, util=util)
        assert fac.chiller_w > 0
        loads.append(fac.chiller_load_w + fac.chiller_w)
        speeds.append(fac.condenser_speed)
    assert np.all(np.diff(loads) > 0)
    assert np.all(np.diff(speeds) > 0)
    assert fac.params.hr_min_speed < speeds[0]
    assert speeds[-1] < 1.0


def test_crah_chilled_water_is_free_cooled_when_the_sink_allows() -> None:
    """Cold outdoors the CRAH chilled water comes from the free cooler with no chiller; warm, a chiller trims it."""
    cold, warm = _fac(0.0), _fac(30.0, 40.0)
    assert cold.chw_free_share == pytest.approx(1.0)
    assert cold.chiller_w == 0.0
    assert warm.chw_free_share < 1.0
    assert warm.chiller_w > 0.0
    assert 0.0 < cold.chw_cooler_speed < 1.0  # modulating, not fixed


def test_warmer_chilled_water_needs_more_crah_air_above_the_coil_rating() -> None:
    """Past what the CRAH coil was selected for, warmer chilled water raises the airflow (and fan power)."""
    coil = CrahCoil(1e5, 12.0, 6.0, 14.0, 24.0, 1.1)
    ua = coil.ua_design
    flows = coil.airflow(np.full(4, 1e5), np.array([10.0, 14.0, 16.0, 18.0]), ua)
    assert flows[0] == pytest.approx(1.0)  # return-air ΔT control below the coil's limit
    assert flows[1] == pytest.approx(1.0)
    assert flows[2] > 1.0
    assert flows[3] > flows[2]


def test_chw_setpoint_is_writable_through_the_profile() -> None:
    """The plant's chilled-water setpoint point moves the CRAH chilled-water supply; its safe default is 14 °C."""
    fac = _fac(30.0, 40.0)
    assert num(fac, "plant-1", "chw_supply_temp_setpoint_c") == 14.0
    before = fac.chiller_w
    fac.write_point("plant-1", "chw_supply_temp_setpoint_c", 10.0)
    settle(fac, 3600.0)
    assert num(fac, "plant-1", "chw_supply_temp_c") == pytest.approx(10.0, abs=0.01)
    assert fac.chiller_w > before  # colder chilled water, lower COP


def test_fws_above_class_limit_is_counted_in_minutes() -> None:
    """FWS supply above the W32 limit is flagged and its minutes counted; at 30 °C nothing is counted."""
    fac = _fac(25.0)
    fac.write_point("plant-1", "fws_supply_temp_setpoint_c", 30.0)
    settle(fac, 3600.0)
    assert num(fac, "plant-1", "fws_above_class_minutes") == 0.0
    fac.write_point("plant-1", "fws_supply_temp_setpoint_c", 36.0)
    for _ in range(60):
        fac.step(60.0)
    assert num(fac, "plant-1", "fws_class_limit_c") == 32.0
    assert fac.device_values("plant-1")["fws_above_class"] is True
    minutes = num(fac, "plant-1", "fws_above_class_minutes")
    assert 40.0 < minutes < 60.0  # the FWS loop takes a few minutes to climb past 32 °C


def test_pump_that_cannot_reach_dp_reports_actual_dp_and_state() -> None:
    """A dp setpoint beyond the pump at full speed leaves dp at what the pump makes and sets 'not reached'."""
    fac = _fac(20.0)
    cdu = fac.cdu_names[0]
    fac.write_point(cdu, "dp_setpoint_kpa", 240.0)
    fac.step(60.0)
    values = fac.device_values(cdu)
    assert values["dp_setpoint_not_reached"] is True
    assert float(values["dp_kpa"]) < 200.0  # the design curve at full speed, about 187 kPa
    assert int(values["alarm_word"]) & 0b100000
    fac.write_point(cdu, "dp_setpoint_kpa", 150.0)
    fac.step(60.0)
    values = fac.device_values(cdu)
    assert values["dp_setpoint_not_reached"] is False
    assert float(values["dp_kpa"]) == pytest.approx(150.0)


def test_hall_dewpoint_follows_outdoor_humidity_within_control_limits() -> None:
    """The hall dew point tracks outdoors inside [min, max]: humid summer air is held at 15 °C, dry air at −9 °C."""
    assert _fac(30.0, 80.0).hall_dewpoint_c == 15.0
    assert _fac(-15.0, 30.0).hall_dewpoint_c == -9.0
    mild = _fac(20.0, 50.0)
    assert mild.hall_dewpoint_c == pytest.approx(9.3, abs=0.1)  # 20 °C / 50 % has a 9.3 °C dew point


def test_rack_controller_flags_condensation_risk() -> None:
    """A rack on a CDU whose supply is under the dew point + margin shows the flag; the others do not."""
    fac = _fac(30.0, 80.0, racks=8, hall_dewpoint_min_c=20.0, hall_dewpoint_max_c=20.0)
    fac.write_point("plant-1", "fws_supply_temp_setpoint_c", 14.0)
    cdu = fac.cdu_names[0]
    fac.write_point(cdu, "tcs_supply_temp_setpoint_c", 18.0)
    settle(fac, 3600.0)
    racks = [d for d in fac.points.devices.values() if d.kind == "rack"]
    flags = {d.tags["rack"]: fac.device_values(d.name)["condensation_risk"] for d in racks}
    expected = {name: bool(fac.rack_cdu[fac.rack_index[name]] == 0) for name in flags}
    assert flags == expected
    assert any(expected.values())
    assert not all(expected.values())


async def test_condensation_alarm_over_modbus(tmp_path: Path) -> None:
    """TCS supply written below dew point + margin raises CDU alarm bit 4 read over a real Modbus socket."""
    doc = site_doc(tmp_path)
    doc["simulation"]["physics"] = {"hall_dewpoint_min_c": 19.0, "hall_dewpoint_max_c": 19.0}
    site = load_site(write_site(tmp_path, doc))
    fac = Facility(site, weather=constant_weather(5.0, 60.0), workload=ConstantWorkload(0.8, 4))
    cdu = site.device(fac.cdu_names[0])
    port = ModbusPort("127.0.0.1", cdu.config.port or 0, [cdu], fac, FaultBook({cdu.name: cdu.profile}))
    port.refresh()
    await port.start()
    try:
        client = AsyncModbusTcpClient("127.0.0.1", port=port.port, timeout=2, retries=0)
        assert await client.connect()
        unit = cdu.config.unit_id
        before = await client.read_input_registers(10, count=2, device_id=unit)
        assert not before.isError()
        assert before.registers[0] & 0b10000 == 0
        assert before.registers[1] == 190  # room dew point, INT16 tenths
        fac.write_point("plant-1", "fws_supply_temp_setpoint_c", 14.0)
        wr = await client.write_register(0, 195, device_id=unit)  # TCS supply setpoint 19.5 °C
        assert not wr.isError()
        for _ in range(60):
            fac.step(60.0)
        port.refresh()
        after = await client.read_input_registers(10, count=2, device_id=unit)
        client.close()
        assert after.registers[0] & 0b10000
    finally:
        await port.stop()


def test_inverted_hall_dewpoint_limits_are_one_clear_error() -> None:
    """A hall dew-point maximum below the minimum stops start-up with one line naming both keys."""
    with pytest.raises(ConfigError, match=r"hall_dewpoint_max_c: 10.0 is below hall_dewpoint_min_c 20.0"):
        params_from_overrides({"hall_dewpoint_min_c": 20.0, "hall_dewpoint_max_c": 10.0})
