"""A small deterministic stand-in for the facility physics, implementing ``FacilityPhysics`` from the profiles.

Every point gets a fixed, distinct value derived from its profile (the middle of its range, or a value picked
per data type), counters grow at a known rate, setpoint writes are clamped to the point's limits and stored,
and the plant's FWS supply temperature approaches its setpoint with a first-order lag. Tests can set any
value directly through :attr:`FakePhysics.values`, which makes exact comparisons possible.
"""

from __future__ import annotations

import math
from typing import Any

from aidc.config import Site
from aidc.profiles import DataType, Point
from simulators.interface import PointValue

GPUS = 4
COUNTER_RATE_PER_S = 10.0  # engineering units per simulated second
FWS_TAU_S = 120.0


def _default(point: Point, index: int) -> PointValue:
    if point.type is DataType.BOOL:
        return index % 2 == 0
    if point.writable and point.safe_default is not None:
        return point.safe_default
    if point.range is not None:
        lo, hi = point.range
        v = lo + (hi - lo) * (0.3 + 0.01 * index)
    else:
        v = 100.0 + index
    if point.type not in (DataType.FLOAT32, DataType.FLOAT64):
        v = round(v / point.scale) * point.scale
    if point.array:
        return [v + i for i in range(GPUS)]
    return v


class FakePhysics:
    """Deterministic physics stand-in; ``values[device][key]`` is what the servers expose."""

    def __init__(self, site: Site, **_: Any) -> None:
        self.site = site
        self.t_ns = 1_782_864_000 * 1_000_000_000  # 2026-07-01T00:00:00Z
        self.values: dict[str, dict[str, PointValue]] = {}
        self.writes: list[tuple[str, str, float]] = []
        for dev in site.devices:
            self.values[dev.name] = {(p.sim or p.name): _default(p, i) for i, p in enumerate(dev.profile.points)}

    def step(self, dt_s: float) -> None:
        """Advance counters and the plant's FWS supply temperature."""
        self.t_ns += int(dt_s * 1e9)
        for dev in self.site.devices:
            vals = self.values[dev.name]
            for p in dev.profile.points:
                if p.counter:
                    key = p.sim or p.name
                    vals[key] = float(vals[key]) + COUNTER_RATE_PER_S * dt_s  # type: ignore[arg-type]
            if dev.kind == "plant":
                sp = float(vals["fws_supply_temp_setpoint_c"])  # type: ignore[arg-type]
                cur = float(vals["fws_supply_temp_c"])  # type: ignore[arg-type]
                vals["fws_supply_temp_c"] = sp + (cur - sp) * math.exp(-dt_s / FWS_TAU_S)

    def device_values(self, device: str) -> dict[str, PointValue]:
        """Current values of a device."""
        return dict(self.values[device])

    def write_point(self, device: str, point: str, value: float) -> None:
        """Store a client write, clamped to the point's limits."""
        p = self.site.device(device).profile.point(point)
        if p.min is not None and p.max is not None:
            value = min(p.max, max(p.min, value))
        self.writes.append((device, point, value))
        self.values[device][p.sim or p.name] = value

    def snapshot(self) -> dict[str, float]:
        """Scalar summary for the control API."""
        plant = next(d for d in self.site.devices if d.kind == "plant")
        fws = self.values[plant.name]["fws_supply_temp_c"]
        assert isinstance(fws, float | int)
        return {"t_ns": float(self.t_ns), "fws_supply_c": float(fws)}
