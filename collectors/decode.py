"""Vectorised register decoding and encoding, driven by pymodbus's own ``DATATYPE`` table.

The poll buffer holds the raw register bytes exactly as they came off the wire (big-endian per register), so a
poll copies response payloads into it and decodes every point of the device at once: one numpy byte gather
applies every point's word and byte order, one precompiled ``struct`` unpack (pymodbus's struct code per point)
turns the gathered bytes into numbers, then ``scale * raw + offset`` for all points at once. A clean Modbus poll of
a register-only plan skips numpy until its batch (:meth:`RegisterDecoder.unpack_scaled`): ``struct`` reads every
point in place, in the buffer as received or in a copy with the bytes of every register swapped, class by class (byte
order, scaled or not), and the batch lists the points in that order (``fast_order``), so nothing is reordered.

Byte orders name bytes A (most significant) to D: ABCD big-endian; CDAB word-swapped (pymodbus
``word_order="little"``); BADC bytes swapped within each register; DCBA both.
"""

from __future__ import annotations

import struct
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from operator import add, itemgetter, mul
from typing import Literal

import numpy as np
import numpy.typing as npt
from pymodbus.client.mixin import ModbusClientMixin

from aidc.profiles import ByteOrder, DataType, Point
from collectors.plan import ModbusPlan
from collectors.quality import shared_floats

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


class RegisterDecoder:
    """Decodes one device's poll buffers into raw and engineering values for every point of its plan.

    Built once per plan: the byte positions of every register point, in plan order and already in big-endian
    order (the word and byte order applied by the gather), and one ``struct`` format with pymodbus's code for
    each point. A poll then costs one numpy byte gather, one ``unpack`` of every register point and one scale
    (measured: about half the CPU of a per-type numpy cast for the bench's 61 points of six types).
    """

    def __init__(self, plan: ModbusPlan) -> None:
        self.n = len(plan.points)
        self.scale = np.array([p.scale for p in plan.points], dtype=np.float64)
        self.offset = np.array([p.offset for p in plan.points], dtype=np.float64)
        self._unit = bool(np.all(self.scale == 1.0) and np.all(self.offset == 0.0))
        self._no_offset = bool(np.all(self.offset == 0.0))
        reg_points: list[int] = []
        gather: list[int] = []  # byte positions in the poll buffer, register points in plan order
        codes: list[str] = []
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
                reg_points.append(i)
                gather.extend(byte_index(off, p.registers, p.byte_order))
                codes.append(pymodbus_type(p.type).value[0])
        self._gather = np.array(gather, dtype=np.intp)
        self._struct = struct.Struct(">" + "".join(codes))
        self._parts = _direct_parts(plan) if reg_points == list(range(self.n)) else ()
        # The order :meth:`unpack_scaled` gives the points in (plan indices), and the reordering of that into plan
        # order for :meth:`unpack` (None: already in plan order).
        self.fast_order: tuple[int, ...] = tuple(i for part in self._parts for i in part.points)
        self._order = _reorder(self.fast_order)
        self._swap_any = any(part.swap for part in self._parts)
        self._reg_points = np.array(reg_points, dtype=np.intp)
        self._all_registers = reg_points == list(range(self.n))  # the usual plan: no bit points to place
        self._raw = np.zeros(self.n, dtype=np.float64)  # scratch for :meth:`decode_into`, reused every poll
        self._flag_points = np.array(reg_bits[0], dtype=np.intp)
        self._flag_regs = np.array(reg_bits[1], dtype=np.intp)
        bits = np.array(reg_bits[2], dtype=np.int64)
        self._flag_mask = np.where(bits < 0, 0xFFFF, 1 << np.maximum(bits, 0)).astype(np.uint16)
        self._coil_points = np.array(coil[0], dtype=np.intp)
        self._coil_offsets = np.array(coil[1], dtype=np.intp)

    def _raw_into(self, registers: U8, bits: npt.NDArray[np.bool_], out: F64) -> None:
        values = self._struct.unpack(registers[self._gather].tobytes())
        if self._all_registers:
            out[:] = values
            return
        if len(self._reg_points):
            out[self._reg_points] = values
        if len(self._flag_points):
            regs = registers.view(">u2")[self._flag_regs]
            out[self._flag_points] = (regs & self._flag_mask) != 0
        if len(self._coil_points):
            out[self._coil_points] = bits[self._coil_offsets]

    @property
    def registers_only(self) -> bool:
        """Whether every point is a register value (no flags or coils): :meth:`unpack` then decodes them all."""
        return self._all_registers

    def unpack(self, registers: U8) -> tuple[float | int, ...]:
        """Raw values of every point in plan order as Python numbers (only for :attr:`registers_only` plans):
        one byte gather and one ``struct`` unpack, for the caller to put in its own array with other values."""
        return self._struct.unpack(registers[self._gather].tobytes())

    def unpack_bytes(self, registers: bytes | bytearray) -> tuple[float | int, ...]:
        """:meth:`unpack` straight from the register bytes, without numpy: each point is read in place by a
        precompiled ``struct`` of its byte-order class (see :func:`_direct_parts`), then put in plan order."""
        parts = self._parts
        swapped = self._swapped(registers)
        out: tuple[float | int, ...] = ()
        for part in parts:
            out += part.unpack(swapped if part.swap else registers)
        return out if self._order is None else self._order(out)

    def unpack_scaled(self, registers: bytes | bytearray) -> list[float | int]:
        """Engineering values of every point (``scale * raw + offset`` as numpy computes them: one multiply, one
        add, each rounded) in :attr:`fast_order`, straight from the register bytes (the poll's hot path).

        Points whose scale is 1 and offset 0 are left as read (a Python ``int`` for integer types: the batch's
        float column converts it exactly as ``raw * 1.0`` would); the classes of :func:`_direct_parts` keep
        them apart from the scaled ones, so no reordering and no multiply is spent on them.
        """
        swapped = self._swapped(registers)
        out: list[float | int] = []
        for part in self._parts:
            raw = part.unpack(swapped if part.swap else registers)
            if part.scale is None:
                out += raw
            elif part.offset is None:
                out += map(mul, raw, part.scale)
            else:
                out += map(add, map(mul, raw, part.scale), part.offset)
        return out

    def _swapped(self, registers: bytes | bytearray) -> bytes | bytearray | array[int]:
        """The register bytes with the two bytes of every register swapped (as they are: no class reads them so)."""
        if not self._swap_any:
            return registers
        swapped = array("H", registers)
        swapped.byteswap()
        return swapped

    def raw(self, registers: U8, bits: npt.NDArray[np.bool_]) -> F64:
        """Raw (unscaled) values of every point from the register byte buffer and the bit buffer."""
        out = np.empty(self.n, dtype=np.float64)
        self._raw_into(registers, bits, out)
        return out

    def decode(self, registers: U8, bits: npt.NDArray[np.bool_]) -> tuple[F64, F64]:
        """Raw values and engineering values (``scale * raw + offset``), both new arrays."""
        raw = self.raw(registers, bits)
        if self._unit:
            return raw, raw.copy()
        if self._no_offset:
            return raw, raw * self.scale
        return raw, raw * self.scale + self.offset

    def decode_into(self, registers: U8, bits: npt.NDArray[np.bool_], out: F64) -> F64:
        """Engineering values into ``out`` (the poll's batch column); the raw values, in a buffer reused per poll."""
        raw = self._raw
        self._raw_into(registers, bits, raw)
        if self._unit:
            out[:] = raw
        else:
            np.multiply(raw, self.scale, out=out)
            if not self._no_offset:
                out += self.offset
        return raw


