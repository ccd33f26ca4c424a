"""Measured (energy-based) PUE per day and per month of the site's calendar, for the Energy page.

The figures are those of the monthly report: counter readings by role, the energy of each meter per period
(:func:`analytics.report.energy.meter_stats`: wraps, resets and gaps per ISO/IEC 30134-2) and the one category
rule (:func:`analytics.report.energy.pue_report`), so a day here, ``aidc pue`` and the report cannot disagree on
the method. Days and months are calendar periods in the site's time zone; the current ones are interim.

Readings are read as the historian's per-window ``last`` value, which for a cumulative counter is a true reading
timestamped at most one window early: 5-minute windows before today (the backfill's resolution, and 288 rows per
meter and day whatever the poll rate), 1-minute windows today, so today's interim figure reaches to the last
minute. Shifting a reading by at most 5 minutes moves at most 5 minutes of energy across a midnight, for both
E_DC and E_IT alike.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass

import pandas as pd

from aidc.config import Site
from aidc.model import SeriesKey
from aidc.roles import Role
from analytics.energy import kpi
from analytics.energy.metering import site_meters
from analytics.energy.pue import MeterInfo, PueReport, period_edges
from analytics.report.energy import Readings, meter_stats, pue_report, split_readings
from historian import Historian, SeriesSelector

log = logging.getLogger(__name__)

PUE_ROLES: tuple[Role, ...] = (Role.FACILITY_ENERGY, *kpi.IT_ENERGY_ROLES.values())
MARGIN = pd.Timedelta("2h")  # readings this far before the first period bracket its edge (as the report)


@dataclass(frozen=True, slots=True)
class PuePoint:
    """The measured PUE of one calendar period, with what stands behind it."""

    label: str
    start: pd.Timestamp
    end: pd.Timestamp
    pue: float | None
    e_dc_kwh: float | None
    e_it_kwh: float | None
    category: str
    coverage: float
    interim: bool  # the period is not over yet (today, this month)
    note: str

    @property
    def complete(self) -> bool:
        """Whether the meters covered the whole period (no gap, nothing before the first reading)."""
        return self.coverage >= 0.9999


@dataclass(frozen=True, slots=True)
class PueTrend:
    """Daily and monthly measured PUE, and the headline figures of the Energy page."""

    days: list[PuePoint]
    months: list[PuePoint]
    today: PuePoint | None
    this_month: PuePoint | None
    last_month: PuePoint | None


def trend_start(now: pd.Timestamp, tz: str) -> pd.Timestamp:
    """00:00 site time on the 1st of last month, as UTC."""
    local = now.tz_convert(tz).normalize()
    first = (local.replace(day=1) - pd.Timedelta(days=1)).replace(day=1)
    return pd.Timestamp(first.tz_localize(None).tz_localize(tz)).tz_convert("UTC")


def read_readings(
    hist: Historian, ids: list[str], start: pd.Timestamp, split: pd.Timestamp, end: pd.Timestamp
) -> Readings:
    """Counter readings of ``ids``: 5-minute ``last`` values before ``split``, 1-minute ones after it."""
    wanted = set(ids)
    frames = []
    for meas, fld in sorted({(k.measurement, k.field) for k in map(SeriesKey.parse, ids)}):
        sel = SeriesSelector(meas, {}, fld)
        for a, b, window in ((start, split, "5m"), (split, end, "1m")):
            if a < b:
                df = hist.query(sel, a, b, window=window, agg="last")
                frames.append(df[df["series"].isin(wanted) & df["value"].notna()])
    frames = [f for f in frames if len(f)]
    if not frames:
        return Readings({}, {}, {})
    return split_readings(pd.concat(frames, ignore_index=True))


def period_point(
    readings: Readings,
    meters: dict[str, MeterInfo],
    label: str,
    start: pd.Timestamp,
    end: pd.Timestamp,
    *,
    interim: bool,
) -> PuePoint:
    """The measured PUE of ``[start, end)`` by the report's rule, with coverage and category."""
    stats = meter_stats(readings, meters, start, end, PUE_ROLES)
    if not any(s.samples for s in stats):
        return PuePoint(label, start, end, None, None, None, "no data", 0.0, interim, "no counter readings")
    try:
        rep: PueReport = pue_report(stats, start, end)
    except Exception as exc:  # e.g. no utility meter: said on the page, never raised into it
        return PuePoint(label, start, end, None, None, None, "no data", 0.0, interim, str(exc)[:160])
    note = rep.note
    if rep.pue is not None and rep.coverage < 0.9999:
        note = (note + "; " if note else "") + f"coverage {100 * rep.coverage:.1f} %: the rest is estimated"
    return PuePoint(
        label,
        start,
        end,
        rep.pue,
        rep.e_dc_kwh,
        None if rep.pue is None else rep.e_it_kwh,
        rep.category_name,
        rep.coverage,
        interim,
        note,
    )


def _since_first(readings: Readings, meters: dict[str, MeterInfo], p: PuePoint, tz: str) -> PuePoint:
    """A headline period the meters do not cover (a fresh start): its PUE since the first utility reading."""
    if p.pue is not None:
        return p
    firsts = [
        int(ts[0]) for sid, (ts, _) in readings.series.items() if len(ts) and meters[sid].role is Role.FACILITY_ENERGY
    ]
    if not firsts:
        return p
    begin = pd.Timestamp(max(firsts), unit="ns", tz="UTC")
    if not p.start < begin < p.end - pd.Timedelta("15min"):  # under 15 min the counters' resolution dominates
        return p
    q = period_point(readings, meters, p.label, begin, p.end, interim=True)
    if q.pue is None:
        return p
    return PuePoint(
        q.label,
        q.start,
        q.end,
        q.pue,
        q.e_dc_kwh,
        q.e_it_kwh,
        q.category,
        q.coverage,
        True,
        f"since {begin.tz_convert(tz):%d %b %H:%M} (first reading); " + q.note,
    )


def pue_trend(hist: Historian, site: Site, now: pd.Timestamp) -> PueTrend:
    """Measured PUE per site day and per site month from the 1st of last month to ``now``, and the headlines."""
    tz = site.config.site.timezone
    meters = site_meters(site, PUE_ROLES)
    start = trend_start(now, tz)
    today = now.tz_convert(tz).normalize().tz_convert("UTC")
    readings = read_readings(hist, sorted(meters), start - MARGIN, today, now)
    days = []
    for a, b in itertools.pairwise(period_edges(start, now, "day", tz)):
        days.append(period_point(readings, meters, f"{a.tz_convert(tz):%a %d %b}", a, b, interim=b == now))
    months = []
    for a, b in itertools.pairwise(period_edges(start, now, "month", tz)):
        months.append(period_point(readings, meters, f"{a.tz_convert(tz):%b %Y}", a, b, interim=b == now))
    this_month = months[-1] if months else None
    last_month = months[-2] if len(months) > 1 else None
    return PueTrend(
        days,
        months,
        None if not days else _since_first(readings, meters, days[-1], tz),
        None if this_month is None else _since_first(readings, meters, this_month, tz),
        last_month,
    )
