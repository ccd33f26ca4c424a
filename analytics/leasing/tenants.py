"""Per-tenant energy, overhead, peak demand and carbon for a billing period, from the rack PDUs' energy counters.

Method (stated in every export, see :data:`METHOD`):

- **IT energy** of a tenant: the rack PDU energy counters of the racks it leased, over the time it leased each
  (wrap- and reset-safe, :func:`analytics.energy.counters.counter_energy`); coverage is the time-weighted share of the
  lease time with readings no further apart than ``max_gap``.
- **Facility overhead**: allocated pro rata to IT energy by the same-period energy-based PUE (ISO/IEC 30134-2),
  with the IT energy measured where tenants are billed, the rack PDUs (category 2):
  overhead = E_IT,tenant · (E_DC / E_IT,PDU − 1). Where a cooling meter exists, the overhead is split into its
  cooling share (E_IT,tenant · E_cooling / E_IT,PDU) and the rest (power losses, lighting, offices).
  Tenants plus the unallocated racks add up to E_DC exactly.
- **Peak demand**: the highest 15-minute average power of the tenant's racks, from the counters.
- **Carbon**, location-based: each hour's facility energy is shared among racks by their IT energy in that hour and
  multiplied by that hour's grid intensity; market-based: the tenant's energy (IT + overhead) at the period's
  market factor (contracts, then residual mix). CUE (ISO/IEC 30134-8) = kg CO2 / IT kWh, for both.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from aidc.errors import DataError
from aidc.tenant_config import TenantLease
from analytics.energy import kpi
from analytics.energy.carbon import MarketFactor
from analytics.energy.counters import DEFAULT_MAX_GAP, CounterEnergy
from analytics.energy.pue import MeterInfo
from analytics.report.energy import Readings, series_energy, series_intervals, split_readings

DEMAND_INTERVAL = pd.Timedelta("15min")
UNALLOCATED = "(unallocated)"
METHOD = (
    "IT energy from rack PDU energy counters over each lease; facility overhead allocated pro rata to IT energy "
    "by the same-period energy-based PUE (ISO/IEC 30134-2, IT at PDU output); location-based carbon: each hour's "
    "facility energy shared by IT energy in that hour x that hour's grid intensity; market-based carbon: energy x "
    "contractual factors and residual mix (GHG Protocol Scope 2); CUE per ISO/IEC 30134-8"
)


@dataclass(frozen=True, slots=True)
class LeaseSpan:
    """One rack leased to one tenant over ``[start, end)``, clipped to the billing period."""

    tenant: str
    rack: str
    start: pd.Timestamp
    end: pd.Timestamp
    account: str | None = None


@dataclass(frozen=True, slots=True)
class TenantLine:
    """One tenant's figures for the period (also used for the unallocated racks)."""

    tenant: str
    account: str | None
    racks: tuple[str, ...]
    it_kwh: float
    overhead_kwh: float | None
    cooling_overhead_kwh: float | None
    other_overhead_kwh: float | None
    total_kwh: float | None
    peak_kw: float
    peak_at: str | None
    coverage: float
    estimated_kwh: float
    wraps: int
    resets: int
    location_kgco2: float | None
    market_kgco2: float | None
    cue_location: float | None
    cue_market: float | None


@dataclass(frozen=True, slots=True)
class TenantReport:
    """Every tenant's line, the unallocated remainder and the site totals they add up to."""

    start: pd.Timestamp
    end: pd.Timestamp
    pue: float | None
    e_dc_kwh: float
    e_it_kwh: float
    e_cooling_kwh: float | None
    site_coverage: float
    location_kgco2: float | None
    market_kgco2: float | None
    cue_location: float | None
    cue_market: float | None
    intensity_note: str | None
    market_note: str | None
    lines: tuple[TenantLine, ...]
    method: str = METHOD
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, object]:
        """Plain figures for JSON (the API serves the same)."""
        out = {k: v for k, v in asdict(self).items() if k not in ("start", "end", "lines", "notes")}
        out["start"], out["end"] = self.start.isoformat(), self.end.isoformat()
        out["notes"] = list(self.notes)
        out["tenants"] = [{**asdict(line), "racks": list(line.racks)} for line in self.lines]
        return out

    def line(self, tenant: str) -> TenantLine:
        """The line of one tenant (KeyError when it leased nothing in the period)."""
        for ln in self.lines:
            if ln.tenant == tenant:
                return ln
        raise KeyError(tenant)


