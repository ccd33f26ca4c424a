"""Request planning and vectorised decoding (pure functions, table-driven)."""

from __future__ import annotations

import itertools
import math
from typing import Literal

import numpy as np
import pytest
from pymodbus.client.mixin import ModbusClientMixin

from aidc.config import DeviceConfig, DeviceRef
from aidc.errors import ConfigError
from aidc.profiles import ByteOrder, DataType, Point, Profile, Workarounds, builtin_profiles
from collectors.decode import RegisterDecoder, encode, numpy_type, pymodbus_type
from collectors.plan import plan_modbus

VALUES: dict[DataType, list[float]] = {
    DataType.INT16: [-32768, -1, 0, 1234, 32767],
    DataType.UINT16: [0, 1, 40000, 65535],
    DataType.INT32: [-(2**31), -123456, 0, 2**31 - 1],
    DataType.UINT32: [0, 70000, 2**32 - 1],
    DataType.INT64: [-(2**62), -5, 0, 2**53],
    DataType.UINT64: [0, 2**40 + 3, 2**53],
    DataType.FLOAT32: [0.0, -1.5, 3.25e6, 229.5],
    DataType.FLOAT64: [0.0, -1.25e-9, 1.2345678901234e15],
}


def _device(points: list[Point], **workarounds: object) -> DeviceRef:
    prof = Profile(
        name="t", protocol="modbus", measurement="t", workarounds=Workarounds(**workarounds), points=tuple(points)
    )
    cfg = DeviceConfig(name="dev", protocol="modbus", profile="t", port=1502, unit_id=3)
    return DeviceRef("meter", "t", cfg, prof, {"site": "s", "device": "dev"})


def _swap(regs: list[int]) -> list[int]:
    return [((r & 0xFF) << 8) | (r >> 8) for r in regs]


@pytest.mark.parametrize(
    ("dtype", "order"), list(itertools.product([d for d in DataType if d is not DataType.BOOL], list(ByteOrder)))
)
def test_decode_matches_pymodbus(dtype: DataType, order: ByteOrder) -> None:
    """Every data type in every byte order decodes to what pymodbus's convert_from_registers gives."""
    values = VALUES[dtype]
    pts, regs, addr = [], [], 0
    for k, v in enumerate(values):
        p = Point(name=f"p{k}", table="holding", address=addr, type=dtype, byte_order=order, scale=1.0)
        pts.append(p)
        regs.extend(encode(p, v))
        addr += p.registers
    plan = plan_modbus(_device(pts))
    buf = np.array(regs, dtype=">u2").view(np.uint8)
    raw, eng = RegisterDecoder(plan).decode(buf, np.zeros(0, dtype=bool))
    for k, v in enumerate(values):
        chunk = regs[k * pts[k].registers : (k + 1) * pts[k].registers]
        if order in (ByteOrder.BADC, ByteOrder.DCBA):
            chunk = _swap(chunk)
        word: Literal["big", "little"] = "little" if order in (ByteOrder.CDAB, ByteOrder.DCBA) else "big"
        expected = ModbusClientMixin.convert_from_registers(chunk, pymodbus_type(dtype), word_order=word)
        assert isinstance(expected, int | float)
        assert raw[k] == pytest.approx(float(expected), rel=1e-6)
        assert eng[k] == pytest.approx(float(np.array(v, dtype=numpy_type(dtype))), rel=1e-6)


def test_scale_offset_and_bits() -> None:
    """Scale and offset apply to all points; flag bits and whole-register booleans decode from one register."""
    pts = [
        Point(name="temp", table="input", address=0, type=DataType.INT16, scale=0.1, offset=-2.0),
        Point(name="alarms", table="input", address=1, type=DataType.UINT16),
        Point(name="b0", table="input", address=1, type=DataType.BOOL, bit=0),
        Point(name="b3", table="input", address=1, type=DataType.BOOL, bit=3),
        Point(name="run", table="input", address=2, type=DataType.BOOL),
        Point(name="coil", table="coil", address=5, type=DataType.BOOL),
    ]
    plan = plan_modbus(_device(pts))
    buf = np.array([251, 0b1000, 7], dtype=">u2").view(np.uint8)
    bits = np.array([True], dtype=bool)
    _, eng = RegisterDecoder(plan).decode(buf, bits)
    assert list(eng) == pytest.approx([23.1, 8, 0, 1, 1, 1])


def test_plan_coalesces_up_to_device_limit() -> None:
    """Contiguous registers coalesce per table up to the device's max_registers_per_read, never splitting a point."""
    pts = [Point(name=f"p{i}", table="holding", address=2 * i, type=DataType.FLOAT32) for i in range(40)]
    pts.append(Point(name="i0", table="input", address=0, type=DataType.UINT16))
    plan = plan_modbus(_device(pts, max_registers_per_read=16))
    holding = [r for r in plan.requests if r.table == "holding"]
    assert [r.count for r in holding] == [16] * 5
    assert all(r.function_code == 3 and r.unit_id == 3 for r in holding)
    assert [r.function_code for r in plan.requests if r.table == "input"] == [4]
    assert plan.describe().endswith("6 requests touching 81 registers for 41 points")


def test_plan_default_limit_is_125_and_gaps() -> None:
    """Without a device limit reads go up to 125 registers; small gaps are read through unless the device forbids it."""
    pts = [Point(name=f"p{i}", table="input", address=i, type=DataType.UINT16) for i in range(200)]
    assert [r.count for r in plan_modbus(_device(pts)).requests] == [125, 75]
    gappy = [
        Point(name="a", table="input", address=0, type=DataType.UINT16),
        Point(name="b", table="input", address=4, type=DataType.UINT16),
    ]
    assert len(plan_modbus(_device(gappy)).requests) == 1
    assert len(plan_modbus(_device(gappy, no_gap_reads=True)).requests) == 2


def test_plan_rejects_point_larger_than_limit() -> None:
    """A point wider than the device's read limit is a configuration error naming the point."""
    pts = [Point(name="big", table="input", address=0, type=DataType.UINT64)]
    with pytest.raises(ConfigError, match="big"):
        plan_modbus(_device(pts, max_registers_per_read=2))


@pytest.mark.parametrize("name", sorted(n for n, p in builtin_profiles().items() if p.protocol == "modbus"))
def test_builtin_profiles_plan(name: str) -> None:
    """Every bundled Modbus profile plans within its limits and decodes a zero buffer to finite values."""
    prof = builtin_profiles()[name]
    dev = DeviceRef("meter", "x", DeviceConfig(name="d", protocol="modbus", profile=name, port=1502), prof, {})
    plan = plan_modbus(dev)
    assert all(r.count <= prof.workarounds.max_registers_per_read for r in plan.requests if not r.is_bits)
    _raw, eng = RegisterDecoder(plan).decode(np.zeros(2 * plan.n_registers, np.uint8), np.zeros(plan.n_bits, bool))
    assert all(math.isfinite(v) for v in eng)