@dataclass(frozen=True, slots=True)
class _Part:
    """One ``struct`` read of a class of a register-only plan's points (see :func:`_direct_parts`)."""

    swap: bool  # read from the bytes with every register's two bytes swapped
    unpack: Callable[[bytes | bytearray | array[int]], tuple[float | int, ...]]
    points: tuple[int, ...]  # plan indices, in the order read
    scale: list[float] | None  # None: every scale 1 and offset 0, the values are used as read
    offset: list[float] | None  # None: every offset 0


def _direct_parts(plan: ModbusPlan) -> tuple[_Part, ...]:
    """Per-class ``struct`` readers of a register-only plan.

    ``struct`` reads big-endian (``>``) or little-endian (``<``) bytes in place; the other two byte orders are the
    same after swapping the bytes of every register: ABCD is ``>`` and DCBA ``<`` on the bytes as received,
    BADC is ``>`` and CDAB ``<`` on the swapped bytes. Points needing no scale or offset form classes of their own.
    Each class present gets one ``unpack_from`` whose format skips (``x``) every byte not its own.
    """
    classes: dict[tuple[bool, str, bool], list[tuple[int, int, int, str]]] = {}
    for i, (p, off) in enumerate(zip(plan.points, plan.offsets, strict=True)):
        word_swap, byte_swap = p.byte_order in WORD_SWAP, p.byte_order in BYTE_SWAP
        if p.registers == 1:  # a single register has no word order
            word_swap = False
        scaled = p.scale != 1.0 or p.offset != 0.0
        key = (word_swap != byte_swap, "<" if word_swap else ">", scaled)
        classes.setdefault(key, []).append((2 * off, 2 * p.registers, i, pymodbus_type(p.type).value[0]))
    parts = []
    for (swap, endian, scaled), members in sorted(classes.items()):
        runs: list[list[int | str]] = []  # [bytes skipped before, struct code, points]
        pos = 0
        points: list[int] = []
        for start, size, i, code in sorted(members):
            if start < pos:
                raise ValueError(f"overlapping points in a plan at byte {start}")  # plans never overlap
            if runs and start == pos and runs[-1][1] == code:
                runs[-1][2] = int(runs[-1][2]) + 1
            else:
                runs.append([start - pos, code, 1])
            pos = start + size
            points.append(i)
        # Adjacent points of one type as one counted code ("20f", not "ffff..."): ``struct`` then keeps one entry
        # for them, less memory touched per poll.
        fmt = endian + "".join(f"{f'{gap}x' if gap else ''}{n if n != 1 else ''}{code}" for gap, code, n in runs)
        scale = shared_floats([plan.points[i].scale for i in points]) if scaled else None
        offset = shared_floats([plan.points[i].offset for i in points]) if scaled else None
        if offset is not None and not any(offset):
            offset = None
        parts.append(_Part(swap, struct.Struct(fmt).unpack_from, tuple(points), scale, offset))
    return tuple(parts)


def _reorder(order: tuple[int, ...]) -> Callable[[tuple[float | int, ...]], tuple[float | int, ...]] | None:
    """The function putting values read in ``order`` (plan indices) back in plan order; None: already in it."""
    if order == tuple(range(len(order))):
        return None
    where = {point: k for k, point in enumerate(order)}
    if len(order) == 1:  # itemgetter of one index returns the item itself, not a tuple
        return lambda t: (t[0],)
    return itemgetter(*(where[i] for i in range(len(order))))


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
