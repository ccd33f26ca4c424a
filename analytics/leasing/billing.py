"""Glue from a site and its historian to :func:`analytics.leasing.tenants.tenant_report`: series by role, carbon by
config.

Rack IT energy is the rack PDUs' energy counters (role ``it_energy_pdu_output``, tag ``rack``), where tenants are
metered; a site without PDU counters falls back to rack input counters (``it_energy_equipment_input``).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd

from aidc.config import Site
from aidc.errors import ConfigError, DataError
from aidc.model import SeriesKey
from aidc.roles import Role
from analytics.energy.carbon import Contract, Intensity, MarketFactor, load_intensity, market_factor
from analytics.energy.counter_read import read_counters
from analytics.historian_adapter import site_meters
from analytics.leasing.tenants import TenantReport, lease_spans, tenant_report
from analytics.report.energy import Readings
from historian import Historian

RACK_ROLES = (Role.IT_ENERGY_PDU_OUTPUT, Role.IT_ENERGY_EQUIPMENT_INPUT)


def _has_rows(readings: Readings, series: list[str]) -> bool:
    """Whether any of ``series`` has a raw row (of any quality) in the readings."""
    return any(len(readings.raw_ts.get(s, ())) for s in series)


def month_bounds(month: str, tz: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    """``YYYY-MM`` as the site's local calendar month, in UTC."""
    try:
        first = pd.Timestamp(f"{month}-01").tz_localize(tz)
    except ValueError:
        raise ConfigError(f"--month {month!r}: expected YYYY-MM, e.g. 2026-10") from None
    if len(month) != 7 or month[4] != "-":
        raise ConfigError(f"--month {month!r}: expected YYYY-MM, e.g. 2026-10")
    return first.tz_convert("UTC"), (first + pd.DateOffset(months=1)).tz_convert("UTC")


def site_intensity(site: Site) -> Intensity | None:
    """The site's configured hourly intensity series, or None (path relative to the site file)."""
    name = site.config.carbon.intensity
    if name is None:
        return None
    p = Path(name)
    if not p.is_absolute() and site.path is not None:
        p = site.path.parent / p
    return load_intensity(p)


def site_market(site: Site, grid_average: float | None) -> MarketFactor | None:
    """The market-based factor from the site's contracts and residual mix."""
    c = site.config.carbon
    contracts = [Contract(k.name, k.share, k.g_per_kwh) for k in c.contracts]
    return market_factor(contracts, c.residual_mix_g_per_kwh, grid_average)


def report_from_historian(
    historian: Historian, site: Site, start: pd.Timestamp, end: pd.Timestamp, *, margin: pd.Timedelta | None = None
) -> TenantReport:
    """The tenant report of ``[start, end)`` from the historian's counters and the site's tenants and carbon."""
    meters = site_meters(site, (*RACK_ROLES, Role.FACILITY_ENERGY, Role.COOLING_ENERGY))
    role = next((r for r in RACK_ROLES if any(m.role is r for m in meters.values())), RACK_ROLES[0])
    rack_series: dict[str, list[str]] = {}
    for sid, m in meters.items():
        rack = SeriesKey.parse(sid).tag_dict.get("rack")
        if m.role is role and rack is not None:
            rack_series.setdefault(rack, []).append(sid)
    facility = [s for s, m in meters.items() if m.role is Role.FACILITY_ENERGY]
    cooling = [s for s, m in meters.items() if m.role is Role.COOLING_ENERGY]
    pad = margin if margin is not None else pd.Timedelta("2h")
    wanted = [*(s for v in rack_series.values() for s in v), *facility, *cooling]
    read = read_counters(historian, wanted, start - pad, end + pad)
    readings = read.readings
    if not _has_rows(readings, facility):
        raise DataError(f"tenants: no facility meter readings between {start.isoformat()} and {end.isoformat()}")
    spans = lease_spans(site.config.tenants, site.config.site.timezone, start, end)
    intensity = site_intensity(site)
    hourly, note = intensity.hourly(start, end) if intensity is not None else (None, None)
    flat = site.config.carbon.flat_g_per_kwh
    if hourly is None and flat is not None:
        hours = pd.date_range(start.floor("h"), end, freq="h", inclusive="left")
        hourly, note = pd.Series(flat, index=hours), f"flat factor {flat:g} gCO2/kWh (no hourly series configured)"
    grid_avg = None if hourly is None else float(hourly.mean())
    report = tenant_report(
        readings, meters, rack_series=rack_series, facility_series=facility, cooling_series=cooling, spans=spans,
        start=start, end=end, intensity=hourly, intensity_note=note, market=site_market(site, grid_avg),
    )  # fmt: skip
    # which rollup tiers stood in for aged-out raw rows, so the bill says so
    return replace(report, notes=(*report.notes, *read.notes(start, end)))
