"""Series ids on the DuckDB write path: looked up by string object, right for fresh equal strings and after a reopen."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aidc.model import Batch
from historian import SeriesSelector
from historian.duckdb_store import DuckDBHistorian
from historian.ids import IdentityIds, addresses

NS = 1_000_000_000


def _fresh(s: str) -> str:
    """An equal string that is a different object."""
    return (s + ".")[:-1]


def test_identity_ids_find_listed_objects_only() -> None:
    """A listed object is found with its id; an equal but distinct string object is not (the caller resolves it)."""
    keys = np.array([f"m,k={i} f" for i in range(5)], dtype=object)
    cache = IdentityIds()
    ids, ptrs = cache.get(keys)
    assert not ids.any()
    cache.add(keys, ptrs, np.arange(1, 6, dtype=np.int32))
    again = np.array([keys[3], keys[0], keys[3], _fresh(keys[1])], dtype=object)
    ids, _ = cache.get(again)
    assert ids.tolist() == [4, 1, 4, 0]


def test_identity_ids_bounded() -> None:
    """More objects than the limit empty the cache first, so fresh strings at every batch cannot grow it for ever."""
    cache = IdentityIds(limit=8)
    for k in range(5):
        col = np.array([f"s{k}-{i}" for i in range(3)], dtype=object)
        _ids, ptrs = cache.get(col)
        cache.add(col, ptrs, np.arange(1, 4, dtype=np.int32))
        assert len(cache) <= 8


def test_addresses_refuses_a_non_object_column() -> None:
    """A string column of another dtype is one clear error, not a wrong read of its buffer."""
    with pytest.raises(TypeError, match="object array"):
        addresses(np.array(["a", "b"]))


def test_write_maps_equal_strings_to_one_series(tmp_path: Path) -> None:
    """Polls with the same series as fresh string objects, and again after a reopen, land in the same series."""
    keys = [f"pdu,device=p{i} active_power_w" for i in range(50)]
    path = tmp_path / "h.duckdb"
    h = DuckDBHistorian(path)
    for k in range(3):
        col = np.array(keys if k == 0 else [_fresh(s) for s in keys], dtype=object)
        h.write(Batch(col, np.full(50, (k + 1) * NS, np.int64), np.arange(50.0) + k, np.zeros(50, np.uint8)))
    h.close()
    h = DuckDBHistorian(path)
    col = np.array([*keys[::-1], "pdu,device=new active_power_w"], dtype=object)
    h.write(Batch(col, np.full(51, 10 * NS, np.int64), np.arange(51.0), np.zeros(51, np.uint8)))
    df = h.query(SeriesSelector.parse("pdu,*,active_power_w"), 0, 20 * NS)
    h.close()
    assert df["series"].nunique() == 51
    assert (df.groupby("series").size().drop("pdu,device=new active_power_w") == 4).all()
    p7 = df[df["series"] == keys[7]]["value"].tolist()
    assert p7 == [7.0, 8.0, 9.0, 42.0]


def test_identity_ids_same_column_again() -> None:
    """The same column again gives the same ids; one object swapped for an equal fresh string is not taken for it."""
    keys = np.array([f"m,k={i} f" for i in range(4)], dtype=object)
    cache = IdentityIds()
    _ids, ptrs = cache.get(keys)
    cache.add(keys, ptrs, np.arange(1, 5, dtype=np.int32))
    assert cache.get(keys)[0].tolist() == [1, 2, 3, 4]
    assert cache.get(keys)[0].tolist() == [1, 2, 3, 4]
    swapped = keys.copy()
    swapped[2] = _fresh(keys[2])
    assert cache.get(swapped)[0].tolist() == [1, 2, 0, 4]
