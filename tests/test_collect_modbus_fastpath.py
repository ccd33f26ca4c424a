"""The Modbus poll's Python fast path (the in-place ``struct`` decode, QualityTracker.clean_list) gives exactly what
the numpy decode and the full checks give, and the client's turn passes in order and survives cancelled waiters."""

from __future__ import annotations

import asyncio
import itertools
import math

import numpy as np
import pytest

from aidc.config import DeviceConfig, DeviceRef
from aidc.profiles import ByteOrder, DataType, Point, Profile, Workarounds
from collectors.decode import RegisterDecoder
from collectors.modbus import ModbusTcpClient
from collectors.plan import plan_modbus
from collectors.quality import QualityTracker

POINTS = [
    Point(name="power", table="holding", address=0, type=DataType.FLOAT32, range=(0.0, 100.0)),
    Point(name="fan", table="holding", address=2, type=DataType.UINT16, must_move=True),
    Point(name="energy", table="holding", address=3, type=DataType.UINT16, counter=True),  # wraps at 65536
    Point(name="energy2", table="holding", address=5, type=DataType.UINT32, counter=True),
    Point(name="free", table="holding", address=7, type=DataType.INT16),
]


def _device(points: list[Point], max_registers_per_read: int = 125) -> DeviceRef:
    prof = Profile(
        name="t",
        protocol="modbus",
        measurement="t",
        workarounds=Workarounds(max_registers_per_read=max_registers_per_read),
        points=tuple(points),
    )
    cfg = DeviceConfig(name="dev", protocol="modbus", profile="t", port=1502, unit_id=1)
    return DeviceRef("meter", "t", cfg, prof, {"site": "s", "device": "dev"})


def _mixed_points(orders: list[ByteOrder]) -> list[Point]:
    """Every register type in each of ``orders``, with gaps, listed out of address order."""
    types = [d for d in DataType if d is not DataType.BOOL]
    pts, addr = [], 3
    for k, (dtype, order) in enumerate(itertools.product(types, orders)):
        p = Point(name=f"p{k}", table="holding", address=addr, type=dtype, byte_order=order)
        pts.append(p)
        addr += p.registers + k % 3  # gaps of 0 to 2 registers
    return pts[1::2] + pts[0::2]


@pytest.mark.parametrize(
    ("orders", "max_regs"),
    [
        (list(ByteOrder), 125),
        (list(ByteOrder), 16),  # several requests, one buffer
        ([ByteOrder.ABCD], 125),  # one class read as is
        ([ByteOrder.CDAB], 125),  # one class, swapped bytes only
    ],
)
def test_struct_decode_in_place_matches_the_numpy_gather(orders: list[ByteOrder], max_regs: int) -> None:
    """Every type in every byte order, read in place from the register bytes by unpack_bytes, gives exactly the
    raw values of the numpy byte gather (NaN bit patterns included), in plan order."""
    plan = plan_modbus(_device(_mixed_points(orders), max_regs))
    decoder = RegisterDecoder(plan)
    assert decoder.registers_only
    rng = np.random.default_rng(3)
    for _ in range(50):
        buf = bytearray(rng.integers(0, 256, 2 * plan.n_registers, dtype=np.uint8).tobytes())
        got = decoder.unpack_bytes(buf)
        want = decoder.unpack(np.frombuffer(buf, dtype=np.uint8))
        assert len(got) == len(plan.points)
        np.testing.assert_array_equal(np.array(got, dtype=np.float64), np.array(want, dtype=np.float64))
        assert [type(v) for v in got] == [type(v) for v in want]


def _scaled_points(orders: list[ByteOrder]) -> list[Point]:
    """:func:`_mixed_points` with scales and offsets on some points (and a negative zero scale's sign kept)."""
    scales = [(1.0, 0.0), (0.1, 0.0), (0.01, -40.0), (1.0, 273.15), (-2.5, 0.0), (0.1, 0.0)]
    return [
        Point(name=p.name, table="holding", address=p.address, type=p.type, byte_order=p.byte_order,
              scale=scales[k % len(scales)][0], offset=scales[k % len(scales)][1])
        for k, p in enumerate(_mixed_points(orders))
    ]  # fmt: skip


