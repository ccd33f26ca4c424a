"""Readings for the snapshot builder from the live state (latest value, timestamp and quality per series)."""

from __future__ import annotations

from aidc.config import Site
from aidc.live import LiveState
from aidc.model import Quality, SeriesKey
from control.snapshot import PointValue, Readings, SnapshotBuilder


class LiveReader:
    """Maps every point a snapshot needs to its series ids once; each read is then a lookup per series."""

    def __init__(self, site: Site, builder: SnapshotBuilder) -> None:
        self.live_ids: dict[str, list[tuple[str, bool, list[str]]]] = {}
        gpus = {r.name: r.gpus for _h, r in site.racks()}
        devs = {d.name: d for d in site.devices}
        for name in builder.devices():
            dev = devs[name]
            rows = []
            for p in dev.profile.points:
                if p.array:
                    width = gpus.get(dev.tags.get("rack", ""), 0)
                    ids = [SeriesKey.of(dev.profile.measurement, p.name, {**dev.tags, p.array_tag: str(i)}).id
                           for i in range(width)]
                else:
                    ids = [SeriesKey.of(dev.profile.measurement, p.name, dev.tags).id]
                rows.append((p.name, p.array, ids))
            self.live_ids[name] = rows

    def read(self, live: LiveState, now_ns: int) -> tuple[Readings, float]:
        """Readings (None where missing or not good) and the age in seconds of the oldest one used."""
        out: dict[str, dict[str, PointValue]] = {}
        oldest = now_ns
        for dev, rows in self.live_ids.items():
            vals: dict[str, PointValue] = {}
            for point, array, ids in rows:
                got = [live.get(i) for i in ids]
                values = [g.value for g in got if g is not None and g.quality is Quality.GOOD and g.value is not None]
                if not ids or len(values) < len(ids):
                    vals[point] = None  # missing, stale-marked or bad: the guard holds on it
                    continue
                oldest = min(oldest, *(g.ts_ns for g in got if g is not None))
                vals[point] = values if array else values[0]
            out[dev] = vals
        return out, max(0.0, (now_ns - oldest) / 1e9)
