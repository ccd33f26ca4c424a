"""What the API serves from: the site, its historian, the live state, the controller (if any) and the alarm sources.

The supervisory controller is reached only through ``control.interface.SupervisorControl``, the one interface the
dashboard uses too, so the API neither imports nor constructs it; until the main job hands one over, the controller
endpoints answer honestly that there is no controller. Inside the main job (``app/``) the context also holds the
job's alarm engine, historian writer, collector health and start-up readiness; ``aidc api`` on its own leaves them
None.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pandas as pd

from aidc.config import Site
from aidc.live import LiveState
from analytics.forecast.service import ForecastService
from api.auth import TokenStore
from control.interface import SupervisorControl
from historian import Historian
from historian.writer import HistorianWriter

if TYPE_CHECKING:  # types only: the API reads the job's objects, it never builds or drives them
    from analytics.alarms.engine import AlarmEngine


class DeviceStatus(Protocol):
    """One device's collector health as the API reads it (``collectors.link.DeviceHealth`` has this shape)."""

    @property
    def up(self) -> bool:
        """The last poll returned data."""
        ...

    @property
    def state(self) -> int:
        """The link's state: 0 connecting, 1 connected, 2 backing off."""
        ...

    @property
    def latency_s(self) -> float:
        """Latency of the last poll (NaN before the first)."""
        ...

    @property
    def errors(self) -> int:
        """Poll and connection errors since start."""
        ...

    @property
    def polls(self) -> int:
        """Polls that returned data since start."""
        ...

    @property
    def reason(self) -> str:
        """Why the device is failing ("" when it is not)."""
        ...


class SiteRows(Protocol):
    """A central server's portfolio as GET /api/v1/sites reads it (``api.sites.Portfolio`` has this shape)."""

    def rows(self) -> list[dict[str, Any]]:
        """One row of figures per site."""
        ...


@dataclass(frozen=True, slots=True)
class Readiness:
    """How far the main job's start-up is: parts live out of parts to wait for, and the names still pending."""

    live: int
    total: int
    pending: tuple[str, ...]
    detail: Mapping[str, object] | None = None  # e.g. the demo's history backfill: phase, fraction, simulated time

    @property
    def ready(self) -> bool:
        """Everything is live."""
        return not self.pending

    @property
    def progress(self) -> float:
        """Share of the parts that are live, 0..1."""
        return 1.0 if self.total == 0 else round(self.live / self.total, 3)


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
    controller: SupervisorControl | None = None
    clock: Callable[[], pd.Timestamp] = field(default=lambda: pd.Timestamp.now(tz="UTC"))
    predictive_alarms: Callable[[], Sequence[Mapping[str, Any]]] | None = None
    cache: dict[str, Any] = field(default_factory=dict)
    forecasts: ForecastService | None = None  # the live forecasts (the main job's or aidc api's); only read here
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Set by the main job (None under `aidc api`): the one alarm engine, the store-and-forward writer (its
    # ``health()`` figures), each device's collector health by name, and the start-up readiness /health reports.
    alarm_engine: AlarmEngine | None = None
    writer: HistorianWriter | None = None
    collector_health: Callable[[], Mapping[str, DeviceStatus]] | None = None
    readiness: Callable[[], Readiness] | None = None
    # Set by the central server (``aidc serve``): every site of the central store, for GET /api/v1/sites.
    portfolio: SiteRows | None = None

    @property
    def audit_dir(self) -> Path:
        """Where the setpoint writer and the API append their audit trails."""
        return self.site.data_dir / "audit"

    def predictive(self) -> list[dict[str, Any]]:
        """Predictive (fault-prediction) alarms: from the configured source, else the detector's alarm log."""
        if self.predictive_alarms is not None:
            return [dict(a) for a in self.predictive_alarms()]
        return tail_jsonl(self.site.data_dir / "alarms" / "predictive.jsonl", 1000)
