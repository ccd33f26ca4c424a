"""Counter readings from the historian, tier by tier: raw rows, then 1-minute rollups, then hourly rollups.

Raw retention (``[historian] raw_retention_days``, 30 by default) counts back from the newest data, so on the 1st of a
month the first day of the month before is already gone from the raw rows; a site may also keep its 1-minute rollups
for less than a month (``rollup_1m_retention_days``), and then only the hourly ones remain. A counter's last value in a
rollup bucket is still a true reading, taken at some time inside the bucket: the 1-minute tier stamps it at the
bucket's start (exact for polls on the minute, else at most a minute early, as before), the hourly tier at the bucket's
last instant (the last poll of an hour is near its end: at most one poll interval late, where the start would be
nearly an hour early and shift a whole hour of energy against the hourly carbon intensity). So for each series
the reader takes its raw rows, for the older part of the period (before its first raw row) the 1-minute rollups'
last values, and for what is older still the hourly ones: nothing is missing and nothing is counted twice.

It says which tier each series' older readings came from (:attr:`CounterRead.spans`, :meth:`CounterRead.notes`) so a
report can state it, and marks them in :attr:`Readings.coarse`: readings of the hourly tier are an hour apart, and
the coverage rule counts consecutive hours as covered, at hourly resolution (a shorter gap inside an hour can no
longer be seen, which the note says).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from aidc.model import SeriesKey
from analytics.report.energy import Readings, merge_readings, split_arrays, split_readings
from historian import Historian, SeriesSelector

MINUTE_NS = 60_000_000_000
HOUR_NS = 60 * MINUTE_NS


@dataclass(frozen=True, slots=True)
class Tier:
    """A rollup tier the historian answers with ``window`` aggregates."""

    name: str  # as a report states it
    window: str
    resolution_ns: int
    stamp_ns: int  # where in its bucket a reading is stamped, from the bucket's start
    meaning: str  # what a report says about readings of this tier


# Finer first: each tier fills only what the finer ones (raw rows first) no longer hold.
TIERS = (
    Tier("1-minute rollups", "1m", MINUTE_NS, 0, "readings up to a minute early"),
    Tier(
        "hourly rollups",
        "1h",
        HOUR_NS,
        HOUR_NS - 1,
        "readings at the end of their hour, coverage and peak demand at hourly resolution",
    ),
)


@dataclass(frozen=True, slots=True)
class TierSpan:
    """One series' readings taken from a rollup tier: the first and the last, as stamped."""

    series: str
    tier: Tier
    first: pd.Timestamp
    last: pd.Timestamp


@dataclass(frozen=True, slots=True)
class CounterRead:
    """The readings, and the rollup spans that stand in for aged-out raw rows (none when raw rows reach back)."""

    readings: Readings
    spans: tuple[TierSpan, ...] = ()

    def tiers_used(self, start: pd.Timestamp, end: pd.Timestamp) -> list[Tier]:
        """The rollup tiers, finer first, that readings inside ``[start, end)`` came from."""
        return [t for t in TIERS if any(s.tier == t and s.last >= start and s.first < end for s in self.spans)]

    def notes(self, start: pd.Timestamp, end: pd.Timestamp) -> list[str]:
        """A line per rollup tier used inside ``[start, end)``: how many meters, over which time, what it means."""
        out = []
        for tier in self.tiers_used(start, end):
            mine = [s for s in self.spans if s.tier == tier and s.last >= start and s.first < end]
            a, b = max(min(s.first for s in mine), start), min(max(s.last for s in mine), end)
            out.append(
                f"counters of {len({s.series for s in mine})} meter(s) from {tier.name} "
                f"{a:%Y-%m-%d %H:%M} to {b:%Y-%m-%d %H:%M} UTC (finer data aged out of retention): {tier.meaning}"
            )
        return out


def _groups(series: Iterable[str]) -> dict[tuple[str, str], set[str]]:
    """Series ids by (measurement, field): one historian query serves each group."""
    out: dict[tuple[str, str], set[str]] = {}
    for sid in series:
        key = SeriesKey.parse(sid)
        out.setdefault((key.measurement, key.field), set()).add(key.id)
    return out


