"""Modbus TCP servers built from the profiles, read and written by a pymodbus client over loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusTcpClient

from aidc.config import Site
from simulators.faults import FaultBook
from simulators.modbus_server import ModbusPort
from tests.fake_physics import FakePhysics
from tests.sim_helpers import make_site

F32 = AsyncModbusTcpClient.DATATYPE.FLOAT32
U32 = AsyncModbusTcpClient.DATATYPE.UINT32


@dataclass
class Rig:
    site: Site
    physics: FakePhysics
    faults: FaultBook
    ports: dict[str, ModbusPort]


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    """A PDU port, a CDU port and the three-meter gateway, served from a stand-in physics."""
    site = make_site(tmp_path)
    physics = FakePhysics(site)
    faults = FaultBook({d.name: d.profile for d in site.devices})
    meters = [d for d in site.devices if d.kind == "meter"]
    groups = {"pdu": [site.device("pdu-h1-r01-01")], "cdu": [site.device("cdu-h1-01")], "gateway": meters}
    ports = {k: ModbusPort("127.0.0.1", devs[0].config.port or 0, devs, physics, faults) for k, devs in groups.items()}
    for p in ports.values():
        p.refresh()
        await p.start()
    yield Rig(site, physics, faults, ports)
    for p in ports.values():
        await p.stop()


async def _client(port: ModbusPort) -> AsyncModbusTcpClient:
    client = AsyncModbusTcpClient("127.0.0.1", port=port.port, timeout=2, retries=0)
    assert await client.connect()
    return client


async def test_pdu_float32_power_matches_physics(rig: Rig) -> None:
    """The PDU's active power reads back as the big-endian FLOAT32 the physics reports."""
    rig.physics.values["pdu-h1-r01-01"]["active_power_w"] = 98765.5
    rig.ports["pdu"].refresh()
    client = await _client(rig.ports["pdu"])
    rr = await client.read_holding_registers(16, count=2, device_id=1)
    client.close()
    assert not rr.isError()
    assert client.convert_from_registers(rr.registers, F32) == 98765.5


async def test_cdu_int16_tenths_and_refresh(rig: Rig) -> None:
    """CDU temperatures are INT16 tenths in input registers and follow the physics after each refresh."""
    client = await _client(rig.ports["cdu"])
    rig.physics.values["cdu-h1-01"]["tcs_supply_temp_c"] = 31.7
    rig.ports["cdu"].refresh()
    first = await client.read_input_registers(0, count=1, device_id=1)
    rig.physics.values["cdu-h1-01"]["tcs_supply_temp_c"] = -2.5
    rig.ports["cdu"].refresh()
    second = await client.read_input_registers(0, count=1, device_id=1)
    client.close()
    assert first.registers == [317]
    assert second.registers == [(-25) & 0xFFFF]


async def test_setpoint_write_reaches_physics_and_reads_back(rig: Rig) -> None:
    """Writing the CDU supply setpoint passes the decoded value to the physics and reads back the same registers."""
    client = await _client(rig.ports["cdu"])
    wr = await client.write_register(0, 265, device_id=1)
    rr = await client.read_holding_registers(0, count=1, device_id=1)
    client.close()
    assert not wr.isError()
    assert rig.physics.writes == [("cdu-h1-01", "tcs_supply_temp_setpoint_c", pytest.approx(26.5))]
    assert rr.registers == [265]


async def test_bad_writes_get_exception_codes(rig: Rig) -> None:
    """Out-of-range setpoints answer ILLEGAL_DATA_VALUE (3); read-only registers ILLEGAL_DATA_ADDRESS (2)."""
    cdu = await _client(rig.ports["cdu"])
    out_of_range = await cdu.write_register(0, 600, device_id=1)  # 60.0 °C > max 45
    cdu.close()
    pdu = await _client(rig.ports["pdu"])
    read_only = await pdu.write_register(16, 1, device_id=1)
    pdu.close()
    assert out_of_range.isError()
    assert out_of_range.exception_code == 3
    assert read_only.isError()
    assert read_only.exception_code == 2
    assert rig.physics.writes == []


async def test_gateway_serves_three_units_and_rejects_others(rig: Rig) -> None:
    """One gateway port answers unit ids 1-3 with each meter's own layout and 0x0B for an unknown unit."""
    rig.physics.values["meter-utility"]["energy_kwh"] = 1234.5
    rig.physics.values["meter-cooling"]["active_power_w"] = 4321.0
    rig.ports["gateway"].refresh()
    client = await _client(rig.ports["gateway"])
    utility = await client.read_input_registers(8, count=2, device_id=1)
    cooling = await client.read_holding_registers(102, count=2, device_id=2)
    unknown = await client.read_input_registers(0, count=2, device_id=9)
    client.close()
    assert client.convert_from_registers(utility.registers, U32) == 12345
    assert client.convert_from_registers(cooling.registers, F32, word_order="little") == 4321.0
    assert unknown.isError()
    assert unknown.exception_code == 0x0B


async def test_reads_outside_the_map_are_illegal_address(rig: Rig) -> None:
    """Reading past the last defined register, or a table the device lacks, answers exception 2."""
    client = await _client(rig.ports["pdu"])
    past_end = await client.read_holding_registers(20, count=6, device_id=1)
    no_table = await client.read_input_registers(0, count=1, device_id=1)
    client.close()
    assert past_end.isError()
    assert past_end.exception_code == 2
    assert no_table.isError()
    assert no_table.exception_code == 2


async def test_cdu_refuses_reads_longer_than_its_limit(rig: Rig) -> None:
    """The CDU (8-register quirk) answers an 8-register read and refuses a 9-register one with exception 3."""
    client = await _client(rig.ports["cdu"])
    ok = await client.read_input_registers(0, count=8, device_id=1)
    too_long = await client.read_input_registers(0, count=9, device_id=1)
    client.close()
    assert not ok.isError()
    assert too_long.isError()
    assert too_long.exception_code == 3


async def test_counter_registers_wrap(rig: Rig) -> None:
    """A UINT32 counter in hundredths of a kWh wraps past 2^32 hundredths (42,949,672.96 kWh) on the wire."""
    ups = rig.site.device("ups-1")
    port = ModbusPort("127.0.0.1", ups.config.port or 0, [ups], rig.physics, rig.faults)
    rig.physics.values["ups-1"]["output_energy_kwh"] = 42949672.96 + 10.0
    port.refresh()
    await port.start()
    client = await _client(port)
    rr = await client.read_input_registers(6, count=2, device_id=1)
    client.close()
    await port.stop()
    assert client.convert_from_registers(rr.registers, U32) == 1000