def lease_spans(leases: Iterable[TenantLease], tz: str, start: pd.Timestamp, end: pd.Timestamp) -> list[LeaseSpan]:
    """Every (tenant, rack) lease overlapping ``[start, end)``, clipped to it."""
    out = []
    s_ns, e_ns = int(start.value), int(end.value)
    for lease in leases:
        a, b = lease.bounds_ns(tz)
        lo, hi = max(a, s_ns), e_ns if b is None else min(b, e_ns)
        if hi <= lo:
            continue
        for rack in lease.racks:
            out.append(LeaseSpan(lease.name, rack, _ts(lo), _ts(hi), lease.account))
    return out


_EMPTY = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64))


def _ts(ns: int) -> pd.Timestamp:
    return pd.Timestamp(ns, unit="ns", tz="UTC")


def _energy(
    readings: Readings, meters: Mapping[str, MeterInfo], sids: Sequence[str], a: pd.Timestamp, b: pd.Timestamp,
    max_gap: pd.Timedelta,
) -> CounterEnergy:  # fmt: skip
    """Sum of the counters' energies over ``[a, b)``; no counters at all is no energy and no coverage."""
    total: CounterEnergy | None = None
    for sid in sids:
        ts, v = readings.series.get(sid, _EMPTY)
        limits = readings.gap_limits(sid, ts, max_gap)  # hourly rollups: consecutive hours are covered
        e = series_energy(ts, v, a, b, modulus=meters[sid].modulus, max_gap=limits, scale=meters[sid].scale)
        total = e if total is None else total + e
    return total if total is not None else CounterEnergy(0.0, 0.0, 0.0)


def _intervals(
    readings: Readings, meters: Mapping[str, MeterInfo], sids: Sequence[str], edges: pd.DatetimeIndex
) -> np.ndarray:
    out = np.zeros(len(edges) - 1)
    for sid in sids:
        ts, v = readings.series.get(sid, _EMPTY)
        out += series_intervals(ts, v, edges, modulus=meters[sid].modulus, scale=meters[sid].scale)
    return out


def _peak(energy: np.ndarray, edges: pd.DatetimeIndex) -> tuple[float, str | None]:
    """Highest 15-minute average power (kW) and when that interval started."""
    if not energy.any():
        return 0.0, None
    starts = edges[:-1].floor(DEMAND_INTERVAL)
    buckets = pd.Series(energy, index=starts).groupby(level=0).sum()
    t, e = pd.DatetimeIndex(buckets.index).as_unit("ns").asi8, edges.as_unit("ns").asi8
    lo, hi = np.maximum(t, e[0]), np.minimum(t + DEMAND_INTERVAL.value, e[-1])
    hours = (hi - lo) / pd.Timedelta("1h").value
    kw = buckets.to_numpy() / hours
    i = int(np.argmax(kw))
    return float(kw[i]), buckets.index[i].isoformat()


