"""Display helpers of the operations pages (Energy, Alarms, Power chain, Users): site-time stamps, engineering units.

Times are stored in UTC; operators read them in the site's time zone (``[site] timezone``), with the zone's
abbreviation so a reading is never ambiguous across a DST change. Powers are shown in kW or MW with the decimals
a control room needs, never in W with fractions.
"""

from __future__ import annotations

import math

import pandas as pd


def site_time(ts_ns: int | None, tz: str, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """A UTC time in ns as site time with the zone's abbreviation (``2026-12-07 04:15 EST``); an em dash if None."""
    if ts_ns is None:
        return "—"
    local = pd.Timestamp(int(ts_ns), unit="ns", tz="UTC").tz_convert(tz)
    return f"{local.strftime(fmt)} {local.tzname()}"


def power_text(kw: float | None) -> str:
    """A power in engineering units: ``850 kW``, ``1.25 MW``, ``12.4 kW`` (an em dash where unknown)."""
    if kw is None or not math.isfinite(kw):
        return "—"
    if abs(kw) >= 1000:
        return f"{kw / 1000:,.2f} MW"
    return f"{kw:,.1f} kW" if abs(kw) < 100 else f"{kw:,.0f} kW"


def energy_text(kwh: float | None) -> str:
    """An energy in engineering units: ``950 kWh``, ``12.3 MWh``."""
    if kwh is None or not math.isfinite(kwh):
        return "—"
    if abs(kwh) >= 1000:
        return f"{kwh / 1000:,.1f} MWh"
    return f"{kwh:,.0f} kWh"


def pct_text(x: float | None, digits: int = 0) -> str:
    """A share 0..1 as a percentage (``87 %``)."""
    if x is None or not math.isfinite(x):
        return "—"
    return f"{100 * x:.{digits}f} %"


def pue_text(x: float | None) -> str:
    """A PUE with three decimals (the resolution its meters support)."""
    if x is None or not math.isfinite(x):
        return "—"
    return f"{x:.3f}"
