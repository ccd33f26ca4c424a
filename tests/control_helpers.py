"""Helpers for the control tests: an in-process facility behind a live state and a device-side writer."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from aidc.clock import SteppedClock, format_ns
from aidc.config import Site, site_from_dict
from aidc.live import LiveState
from aidc.model import Batch, Quality
from app.evaluation.evaluate import feed_live as feed
from collectors.writer import WriteResult
from simulators.facility import Facility
from tests.sim_helpers import site_doc

__all__ = ["FacilityWriter", "control_site", "feed", "publish_value"]


def control_site(tmp_path: Path, racks: int = 8, **control: Any) -> Site:
    """A small generated site (4 racks per CDU) with a ``[control]`` table."""
    doc = site_doc(tmp_path, racks)
    doc["control"] = {"commissioning_days": 1.0, **control}
    doc["simulation"]["start"] = "2026-07-01T00:00:00Z"
    return site_from_dict(doc, path=tmp_path / "site.toml")


def publish_value(live: LiveState, series_id: str, t_ns: int, value: float, quality: Quality = Quality.GOOD) -> None:
    """One sample into the live state."""
    live.update(Batch(np.array([series_id], dtype=object), np.array([t_ns], dtype=np.int64), np.array([value]),
                      np.array([int(quality)], dtype=np.uint8)))


class FacilityWriter:
    """The device side of the setpoint writer, in process: writes into the facility and reads back."""

    def __init__(self, site: Site, fac: Facility, clock: SteppedClock) -> None:
        self.site, self.fac, self.clock = site, fac, clock
        self.devs = {d.name: d for d in site.devices}
        self.log: list[WriteResult] = []

    async def write(self, actor: Any, device: str, point: str, value: float, why: str) -> WriteResult:
        """Write, read back and log one point."""
        p = self.devs[device].profile.point(point)
        assert p.min is not None
        assert p.max is not None
        new = min(p.max, max(p.min, value)) if math.isfinite(value) else value
        self.fac.write_point(device, point, new)
        rb = self.fac.device_values(device).get(p.sim or p.name)
        r = WriteResult(format_ns(self.clock.now_ns()), str(getattr(actor, "name", actor)), "operator", device,
                        point, None, value, new, float(rb) if rb is not None else None,  # type: ignore[arg-type]
                        new != value, why, True)
        self.log.append(r)
        return r

    def setpoints(self) -> list[WriteResult]:
        """Logged writes other than heartbeats."""
        return [r for r in self.log if r.why != "heartbeat"]