@pytest.mark.parametrize("orders", [list(ByteOrder), [ByteOrder.ABCD], [ByteOrder.CDAB, ByteOrder.BADC]])
def test_scaled_decode_in_fast_order_matches_the_numpy_decode(orders: list[ByteOrder]) -> None:
    """unpack_scaled gives, point for point through fast_order, exactly the engineering values of the numpy decode
    (scale and offset applied as numpy applies them, unscaled points as read), NaN and ±inf included."""
    plan = plan_modbus(_device(_scaled_points(orders)))
    decoder = RegisterDecoder(plan)
    assert sorted(decoder.fast_order) == list(range(len(plan.points)))
    rng = np.random.default_rng(5)
    for _ in range(50):
        buf = bytearray(rng.integers(0, 256, 2 * plan.n_registers, dtype=np.uint8).tobytes())
        got = np.array(decoder.unpack_scaled(buf), dtype=np.float64)
        _, want = decoder.decode(np.frombuffer(buf, dtype=np.uint8), np.zeros(0, bool))
        np.testing.assert_array_equal(got, want[list(decoder.fast_order)])


def test_python_fast_path_in_another_order_matches_the_points_order() -> None:
    """A tracker given clean_list's values in another order (``list_order``) takes the same decisions and keeps the
    same state, poll after poll, as one given them in the points' order."""
    order = [3, 0, 4, 2, 1]
    plain, moved = QualityTracker(POINTS, stuck_polls=3), QualityTracker(POINTS, stuck_polls=3, list_order=order)
    decisions = []
    for row in _polls(120):
        a = plain.clean_list(list(row))
        assert moved.clean_list([row[i] for i in order]) == a
        decisions.append(a)
        if not a:
            arr = np.array(row)
            got, want = moved.assess(arr, arr.copy()), plain.assess(arr, arr.copy())
            np.testing.assert_array_equal(got[1], want[1])
            assert got[2] == want[2]
    assert 40 < sum(decisions) < 120
    with pytest.raises(ValueError, match="list_order"):
        QualityTracker(POINTS, list_order=[0, 1, 2, 3, 3])


def _polls(n: int) -> list[list[float]]:
    """A deterministic mix: good polls, out of range, NaN, ±inf, a stuck fan, counter resets and wraps."""
    rng = np.random.default_rng(7)
    out, e1, e2, fan = [], 100.0, 5.0, 1.0
    for k in range(n):
        e1, e2 = (e1 + float(rng.integers(0, 20000))) % 65536.0, e2 + float(rng.integers(0, 3))
        fan = fan if k % 9 in (3, 4, 5, 6) else fan + 1.0  # held for a few polls now and then: stuck after 3
        row = [float(rng.uniform(0, 100)), fan, e1, e2, float(rng.integers(-5, 5))]
        match k % 13:
            case 4:
                row[0] = 150.0
            case 7:
                row[0] = math.nan
            case 8:
                row[4] = math.inf
            case 10:
                row[3] = 0.0  # a counter reset
                e2 = 0.0
            case 11:
                e2 += 2.0
                row[3] = e2
            case 12:
                e2 -= 1.0  # a small drop: below the last value, above the one before
                row[3] = e2
        out.append(row)
    return out


def test_python_fast_path_matches_the_full_checks_poll_after_poll() -> None:
    """Every poll through clean_list (falling back to assess as the link does) gives the values, qualities,
    reasons and counter increases of the numpy checks alone, and so does the numpy path after the Python one."""
    fast, slow = (QualityTracker(POINTS, stuck_polls=3) for _ in range(2))
    took_fast = 0
    for row in _polls(120):
        arr = np.array(row)
        if fast.clean_list(list(row)):
            took_fast += 1
            got: tuple = (arr, np.zeros(len(row), np.uint8), [])
        else:
            got = fast.assess(arr, arr.copy())
        want = slow.assess(arr, arr.copy())
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
        assert got[2] == want[2]
        np.testing.assert_array_equal(fast.counter_delta, slow.counter_delta)
    assert 40 < took_fast < 120  # both paths were exercised, and handed over to each other


async def test_client_turns_pass_in_order_and_skip_cancelled_waiters() -> None:
    """Transactions on one connection take turns in arrival order; a waiter cancelled while queued, or after being
    handed the turn, does not keep the others waiting."""
    client = ModbusTcpClient("127.0.0.1", 1)
    order: list[str] = []

    async def txn(name: str, hold: asyncio.Event | None = None) -> None:
        if client._busy:
            await client._wait_turn()
        client._busy = True
        try:
            order.append(name)
            if hold is not None:
                await hold.wait()
        finally:
            client._release()

    gate = asyncio.Event()
    first = asyncio.create_task(txn("a", gate))
    await asyncio.sleep(0)
    waiting = [asyncio.create_task(txn(n)) for n in ("b", "c", "d")]
    await asyncio.sleep(0)
    waiting[0].cancel()  # cancelled while queued
    await asyncio.sleep(0)
    gate.set()
    await asyncio.sleep(0)
    waiting[1].cancel()  # may already hold the handed-over turn: it must pass it on
    await asyncio.gather(first, *waiting, return_exceptions=True)
    assert order[0] == "a"
    assert order[-1] == "d"
    assert "b" not in order
    assert client._busy is False
