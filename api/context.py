"""What the API serves from: the site, its historian, the live state, the controller (if any) and the alarm sources.

The supervisory controller (``control.supervisor.Supervisor``) is reached only through the :class:`Controller`
protocol, so the API neither imports nor constructs it; until the main job hands one over, the controller endpoints
answer honestly that there is no controller.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import pandas as pd

from aidc.config import Site
from aidc.live import LiveState
from analytics.forecast.service import ForecastService
from api.auth import TokenStore
from historian import Historian

if TYPE_CHECKING:  # types only: the API reads the job's objects, it never builds or drives them
    from analytics.alarms.engine import AlarmEngine
    from collectors.link import DeviceHealth


@runtime_checkable
class Controller(Protocol):
    """The supervisor as the API sees it: mode (off, advisory, auto), operator overrides and a status snapshot."""

    @property
    def mode(self) -> str:
        """Current mode."""
        ...

    def set_mode(self, mode: str) -> None:
        """Switch mode (ValueError for an unknown mode)."""
        ...

    def set_override(self, point: str, value: float | None) -> None:
        """Hold a setpoint at ``value`` (None releases the override)."""
        ...

    def status(self) -> Mapping[str, Any]:
        """Last decision, holds, counters: JSON-serialisable."""
        ...


def tail_jsonl(path: Path, limit: int) -> list[dict[str, Any]]:
    """The last ``limit`` JSON lines of a file (skipping lines that do not parse); [] when the file is missing."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines[-limit:]:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


@dataclass
class ApiContext:
    """Everything the endpoints read; built once by ``aidc api`` or the main job."""

    site: Site
    historian: Historian
    tokens: TokenStore
    live: LiveState | None = None
    controller: Controller | None = None
    clock: Callable[[], pd.Timestamp] = field(default=lambda: pd.Timestamp.now(tz="UTC"))
    predictive_alarms: Callable[[], Sequence[Mapping[str, Any]]] | None = None
    cache: dict[str, Any] = field(default_factory=dict)
    forecasts: ForecastService | None = None  # the live forecasts (the main job's or aidc api's); only read here
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Handed over by the main job for /metrics (absent in the stand-alone server, which reads the historian).
    alarm_engine: AlarmEngine | None = None
    collector_health: Callable[[], Mapping[str, DeviceHealth]] | None = None  # collectors.engine.Engine.health
    writer_health: Callable[[], Mapping[str, float]] | None = None  # historian.writer.HistorianWriter.health

    @property
    def audit_dir(self) -> Path:
        """Where the setpoint writer and the API append their audit trails."""
        return self.site.data_dir / "audit"

    def predictive(self) -> list[dict[str, Any]]:
        """Predictive (fault-prediction) alarms: from the configured source, else the detector's alarm log."""
        if self.predictive_alarms is not None:
            return [dict(a) for a in self.predictive_alarms()]
        return tail_jsonl(self.site.data_dir / "alarms" / "predictive.jsonl", 1000)
