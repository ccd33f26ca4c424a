"""Engineering values to registers for every data type and byte order, counters, sentinels and bit points."""

from __future__ import annotations

import math
import struct

import pytest

from aidc.profiles import ByteOrder, DataType, Point, Profile, builtin_profiles
from simulators.registers import RegisterImage, WriteRejected, decode_point, encode_point, nan_sentinel

# data type -> (struct format, raw value to encode); raw values are chosen so every byte differs.
RAW: dict[DataType, tuple[str, int | float]] = {
    DataType.INT16: ("h", -12345),
    DataType.UINT16: ("H", 0xA1B2),
    DataType.INT32: ("i", -123456789),
    DataType.UINT32: ("I", 0xA1B2C3D4),
    # 64-bit raws fit a float64 significand exactly (engineering values are floats).
    DataType.INT64: ("q", -0x123456789ABC0000),
    DataType.UINT64: ("Q", 0xA1B2C3D4E5F60000),
    DataType.FLOAT32: ("f", -1234.5),
    DataType.FLOAT64: ("d", 98765.4321),
}


def _expected(fmt: str, raw: float, order: ByteOrder) -> list[int]:
    data = struct.pack(">" + fmt, raw)
    words = [data[i : i + 2] for i in range(0, len(data), 2)]
    if order in (ByteOrder.CDAB, ByteOrder.DCBA):
        words.reverse()
    if order in (ByteOrder.BADC, ByteOrder.DCBA):
        words = [w[::-1] for w in words]
    return [int.from_bytes(w, "big") for w in words]


@pytest.mark.parametrize("order", list(ByteOrder))
@pytest.mark.parametrize("dtype", list(RAW))
def test_encode_every_type_and_byte_order(dtype: DataType, order: ByteOrder) -> None:
    """Each numeric type encodes to the big-endian bytes of its raw value, permuted per byte order, and decodes back."""
    fmt, raw = RAW[dtype]
    wide = dtype in (DataType.INT64, DataType.UINT64)
    scale, offset = (1.0, 0.0) if wide else (0.5 if dtype in (DataType.FLOAT32, DataType.FLOAT64) else 0.1, 3.0)
    point = Point(name="x", table="holding", address=0, type=dtype, byte_order=order, scale=scale, offset=offset)
    value = raw * scale + offset
    regs = encode_point(point, value)
    assert regs == _expected(fmt, raw, order)
    assert decode_point(point, regs) == pytest.approx(value, rel=1e-9)


@pytest.mark.parametrize(
    ("dtype", "scale", "value", "raw"),
    [
        (DataType.UINT32, 0.1, 2**32 * 0.1 + 5.0, 50),  # wraps past 2^32 tenths of a kWh
        (DataType.UINT16, 1.0, 65536 * 3 + 7, 7),
        (DataType.UINT32, 1.0, 2.0**32 * 5 + 4096, 4096),
        (DataType.INT16, 1.0, 32768, -32768),  # signed counters wrap in two's complement
    ],
)
def test_counters_wrap_modulo_register_width(dtype: DataType, scale: float, value: float, raw: int) -> None:
    """Energy counters beyond the register range wrap like the device's firmware counter."""
    point = Point(name="e", table="input", address=0, type=dtype, scale=scale, counter=True)
    fmt = RAW[dtype][0]
    assert encode_point(point, value) == _expected(fmt, raw, ByteOrder.ABCD)


@pytest.mark.parametrize(
    ("dtype", "value", "raw"),
    [(DataType.INT16, 5000.0, 32767), (DataType.INT16, -5000.0, -32768), (DataType.UINT16, -3.0, 0),
     (DataType.UINT32, 1e12, 2**32 - 1)],
)
def test_non_counters_saturate(dtype: DataType, value: float, raw: int) -> None:
    """Out-of-range readings saturate at the type's limits instead of wrapping (scale 0.1 on INT16 tenths)."""
    scale = 0.1 if dtype is DataType.INT16 else 1.0
    point = Point(name="t", table="input", address=0, type=dtype, scale=scale)
    assert encode_point(point, value) == _expected(RAW[dtype][0], raw, ByteOrder.ABCD)


@pytest.mark.parametrize("dtype", list(RAW))
def test_nan_becomes_nan_or_sentinel(dtype: DataType) -> None:
    """NaN encodes as NaN on float types and as the no-reading sentinel (0x8000, 0xFFFF...) on integer types."""
    point = Point(name="v", table="input", address=0, type=dtype)
    decoded = decode_point(point, encode_point(point, math.nan))
    if dtype in (DataType.FLOAT32, DataType.FLOAT64):
        assert math.isnan(decoded)
    else:
        assert decoded == float(nan_sentinel(dtype))
    assert nan_sentinel(DataType.INT16) == -32768
    assert nan_sentinel(DataType.UINT16) == 0xFFFF


def _cdu() -> Profile:
    return builtin_profiles()["vertiv-xdu-cdu"]


def test_bool_bits_are_ored_into_their_register() -> None:
    """Alarm bits set and clear their bit of the alarm word, on top of the word's own value."""
    image = RegisterImage(_cdu())
    image.update({"alarm_word": 0b10000, "alarm_high_temp": True, "alarm_leak": False, "fallback_active": True})
    assert image.words["input"][10] == 0b11001
    image.update({"alarm_word": 0b10000, "alarm_high_temp": False, "fallback_active": True})
    assert image.words["input"][10] == 0b11000


def test_discrete_inputs_are_bits() -> None:
    """A BOOL discrete input lives in the bit table, not in a register."""
    image = RegisterImage(builtin_profiles()["ups-generic"])
    image.update({"on_battery": True, "load_pct": 54.3})
    assert image.bits["discrete"][0] is True
    assert image.words["input"][8] == 543


def test_write_decodes_and_checks_limits() -> None:
    """A holding-register write decodes to engineering units; outside min/max is code 3, read-only is code 2."""
    image = RegisterImage(_cdu())
    written = image.write("holding", 0, [275])
    assert [(p.name, v) for p, v in written] == [("tcs_supply_temp_setpoint_c", pytest.approx(27.5))]
    assert image.words["holding"][0] == 275
    with pytest.raises(WriteRejected) as exc:
        image.write("holding", 1, [9999])
    assert exc.value.code == 3
    assert image.words["holding"][1] == 0
    with pytest.raises(WriteRejected) as ro:
        image.write("input", 0, [1])
    assert ro.value.code == 2
