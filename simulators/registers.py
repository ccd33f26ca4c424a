"""Engineering values to Modbus registers and back, per profile point: the simulator side of a device map.

The conversions use pymodbus's ``convert_to_registers`` / ``convert_from_registers`` and its ``DATATYPE`` table;
this module adds what a device profile says on top: scale and offset, the four byte orders, counters that wrap
modulo their register type, saturation of out-of-range integers (as real firmware does), NaN sentinels for
integer types, and BOOL points that are coils, discrete inputs or single bits OR-ed into a register.
:class:`RegisterImage` holds one device's tables and is what a Modbus server answers from.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from pymodbus.client.mixin import ModbusClientMixin

from aidc.profiles import ByteOrder, DataType, Point, Profile, Table
from simulators.interface import PointValue

_DT = ModbusClientMixin.DATATYPE

PYMODBUS_TYPE: dict[DataType, ModbusClientMixin.DATATYPE] = {
    DataType.INT16: _DT.INT16,
    DataType.UINT16: _DT.UINT16,
    DataType.INT32: _DT.INT32,
    DataType.UINT32: _DT.UINT32,
    DataType.INT64: _DT.INT64,
    DataType.UINT64: _DT.UINT64,
    DataType.FLOAT32: _DT.FLOAT32,
    DataType.FLOAT64: _DT.FLOAT64,
}

# Integer ranges; the "no reading" sentinel is the most negative value for signed types (0x8000 on INT16,
# as Vertiv-style controllers send) and the largest for unsigned types (0xFFFF...).
INT_LIMITS: dict[DataType, tuple[int, int]] = {
    DataType.INT16: (-(2**15), 2**15 - 1),
    DataType.UINT16: (0, 2**16 - 1),
    DataType.INT32: (-(2**31), 2**31 - 1),
    DataType.UINT32: (0, 2**32 - 1),
    DataType.INT64: (-(2**63), 2**63 - 1),
    DataType.UINT64: (0, 2**64 - 1),
}
FLOAT32_MAX = 3.4028234663852886e38
BIT_TABLES: tuple[Table, ...] = ("coil", "discrete")


class WriteRejected(Exception):
    """A client write the device refuses; ``code`` is the Modbus exception code to answer with."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def nan_sentinel(dtype: DataType) -> int:
    """Raw value an integer register carries when the device has no reading."""
    lo, hi = INT_LIMITS[dtype]
    return lo if lo < 0 else hi


def swap_order(regs: Sequence[int], order: ByteOrder) -> list[int]:
    """Reorder big-endian (ABCD) registers into ``order``; applying it twice restores the input."""
    out = list(regs)
    if order in (ByteOrder.CDAB, ByteOrder.DCBA):
        out.reverse()
    if order in (ByteOrder.BADC, ByteOrder.DCBA):
        out = [((r & 0xFF) << 8) | (r >> 8) for r in out]
    return out


def raw_value(point: Point, value: float) -> int | float:
    """Engineering value to the raw number the register type holds (scaled, wrapped or saturated)."""
    if math.isnan(value):
        return math.nan if point.type in (DataType.FLOAT32, DataType.FLOAT64) else nan_sentinel(point.type)
    raw = (value - point.offset) / point.scale
    if point.type is DataType.FLOAT64:
        return raw
    if point.type is DataType.FLOAT32:
        return max(-FLOAT32_MAX, min(FLOAT32_MAX, raw))
    lo, hi = INT_LIMITS[point.type]
    if math.isinf(raw):
        return hi if raw > 0 else lo
    n = round(raw)
    if point.counter:
        # Counters wrap modulo the register width the way the meter's firmware does (two's complement if signed).
        n %= hi - lo + 1
        return n + lo * 2 if n > hi else n
    return max(lo, min(hi, n))


def encode_point(point: Point, value: float) -> list[int]:
    """Registers of a numeric point in its byte order; BOOL points give one register holding 0 or 1."""
    if point.type is DataType.BOOL:
        return [1 if value and not math.isnan(value) else 0]
    regs = ModbusClientMixin.convert_to_registers(raw_value(point, value), PYMODBUS_TYPE[point.type])
    return swap_order(regs, point.byte_order)


