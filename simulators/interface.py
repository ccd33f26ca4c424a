"""The contract between the facility physics and the protocol servers that expose it.

The servers never compute physics and the physics never touches sockets. Each tick the runner advances
the physics, then every server asks for its devices' values keyed by point name (``Point.sim`` when set)
and encodes them per the device's profile. Writes from clients flow back through :meth:`write_point`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

# A point value: a number, a flag, or one number per GPU for array nodes.
PointValue = float | int | bool | Sequence[float]


class FacilityPhysics(Protocol):
    """What the servers need from the simulated facility."""

    t_ns: int

    def step(self, dt_s: float) -> None:
        """Advance the facility by ``dt_s`` simulated seconds."""
        ...

    def device_values(self, device: str) -> dict[str, PointValue]:
        """Current values of every point of ``device`` keyed by point name (or its ``sim`` name)."""
        ...

    def write_point(self, device: str, point: str, value: float) -> None:
        """A client wrote a writable point (setpoint or heartbeat); the physics takes it from now on."""
        ...
