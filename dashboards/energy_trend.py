"""Measured (energy-based) PUE per day and per month of the site's calendar, for the Energy page.

The figures are those of the monthly report: counter readings by role, the energy of each meter per period
(:func:`analytics.report.energy.meter_stats`: wraps, resets and gaps per ISO/IEC 30134-2) and the one category
rule (:func:`analytics.report.energy.pue_report`), so a day here, ``aidc pue`` and the report cannot disagree on
the method. Days and months are calendar periods in the site's time zone; the current ones are interim.

Readings are read as the historian's per-window ``last`` value, a true reading of a cumulative counter, stamped
with the window's end, so at most one window late: 5-minute windows before today (the backfill's resolution, and
288 rows per meter and day whatever the poll rate), 1-minute windows today, so today's interim figure reaches to
the last minute. Shifting a reading by at most 5 minutes moves at most 5 minutes of energy across a midnight, for
E_DC and E_IT alike.

Per-meter statistics are computed per day; a month's are the sum of its days' (energies add, coverage is weighted
by time; an interval across midnight is split by time, so the days add up to the month). A past day whose PUE
is complete never changes, so a :class:`DayCache` keeps it and later computations read only the days still open
(today, and days with gaps): a refresh reads one day, not two months.
"""

from __future__ import annotations

import itertools
import logging
import threading
from dataclasses import dataclass, replace

import pandas as pd

from aidc.config import Site
from aidc.model import SeriesKey
from aidc.roles import Role
from analytics.energy import kpi
from analytics.energy.counters import CounterEnergy
from analytics.energy.metering import site_meters
from analytics.energy.pue import MeterInfo, PueReport, period_edges
from analytics.report.energy import MeterStats, Readings, meter_stats, pue_report, split_readings
from historian import Historian, SeriesSelector

log = logging.getLogger(__name__)

PUE_ROLES: tuple[Role, ...] = (Role.FACILITY_ENERGY, *kpi.IT_ENERGY_ROLES.values())
MARGIN = pd.Timedelta("2h")  # readings this far either side of a period bracket its edges (as the report)
CHUNK_DAYS = 7  # days read from the historian at once (bounds memory on a 1,000-rack site)


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
                df = df[df["series"].isin(wanted) & df["value"].notna()]
                # Labelled at the window's end (never after ``end``): the reading is at most one window late, so
                # the open day is covered up to its last minute rather than missing its last window.
                stamped = df["ts"] + pd.Timedelta(window)
                frames.append(df.assign(ts=stamped.mask(stamped > end, end)))
    frames = [f for f in frames if len(f)]
    if not frames:
        return Readings({}, {}, {})
    return split_readings(pd.concat(frames, ignore_index=True))


@dataclass(frozen=True, slots=True)
class DayStats:
    """Every PUE meter's statistics over one site day, and the day's first utility reading (ns) if any."""

    start: pd.Timestamp
    end: pd.Timestamp
    stats: list[MeterStats]
    first_ns: int | None


class DayCache:
    """Days whose PUE is complete and final (thread-safe): they are never read again."""

    def __init__(self) -> None:
        self._days: dict[tuple[int, int], DayStats] = {}
        self._lock = threading.Lock()

    def get(self, start: pd.Timestamp, end: pd.Timestamp) -> DayStats | None:
        """The kept statistics of the day ``[start, end)``, if kept."""
        with self._lock:
            return self._days.get((start.value, end.value))

    def keep(self, day: DayStats) -> None:
        """Keep a final day."""
        with self._lock:
            self._days[(day.start.value, day.end.value)] = day

    def __len__(self) -> int:
        with self._lock:
            return len(self._days)


def combine(parts: list[DayStats]) -> list[MeterStats]:
    """Per-meter statistics of consecutive days as one period: energies and counts add, coverage is weighted by
    each day's length."""
    total_ns = sum((d.end - d.start).value for d in parts)
    acc: dict[str, MeterStats] = {}
    for d in parts:
        w = (d.end - d.start).value / total_ns if total_ns else 0.0
        for m in d.stats:
            e = m.energy
            scaled = CounterEnergy(e.energy, e.estimated, e.coverage * w, e.wraps, e.resets, e.gaps)
            old = acc.get(m.series)
            if old is None:
                acc[m.series] = replace(m, energy=scaled)
                continue
            o = old.energy
            acc[m.series] = MeterStats(
                m.series,
                m.role,
                CounterEnergy(
                    o.energy + e.energy,
                    o.estimated + e.estimated,
                    o.coverage + e.coverage * w,
                    o.wraps + e.wraps,
                    o.resets + e.resets,
                    o.gaps + e.gaps,
                ),
                old.samples + m.samples,
                old.bad_samples + m.bad_samples,
                old.uncertain_samples + m.uncertain_samples,
            )
    return list(acc.values())


