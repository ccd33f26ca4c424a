"""The clean Modbus poll in C (collectors/_fastpoll.c) gives exactly what the numpy decode and the full quality
checks give, takes the same decisions and keeps the same state as the Python fast path, and hands that state over
to the numpy checks and back."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

from aidc.profiles import ByteOrder, DataType, Point
from collectors import fastpoll
from collectors.decode import RegisterDecoder, encode
from collectors.plan import plan_modbus
from collectors.quality import QualityTracker
from tests.test_collect_modbus_fastpath import _device, _scaled_points

pytestmark = pytest.mark.skipif(
    not fastpoll.available() and os.environ.get("CI") != "true",
    reason="collectors._fastpoll is not built here (`make venv` compiles it with gcc and numpy's headers)",
)

HEALTH = [1.0, 0.0, 1.5, 0.0, 1.7e9]

POINTS = [
    Point(name="power", table="holding", address=0, type=DataType.FLOAT32, range=(0.0, 100.0)),
    Point(name="fan", table="holding", address=2, type=DataType.UINT16, must_move=True),
    Point(name="energy", table="holding", address=3, type=DataType.UINT16, counter=True),  # wraps at 65536
    Point(name="energy2", table="holding", address=4, type=DataType.UINT32, counter=True, byte_order=ByteOrder.CDAB),
    Point(name="temp", table="holding", address=8, type=DataType.INT16, scale=0.1, offset=-40.0, range=(-20.0, 60.0)),
    Point(name="flow", table="holding", address=9, type=DataType.FLOAT64, byte_order=ByteOrder.DCBA, must_move=True),
    Point(name="volts", table="holding", address=13, type=DataType.INT32, byte_order=ByteOrder.BADC, scale=0.01),
]


def test_the_c_poll_is_built_where_ci_runs() -> None:
    """CI builds the extension (a missing compiler or header fails here rather than silently testing less)."""
    assert fastpoll.available(), "collectors._fastpoll is not importable: `make venv` must compile it"


def _registers(points: list[Point], values: list[float], n_registers: int) -> bytearray:
    """The register bytes a device holding ``values`` (engineering units) serves, big-endian per register."""
    buf = bytearray(2 * n_registers)
    for p, v in zip(points, values, strict=True):
        regs = encode(p, v) if math.isfinite(v) or p.type in (DataType.FLOAT32, DataType.FLOAT64) else [0]
        for k, r in enumerate(regs):
            buf[2 * (p.address + k) : 2 * (p.address + k) + 2] = r.to_bytes(2, "big")
    return buf


def _rows(n: int) -> list[list[float]]:
    """A deterministic mix: good polls, out of range, NaN, inf, stuck points, counter resets, wraps and drops."""
    rng = np.random.default_rng(11)
    out, e1, e2, fan, flow = [], 100.0, 5.0, 1.0, 2.0
    for k in range(n):
        e1, e2 = (e1 + float(rng.integers(0, 20000))) % 65536.0, e2 + float(rng.integers(0, 3))
        fan = fan if k % 9 in (3, 4, 5, 6) else fan + 1.0  # held now and then: stuck after 3 polls
        flow = flow if k % 11 in (2, 3, 4) else flow + 0.25
        row = [float(np.float32(rng.uniform(0, 100))), fan, e1, e2, round(float(rng.uniform(-15, 50)), 1), flow,
               round(float(rng.uniform(200, 240)), 2)]  # fmt: skip
        match k % 13:
            case 4:
                row[0] = 150.0
            case 5:
                row[4] = 70.0  # above the temperature's range
            case 7:
                row[0] = math.nan
            case 8:
                row[5] = math.inf
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


def test_c_poll_takes_the_python_fast_paths_decisions_and_the_full_checks_results() -> None:
    """Poll after poll (the link's fallback to the numpy checks when a sample needs a closer look), the C poll gives
    the values, qualities, reasons and counter increases of the numpy checks alone and of the Python fast path, and
    accepts exactly the polls the Python fast path accepts."""
    plan = plan_modbus(_device(POINTS))
    decoder = RegisterDecoder(plan)
    c_side = QualityTracker(plan.points, stuck_polls=3)
    poll = fastpoll.fast_poll(plan, c_side)
    assert poll is not None
    py_side = QualityTracker(plan.points, stuck_polls=3, list_order=decoder.fast_order)
    slow = QualityTracker(plan.points, stuck_polls=3)
    accepted = 0
    for k, row in enumerate(_rows(150)):
        buf = _registers(POINTS, row, plan.n_registers)
        raw, eng = decoder.decode(np.frombuffer(buf, np.uint8), np.zeros(0, bool))
        want = slow.assess(raw, eng.copy())
        cols = c_side.clean_columns(buf, HEALTH, 1000 + k)
        python_clean = py_side.clean_list(decoder.unpack_scaled(buf))
        assert (cols is not None) == python_clean, f"poll {k}: {row}"
        if cols is not None:
            accepted += 1
            ts_col, values = cols
            assert ts_col.dtype == np.int64
            assert values.dtype == np.float64
            assert ts_col.tolist() == [1000 + k] * (len(POINTS) + len(HEALTH))
            np.testing.assert_array_equal(values[len(POINTS) :], HEALTH)
            assert values[: len(POINTS)].tobytes() == want[0].tobytes()  # bit for bit, -0.0 included
            assert not want[1].any()
            assert want[2] == []
        else:
            got = c_side.assess(raw, eng.copy())
            np.testing.assert_array_equal(got[0], want[0])
            np.testing.assert_array_equal(got[1], want[1])
            assert got[2] == want[2]
            py_side.assess(raw, eng.copy())
        np.testing.assert_array_equal(c_side.counter_delta, slow.counter_delta)
        np.testing.assert_array_equal(py_side.counter_delta, slow.counter_delta)
    assert 40 < accepted < 150  # both paths ran, and handed the state over to each other


@pytest.mark.parametrize("orders", [list(ByteOrder), [ByteOrder.ABCD], [ByteOrder.CDAB, ByteOrder.BADC]])
def test_c_decode_matches_the_numpy_decode_bit_for_bit(orders: list[ByteOrder]) -> None:
    """Every type in every byte order, scaled and offset as numpy computes them (one multiply, one add), gives the
    numpy decode's values bit for bit; a poll with NaN or ±inf is handed to the full checks."""
    plan = plan_modbus(_device(_scaled_points(orders)))
    decoder = RegisterDecoder(plan)
    tracker = QualityTracker(plan.points)
    poll = fastpoll.fast_poll(plan, tracker)
    assert poll is not None
    rng = np.random.default_rng(5)
    finite = 0
    for k in range(200):
        buf = bytearray(rng.integers(0, 256, 2 * plan.n_registers, dtype=np.uint8).tobytes())
        _, want = decoder.decode(np.frombuffer(buf, dtype=np.uint8), np.zeros(0, bool))
        cols = poll.poll(bytes(buf), HEALTH, k)
        if np.isfinite(want).all():
            finite += 1
            assert cols is not None
            assert cols[1][: len(want)].tobytes() == want.tobytes()
        else:
            assert cols is None
    assert finite > 20


def test_c_poll_refuses_a_short_buffer_and_a_bad_layout() -> None:
    """A register buffer shorter than the plan reads, or a layout with a code that is no register number or a
    register count that is not its type's, is refused with the sizes or the code named (never a read past the
    buffer)."""
    plan = plan_modbus(_device(POINTS))
    poll = fastpoll.fast_poll(plan, QualityTracker(plan.points))
    assert poll is not None
    with pytest.raises(ValueError, match=f"4 register bytes, the plan reads {2 * plan.n_registers}"):
        poll.poll(b"\0" * 4, HEALTH, 1)
    from collectors import _fastpoll

    with pytest.raises(ValueError, match="struct code s"):
        _fastpoll.Poll([(0, 1, "s", False, False, 1.0, 0.0)], [0.0], [1.0], [], [], 5)
    with pytest.raises(ValueError, match="2 registers of struct code h"):
        _fastpoll.Poll([(0, 2, "h", False, False, 1.0, 0.0)], [0.0], [1.0], [], [], 5)
    with pytest.raises(ValueError, match="index 3 outside"):
        _fastpoll.Poll([(0, 1, "H", False, False, 1.0, 0.0)], [0.0], [1.0], [3], [], 5)


def test_the_switch_sends_polls_through_the_python_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """AIDC_NO_FASTPOLL turns the C poll off: the tracker is left to the Python fast path."""
    monkeypatch.setenv(fastpoll.DISABLE_ENV, "1")
    plan = plan_modbus(_device(POINTS))
    assert fastpoll.fast_poll(plan, QualityTracker(plan.points)) is None


def test_c_poll_and_python_fast_path_hand_the_state_over_on_one_tracker() -> None:
    """One tracker polled alternately through the C poll and clean_list (and the numpy checks when either needs a
    closer look) takes every decision and reports every result that a tracker on the Python path alone does."""
    plan = plan_modbus(_device(POINTS))
    decoder = RegisterDecoder(plan)
    mixed = QualityTracker(plan.points, stuck_polls=3, list_order=decoder.fast_order)
    assert fastpoll.fast_poll(plan, mixed) is not None
    alone = QualityTracker(plan.points, stuck_polls=3, list_order=decoder.fast_order)
    for k, row in enumerate(_rows(150)):
        buf = _registers(POINTS, row, plan.n_registers)
        raw, eng = decoder.decode(np.frombuffer(buf, np.uint8), np.zeros(0, bool))
        want = alone.clean_list(decoder.unpack_scaled(buf))
        if k % 3 == 0:
            got = mixed.clean_list(decoder.unpack_scaled(buf))
        else:
            got = mixed.clean_columns(buf, HEALTH, k) is not None
        assert got == want, f"poll {k}: {row}"
        if not want:
            a, b = mixed.assess(raw, eng.copy()), alone.assess(raw, eng.copy())
            np.testing.assert_array_equal(a[1], b[1])
            assert a[2] == b[2]
        if k % 5 == 0:
            np.testing.assert_array_equal(mixed.counter_delta, alone.counter_delta)
