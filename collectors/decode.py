"""Vectorised register decoding and encoding, driven by pymodbus's own ``DATATYPE`` table.

The poll buffer holds the raw register bytes exactly as they came off the wire (big-endian per register), so a
poll copies response payloads into it and decodes every point of the device in one numpy gather per data type:
the gather applies the word and byte order, ``view`` reinterprets the bytes as the big-endian type named by
pymodbus's struct code, then ``scale * raw + offset`` for all points at once. No per-point struct code.

Byte orders name bytes A (most significant) to D: ABCD big-endian; CDAB word-swapped (pymodbus
``word_order="little"``); BADC bytes swapped within each register; DCBA both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from pymodbus.client.mixin import ModbusClientMixin

from aidc.profiles import ByteOrder, DataType, Point
from collectors.plan import ModbusPlan

PM = ModbusClientMixin.DATATYPE
F64 = npt.NDArray[np.float64]
U8 = npt.NDArray[np.uint8]

WORD_SWAP = frozenset({ByteOrder.CDAB, ByteOrder.DCBA})
BYTE_SWAP = frozenset({ByteOrder.BADC, ByteOrder.DCBA})


def pymodbus_type(dt: DataType) -> ModbusClientMixin.DATATYPE:
    """The pymodbus DATATYPE for a profile data type (BOOL registers read as UINT16)."""
    name = "UINT16" if dt is DataType.BOOL else dt.name
    return PM.__members__[name]


def numpy_type(dt: DataType) -> np.dtype[np.generic]:
    """Big-endian numpy dtype from pymodbus's struct code for the type."""
    return np.dtype(">" + pymodbus_type(dt).value[0])


def byte_index(register_offset: int, registers: int, order: ByteOrder) -> list[int]:
    """Byte positions in the poll buffer that, read in order, give the value big-endian."""
    words = list(range(register_offset, register_offset + registers))
    if order in WORD_SWAP:
        words.reverse()
    out: list[int] = []
    for w in words:
        out.extend((2 * w + 1, 2 * w) if order in BYTE_SWAP else (2 * w, 2 * w + 1))
    return out


@dataclass(frozen=True)
class _Group:
    start: int  # the group's points in dtype-sorted order
    stop: int
    byte_start: int  # and their bytes in the gathered buffer
    byte_stop: int
    dtype: np.dtype[np.generic]


