"""Live state: the latest value, timestamp, quality and reason of every series, for the controller and dashboard.

Collectors call :meth:`LiveState.update` with each batch (it is a sink); readers call :meth:`get` or :meth:`select`
from any thread. Values live in numpy arrays indexed by series; a batch whose series array was seen before (the
collectors reuse one array per device) maps to its indices without per-sample dictionary lookups.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from aidc.model import Batch, Quality, SeriesKey

_GROW = 1024
_CACHE_MAX = 4096


@dataclass(frozen=True, slots=True)
class LiveValue:
    """Latest sample of one series."""

    series: str
    ts_ns: int
    value: float | None
    quality: Quality
    reason: str


class LiveState:
    """Thread-safe latest value per series."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._index: dict[str, int] = {}
        self._keys: list[SeriesKey] = []
        self._ids: list[str] = []
        self._ts = np.zeros(_GROW, dtype=np.int64)
        self._val = np.full(_GROW, np.nan)
        self._q = np.zeros(_GROW, dtype=np.uint8)
        self._reason: dict[int, str] = {}
        # id(series array) -> (array kept alive so the id stays unique, its indices)
        self._cache: dict[int, tuple[npt.NDArray[np.object_], npt.NDArray[np.intp]]] = {}

    def __len__(self) -> int:
        return len(self._ids)

    def _indices(self, series: npt.NDArray[np.object_]) -> npt.NDArray[np.intp]:
        hit = self._cache.get(id(series))
        if hit is not None and hit[0] is series:
            return hit[1]
        idx = np.empty(len(series), dtype=np.intp)
        for i, sid in enumerate(series):
            j = self._index.get(sid)
            if j is None:
                j = len(self._ids)
                self._index[sid] = j
                self._ids.append(sid)
                self._keys.append(SeriesKey.parse(sid))
            idx[i] = j
        if len(self._ids) > len(self._ts):
            n = len(self._ids) + _GROW
            grow = n - len(self._ts)
            self._ts = np.concatenate([self._ts, np.zeros(grow, dtype=np.int64)])
            self._val = np.concatenate([self._val, np.full(grow, np.nan)])
            self._q = np.concatenate([self._q, np.zeros(grow, dtype=np.uint8)])
        # Collectors reuse one series array per device, so a few thousand entries cover a hall; arrays built per
        # batch (concatenations, stale marks) would otherwise pile up for the life of the job.
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        self._cache[id(series)] = (series, idx)
        return idx

    def update(self, batch: Batch) -> None:
        """Take the samples of a batch (older samples than the stored ones are ignored)."""
        if not len(batch):
            return
        with self._lock:
            idx = self._indices(batch.series)
            newer = batch.ts_ns >= self._ts[idx]
            if not newer.all():
                idx, sel = idx[newer], np.flatnonzero(newer)
            else:
                sel = None
            self._ts[idx] = batch.ts_ns if sel is None else batch.ts_ns[sel]
            self._val[idx] = batch.values if sel is None else batch.values[sel]
            self._q[idx] = batch.quality if sel is None else batch.quality[sel]
            if batch.reasons:
                rows: list[int] = list(range(len(batch))) if sel is None else sel.tolist()
                for j, i in zip(idx.tolist(), rows, strict=True):
                    if batch.reasons[i]:
                        self._reason[int(j)] = batch.reasons[i]
                    else:
                        self._reason.pop(int(j), None)
            elif self._reason:
                for j in idx:
                    self._reason.pop(int(j), None)

    __call__ = update  # a LiveState is itself a sink

    def get(self, series_id: str) -> LiveValue | None:
        """Latest sample of one series, or None if never seen."""
        with self._lock:
            j = self._index.get(series_id)
            if j is None:
                return None
            v = float(self._val[j])
            return LiveValue(
                series_id,
                int(self._ts[j]),
                None if np.isnan(v) else v,
                Quality(int(self._q[j])),
                self._reason.get(j, ""),
            )

    def select(self, measurement: str | None = None, field: str | None = None, **tags: str) -> pd.DataFrame:
        """Latest samples matching measurement, field and tags: columns series, measurement, field, tags..., ts,
        value, quality, reason."""
        with self._lock:
            rows = [
                j
                for j, k in enumerate(self._keys)
                if (measurement is None or k.measurement == measurement)
                and (field is None or k.field == field)
                and all(dict(k.tags).get(t) == v for t, v in tags.items())
            ]
            keys = [self._keys[j] for j in rows]
            frame = pd.DataFrame(
                {
                    "series": [self._ids[j] for j in rows],
                    "measurement": [k.measurement for k in keys],
                    "field": [k.field for k in keys],
                    "ts": pd.to_datetime(self._ts[rows], unit="ns", utc=True),
                    "value": self._val[rows],
                    "quality": [Quality(int(q)).label for q in self._q[rows]],
                    "reason": [self._reason.get(j, "") for j in rows],
                }
            )
        for t in sorted({t for k in keys for t, _ in k.tags}):
            frame[t] = [dict(k.tags).get(t) for k in keys]
        return frame

    def values(self, series_ids: list[str]) -> npt.NDArray[np.float64]:
        """Latest values of the given series (NaN where unknown or not good)."""
        with self._lock:
            out = np.full(len(series_ids), np.nan)
            for i, sid in enumerate(series_ids):
                j = self._index.get(sid)
                if j is not None and self._q[j] == Quality.GOOD:
                    out[i] = self._val[j]
            return out

    def indices(self, series_ids: Sequence[str]) -> npt.NDArray[np.intp]:
        """Positions of the given series for :meth:`read`, -1 where never seen (a position never changes)."""
        with self._lock:
            get = self._index.get
            return np.fromiter((get(s, -1) for s in series_ids), dtype=np.intp, count=len(series_ids))

    def read(
        self, idx: npt.NDArray[np.intp]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.uint8]]:
        """Timestamps, values and qualities at positions from :meth:`indices` (0, NaN and bad where -1).

        One vectorised read, for readers that poll many series often (the dashboard's floor map and alarms).
        """
        known = idx >= 0
        safe = np.where(known, idx, 0)
        with self._lock:
            ts, val, q = self._ts[safe], self._val[safe], self._q[safe]
        return (np.where(known, ts, 0), np.where(known, val, np.nan),
                np.where(known, q, np.uint8(Quality.BAD)).astype(np.uint8))

