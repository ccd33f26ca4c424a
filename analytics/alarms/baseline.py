"""The fault models' healthy baseline, chosen automatically: history less alarmed periods, outages and bad data.

:class:`analytics.alarms.prediction.FaultPredictionService` learns its residual models from a rolling window of
stored telemetry instead of a hand-picked healthy week. This module decides which of those samples count as
healthy, per subject (a rack or a CDU, the devices the models are about):

- **bad data**: a 5-minute window whose worst sample quality is ``bad`` is blanked for that series;
- **device outages**: an hour in which a device's collector reported ``up`` below 1 (the ``collector,up`` health
  series) is left out for every subject that device feeds;
- **alarmed periods**: every alarm the alarm engine held on a subject, or on a device feeding it, from an hour
  before it was raised (its condition builds up before the raise delay) to an hour after it cleared (or now).
  Predictive alarms count too, so once a fault is flagged its growth is never learned as normal.

A rack's models read its own devices (rack controller, PDU) and its CDU's supply temperature, so a rack subject
is fed by those devices and by its CDU; a CDU subject by the CDU itself. Pipeline alarms (subject ``historian``)
feed no subject: a lost write shows up as missing data, which is left out anyway.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from aidc.config import Site
from aidc.model import Quality, SeriesKey
from aidc.roles import Role
from analytics.alarms.engine import Alarm
from analytics.alarms.faults import rack_device
from analytics.historian_adapter import pivot_rows
from historian import Historian, SeriesSelector

HEALTH_MEASUREMENT = "collector"  # collectors.link.HEALTH_MEASUREMENT: analytics reads it, never imports collectors
PAD = pd.Timedelta("1h")


@dataclass(frozen=True, slots=True)
class Period:
    """A stretch of time left out of the baseline for ``name`` (a device or subject) and why."""

    name: str
    start_ns: int
    end_ns: int
    why: str  # "alarm <id>" or "outage"


def read_signals(
    historian: Historian, site: Site, roles: Iterable[Role], start: pd.Timestamp, end: pd.Timestamp, step: str
) -> tuple[pd.DataFrame, dict[str, Role]]:
    """``step`` means of every series with one of ``roles``, one column per series; bad windows are NaN."""
    wanted = set(roles)
    selectors: dict[tuple[str, str], Role] = {}
    for dev in site.devices:
        for p in dev.profile.points:
            role = dev.role_of(p.name)
            if role is not None and role in wanted:
                selectors[(dev.profile.measurement, p.name)] = role
    frames, role_of = [], {}
    for (meas, fld), role in sorted(selectors.items()):
        df = historian.query(SeriesSelector(meas, {"site": site.name}, fld), start, end, window=step, agg="mean")
        if df.empty:
            continue
        df = df.assign(value=df["value"].where(df["quality"] < int(Quality.BAD)))
        frames.append(df)
        role_of.update(dict.fromkeys(map(str, df["series"].unique()), role))
    if not frames:
        return pd.DataFrame(), {}
    long = pd.concat(frames, ignore_index=True)
    # One row per series and window (each measurement and field is read once), so a plain pivot does.
    wide = pivot_rows(long)
    return wide.sort_index(), {s: role_of[s] for s in wide.columns if s in role_of}


def feeders(columns: Iterable[str], rack_cdu: Mapping[str, str]) -> dict[str, set[str]]:
    """Subject (rack or CDU) -> the names whose alarms or outages taint it: itself and the devices it reads."""
    out: dict[str, set[str]] = {r: {r} for r in rack_cdu}
    out.update({c: {c} for c in rack_cdu.values()})
    for sid in columns:
        rack, dev = rack_device(sid)
        if rack in out and dev:
            out[rack].add(dev)
    for rack, cdu in rack_cdu.items():
        out[rack] |= out[cdu]  # the thermal model's coolant supply is the CDU's reading
    return out


def outages(historian: Historian, site: Site, start: pd.Timestamp, end: pd.Timestamp) -> list[Period]:
    """Hours in which a device's collector reported it down (or its health reading was bad)."""
    df = historian.query(SeriesSelector(HEALTH_MEASUREMENT, {"site": site.name}, "up"), start, end, "1h", "min")
    down = df[(df["value"] < 1.0) | (df["quality"] >= int(Quality.BAD))]
    out = []
    for sid, ts in zip(down["series"], down["ts"], strict=True):
        dev = SeriesKey.parse(str(sid)).tag_dict.get("device")
        if dev:
            t0 = int(pd.Timestamp(ts).value)
            out.append(Period(dev, t0, t0 + int(pd.Timedelta("1h").value), "outage"))
    return out


def alarm_periods(
    alarms: Iterable[Alarm], now_ns: int, *, pad: pd.Timedelta = PAD, before: Mapping[str, pd.Timedelta] | None = None
) -> list[Period]:
    """The engine's alarms as periods on their subjects: ``pad`` either side (``before[rule]`` ahead of a raise
    where a rule's evidence builds up longer, e.g. a predictive alarm's CUSUM window), open ones up to now."""
    out = []
    for a in alarms:
        ahead = (before or {}).get(a.rule, pad)
        end = now_ns if a.cleared_ns is None else min(a.cleared_ns + int(pad.value), now_ns)
        out.append(Period(a.subject, a.raised_ns - int(ahead.value), end, f"alarm {a.id}"))
    return out


def exclusions(
    index: pd.DatetimeIndex, fed_by: Mapping[str, set[str]], periods: Iterable[Period]
) -> dict[str, np.ndarray]:
    """Subject -> boolean mask over ``index`` of the samples to leave out (those in a period on one of its feeders)."""
    t = index.as_unit("ns").asi8
    masks = {s: np.zeros(len(t), dtype=bool) for s in fed_by}
    subjects_of: dict[str, list[str]] = {}
    for s, names in fed_by.items():
        for n in names:
            subjects_of.setdefault(n, []).append(s)
    for p in periods:
        hit = (t >= p.start_ns) & (t < p.end_ns)
        for s in subjects_of.get(p.name, ()):
            masks[s] |= hit
    return masks


def apply(signals: pd.DataFrame, masks: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """``signals`` (``<subject>:<signal>`` columns) with each subject's excluded rows blanked."""
    out = signals.copy()
    for col in out.columns:
        mask = masks.get(str(col).split(":", 1)[0])
        if mask is not None and mask.any():
            out.loc[mask, col] = np.nan
    return out


def excluded_hours(masks: Mapping[str, np.ndarray], step: pd.Timedelta) -> dict[str, float]:
    """Hours left out per subject (only subjects with some)."""
    hours = step / pd.Timedelta("1h")
    return {s: round(float(m.sum()) * hours, 2) for s, m in masks.items() if m.any()}