def decode_point(point: Point, regs: Sequence[int]) -> float:
    """Engineering value of a point from its registers (used for client writes)."""
    if point.type is DataType.BOOL:
        return 1.0 if regs[0] else 0.0
    raw = ModbusClientMixin.convert_from_registers(swap_order(regs, point.byte_order), PYMODBUS_TYPE[point.type])
    assert isinstance(raw, int | float)
    return float(raw) * point.scale + point.offset


def _scalar(value: PointValue) -> float:
    if isinstance(value, bool | int | float):
        return float(value)
    raise TypeError(f"expected a number, got a sequence of {len(value)}")


class RegisterImage:
    """The four Modbus tables of one device, encoded from engineering values per its profile."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.words: dict[Table, list[int]] = {"input": [], "holding": []}
        self.bits: dict[Table, list[bool]] = {"coil": [], "discrete": []}
        self.defined: dict[Table, dict[int, bool]] = {t: {} for t in ("coil", "discrete", "input", "holding")}
        for p in profile.points:
            if p.table is None or p.address is None:
                raise ValueError(f"profile {profile.name}: point {p.name} has no Modbus address")
            for a in range(p.address, p.address + p.registers):
                self.defined[p.table][a] = self.defined[p.table].get(a, False) or p.writable
        for table, addrs in self.defined.items():
            size = max(addrs, default=-1) + 1
            if table in BIT_TABLES:
                self.bits[table] = [False] * size
            else:
                self.words[table] = [0] * size
        # Whole-register points first, then the BOOL bits that are OR-ed into those registers.
        self._order = sorted(profile.points, key=lambda p: p.bit is not None)

    def update(self, values: Mapping[str, PointValue]) -> None:
        """Encode every point present in ``values`` (keyed by ``Point.sim`` or the point name)."""
        for p in self._order:
            v = values.get(p.sim or p.name)
            if v is None:
                continue
            self.set_point(p, _scalar(v))

    def set_point(self, p: Point, value: float) -> None:
        """Encode one point into its table."""
        assert p.table is not None
        assert p.address is not None
        if p.table in BIT_TABLES:
            self.bits[p.table][p.address] = bool(value) and not math.isnan(value)
            return
        words = self.words[p.table]
        if p.bit is not None:
            mask = 1 << p.bit
            on = bool(value) and not math.isnan(value)
            words[p.address] = (words[p.address] | mask) if on else (words[p.address] & ~mask)
            return
        words[p.address : p.address + p.registers] = encode_point(p, value)

    def value_of(self, p: Point) -> float:
        """Engineering value currently held for a point."""
        assert p.table is not None
        assert p.address is not None
        if p.table in BIT_TABLES:
            return 1.0 if self.bits[p.table][p.address] else 0.0
        if p.bit is not None:
            return 1.0 if self.words[p.table][p.address] >> p.bit & 1 else 0.0
        return decode_point(p, self.words[p.table][p.address : p.address + p.registers])

    def write(self, table: Table, address: int, values: Sequence[int] | Sequence[bool]) -> list[tuple[Point, float]]:
        """Apply a client write; returns the written points and values, or raises :class:`WriteRejected`."""
        end = address + len(values)
        touched = [
            p for p in self.profile.points
            if p.table == table and p.address is not None and p.address < end and address < p.address + p.registers
        ]
        for p in touched:
            if not p.writable:
                raise WriteRejected(2, f"{table} {p.address} ({p.name}) is read-only")
        if table in BIT_TABLES:
            trial_bits = list(self.bits[table])
            trial_bits[address:end] = [bool(v) for v in values]
            out = [(p, 1.0 if trial_bits[p.address or 0] else 0.0) for p in touched]
        else:
            trial = list(self.words[table])
            trial[address:end] = [int(v) for v in values]
            out = [(p, decode_point(p, trial[p.address or 0 : (p.address or 0) + p.registers])) for p in touched]
        for p, v in out:
            if p.min is not None and p.max is not None and not p.min <= v <= p.max:
                raise WriteRejected(3, f"{p.name} = {v:g} is outside [{p.min:g}, {p.max:g}]")
        if table in BIT_TABLES:
            self.bits[table] = trial_bits
        else:
            self.words[table] = trial
        return out
