"""What the Control page reads besides the supervisor's status: its decisions from the audit log, each controlled
device's setpoint against the measured value from the historian, and predicted against realised saving.

Realised saving, per decision made in auto mode: the model's fixed-setpoint baseline for that interval (the
decision's predicted facility power plus its predicted saving, priced at the decision's load and weather) less the
facility power the meters measured over the interval until the next decision. A load change inside an interval
shows as noise in that interval; the monthly report (``analytics/report/savings.py``) refits over the whole month
and is the figure to sign. Advisory decisions were not written, so they have no realised saving.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

import pandas as pd

from aidc.config import DeviceRef, Site
from aidc.roles import Role
from dashboards.fmt import to_utc
from historian import Historian, SeriesSelector

CONTROLLER_MEASUREMENT = "controller"  # control/supervisor.py MEASUREMENT: each decision's chosen setpoints
# (setpoint role, measured role, panel title, unit): what a controlled device's timeline shows, where it has both.
TIMELINES: tuple[tuple[Role, Role, str, str], ...] = (
    (Role.TCS_SUPPLY_TEMP_SETPOINT, Role.TCS_SUPPLY_TEMP, "TCS supply temperature", "°C"),
    (Role.TCS_DP_SETPOINT, Role.TCS_DP, "TCS differential pressure", "kPa"),
    (Role.FWS_SUPPLY_TEMP_SETPOINT, Role.FWS_SUPPLY_TEMP, "FWS supply temperature", "°C"),
    (Role.CHW_SUPPLY_TEMP_SETPOINT, Role.CHW_SUPPLY_TEMP, "CRAH chilled-water supply", "°C"),
)
MAX_DECISIONS = 2000
TAIL_BYTES = 8_000_000  # what a first read of the decision log looks at (a 1,000-rack site: some 160 decisions)


class DecisionLog:
    """The decision lines of ``control.jsonl``, read once and then only what was appended since (a 1,000-rack
    site's decision line is some 50 kB: re-reading megabytes every refresh would cost the page its 2 s)."""

    def __init__(self, data_dir: Path, limit: int = MAX_DECISIONS) -> None:
        self.path = data_dir / "audit" / "control.jsonl"
        self.limit = limit
        self._offset: int | None = None
        self._records: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def _tail_start(self, size: int) -> int:
        """Where the last :data:`TAIL_BYTES` of the file begin, at a line start."""
        if size <= TAIL_BYTES:
            return 0
        with self.path.open("rb") as fh:
            fh.seek(size - TAIL_BYTES)
            fh.readline()  # the rest of a line cut by the seek
            return fh.tell()

    def records(self) -> list[dict[str, Any]]:
        """Decision lines, oldest first, at most ``limit``."""
        with self._lock:
            size = self.path.stat().st_size if self.path.is_file() else 0
            if self._offset is None or size < self._offset:  # first read, or the file was replaced: its tail
                self._records = []
                self._offset = self._tail_start(size)
            if size > self._offset:
                with self.path.open("rb") as fh:
                    fh.seek(self._offset)
                    chunk = fh.read(size - self._offset)
                end = chunk.rfind(b"\n") + 1  # a line still being written is read next time
                self._offset += end
                for line in chunk[:end].splitlines():
                    if b'"decision"' not in line:  # guard, hold and operator lines: not parsed at all
                        continue
                    try:
                        doc = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(doc, dict) and doc.get("kind") == "decision":
                        self._records.append(doc)
                del self._records[: max(0, len(self._records) - self.limit)]
            return list(self._records)


@dataclass(frozen=True, slots=True)
class Panel:
    """One timeline panel of a device: its setpoint point and measured point."""

    title: str
    unit: str
    setpoint: str
    measured: str | None


def controlled_devices(site: Site) -> list[DeviceRef]:
    """The devices with a writable setpoint the controller moves (CDUs and the plant), in site order."""
    roles = {sp for sp, _m, _t, _u in TIMELINES}
    return [d for d in site.devices if any(p.writable and d.role_of(p.name) in roles for p in d.profile.points)]


def panels(dev: DeviceRef) -> list[Panel]:
    """The device's timeline panels: each controlled setpoint with the measured point of the same loop."""
    by_role = {d: p.name for p in dev.profile.points if (d := dev.role_of(p.name)) is not None}
    out = []
    for sp_role, m_role, title, unit in TIMELINES:
        sp = by_role.get(sp_role)
        if sp is not None:
            out.append(Panel(title, unit, sp, by_role.get(m_role)))
    return out


def timeline(
    hist: Historian, dev: DeviceRef, panel: Panel, start: pd.Timestamp, end: pd.Timestamp, window: str
) -> dict[str, pd.Series]:
    """Per trace (``setpoint``: the device's own setpoint, ``measured``, ``aidc``: the supervisor's decisions, also
    in advisory mode) a series of values by UTC time, empty where the historian has none."""
    tags = {"device": dev.name}
    wanted = {
        "setpoint": (SeriesSelector(dev.profile.measurement, tags, panel.setpoint), "last"),
        "aidc": (SeriesSelector(CONTROLLER_MEASUREMENT, tags, panel.setpoint), "last"),
    }
    if panel.measured is not None:
        wanted["measured"] = (SeriesSelector(dev.profile.measurement, tags, panel.measured), "mean")
    out: dict[str, pd.Series] = {}
    for name, (sel, agg) in wanted.items():
        df = hist.query(sel, start, end, window=window, agg=agg)  # type: ignore[arg-type]
        df = df.dropna(subset=["value"])
        out[name] = pd.Series(df["value"].to_numpy(), index=pd.DatetimeIndex(df["ts"]), dtype="float64")
    return out


def savings_frame(decisions: Sequence[Mapping[str, Any]], facility_kw: pd.Series) -> pd.DataFrame:
    """Per decision with a prediction: time, mode, predicted and realised saving (kW) and the interval (h).

    ``facility_kw``: measured facility power by UTC window start. Realised is NaN for advisory decisions, for the
    last decision (its interval is still running) and where the meters have no value in the interval.
    """
    rows = []
    times = [to_utc(d.get("ts")) for d in decisions]
    fac = facility_kw.dropna().sort_index() if len(facility_kw) else facility_kw
    for i, d in enumerate(decisions):
        t, saving_v, pred_v = times[i], d.get("predicted_saving_kw"), d.get("predicted_facility_kw")
        if t is None or not _finite(saving_v) or not _finite(pred_v):
            continue
        saving, pred = float(saving_v), float(pred_v)
        nxt = next((x for x in times[i + 1 :] if x is not None), None)
        realised = math.nan
        hours = math.nan
        if nxt is not None:
            hours = (nxt - t).total_seconds() / 3600.0
            if d.get("mode") == "auto" and len(fac):
                inside = fac[(fac.index >= t) & (fac.index < nxt)]
                if inside.empty:  # windows coarser than the interval: the window the interval starts in
                    inside = fac[fac.index <= t].tail(1)
                if not inside.empty:
                    realised = float(pred) + float(saving) - float(inside.mean())
        rows.append(
            {
                "t": t,
                "mode": str(d.get("mode", "")),
                "predicted_kw": float(saving),
                "realised_kw": realised,
                "hours": hours,
            }
        )
    return pd.DataFrame(rows, columns=["t", "mode", "predicted_kw", "realised_kw", "hours"])


def _finite(v: object) -> TypeGuard[int | float]:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


@dataclass(frozen=True, slots=True)
class SavingTotals:
    """Energy over the decisions shown: predicted for every decided interval, realised where it could be measured."""

    predicted_kwh: float
    realised_kwh: float
    predicted_same_kwh: float  # predicted over exactly the intervals that have a realised figure
    intervals: int
    measured: int


def totals(frame: pd.DataFrame) -> SavingTotals:
    """Sum kW × interval hours; the like-for-like prediction is over the measured intervals only."""
    done = frame.dropna(subset=["hours"])
    measured = done.dropna(subset=["realised_kw"])
    return SavingTotals(
        float((done["predicted_kw"] * done["hours"]).sum()),
        float((measured["realised_kw"] * measured["hours"]).sum()),
        float((measured["predicted_kw"] * measured["hours"]).sum()),
        len(done),
        len(measured),
    )