def _older_rows(
    hist: Historian, sel: SeriesSelector, ids: set[str], first: dict[str, int], start: pd.Timestamp, end: pd.Timestamp
) -> Iterator[tuple[Tier, pd.DataFrame]]:
    """Each tier's rows for the series whose finer readings (first at ``first``, updated here) begin later than a
    bucket after ``start``: the buckets' ``last`` values, only buckets that end by the series' first finer reading."""
    for tier in TIERS:
        lacking = {s: first.get(s, end.value) for s in ids}
        lacking = {s: t for s, t in lacking.items() if t - start.value >= tier.resolution_ns}
        if not lacking:
            return  # a coarser bucket fits in even less
        upto = pd.Timestamp(max(lacking.values()), unit="ns", tz="UTC")
        rows = hist.query(sel, start, upto, window=tier.window, agg="last")
        rows = rows[rows["series"].isin(lacking.keys()) & rows["value"].notna()]
        bucket_ns = pd.DatetimeIndex(pd.to_datetime(rows["ts"], utc=True)).as_unit("ns").asi8
        ends_by = rows["series"].map(lacking).to_numpy(dtype=np.int64)
        rows = rows[bucket_ns + tier.resolution_ns <= ends_by]
        if rows.empty:
            continue
        rows = rows.assign(ts=rows["ts"] + pd.Timedelta(tier.stamp_ns, unit="ns"))
        rows = rows.sort_values(["series", "ts"], kind="stable", ignore_index=True)
        for sid, t0 in rows.groupby("series", sort=False, observed=True)["ts"].min().items():
            first[str(sid)] = int(pd.Timestamp(t0).value)
        yield tier, rows


def _spans(tier: Tier, rows: pd.DataFrame) -> list[TierSpan]:
    ts = rows.groupby("series", sort=True, observed=True)["ts"].agg(["min", "max"])
    return [TierSpan(str(s), tier, pd.Timestamp(r["min"]), pd.Timestamp(r["max"])) for s, r in ts.iterrows()]


def read_counters(hist: Historian, series: Iterable[str], start: pd.Timestamp, end: pd.Timestamp) -> CounterRead:
    """Readings of ``series`` in ``[start, end)`` as arrays: raw rows (read without building a frame: a month of
    2,000 meters is 20 million rows), older parts from the rollup tiers, and which tiers were used."""
    parts: list[Readings] = []
    spans: list[TierSpan] = []
    for (meas, fld), ids in sorted(_groups(series).items()):
        sel = SeriesSelector(meas, {}, fld)
        got = split_arrays(hist.query_arrays(sel, start, end), ids)
        first = {s: int(t[0]) for s, t in got.raw_ts.items() if len(t)}
        coarse: dict[str, list[tuple[int, int]]] = {}
        for tier, rows in _older_rows(hist, sel, ids, first, start, end):
            early = split_readings(rows)
            for sid in early.raw_ts:
                coarse.setdefault(sid, []).append((int(early.raw_ts[sid][-1]) + 1, tier.resolution_ns))
                got = _prepend(got, early, sid)
            spans += _spans(tier, rows)
        got.coarse.update({s: tuple(c) for s, c in coarse.items()})
        parts.append(got)
    return CounterRead(merge_readings(parts), tuple(spans))


def read_counter_frame(hist: Historian, series: Iterable[str], start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """The rows of :func:`read_counters` as one frame (``ts``, ``series``, ``value``, ``quality``), sorted by series
    and time: raw rows as stored (missing values and bad rows kept), the rollup tiers before them."""
    frames = []
    for (meas, fld), ids in sorted(_groups(series).items()):
        sel = SeriesSelector(meas, {}, fld)
        raw = hist.query(sel, start, end)
        raw = raw[raw["series"].isin(ids)]
        firsts = raw.groupby("series", observed=True)["ts"].min()
        first = {str(s): int(pd.Timestamp(t).value) for s, t in firsts.items()}
        frames += [rows for _, rows in _older_rows(hist, sel, ids, first, start, end)]
        frames.append(raw)
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame({"ts": [], "series": [], "value": [], "quality": []})
    return pd.concat(frames, ignore_index=True).sort_values(["series", "ts"], kind="stable", ignore_index=True)


def _prepend(raw: Readings, early: Readings, sid: str) -> Readings:
    """``raw`` with ``early``'s rows of ``sid`` (all before its raw rows) put in front."""
    empty_t, empty_v = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    t0, v0 = early.series[sid]
    t1, v1 = raw.series.get(sid, (empty_t, empty_v))
    raw.series[sid] = (np.concatenate([t0, t1]), np.concatenate([v0, v1]))
    raw.raw_ts[sid] = np.concatenate([early.raw_ts[sid], raw.raw_ts.get(sid, empty_t)])
    raw.raw_quality[sid] = np.concatenate([early.raw_quality[sid], raw.raw_quality.get(sid, empty_t)])
    return raw
