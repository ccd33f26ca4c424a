"""Series id strings to integer ids without a Python step per point: a lookup by object identity.

Collectors build their series id strings once (from the plan) and hand the same string objects over at every poll;
the writer concatenates polls, which copies references, not strings. So a batch's series column is, point after point,
a handful of string objects seen before. Their addresses are read from the object array's buffer as integers in one
copy and looked up in a sorted array with ``searchsorted``: a few nanoseconds a point instead of hashing every string
(``pd.factorize`` of the demo's batches was about 80 s of CPU in a 513 s backfill; a dict lookup per point is
140 ns).

An address is only a safe key while its object lives, so the cache holds a reference to every object it lists: an
address found in the cache is that very object, hence that very string. Strings seen for the first time (a new series,
or an equal string built afresh, e.g. decoded from the spool) are resolved by the caller and added; the cache is
emptied when it holds more than ``limit`` objects, so fresh strings at every batch cannot grow it without bound.
"""

from __future__ import annotations

import ctypes

import numpy as np
import numpy.typing as npt


def addresses(column: npt.NDArray[np.object_]) -> npt.NDArray[np.uintp]:
    """The object addresses in an object array, as unsigned integers (a copy; the array must be of objects)."""
    if column.dtype != object:
        raise TypeError(f"series column must be an object array, got dtype {column.dtype}")
    arr = np.ascontiguousarray(column)
    n = len(arr)
    if not n:
        return np.empty(0, dtype=np.uintp)
    # The buffer of an object array is its PyObject pointers; ``arr`` stays alive (and unchanged) while it is read.
    raw = (ctypes.c_size_t * n).from_address(arr.ctypes.data)
    return np.ctypeslib.as_array(raw).astype(np.uintp, copy=True)


class IdentityIds:
    """Integer ids of objects seen before, looked up by identity (see the module docstring)."""

    def __init__(self, limit: int = 1 << 20) -> None:
        self.limit = limit
        self.clear()

    def clear(self) -> None:
        """Forget every object (e.g. when the ids themselves were read again from the file)."""
        self._keys = np.empty(0, dtype=np.uintp)  # sorted addresses
        self._ids = np.empty(0, dtype=np.int32)  # id of each address
        self._held: list[object] = []  # keeps every listed object alive, so its address stays its own
        # The last column whose objects were all listed, and their ids: a collector's next poll is usually the same
        # column again, which a comparison of addresses finds without a search.
        self._last: tuple[npt.NDArray[np.uintp], npt.NDArray[np.int32]] | None = None

    def __len__(self) -> int:
        return len(self._keys)

    def get(self, column: npt.NDArray[np.object_]) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.uintp]]:
        """Ids of the column's objects (0 where not listed) and the column's addresses (for :meth:`add`)."""
        ptrs = addresses(column)
        if not len(self._keys):
            return np.zeros(len(ptrs), dtype=np.int32), ptrs
        if self._last is not None and np.array_equal(self._last[0], ptrs):
            return self._last[1].copy(), ptrs
        pos = np.searchsorted(self._keys, ptrs)
        pos[pos == len(self._keys)] = 0
        hit = self._keys[pos] == ptrs
        ids = np.where(hit, self._ids[pos], 0).astype(np.int32, copy=False)
        if hit.all():  # every object is held by the cache, so these addresses stay theirs while it is not cleared
            self._last = (ptrs, ids.copy())
        return ids, ptrs

    def add(self, objects: npt.NDArray[np.object_], ptrs: npt.NDArray[np.uintp], ids: npt.NDArray[np.int32]) -> None:
        """List ``objects`` (whose addresses are ``ptrs``) with their ``ids``; repeats are listed once."""
        ptrs, first = np.unique(ptrs, return_index=True)
        if len(self._keys) + len(ptrs) > self.limit:
            self.clear()
        self._held.extend(objects[first].tolist())
        keys = np.concatenate([self._keys, ptrs])
        vals = np.concatenate([self._ids, np.asarray(ids, dtype=np.int32)[first]])
        order = np.argsort(keys, kind="stable")
        self._keys, self._ids = keys[order], vals[order]
