"""Request planning, done once at start-up from a device's profile (Telegraf ``request.go`` style).

Modbus: points are grouped per table (the unit id is the device's), sorted by address and coalesced into reads
of at most 125 registers (2000 bits for coils and discrete inputs) or the device's own lower limit from its
profile's ``workarounds``. Small gaps between points are read through unless the device rejects gap reads.
OPC-UA: node ids are resolved and split into reads of at most MaxNodesPerRead nodes. Only the plan is executed in
the poll loop; nothing is re-derived per poll.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from aidc.config import DeviceRef
from aidc.errors import ConfigError
from aidc.model import SeriesKey
from aidc.profiles import DataType, Point

log = logging.getLogger(__name__)

READ_FUNCTION: dict[str, int] = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}
BIT_TABLES = frozenset({"coil", "discrete"})
MAX_READ_BITS = 2000  # Modbus application protocol spec, function codes 1 and 2.
MAX_GAP_REGISTERS = 8  # read through gaps this small rather than issue another request
_READ_TAIL = struct.Struct(">HHBBHH")  # an MBAP read frame after its transaction id: protocol, length, unit, PDU


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """One Modbus read: function code, unit, address range, and where its data lands in the poll buffer."""

    table: str
    function_code: int
    unit_id: int
    address: int
    count: int
    first: int  # offset of its first register (or bit) in the device's register (or bit) buffer
    points: tuple[int, ...]  # indices into the plan's points
    # Derived once, for the poll's hot path: the request frame after its transaction id, the reply's byte count
    # (payload only) and whole length (unit id + function code + byte count + payload), whether it reads bits,
    # and where its payload lands in the register byte buffer ([span_lo, span_hi); bit reads: unused).
    frame_tail: bytes = field(init=False, repr=False, compare=False)
    payload: int = field(init=False, repr=False, compare=False)
    reply_len: int = field(init=False, repr=False, compare=False)
    bit_table: bool = field(init=False, repr=False, compare=False)
    span_lo: int = field(init=False, repr=False, compare=False)
    span_hi: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        bits = self.table in BIT_TABLES
        payload = -(-self.count // 8) if bits else 2 * self.count
        derived = {
            "frame_tail": _READ_TAIL.pack(0, 6, self.unit_id, self.function_code, self.address, self.count),
            "payload": payload,
            "reply_len": 3 + payload,
            "bit_table": bits,
            "span_lo": 2 * self.first,
            "span_hi": 2 * (self.first + self.count),
        }
        for name, value in derived.items():
            object.__setattr__(self, name, value)

    @property
    def is_bits(self) -> bool:
        """True for coil and discrete-input reads."""
        return self.table in BIT_TABLES


@dataclass(frozen=True)
class ModbusPlan:
    """Everything a poll of one Modbus device needs, computed once."""

    device: DeviceRef
    points: tuple[Point, ...]
    series: npt.NDArray[np.object_]
    requests: tuple[ReadRequest, ...]
    offsets: tuple[int, ...]  # per point: register (or bit) offset in its buffer
    n_registers: int
    n_bits: int

    def describe(self) -> str:
        """The plan in one line, as logged at start-up."""
        touched = sum(r.count for r in self.requests)
        return (
            f"{self.device.name} ({self.device.config.address}): {len(self.requests)} requests touching "
            f"{touched} registers for {len(self.points)} points"
        )


def _read_limit(device: DeviceRef, table: str) -> int:
    regs = device.profile.workarounds.max_registers_per_read
    return min(MAX_READ_BITS, regs * 16) if table in BIT_TABLES else regs


def _coalesce(
    device: DeviceRef, table: str, items: list[tuple[int, Point]], first: int
) -> tuple[list[ReadRequest], dict[int, int]]:
    """Group sorted (index, point) pairs of one table into requests; returns requests and per-point offsets."""
    limit = _read_limit(device, table)
    gap = 0 if device.profile.workarounds.no_gap_reads else MAX_GAP_REGISTERS
    unit = device.config.unit_id
    requests: list[ReadRequest] = []
    offsets: dict[int, int] = {}
    start = end = -1
    members: list[tuple[int, Point]] = []

    def flush() -> None:
        nonlocal first
        if not members:
            return
        for idx, p in members:
            offsets[idx] = first + int(p.address or 0) - start
        requests.append(
            ReadRequest(table, READ_FUNCTION[table], unit, start, end - start, first, tuple(i for i, _ in members))
        )
        first += end - start

    for idx, p in items:
        addr = int(p.address or 0)
        size = 1 if table in BIT_TABLES else p.registers
        if size > limit:
            raise ConfigError(
                f"profile {device.profile.name}: point {p.name} needs {size} registers but device "
                f"{device.name} reads at most {limit}"
            )
        if members and addr <= end + gap and max(end, addr + size) - start <= limit:
            end = max(end, addr + size)
            members.append((idx, p))
            continue
        flush()
        start, end, members = addr, addr + size, [(idx, p)]
    flush()
    return requests, offsets


def plan_modbus(device: DeviceRef) -> ModbusPlan:
    """Plan the reads of one Modbus device from its profile and log the plan."""
    points = device.profile.points
    requests: list[ReadRequest] = []
    offsets: dict[int, int] = {}
    n_regs = n_bits = 0
    for table in ("coil", "discrete", "holding", "input"):
        items = sorted(
            ((i, p) for i, p in enumerate(points) if p.table == table), key=lambda ip: (ip[1].address or 0, ip[0])
        )
        if not items:
            continue
        bits = table in BIT_TABLES
        reqs, offs = _coalesce(device, table, items, n_bits if bits else n_regs)
        requests.extend(reqs)
        offsets.update(offs)
        used = sum(r.count for r in reqs)
        if bits:
            n_bits += used
        else:
            n_regs += used
    plan = ModbusPlan(
        device=device,
        points=points,
        series=series_ids(device, points),
        requests=tuple(requests),
        offsets=tuple(offsets[i] for i in range(len(points))),
        n_registers=n_regs,
        n_bits=n_bits,
    )
    log.info("plan %s", plan.describe())
    return plan


def series_ids(device: DeviceRef, points: Sequence[Point]) -> npt.NDArray[np.object_]:
    """Series ids of scalar points, in point order."""
    out = np.empty(len(points), dtype=object)
    for i, p in enumerate(points):
        out[i] = SeriesKey.of(device.profile.measurement, p.name, device.tags).id
    return out


def array_series_ids(device: DeviceRef, point: Point, length: int) -> npt.NDArray[np.object_]:
    """Series ids of an array point unpacked to ``length`` indexed series (tag ``point.array_tag``)."""
    out = np.empty(length, dtype=object)
    for i in range(length):
        out[i] = SeriesKey.of(device.profile.measurement, point.name, {**device.tags, point.array_tag: str(i)}).id
    return out


@dataclass(frozen=True)
class OpcUaPlan:
    """Resolved node ids of one OPC-UA device and its scalar series ids."""

    device: DeviceRef
    points: tuple[Point, ...]
    node_ids: tuple[str, ...]
    series: npt.NDArray[np.object_]

    def describe(self, max_nodes: int) -> str:
        """The plan in one line."""
        reads = -(-len(self.node_ids) // max(1, max_nodes))
        return f"{self.device.name} ({self.device.config.address}): {reads} reads for {len(self.points)} nodes"


def plan_opcua(device: DeviceRef) -> OpcUaPlan:
    """Resolve ``{device}`` in every node id of an OPC-UA device."""
    points = device.profile.points
    nodes = tuple(str(p.node).replace("{device}", device.name) for p in points)
    return OpcUaPlan(device=device, points=points, node_ids=nodes, series=series_ids(device, points))


def chunks(n: int, size: int) -> list[range]:
    """Index ranges splitting ``n`` items into reads of at most ``size``."""
    size = max(1, size)
    return [range(i, min(n, i + size)) for i in range(0, n, size)]


def write_function(point: Point) -> int:
    """Function code that writes ``point``: 5 (coil), 6 (one register) or 16 (several registers)."""
    if point.table == "coil":
        return 5
    if point.type is DataType.BOOL or point.registers == 1:
        return 6
    return 16