class RegisterDecoder:
    """Decodes one device's poll buffers into raw and engineering values for every point of its plan.

    Register points are sorted by numpy type once; a poll then costs one byte gather (applying every word and
    byte order) into a buffer where each type's points lie side by side, one cast per type from a slice view,
    and one reorder back to plan order, skipped when the plan already groups its types (the usual case).
    """

    def __init__(self, plan: ModbusPlan) -> None:
        self.n = len(plan.points)
        self.scale = np.array([p.scale for p in plan.points], dtype=np.float64)
        self.offset = np.array([p.offset for p in plan.points], dtype=np.float64)
        self._unit = bool(np.all(self.scale == 1.0) and np.all(self.offset == 0.0))
        self._no_offset = bool(np.all(self.offset == 0.0))
        groups: dict[np.dtype[np.generic], tuple[list[int], list[list[int]]]] = {}
        reg_bits: tuple[list[int], list[int], list[int]] = ([], [], [])  # point, register byte, bit
        coil: tuple[list[int], list[int]] = ([], [])
        for i, (p, off) in enumerate(zip(plan.points, plan.offsets, strict=True)):
            if p.table in ("coil", "discrete"):
                coil[0].append(i)
                coil[1].append(off)
            elif p.type is DataType.BOOL:
                # A flag in a register: one bit (``bit``) or the whole register being non-zero.
                reg_bits[0].append(i)
                reg_bits[1].append(off)
                reg_bits[2].append(-1 if p.bit is None else p.bit)
            else:
                dt = numpy_type(p.type)
                pts, idx = groups.setdefault(dt, ([], []))
                pts.append(i)
                idx.append(byte_index(off, p.registers, p.byte_order))
        order: list[int] = []  # register points in dtype-sorted order
        gather: list[int] = []  # byte positions in the poll buffer, same order
        self._groups: list[_Group] = []
        for dt, (pts, idx) in groups.items():
            start, byte_start = len(order), len(gather)
            order.extend(pts)
            for ix in idx:
                gather.extend(ix)
            self._groups.append(_Group(start, len(order), byte_start, len(gather), dt))
        self._gather = np.array(gather, dtype=np.intp)
        self._sorted = np.empty(len(order), dtype=np.float64)
        # Where the dtype-sorted values go in plan order: nothing to do when they already are in plan order.
        self._order = np.array(order, dtype=np.intp)
        self._in_order = order == list(range(self.n))
        self._flag_points = np.array(reg_bits[0], dtype=np.intp)
        self._flag_regs = np.array(reg_bits[1], dtype=np.intp)
        bits = np.array(reg_bits[2], dtype=np.int64)
        self._flag_mask = np.where(bits < 0, 0xFFFF, 1 << np.maximum(bits, 0)).astype(np.uint16)
        self._coil_points = np.array(coil[0], dtype=np.intp)
        self._coil_offsets = np.array(coil[1], dtype=np.intp)

    def raw(self, registers: U8, bits: npt.NDArray[np.bool_]) -> F64:
        """Raw (unscaled) values of every point from the register byte buffer and the bit buffer."""
        out = np.empty(self.n, dtype=np.float64)
        dst = out if self._in_order else self._sorted
        buf = registers[self._gather]
        for g in self._groups:
            dst[g.start : g.stop] = buf[g.byte_start : g.byte_stop].view(g.dtype)
        if not self._in_order:
            out[self._order] = dst
        if len(self._flag_points):
            regs = registers.view(">u2")[self._flag_regs]
            out[self._flag_points] = (regs & self._flag_mask) != 0
        if len(self._coil_points):
            out[self._coil_points] = bits[self._coil_offsets]
        return out

    def decode(self, registers: U8, bits: npt.NDArray[np.bool_]) -> tuple[F64, F64]:
        """Raw values and engineering values (``scale * raw + offset``)."""
        raw = self.raw(registers, bits)
        if self._unit:
            return raw, raw.copy()
        if self._no_offset:
            return raw, raw * self.scale
        return raw, raw * self.scale + self.offset


def unpack_bits(payload: bytes, count: int) -> npt.NDArray[np.bool_]:
    """Coil / discrete-input bytes (least significant bit first) to ``count`` booleans."""
    return np.unpackbits(np.frombuffer(payload, dtype=np.uint8), bitorder="little")[:count].astype(bool)


def to_raw(point: Point, value: float) -> int | float:
    """Engineering value to the raw number the device stores (inverse of scale and offset)."""
    raw = (value - point.offset) / point.scale
    if point.type in (DataType.FLOAT32, DataType.FLOAT64):
        return raw
    return round(raw)


def encode(point: Point, value: float) -> list[int]:
    """Registers that hold ``value`` for a writable register point, in the point's byte order."""
    raw = to_raw(point, value)
    if point.type is DataType.BOOL:
        return [1 if raw else 0]
    dt = pymodbus_type(point.type)
    word_order: Literal["big", "little"] = "little" if point.byte_order in WORD_SWAP else "big"
    regs = ModbusClientMixin.convert_to_registers(raw, dt, word_order=word_order)
    if point.byte_order in BYTE_SWAP:
        regs = [((r & 0xFF) << 8) | (r >> 8) for r in regs]
    return regs


def representable(point: Point, value: float) -> bool:
    """Whether ``value`` fits the point's integer type after scale and offset (floats always fit)."""
    if point.type in (DataType.FLOAT32, DataType.FLOAT64, DataType.BOOL):
        return True
    info = np.iinfo(numpy_type(point.type))  # type: ignore[type-var]
    return int(info.min) <= to_raw(point, value) <= int(info.max)
