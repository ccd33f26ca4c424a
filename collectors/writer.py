"""The guarded setpoint writer: the only path that writes to devices (STYLE.md practice 7, VOLTTRON's revert).

Every write: the actor must hold the ``operator`` role; the point must be writable; the value is clamped to the
profile's min/max; the old value is read, the new one written, then read back and compared within half a
raw step; the outcome (who, what, old, requested, new, read back, why, ok or error) is appended as a JSON line to
``<data_dir>/audit/writes.jsonl`` and published as a ``setpoint_write`` series. :meth:`SetpointWriter.revert_all`
restores every writable point's safe default (used on exit and when the controller is switched off).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from aidc.clock import format_ns
from aidc.config import DeviceRef
from aidc.errors import AidcError
from aidc.model import Batch, Quality, SeriesKey
from aidc.profiles import Point
from collectors.engine import Engine
from collectors.modbus_link import DeviceWriteError, ModbusLink
from collectors.opcua import OpcUaLink
from collectors.redfish import RedfishLink

log = logging.getLogger(__name__)

WRITE_ROLES = frozenset({"operator"})
AUDIT_MEASUREMENT = "setpoint_write"


class WriteRefused(AidcError):
    """The write was not attempted: unknown or read-only point, or an actor without the right role."""


def check_role(name: str, role: str | None) -> None:
    """WriteRefused unless ``role`` may write setpoints."""
    if role not in WRITE_ROLES:
        raise WriteRefused(f"{name} (role {role!r}) may not write setpoints: needs role operator")


def admit(dev: DeviceRef, point: str, value: float) -> tuple[Point, float]:
    """The profile point a write goes to and ``value`` clamped to its min/max; WriteRefused for an unknown or
    read-only point or a value that is not a number (the one rule for the writer and the evaluation's writer)."""
    try:
        p = dev.profile.point(point)
    except KeyError as exc:
        raise WriteRefused(str(exc.args[0])) from None
    if not p.writable or p.min is None or p.max is None:
        raise WriteRefused(f"{dev.name}.{point} is not writable")
    if not math.isfinite(value):
        raise WriteRefused(f"{dev.name}.{point}: {value!r} is not a number")
    return p, min(p.max, max(p.min, value))


@dataclass(frozen=True, slots=True)
class Actor:
    """Who asks for a write: a person or a service (the supervisory controller) and its role."""

    name: str
    role: str


@dataclass(frozen=True, slots=True)
class WriteResult:
    """The audited outcome of one write."""

    ts: str
    who: str
    role: str
    device: str
    point: str
    old: float | None
    requested: float
    new: float
    readback: float | None
    clamped: bool
    why: str
    ok: bool
    error: str = ""


class SetpointWriter:
    """Writes setpoints through a running engine's connections."""

    def __init__(self, engine: Engine, audit_dir: Path) -> None:
        self.engine = engine
        self.audit_path = audit_dir / "writes.jsonl"
        audit_dir.mkdir(parents=True, exist_ok=True)

    def _link(self, device: str) -> ModbusLink | OpcUaLink | RedfishLink:
        link = self.engine.link(device)
        assert isinstance(link, ModbusLink | OpcUaLink | RedfishLink)
        return link

    async def write(self, actor: Actor, device: str, point: str, value: float, why: str) -> WriteResult:
        """Clamp, write, read back and audit; WriteRefused if not allowed, result.ok False if the device failed."""
        check_role(actor.name, actor.role)
        link = self._link(device)
        dev = next(d for d in link.devices if d.name == device)
        p, new = admit(dev, point, value)
        old: float | None = None
        readback: float | None = None
        error = ""
        try:
            if not link.connected.is_set():
                raise DeviceWriteError(f"{device}: not connected ({link.health[device].reason or link.state.name})")
            old = await link.read_point(dev, p)
            await link.write_point(dev, p, new)
            readback = await link.read_point(dev, p)
            if abs(readback - new) > abs(p.scale) / 2 + 1e-6 * max(1.0, abs(new)):
                error = f"read back {readback:g} after writing {new:g}"
        except (DeviceWriteError, ConnectionError, OSError, TimeoutError) as exc:
            error = str(exc) or type(exc).__name__
        result = WriteResult(
            format_ns(self.engine.clock.now_ns()), actor.name, actor.role, device, point, old, value, new,
            readback, new != value, why, not error, error,
        )
        self._audit(result, dev.tags)
        return result

    def _audit(self, r: WriteResult, tags: dict[str, str]) -> None:
        with self.audit_path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(asdict(r)) + "\n")
        level = logging.INFO if r.ok else logging.ERROR
        log.log(level, "write %s.%s = %g by %s (%s): %s", r.device, r.point, r.new, r.who, r.why, r.error or "ok")
        sid = SeriesKey.of(AUDIT_MEASUREMENT, r.point, {k: v for k, v in tags.items() if k in ("site", "device")}).id
        q = Quality.GOOD if r.ok else Quality.BAD
        batch = Batch(
            np.array([sid], dtype=object), np.array([self.engine.clock.now_ns()], dtype=np.int64),
            np.array([r.new], dtype=np.float64), np.array([int(q)], dtype=np.uint8),
            [f"{r.who}: {r.why}" + (f" ({r.error})" if r.error else "")],
        )
        self.engine.output.publish(batch)

    async def revert_all(self, actor: Actor, why: str = "revert to safe defaults") -> list[WriteResult]:
        """Write every writable point's safe default on every device of the engine."""
        out = []
        for link in self.engine.links:
            for dev in link.devices:
                for p in dev.profile.points:
                    if p.writable and p.safe_default is not None:
                        out.append(await self.write(actor, dev.name, p.name, p.safe_default, why))
        return out

    def audit_log(self) -> list[dict[str, object]]:
        """Every audited write so far (oldest first)."""
        if not self.audit_path.is_file():
            return []
        return [json.loads(line) for line in self.audit_path.read_text(encoding="utf-8").splitlines() if line]
