"""The quality tracker's all-good fast path gives exactly what the full checks give, poll after poll."""

from __future__ import annotations

import numpy as np
import pytest

from aidc.profiles import DataType, Point
from collectors.quality import BAD, GOOD, UNCERTAIN, QualityTracker

POINTS = [
    Point(name="power", table="holding", address=0, type=DataType.FLOAT32, range=(0.0, 100.0)),
    Point(name="fan", table="holding", address=2, type=DataType.UINT16, must_move=True),
    Point(name="energy", table="holding", address=3, type=DataType.UINT32, counter=True),
    Point(name="free", table="holding", address=5, type=DataType.INT16),
]
SENTINEL = -32768.0


def _pair() -> tuple[QualityTracker, QualityTracker]:
    return tuple(QualityTracker(POINTS, sentinels=[SENTINEL], stuck_polls=3) for _ in range(2))  # type: ignore[return-value]


def _same(fast: QualityTracker, slow: QualityTracker, raw: np.ndarray, failures: list) -> tuple:
    a = fast.assess(raw, raw.copy(), failures)
    b = slow._assess(raw, raw.copy(), failures)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[2] == b[2]
    np.testing.assert_array_equal(fast.counter_delta, slow.counter_delta)
    return a


def test_fast_path_matches_full_checks_over_a_sequence() -> None:
    """Good polls, range, NaN, sentinel, stuck, counter reset and wrap: every poll's output and state agree."""
    fast, slow = _pair()
    polls = [
        [10.0, 1.0, 100.0, 5.0],
        [11.0, 2.0, 150.0, 5.0],  # good: counter delta 50
        [120.0, 3.0, 160.0, 5.0],  # out of range
        [12.0, 4.0, 150.0, 5.0],  # counter reset
        [12.0, 4.0, 151.0, np.nan],  # NaN
        [12.0, 4.0, 152.0, SENTINEL],  # sentinel
        [12.0, 4.0, 153.0, 5.0],  # fan unchanged for 3 polls: stuck
        [12.0, 5.0, 154.0, 5.0],  # moves again: good
        [12.0, 6.0, 4.0e9, 5.0],
        [12.0, 7.0, 10.0, 5.0],  # a drop of more than half the 32-bit modulus: a wrap
        [13.0, 8.0, 20.0, 5.0],
    ]
    flags = []
    for poll in polls:
        _, q, _ = _same(fast, slow, np.array(poll), [])
        flags.append(int(q.max()))
    assert flags == [GOOD, GOOD, UNCERTAIN, UNCERTAIN, BAD, BAD, UNCERTAIN, GOOD, GOOD, GOOD, GOOD]


@pytest.mark.parametrize("failed", [[0], [2], [0, 1, 2, 3]])
def test_failures_take_the_full_path(failed: list[int]) -> None:
    """A poll with failed reads marks those points bad, with the same state afterwards on both paths."""
    fast, slow = _pair()
    _same(fast, slow, np.array([10.0, 1.0, 100.0, 5.0]), [])
    _, q, reasons = _same(fast, slow, np.array([10.0, 2.0, 110.0, 5.0]), [(failed, "timeout")])
    assert [i for i, r in enumerate(reasons) if r == "timeout"] == failed
    assert all(q[i] == BAD for i in failed)
    _same(fast, slow, np.array([11.0, 3.0, 120.0, 5.0]), [])


def test_all_good_qualities_are_shared_and_read_only() -> None:
    """The fast path returns one read-only zeros array: a caller cannot corrupt the next poll's qualities."""
    tracker = QualityTracker(POINTS)
    _, q, reasons = tracker.assess(np.ones(4), np.ones(4))
    assert reasons == []
    assert not q.any()
    with pytest.raises(ValueError, match="read-only"):
        q[0] = BAD


@pytest.mark.parametrize("bad", [np.inf, -np.inf])
def test_infinite_values_are_bad_never_good(bad: float) -> None:
    """±inf (a hostile OPC-UA Double, a broken float register) is bad with its reason, on every path, warning-free."""
    fast, slow = _pair()
    ok = np.array([50.0, 1.0, 10.0, 7.0])
    _same(fast, slow, ok, [])
    for i in range(len(POINTS)):
        raw = ok + np.array([0.0, i + 1, i + 1, 0.0])  # the fan moves and the counter counts: nothing else is flagged
        raw[i] = bad
        values, quality, reasons = _same(fast, slow, raw, [])
        assert quality[i] == BAD, POINTS[i].name
        assert np.isnan(values[i])
        assert reasons[i] == f"not finite: {bad:g}"
        assert quality[np.arange(len(POINTS)) != i].tolist() == [GOOD] * (len(POINTS) - 1)
