"""Readings for the snapshot builder: from the supervisor's own input sink, or from the live state.

The supervisor needs a few thousand series (every GPU temperature and utilisation, CDU and plant points) each
decision and each thermal-guard tick. As a sink beside :class:`aidc.live.LiveState` on the collectors' output,
:class:`LiveReader` keeps just those series in numpy arrays, mapping each collector series array to its indices
once (collectors reuse one array per device, as the live state relies on too), so a read is a few vectorised
gathers. Until it has seen a batch it reads the live state itself (slower: one lookup per series).
:meth:`LiveReader.note` takes a reading the supervisor made itself (the read-back of a setpoint it just wrote);
it counts until a newer sample of that series arrives, from either source.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from aidc.config import Site
from aidc.live import LiveState
from aidc.model import Batch, Quality, SeriesKey
from control.snapshot import PointValue, Readings, SnapshotBuilder

_CACHE_MAX = 4096


class LiveReader:
    """Maps every point a snapshot needs to its series ids once; also a sink for the collectors' batches."""

    def __init__(self, site: Site, builder: SnapshotBuilder) -> None:
        self.rows: list[tuple[str, str, bool, int, int]] = []  # device, point, array, start, stop
        gpus = {r.name: r.gpus for _h, r in site.racks()}
        devs = {d.name: d for d in site.devices}
        ids: list[str] = []
        for name, wanted in sorted(builder.needed().items()):
            dev = devs[name]
            for p in dev.profile.points:
                if p.name not in wanted:
                    continue
                if p.array:
                    width = gpus.get(dev.tags.get("rack", ""), 0)
                    new = [SeriesKey.of(dev.profile.measurement, p.name, {**dev.tags, p.array_tag: str(i)}).id
                           for i in range(width)]
                else:
                    new = [SeriesKey.of(dev.profile.measurement, p.name, dev.tags).id]
                self.rows.append((name, p.name, p.array, len(ids), len(ids) + len(new)))
                ids += new
        self.ids = ids
        self.pos = {sid: i for i, sid in enumerate(ids)}
        n = len(ids)
        self.val = np.full(n, np.nan)
        self.ts = np.zeros(n, dtype=np.int64)
        self.seen = False
        self.note_val = np.full(n, np.nan)
        self.note_ts = np.zeros(n, dtype=np.int64)
        self._scalar = {(d, p): a for d, p, arr, a, b in self.rows if not arr and b > a}
        # Rows hold consecutive series: whether each row is all finite is one reduceat over the row starts (an
        # empty row, which reduceat cannot express, is never finite).
        self._starts = np.array([a for *_x, a, _b in self.rows], dtype=np.intp)
        self._empty = np.array([b == a for *_x, a, b in self.rows], dtype=bool)
        self._valid = bool(n) and (self._starts < n).all()
        self._cache: dict[int, tuple[npt.NDArray[np.object_], npt.NDArray[np.intp], npt.NDArray[np.bool_]]] = {}

    # --- the sink ---------------------------------------------------------------------------------------

    def update(self, batch: Batch) -> None:
        """Keep the latest good value of every needed series in the batch (bad or uncertain: NaN)."""
        if not len(batch):
            return
        hit = self._cache.get(id(batch.series))
        if hit is None or hit[0] is not batch.series:
            idx = np.fromiter((self.pos.get(s, -1) for s in batch.series), dtype=np.intp, count=len(batch))
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            hit = (batch.series, idx, idx >= 0)
            self._cache[id(batch.series)] = hit
        _, idx, mask = hit
        if not mask.any():
            return
        j = idx[mask]
        newer = batch.ts_ns[mask] >= self.ts[j]
        j = j[newer]
        good = batch.quality[mask][newer] == int(Quality.GOOD)
        self.val[j] = np.where(good, batch.values[mask][newer], np.nan)
        self.ts[j] = batch.ts_ns[mask][newer]
        self.seen = True

    __call__ = update

    def note(self, device: str, point: str, value: float, ts_ns: int) -> None:
        """A reading of a scalar point made outside the collectors (a write's read-back); unknown points are
        ignored."""
        i = self._scalar.get((device, point))
        if i is not None and ts_ns >= self.note_ts[i]:
            self.note_val[i], self.note_ts[i] = value, ts_ns

    # --- reading ----------------------------------------------------------------------------------------

    def read(self, live: LiveState | None, now_ns: int) -> tuple[Readings, float]:
        """Readings (None where missing or not good) and the age in seconds of the oldest reading used.

        A point's age is that of its first series: a collector delivers all of an array's elements in one poll.
        """
        out, oldest, _ = self.read_ages(live, now_ns)
        return out, oldest

    def read_ages(self, live: LiveState | None, now_ns: int) -> tuple[Readings, float, dict[str, float]]:
        """:meth:`read` and, per device, the age in seconds of its oldest reading used (so one late device
        degrades only what it feeds: a CDU's racks their CDU, the plant the whole site)."""
        if self.seen or live is None:
            values, ts = self.val, self.ts
        else:
            values, ts = live.values(self.ids), np.zeros(len(self.ids), dtype=np.int64)
            for _d, _p, _arr, a, b in self.rows:
                got = live.get(self.ids[a]) if b > a else None
                ts[a] = got.ts_ns if got is not None else 0
        newer = (self.note_ts > 0) & (self.note_ts >= ts)  # a read-back stamped with a poll's time is the later
        if newer.any():
            values, ts = np.where(newer, self.note_val, values), np.where(newer, self.note_ts, ts)
        out: dict[str, dict[str, PointValue]] = {}
        used: list[int] = []
        dev_oldest: dict[str, int] = {}
        if self._valid:
            finite = (np.logical_and.reduceat(np.isfinite(values), self._starts) & ~self._empty).tolist()
        else:
            finite = [b > a and bool(np.isfinite(values[a:b]).all()) for *_x, a, b in self.rows]
        for (dev, point, array, a, b), ok in zip(self.rows, finite, strict=True):
            vals = out.setdefault(dev, {})
            if not ok:
                vals[point] = None  # missing, stale-marked or bad: the guard holds on it
                continue
            used.append(a)
            dev_oldest[dev] = min(dev_oldest.get(dev, now_ns), int(ts[a]))
            vals[point] = values[a:b] if array else float(values[a])
        oldest = int(ts[used].min()) if used else now_ns
        ages = {d: max(0.0, (now_ns - min(t, now_ns)) / 1e9) for d, t in dev_oldest.items()}
        return out, max(0.0, (now_ns - min(oldest, now_ns)) / 1e9), ages
