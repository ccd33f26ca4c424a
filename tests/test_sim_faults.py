"""Run-time faults: the fault book's value transforms and what a Modbus client sees from a faulty device."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from aidc.profiles import builtin_profiles
from simulators.faults import FaultBook, FaultError
from simulators.modbus_server import ModbusPort
from tests.fake_physics import FakePhysics
from tests.sim_helpers import make_site

CDU = "cdu-h1-01"


def _book() -> FaultBook:
    return FaultBook({"m": builtin_profiles()["meter-generic"]})


def test_stuck_freezes_last_values() -> None:
    """A stuck device keeps showing the values it had when the fault started, until cleared."""
    book = _book()
    book.apply("m", {"voltage_v": 230.0, "energy_kwh": 10.0})
    book.inject("m", "stuck")
    assert book.apply("m", {"voltage_v": 240.0, "energy_kwh": 11.0}) == {"voltage_v": 230.0, "energy_kwh": 10.0}
    book.clear("m", "stuck")
    assert book.apply("m", {"voltage_v": 240.0, "energy_kwh": 11.0})["voltage_v"] == 240.0


def test_nan_fault_blanks_numbers() -> None:
    """Under the nan fault every numeric value reads NaN."""
    book = _book()
    book.inject("m", "nan")
    out = book.apply("m", {"voltage_v": 230.0, "energy_kwh": 10.0})
    assert math.isnan(float(out["voltage_v"]))  # type: ignore[arg-type]
    assert math.isnan(float(out["energy_kwh"]))  # type: ignore[arg-type]


def test_counter_reset_restarts_counters_and_survives_clear() -> None:
    """A counter reset makes energy counters restart from zero and keep counting; clearing does not undo it."""
    book = _book()
    book.apply("m", {"energy_kwh": 500.0, "voltage_v": 230.0})
    book.inject("m", "counter_reset")
    book.clear("m")
    out = book.apply("m", {"energy_kwh": 512.5, "voltage_v": 231.0})
    assert out == {"energy_kwh": 12.5, "voltage_v": 231.0}


@pytest.mark.parametrize(
    ("device", "fault", "value", "message"),
    [
        ("nope", "drop", None, "unknown device 'nope'"),
        ("m", "melt", None, "unknown fault 'melt'"),
        ("m", "exception", 7, "code 7 is not a Modbus exception code"),
        ("m", "delay", None, "fault delay needs a value in seconds"),
        ("m", "delay", -1.0, "fault delay: -1.0 s is outside"),
        ("m", "restart", "soon", "value 'soon' is not a number"),
    ],
)
def test_bad_fault_requests_name_the_problem(device: str, fault: str, value: object, message: str) -> None:
    """Unknown devices and faults and bad values are refused with a one-line message naming them."""
    with pytest.raises(FaultError, match=message):
        _book().inject(device, fault, value)  # type: ignore[arg-type]


@pytest.fixture
async def cdu_port(tmp_path: Path) -> AsyncIterator[ModbusPort]:
    """A CDU served on its own port from the stand-in physics."""
    site = make_site(tmp_path)
    dev = site.device(CDU)
    physics = FakePhysics(site)
    book = FaultBook({d.name: d.profile for d in site.devices})
    port = ModbusPort("127.0.0.1", dev.config.port or 0, [dev], physics, book)
    book.on_restart = lambda _device, seconds: port.restart(seconds)
    port.refresh()
    await port.start()
    yield port
    await port.stop()


async def _read(port: ModbusPort, reply_s: float = 2.0) -> Any:
    client = AsyncModbusTcpClient("127.0.0.1", port=port.port, timeout=reply_s, retries=0)
    try:
        if not await client.connect():
            return "refused"
        return await client.read_input_registers(0, count=4, device_id=1)
    finally:
        client.close()


async def test_exception_fault_answers_the_code(cdu_port: ModbusPort) -> None:
    """With an exception fault every read is answered with that exception code, and clearing restores data."""
    cdu_port.faults.inject(CDU, "exception", 6)
    busy = await _read(cdu_port)
    cdu_port.faults.clear(CDU)
    healthy = await _read(cdu_port)
    assert busy.isError()
    assert busy.exception_code == 6
    assert not healthy.isError()


async def test_delay_fault_outlasts_client_timeout(cdu_port: ModbusPort) -> None:
    """A reply delayed far beyond the client's timeout never arrives in time."""
    cdu_port.faults.inject(CDU, "delay", 30.0)
    with pytest.raises(ModbusException):
        await _read(cdu_port, reply_s=0.3)


async def test_drop_fault_hangs_up(cdu_port: ModbusPort) -> None:
    """A dropping device closes the connection instead of answering."""
    cdu_port.faults.inject(CDU, "drop")
    with pytest.raises(ModbusException):
        await _read(cdu_port)


async def test_stuck_fault_over_the_wire(cdu_port: ModbusPort) -> None:
    """A stuck CDU keeps serving its old temperature while the physics moves on."""
    physics = cdu_port.physics
    assert isinstance(physics, FakePhysics)
    cdu_port.faults.inject(CDU, "stuck")
    before = await _read(cdu_port)
    physics.values[CDU]["tcs_supply_temp_c"] = 44.4
    cdu_port.refresh()
    after = await _read(cdu_port)
    assert after.registers == before.registers


async def test_restart_fault_takes_the_port_down_and_back(cdu_port: ModbusPort) -> None:
    """A restart fault stops the server (connections refused) and brings it back after the given time."""
    cdu_port.faults.inject(CDU, "restart", 1.5)
    async with asyncio.timeout(10):
        while cdu_port.running:  # noqa: ASYNC110 - waits on the port's state, which has no event
            await asyncio.sleep(0.01)
        down = await _read(cdu_port)
        while not cdu_port.running:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    up = await _read(cdu_port)
    assert down == "refused"
    assert not up.isError()
