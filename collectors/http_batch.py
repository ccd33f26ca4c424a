"""Batches of the HTTP sources (DCGM, Redfish): a device's point values, array points unpacked, quality-checked.

The same steps as the OPC-UA poll: every point gives one value (or one per GPU for an array point) and, when it
failed, the reason; a new array length rebuilds the series and the quality tracker; raw values are scaled, checked
by :class:`QualityTracker` and published with the device's health fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from aidc.config import DeviceRef
from aidc.model import Batch
from aidc.profiles import Point
from collectors.link import DeviceHealth
from collectors.plan import array_series_ids, series_ids
from collectors.quality import QualityTracker


@dataclass
class PointRows:
    """Per device: the profile's points and the current layout (elements per point), series and tracker."""

    device: DeviceRef
    stuck_polls: int
    points: tuple[Point, ...] = ()
    layout: tuple[int, ...] = ()
    series: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=object))
    tracker: QualityTracker | None = None
    scalar_series: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=object))

    def __post_init__(self) -> None:
        self.points = self.device.profile.points
        self.scalar_series = series_ids(self.device, [p for p in self.points if not p.array])

    def current_series(self) -> np.ndarray:
        """Series ids published last (arrays expanded), else the scalar points'."""
        return self.series if len(self.series) else self.scalar_series

    def _relayout(self, layout: tuple[int, ...]) -> None:
        dev = self.device
        series: list[object] = []
        expanded: list[Point] = []
        for p, n in zip(self.points, layout, strict=True):
            if p.array:
                series.extend(array_series_ids(dev, p, n))
            else:
                series.extend(series_ids(dev, [p]))
            expanded.extend([p] * n)
        self.series = np.array(series, dtype=object)
        self.tracker = QualityTracker(
            expanded, sentinels=dev.profile.workarounds.sentinels, stuck_polls=self.stuck_polls
        )
        self.layout = layout

    def batch(
        self,
        ts: int,
        parts: list[np.ndarray],
        reasons: list[list[str]],
        health: DeviceHealth,
        latency_s: float,
    ) -> Batch:
        """Quality-check one poll: ``parts[i]`` the raw values of point i, ``reasons[i]`` per element ('' = read)."""
        layout = tuple(len(a) for a in parts)
        if layout != self.layout:
            self._relayout(layout)
        raw = np.concatenate(parts).astype(np.float64) if parts else np.empty(0)
        scale = np.repeat([p.scale for p in self.points], layout)
        offset = np.repeat([p.offset for p in self.points], layout)
        eng = raw * scale + offset
        failures: list[tuple[list[int], str]] = []
        by_reason: dict[str, list[int]] = {}
        pos = 0
        for why in reasons:
            for i, w in enumerate(why):
                if w:
                    by_reason.setdefault(w, []).append(pos + i)
            pos += len(why)
        failures = [(idx, w) for w, idx in by_reason.items()]
        assert self.tracker is not None
        values, quality, qreasons = self.tracker.assess(raw, eng, failures)
        failed = sum(len(i) for i, _ in failures)
        if failures and failed == len(raw):
            health.failure(failures[0][1], up=True)
        else:
            health.success(ts, latency_s, failures[0][1] if failures else "")
        data = Batch(self.series, np.full(len(values), ts, dtype=np.int64), values, quality, qreasons)
        hb = health.batch(ts)
        if qreasons:
            return Batch.concat([data, hb])
        # Both all good (no reasons): join without the generic path's checks, as the Modbus and OPC-UA polls do.
        return Batch(
            np.concatenate((data.series, hb.series)),
            np.concatenate((data.ts_ns, hb.ts_ns)),
            np.concatenate((data.values, hb.values)),
            np.concatenate((data.quality, hb.quality)),
        )