def tenant_report(
    readings: pd.DataFrame | Readings,
    meters: Mapping[str, MeterInfo],
    *,
    rack_series: Mapping[str, Sequence[str]],
    facility_series: Sequence[str],
    cooling_series: Sequence[str] = (),
    spans: Sequence[LeaseSpan],
    start: pd.Timestamp,
    end: pd.Timestamp,
    intensity: pd.Series | None = None,
    intensity_note: str | None = None,
    market: MarketFactor | None = None,
    max_gap: pd.Timedelta = DEFAULT_MAX_GAP,
) -> TenantReport:
    """Tenant lines and site totals over ``[start, end)`` (``intensity``: gCO2/kWh for every hour of the period).

    ``readings``: counter rows (``ts``, ``series``, ``value``, ``quality``), or the same already split per series
    (:class:`~analytics.report.energy.Readings`); a frame is split once, so no series scans the whole frame.
    """
    if isinstance(readings, pd.DataFrame):
        readings = split_readings(readings)
    if not facility_series:
        raise DataError("tenants: no series with role facility_energy (the utility meter's energy counter)")
    for span in spans:
        if not rack_series.get(span.rack):
            raise DataError(f"tenants: rack {span.rack} (tenant {span.tenant}) has no PDU energy counter")
    bounds = {start, end, *(s.start for s in spans), *(s.end for s in spans)}
    grid = pd.date_range(start, end, freq=DEMAND_INTERVAL)
    edges = pd.DatetimeIndex(sorted(set(grid) | bounds))
    rack_e = {r: _intervals(readings, meters, sids, edges) for r, sids in rack_series.items() if sids}
    dc_i = _intervals(readings, meters, facility_series, edges)
    it_i = np.sum(list(rack_e.values()), axis=0) if rack_e else np.zeros(len(edges) - 1)
    dc = _energy(readings, meters, facility_series, start, end, max_gap)
    if dc.coverage == 0.0 and dc.energy == 0.0:
        raise DataError(f"tenants: no facility meter readings between {start.isoformat()} and {end.isoformat()}")
    e_it = float(it_i.sum())
    e_cool = _energy(readings, meters, cooling_series, start, end, max_gap).energy if cooling_series else None
    pue = kpi.pue(dc.energy, e_it)
    # Hourly facility/IT ratio: how much facility energy each IT kWh of that hour carries (carbon allocation).
    hour_of = edges[:-1].floor("h")
    hourly = pd.DataFrame({"dc": dc_i, "it": it_i}, index=hour_of).groupby(level=0).sum()
    ratio_h = (hourly["dc"] / hourly["it"].where(hourly["it"] > 0)).fillna(pue or 0.0)
    ratio_i = ratio_h.reindex(hour_of).to_numpy()
    ci_i: np.ndarray | None = None
    if intensity is not None:
        ci = intensity.reindex(hourly.index)
        if ci.isna().any():
            raise DataError(f"tenants: carbon intensity missing for hour {ci.index[ci.isna()][0]}")
        ci_i = ci.reindex(hour_of).to_numpy()
    factor = None if market is None else market.g_per_kwh

    Part = tuple[str, np.ndarray, CounterEnergy, float]

    def make_line(tenant: str, account: str | None, parts: list[Part]) -> TenantLine:
        """``parts``: (rack, interval mask weights, counter energy over its span, span seconds)."""
        it = sum(p[2].energy for p in parts)
        series_e = np.zeros(len(edges) - 1)
        for rack, mask, _, _ in parts:
            series_e += rack_e[rack] * mask
        seconds = sum(p[3] for p in parts)
        coverage = sum(p[2].coverage * p[3] for p in parts) / seconds if seconds > 0 else 0.0
        overhead = None if pue is None else it * (pue - 1.0)
        cool = None if e_cool is None or e_it <= 0 else it * e_cool / e_it
        other = None if overhead is None or cool is None else overhead - cool
        total = None if overhead is None else it + overhead
        loc = None if ci_i is None else float(np.sum(series_e * ratio_i * ci_i)) / 1000.0
        mkt = None if factor is None or total is None else total * factor / 1000.0
        peak, peak_at = _peak(series_e, edges)
        return TenantLine(
            tenant, account, tuple(sorted({p[0] for p in parts})), it, overhead, cool, other, total, peak, peak_at,
            coverage, sum(p[2].estimated for p in parts), sum(p[2].wraps for p in parts),
            sum(p[2].resets for p in parts), loc, mkt, kpi.cue(loc, it), kpi.cue(mkt, it),
        )  # fmt: skip

    lines = []
    leased = {r: np.zeros(len(edges) - 1) for r in rack_e}
    for tenant, group in itertools.groupby(sorted(spans, key=lambda s: s.tenant), key=lambda s: s.tenant):
        parts = []
        account = None
        for span in group:
            account = account or span.account
            mask = ((edges[:-1] >= span.start) & (edges[:-1] < span.end)).astype(np.float64)
            leased[span.rack] += mask
            e = _energy(readings, meters, rack_series[span.rack], span.start, span.end, max_gap)
            parts.append((span.rack, mask, e, (span.end - span.start).total_seconds()))
        lines.append(make_line(tenant, account, parts))
    rest = []
    for rack, sids in rack_series.items():
        free = 1.0 - np.minimum(leased.get(rack, 0.0), 1.0)
        if rack not in rack_e or not free.any():
            continue
        # The unallocated share of the rack's counter: its interval energies where no lease runs.
        e_free = float(np.sum(rack_e[rack] * free))
        whole = _energy(readings, meters, sids, start, end, max_gap)
        seconds = float(np.sum(np.diff(edges.asi8) * free)) / 1e9
        rest.append((rack, free, CounterEnergy(e_free, 0.0, whole.coverage), seconds))
    if rest:
        lines.append(make_line(UNALLOCATED, None, rest))
    site_loc = None if ci_i is None else float(np.sum(dc_i * ci_i)) / 1000.0
    site_mkt = None if factor is None else dc.energy * factor / 1000.0
    notes = []
    if dc.coverage < 0.999:
        notes.append(f"facility meter coverage {100 * dc.coverage:.1f} % ({dc.estimated:.1f} kWh estimated)")
    return TenantReport(
        start, end, pue, dc.energy, e_it, e_cool, dc.coverage, site_loc, site_mkt, kpi.cue(site_loc, e_it),
        kpi.cue(site_mkt, e_it), intensity_note, None if market is None else market.note, tuple(lines),
        notes=tuple(notes),
    )  # fmt: skip


