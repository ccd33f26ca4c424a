"""What a monthly report says, as plain typed data: built by :mod:`analytics.report.build`, rendered by
:mod:`analytics.report.render`. Nothing here reads a database or draws a chart."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from analytics.energy.pue import PueReport
from analytics.leasing.tenants import TenantReport
from analytics.report.energy import MeterStats
from analytics.report.period import Month


@dataclass(frozen=True, slots=True)
class PeriodFigure:
    """PUE over a comparison period (previous month, trailing 12 months, ...) and what it rests on."""

    label: str
    start: pd.Timestamp
    end: pd.Timestamp
    pue: float | None
    e_dc_kwh: float | None
    e_it_kwh: float | None
    category: int | None
    note: str = ""


@dataclass(frozen=True, slots=True)
class BreakdownItem:
    """One slice of the facility energy, with how it was obtained."""

    name: str
    kwh: float
    basis: str  # metered / by difference / estimated from power readings

    def share(self, total: float) -> float:
        """Fraction of ``total``."""
        return self.kwh / total if total else 0.0


@dataclass(frozen=True, slots=True)
class Kpi:
    """A KPI value with its unit and definition, or the reason it is not available."""

    name: str
    value: float | None
    unit: str
    definition: str
    missing: str = ""


@dataclass(frozen=True, slots=True)
class Savings:
    """Controller savings against fixed setpoints, or why none are stated."""

    active: bool
    statement: str
    saved_kwh: float | None = None
    low_kwh: float | None = None
    high_kwh: float | None = None
    baseline_kwh: float | None = None
    actual_kwh: float | None = None
    hours: int = 0
    extrapolating_share: float = 0.0
    baseline: dict[str, float] = field(default_factory=dict)
    method: str = ""


@dataclass(frozen=True, slots=True)
class FreeCooling:
    """Hours in each free-cooling state (full, partial, none) and hours without a reading."""

    full_h: float
    partial_h: float
    none_h: float
    unknown_h: float
    metered: bool


@dataclass(frozen=True)
class MonthReport:
    """Everything one monthly PUE report states."""

    site: str
    timezone: str
    month: Month
    pue: PueReport
    category_text: str
    meters_used: list[tuple[str, str, int]]  # (role, measurement point text, number of meters)
    comparisons: list[PeriodFigure]
    target: float | None
    daily: pd.DataFrame  # date, e_dc_kwh, e_it_kwh, pue, uncovered_h
    hourly: pd.DataFrame  # ts, e_dc_kwh, e_it_kwh, pue, wetbulb_c, metered
    breakdown: list[BreakdownItem]
    free_cooling: FreeCooling
    kpis: list[Kpi]
    savings: Savings
    meter_stats: list[MeterStats]
    gaps: list[tuple[str, pd.Timestamp, pd.Timestamp]]  # (series, from, to) of the PUE meters
    notes: list[str] = field(default_factory=list)
    tenants: TenantReport | None = None  # the tenant appendix, for sites with [[tenants]] (analytics.leasing.tenants)

    @property
    def label(self) -> str:
        """``monthly interim PUE`` wording (ISO/IEC 30134-2 calls periods shorter than a year interim)."""
        return "monthly interim PUE"

    def problem_meters(self) -> list[tuple[str, str, list[str]]]:
        """(series, role, problems) of every meter with a problem, worst coverage first."""
        bad = [s for s in self.meter_stats if s.problems]
        bad.sort(key=lambda s: (s.energy.coverage, s.series))
        return [(s.series, s.role.value, s.problems) for s in bad]