def point(stats: list[MeterStats], label: str, start: pd.Timestamp, end: pd.Timestamp, *, interim: bool) -> PuePoint:
    """The measured PUE of ``[start, end)`` from its meters' statistics, by the report's rule."""
    if not any(s.samples for s in stats):
        return PuePoint(label, start, end, None, None, None, "no data", 0.0, interim, "no counter readings")
    try:
        rep: PueReport = pue_report(stats, start, end)
    except Exception as exc:  # e.g. no utility meter: said on the page, never raised into it
        return PuePoint(label, start, end, None, None, None, "no data", 0.0, interim, str(exc)[:160])
    note = rep.note
    if rep.pue is not None and rep.coverage < 0.9999:
        note = (note + "; " if note else "") + f"coverage {100 * rep.coverage:.1f} %: the rest is estimated"
    e_it = None if rep.pue is None else rep.e_it_kwh
    return PuePoint(label, start, end, rep.pue, rep.e_dc_kwh, e_it, rep.category_name, rep.coverage, interim, note)


def _day_stats(readings: Readings, meters: dict[str, MeterInfo], a: pd.Timestamp, b: pd.Timestamp) -> DayStats:
    firsts = [
        int(ts[(ts >= a.value) & (ts < b.value)][0])
        for sid, (ts, _) in readings.series.items()
        if meters[sid].role is Role.FACILITY_ENERGY and ((ts >= a.value) & (ts < b.value)).any()
    ]
    return DayStats(a, b, meter_stats(readings, meters, a, b, PUE_ROLES), max(firsts) if firsts else None)


def _days(
    hist: Historian,
    meters: dict[str, MeterInfo],
    edges: list[pd.Timestamp],
    now: pd.Timestamp,
    today: pd.Timestamp,
    cache: DayCache,
) -> list[DayStats]:
    """Statistics of every day between ``edges``: kept ones from the cache, the others read in chunks."""
    out: dict[int, DayStats] = {}
    todo = []
    for a, b in itertools.pairwise(edges):
        kept = cache.get(a, b)
        if kept is not None:
            out[a.value] = kept
        else:
            todo.append((a, b))
    ids = sorted(meters)
    chunks: list[list[tuple[pd.Timestamp, pd.Timestamp]]] = []
    for a, b in todo:  # runs of consecutive open days, at most CHUNK_DAYS each
        if chunks and chunks[-1][-1][1] == a and len(chunks[-1]) < CHUNK_DAYS:
            chunks[-1].append((a, b))
        else:
            chunks.append([(a, b)])
    for chunk in chunks:
        lo, hi = chunk[0][0], chunk[-1][1]
        readings = read_readings(
            hist, ids, lo - MARGIN, max(lo - MARGIN, min(today, hi + MARGIN)), min(now, hi + MARGIN)
        )
        for a, b in chunk:
            day = _day_stats(readings, meters, a, b)
            out[a.value] = day
            if b <= now - MARGIN and point(day.stats, "", a, b, interim=False).complete:
                cache.keep(day)  # final: every reading that brackets it is in
    return [out[a.value] for a, _ in itertools.pairwise(edges)]


def _since_first(
    hist: Historian, meters: dict[str, MeterInfo], p: PuePoint, days: list[DayStats], today: pd.Timestamp, tz: str
) -> PuePoint:
    """A headline period the meters do not cover (a fresh start): its PUE since the first utility reading."""
    inside = [d for d in days if p.start <= d.start and d.end <= p.end]
    first = next((d for d in inside if d.first_ns is not None), None)
    if p.pue is not None or first is None or first.first_ns is None:
        return p
    begin = pd.Timestamp(first.first_ns, unit="ns", tz="UTC")
    if p.end - begin < pd.Timedelta("15min"):  # under 15 min the counters' resolution dominates
        return p
    lo, hi = begin - MARGIN, min(p.end, first.end + MARGIN)
    readings = read_readings(hist, sorted(meters), lo, max(lo, min(today, hi)), hi)
    head = DayStats(begin, first.end, meter_stats(readings, meters, begin, first.end, PUE_ROLES), first.first_ns)
    rest = [d for d in inside if d.start >= first.end]
    q = point(combine([head, *rest]), p.label, begin, p.end, interim=True)
    if q.pue is None:
        return p
    note = f"since {begin.tz_convert(tz):%d %b %H:%M} (first reading); " + q.note
    return replace(q, note=note)


def pue_trend(hist: Historian, site: Site, now: pd.Timestamp, cache: DayCache | None = None) -> PueTrend:
    """Measured PUE per site day and per site month from the 1st of last month to ``now``, and the headlines."""
    tz = site.config.site.timezone
    meters = site_meters(site, PUE_ROLES)
    start = trend_start(now, tz)
    today = now.tz_convert(tz).normalize().tz_convert("UTC")
    days = _days(
        hist, meters, list(period_edges(start, now, "day", tz)), now, today, DayCache() if cache is None else cache
    )
    day_points = [
        point(d.stats, f"{d.start.tz_convert(tz):%a %d %b}", d.start, d.end, interim=d.end == now) for d in days
    ]
    months = []
    for a, b in itertools.pairwise(period_edges(start, now, "month", tz)):
        parts = [d for d in days if a <= d.start and d.end <= b]
        months.append(point(combine(parts), f"{a.tz_convert(tz):%b %Y}", a, b, interim=b == now))
    this_month = months[-1] if months else None
    last_month = months[-2] if len(months) > 1 else None
    return PueTrend(
        day_points,
        months,
        None if not day_points else _since_first(hist, meters, day_points[-1], days, today, tz),
        None if this_month is None else _since_first(hist, meters, this_month, days, today, tz),
        last_month,
    )