CSV_COLUMNS = (
    "period_start", "period_end", "tenant", "account", "racks", "it_kwh", "overhead_kwh", "cooling_overhead_kwh",
    "other_overhead_kwh", "total_kwh", "peak_kw", "peak_at", "coverage_pct", "estimated_kwh", "counter_wraps",
    "counter_resets", "location_kgco2", "market_kgco2", "cue_location_kg_per_kwh", "cue_market_kg_per_kwh", "pue",
    "method",
)  # fmt: skip


def csv_rows(report: TenantReport) -> list[list[object]]:
    """The billing export, one row per tenant (and the unallocated racks), columns :data:`CSV_COLUMNS`."""

    def r(x: float | None, nd: int) -> object:
        return "" if x is None else round(x, nd)

    rows: list[list[object]] = []
    for ln in report.lines:
        rows.append([
            report.start.isoformat(), report.end.isoformat(), ln.tenant, ln.account or "", " ".join(ln.racks),
            r(ln.it_kwh, 3), r(ln.overhead_kwh, 3), r(ln.cooling_overhead_kwh, 3), r(ln.other_overhead_kwh, 3),
            r(ln.total_kwh, 3), r(ln.peak_kw, 3), ln.peak_at or "", r(100 * ln.coverage, 2), r(ln.estimated_kwh, 3),
            ln.wraps, ln.resets, r(ln.location_kgco2, 3), r(ln.market_kgco2, 3), r(ln.cue_location, 5),
            r(ln.cue_market, 5), r(report.pue, 5), report.method,
        ])  # fmt: skip
    return rows
