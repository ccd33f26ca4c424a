"""``Historian.query_arrays``: the raw rows of ``query`` as arrays, from the DuckDB store's fast path and from the
interface's default, in the same order with the same values, whatever order the rows were written in."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aidc.model import Batch
from historian import SeriesSelector
from historian.base import RawArrays, ts_ns_of
from historian.duckdb_store import DuckDBHistorian

NS = 1_000_000_000
T0 = int(pd.Timestamp("2026-10-01T00:00Z").value)


def _batch(rng: np.random.Generator, n_series: int, n_t: int) -> Batch:
    """Readings of ``n_series`` pdu series every 60 s, shuffled, some NaN and some bad."""
    names = np.array([f"pdu,rack=r{i:03d},site=dc1 active_energy_wh" for i in range(n_series)], dtype=object)
    series = np.tile(names, n_t)
    ts = np.repeat(T0 + np.arange(n_t, dtype=np.int64) * 60 * NS, n_series)
    values = rng.uniform(0, 1e6, len(ts))
    values[rng.random(len(ts)) < 0.02] = np.nan
    quality = (rng.random(len(ts)) < 0.03).astype(np.uint8) * 2
    order = rng.permutation(len(ts))
    return Batch(series[order], ts[order], values[order], quality[order])


def _check_same(arr: RawArrays, frame: pd.DataFrame) -> None:
    names = [arr.names[c] for c in arr.codes]
    assert names == frame["series"].astype(str).tolist()
    assert arr.names == sorted(set(names))
    np.testing.assert_array_equal(arr.ts_ns, ts_ns_of(frame["ts"]))
    np.testing.assert_array_equal(arr.values, frame["value"].to_numpy())
    np.testing.assert_array_equal(arr.quality, frame["quality"].to_numpy())


@pytest.mark.parametrize("n_series", [3, 40])
def test_duckdb_arrays_are_the_query_rows(tmp_path: Path, n_series: int) -> None:
    """Written in random order over two batches, the arrays are query()'s rows: by series, then time."""
    rng = np.random.default_rng(n_series)
    with DuckDBHistorian(tmp_path / "h.duckdb", raw_retention_days=1e4) as hist:
        hist.write(_batch(rng, n_series, 50))
        hist.write(_batch(rng, n_series, 30))  # the same times again: duplicates keep their stored order
        hist.write(Batch(np.array(["other,site=dc1 x"], dtype=object), np.array([T0], dtype=np.int64),
                         np.array([1.0]), np.zeros(1, dtype=np.uint8)))  # fmt: skip
        sel = SeriesSelector("pdu", {}, "active_energy_wh")
        lo, hi = T0 + 5 * 60 * NS, T0 + 45 * 60 * NS
        arr = hist.query_arrays(sel, lo, hi)
        frame = hist.query(sel, lo, hi)
        assert len(frame) == len(arr.codes) > 0
        _check_same(arr, frame)
        _check_same(RawArrays.from_frame(frame), frame)
        one = (T0, T0 + 60 * NS)  # fewer rows than 4 per series: the other way of finding the series present
        _check_same(hist.query_arrays(sel, *one), hist.query(sel, *one))
        empty = hist.query_arrays(sel, T0 - 10 * NS, T0 - NS)
        assert empty.names == []
        assert len(empty.codes) == 0


def test_default_arrays_come_from_query_frame() -> None:
    """The interface's default builds the arrays from an unsorted frame, sorted by series then time."""
    frame = pd.DataFrame({
        "ts": pd.to_datetime([3, 1, 2, 1], unit="s", utc=True),
        "series": ["b x", "b x", "a x", "a x"],
        "value": [3.0, 1.0, 2.0, np.nan],
        "quality": np.array([0, 1, 0, 2], dtype=np.uint8),
    })  # fmt: skip
    arr = RawArrays.from_frame(frame)
    assert arr.names == ["a x", "b x"]
    assert arr.codes.tolist() == [0, 0, 1, 1]
    assert (arr.ts_ns // NS).tolist() == [1, 2, 1, 3]
    assert arr.quality.tolist() == [2, 0, 1, 0]
