"""Build a :class:`MonthReport` from the historian: counters for PUE and the breakdown, gauges for the cooling
subsystems, wet bulb and free cooling, and the same month's controller decisions for the savings estimate.

Every figure comes from data found by role (never by device name); what a site does not meter is stated as not
available. Same historian contents in, same report out: no wall-clock time, randomness or ordering by hash.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterable

import numpy as np
import pandas as pd

from aidc.config import Site
from aidc.errors import DataError
from aidc.model import SeriesKey
from aidc.roles import Role
from analytics.energy import kpi
from analytics.energy.counter_read import HOUR_NS, read_counter_frame, read_counters
from analytics.energy.counters import DEFAULT_MAX_GAP
from analytics.energy.pue import ENERGY_ROLES, MeterInfo, PueReport
from analytics.historian_adapter import site_meters, wide_frame
from analytics.leasing.billing import report_from_historian
from analytics.leasing.tenants import TenantReport
from analytics.report.config import ReportConfig
from analytics.report.energy import (
    Readings,
    hourly_energy,
    meter_stats,
    pue_report,
    role_totals,
    uncovered_mask,
)
from analytics.report.model import BreakdownItem, FreeCooling, Kpi, MonthReport, PeriodFigure
from analytics.report.period import Month
from analytics.report.savings import device_roles, estimate_savings
from historian import Historian, SeriesSelector

MARGIN = pd.Timedelta("2h")  # readings this far outside the period bracket its edges
POINT_TEXT = {1: "UPS output", 2: "PDU output", 3: "IT equipment input"}
GAUGE_ROLES = (Role.CHILLER_POWER, Role.PUMP_POWER, Role.HEAT_REJECTION_FAN_POWER)
ROLE_POINT = {
    Role.FACILITY_ENERGY: "utility meter (E_DC)",
    Role.IT_ENERGY_UPS_OUTPUT: "UPS output",
    Role.IT_ENERGY_PDU_OUTPUT: "rack PDU outputs",
    Role.IT_ENERGY_EQUIPMENT_INPUT: "IT equipment input (rack power shelves)",
    Role.UPS_INPUT_ENERGY: "UPS input",
    Role.COOLING_ENERGY: "cooling sub-meter",
    Role.OTHER_ENERGY: "lighting and other sub-meter",
    Role.WATER_VOLUME: "water meter",
    Role.REUSED_ENERGY: "heat-reuse meter",
    Role.RENEWABLE_ENERGY: "renewable supply meter",
}


def category_text(cat: int, frequency: str) -> str:
    """``category 2, IT at PDU output, monthly interim PUE (iPUE2; The Green Grid PUE_L2,MC)``."""
    return (
        f"category {cat} ({kpi.CATEGORY_NAMES[cat].split(' ')[0]}), IT at {POINT_TEXT[cat]}, monthly interim PUE "
        f"(ISO/IEC 30134-2 iPUE{cat}; The Green Grid PUE_L{cat},M{frequency})"
    )


def _frequency(readings: Readings, meters: dict[str, MeterInfo]) -> str:
    """Green Grid measurement-frequency letter from the utility meter's median reading interval."""
    steps = [
        float(np.median(np.diff(ts))) / 1e9
        for sid, (ts, _) in readings.series.items()
        if sid in meters and meters[sid].role is Role.FACILITY_ENERGY and len(ts) > 1
    ]
    if not steps:
        return "C"
    step = float(np.median(steps))
    return "C" if step <= 900 else ("D" if step <= 86400 else "M")


def _meters(site: Site) -> dict[str, MeterInfo]:
    return site_meters(site, ENERGY_ROLES)


@functools.lru_cache(maxsize=100_000)
def _measurement_field(series: str) -> tuple[str, str]:
    key = SeriesKey.parse(series)
    return key.measurement, key.field


def _has_values(hist: Historian, series: Iterable[str], start: pd.Timestamp, end: pd.Timestamp) -> bool:
    """Whether any of ``series`` has a value in [start, end): one count over the period per measurement, which the
    historian answers from its rollups (a year of comparison months is probed for the utility meter)."""
    ids = set(series)
    for meas, fld in sorted({_measurement_field(s) for s in ids}):
        df = hist.query(SeriesSelector(meas, {}, fld), start, end, agg="count")
        if bool((df["value"][df["series"].isin(ids)] > 0).any()):
            return True
    return False


def _period_figure(
    hist: Historian, all_meters: dict[str, MeterInfo], label: str, start: pd.Timestamp, end: pd.Timestamp, category: int
) -> PeriodFigure:
    """PUE over [start, end) from the utility meter and the IT meters of ``category`` (or the best available)."""
    pue_roles = (Role.FACILITY_ENERGY, *kpi.IT_ENERGY_ROLES.values())
    meters = {s: m for s, m in all_meters.items() if m.role in pue_roles}
    utility = [s for s, m in meters.items() if m.role is Role.FACILITY_ENERGY]
    if not _has_values(hist, utility, start, end):
        return PeriodFigure(label, start, end, None, None, None, None, "no data")
    read = read_counters(hist, meters, start - MARGIN, end + MARGIN)
    stats = meter_stats(read.readings, meters, start, end, tuple({m.role for m in meters.values()}))
    energies = role_totals(stats)
    if Role.FACILITY_ENERGY not in energies or not any(r in energies for r in kpi.IT_ENERGY_ROLES.values()):
        return PeriodFigure(label, start, end, None, None, None, None, "no data")
    # Like for like: this month's category if it is complete then, else the one rule's choice for that month.
    rep = pue_report(stats, start, end, category=category)
    note = ""
    if rep.category == 0:  # "insufficient data" (PueReport's category 0)
        rep = pue_report(stats, start, end)
        note = f"category {rep.category}: category {category} incomplete then"
    if rep.category == 0:
        return PeriodFigure(label, start, end, None, None, None, None, rep.note)
    if rep.coverage < 0.9999:
        note = (note + "; " if note else "") + f"coverage {100 * rep.coverage:.1f} %"
    if any(t.resolution_ns >= HOUR_NS for t in read.tiers_used(start, end)):
        note = (note + "; " if note else "") + "partly from hourly rollups (coverage at hourly resolution)"
    return PeriodFigure(label, start, end, rep.pue, rep.e_dc_kwh, rep.e_it_kwh, rep.category, note)


def _sum_figure(label: str, months: list[PeriodFigure], expected: int) -> PeriodFigure:
    """PUE over several months = sum of E_DC / sum of E_IT over the months with data (never a mean of ratios)."""
    have = [m for m in months if m.e_dc_kwh is not None and m.e_it_kwh is not None]
    start, end = months[0].start, months[-1].end
    if not have:
        return PeriodFigure(label, start, end, None, None, None, None, "no data")
    e_dc = sum(m.e_dc_kwh or 0.0 for m in have)
    e_it = sum(m.e_it_kwh or 0.0 for m in have)
    cats = sorted({m.category for m in have if m.category is not None})
    note = "" if len(have) == expected else f"{len(have)} of {expected} months have data"
    if len(cats) > 1:
        note = (note + "; " if note else "") + "mixed categories " + "/".join(map(str, cats))
    return PeriodFigure(label, start, end, kpi.pue(e_dc, e_it), e_dc, e_it, cats[-1] if cats else None, note)


def _comparisons(
    hist: Historian, meters: dict[str, MeterInfo], month: Month, rep: PueReport, target: float | None
) -> list[PeriodFigure]:
    cat = rep.category
    this = PeriodFigure(f"{month.label} (this month)", rep.start, rep.end, rep.pue, rep.e_dc_kwh, rep.e_it_kwh, cat)
    prior = {k: _period_figure(hist, meters, month.shift(-k).label, month.shift(-k).start, month.shift(-k).end, cat)
             for k in range(1, 13)}  # fmt: skip
    prev = prior[1]
    last_year = prior[12]
    trailing = [prior[k] for k in range(11, 0, -1)] + [this]
    ytd = [prior[k] for k in range(month.month - 1, 0, -1)] + [this]
    out = [
        this,
        PeriodFigure(f"{prev.label} (previous month)", prev.start, prev.end, prev.pue, prev.e_dc_kwh, prev.e_it_kwh,
                     prev.category, prev.note),
        PeriodFigure(f"{last_year.label} (same month last year)", last_year.start, last_year.end, last_year.pue,
                     last_year.e_dc_kwh, last_year.e_it_kwh, last_year.category, last_year.note),
        _sum_figure(f"trailing 12 months to {month.label}", trailing, 12),
        _sum_figure(f"year to date {month.year}", ytd, month.month),
    ]  # fmt: skip
    if target is not None:
        out.append(PeriodFigure("target", rep.start, rep.end, target, None, None, None, "from [report] pue_target"))
    return out


def _gauges(hist: Historian, site: Site, month: Month) -> tuple[pd.DataFrame, dict[str, Role]]:
    roles = (*GAUGE_ROLES, Role.OUTDOOR_WETBULB, Role.CARBON_INTENSITY)
    wide, _ = wide_frame(hist, site, roles, month.start, month.end, "1h")
    return wide, device_roles(site, wide.columns)


def _gauge_kwh(wide: pd.DataFrame, role_of: dict[str, Role], role: Role) -> tuple[float | None, int]:
    """Energy (kWh) from hourly mean power of every series of ``role``; and the hours with readings."""
    cols = [c for c in wide.columns if role_of.get(c) is role]
    if not cols:
        return None, 0
    kw = sum(wide[c].fillna(0.0) * kpi.power_scale(SeriesKey.parse(c).field) for c in cols)
    hours = int(wide[cols].notna().any(axis=1).sum())
    return float(np.asarray(kw).sum()), hours


def _breakdown(rep: PueReport, wide: pd.DataFrame, role_of: dict[str, Role]) -> tuple[list[BreakdownItem], list[str]]:
    """IT, distribution/UPS/transformer losses, cooling subsystems and other; the items add up to E_DC."""
    e = {r: c.energy for r, c in rep.energies.items()}
    items = [BreakdownItem(f"IT ({POINT_TEXT[rep.category]})", rep.e_it_kwh, "metered")]
    notes: list[str] = []
    rest = rep.e_dc_kwh - rep.e_it_kwh
    ups_out, ups_in = e.get(Role.IT_ENERGY_UPS_OUTPUT), e.get(Role.UPS_INPUT_ENERGY)
    if rep.category > 1 and ups_out is not None:
        items.append(BreakdownItem(f"distribution losses (UPS output to {POINT_TEXT[rep.category]})",
                                   ups_out - rep.e_it_kwh, "by difference of meters"))  # fmt: skip
        rest -= ups_out - rep.e_it_kwh
    if ups_in is not None and ups_out is not None:
        items.append(BreakdownItem("UPS losses", ups_in - ups_out, "by difference of meters"))
        rest -= ups_in - ups_out
    cool, other = e.get(Role.COOLING_ENERGY), e.get(Role.OTHER_ENERGY)
    if cool is not None:
        parts = {
            "chiller": _gauge_kwh(wide, role_of, Role.CHILLER_POWER),
            "pumps (FWS and CDU)": _gauge_kwh(wide, role_of, Role.PUMP_POWER),
            "heat-rejection fans": _gauge_kwh(wide, role_of, Role.HEAT_REJECTION_FAN_POWER),
        }
        left = cool
        for name, (kwh, hours) in parts.items():
            if kwh is None:
                notes.append(f"no {name} power readings: included in 'CRAH and other cooling'")
                continue
            items.append(BreakdownItem(name, kwh, f"estimated from hourly mean power ({hours} h with readings)"))
            left -= kwh
        items.append(BreakdownItem("CRAH fans and other cooling", left, "cooling meter minus the items above"))
        rest -= cool
    if other is not None:
        items.append(BreakdownItem("lighting and other", other, "metered"))
        rest -= other
    if ups_in is not None and cool is not None:
        items.append(BreakdownItem("transformer and other electrical losses", rest,
                                   "utility meter minus UPS input, cooling and other"))  # fmt: skip
    else:
        items.append(BreakdownItem("not sub-metered", rest, "utility meter minus the items above"))
        notes.append("no UPS input and/or cooling meter: losses and cooling cannot be separated")
    return items, notes


def _free_cooling(hist: Historian, site: Site, month: Month) -> FreeCooling:
    """Hours in full / partial / no free cooling from the plant's state readings, each held until the next."""
    ids = [
        SeriesKey.of(d.profile.measurement, p.name, d.tags).id
        for d in site.devices
        for p in d.profile.points
        if d.role_of(p.name) is Role.FREE_COOLING_STATE
    ]
    total_h = month.hours
    if not ids:
        return FreeCooling(0.0, 0.0, 0.0, total_h, False)
    raw = read_counter_frame(hist, ids[:1], month.start - DEFAULT_MAX_GAP, month.end)
    raw = raw[raw["value"].notna() & (raw["quality"].astype(int) < 2)].sort_values("ts")
    if raw.empty:
        return FreeCooling(0.0, 0.0, 0.0, total_h, True)
    ts = pd.DatetimeIndex(raw["ts"]).as_unit("ns").asi8
    nxt = np.append(ts[1:], month.end.value)
    lo = np.maximum(ts, month.start.value)
    hi = np.minimum(np.minimum(nxt, ts + DEFAULT_MAX_GAP.value), month.end.value)
    held_h = np.clip(hi - lo, 0, None) / 3.6e12
    state = np.rint(raw["value"].to_numpy()).astype(int)
    by = {s: float(held_h[state == s].sum()) for s in (0, 1, 2)}
    known = sum(by.values())
    return FreeCooling(by[2], by[1], by[0], max(total_h - known, 0.0), True)


def _kpis(rep: PueReport) -> list[Kpi]:
    def k(name: str, value: float | None, unit: str, definition: str, needs: str) -> Kpi:
        return Kpi(name, value, unit, definition, "" if value is not None else f"not available: {needs}")

    return [
        k("pPUE cooling", rep.ppue_cooling, "", "(E_cooling + E_IT) / E_IT", "no cooling energy meter"),
        k("pPUE power", rep.ppue_power, "", "(E_losses + E_IT) / E_IT", "no cooling energy meter to separate losses"),
        k("CLF", rep.clf, "", "E_cooling / E_IT (The Green Grid)", "no cooling energy meter"),
        k("PLF", rep.plf, "", "E_losses / E_IT (The Green Grid)", "no cooling energy meter to separate losses"),
        k("WUE", rep.wue, "L/kWh", "site water / E_IT (ISO/IEC 30134-9)", "no water meter (role water_volume)"),
        k("ERF", rep.erf, "", "E_reused / E_DC (ISO/IEC 30134-6)", "no heat-reuse meter (role reused_energy)"),
        k("REF", rep.ref, "", "E_renewable / E_DC (ISO/IEC 30134-3)", "no renewable meter (role renewable_energy)"),
        k("CUE", rep.cue, "kg CO2/kWh", "CO2 of E_DC / E_IT (ISO/IEC 30134-8)", "no grid carbon intensity series"),
    ]


def _tenants(hist: Historian, site: Site, month: Month) -> TenantReport | None:
    """The month's tenant billing (the same engine as ``aidc tenants``), for a site that leases racks."""
    if not site.config.tenants:
        return None
    return report_from_historian(hist, site, month.start, month.end)


def build_month_report(hist: Historian, site: Site, month: Month, cfg: ReportConfig) -> MonthReport:
    """Read the month (and the comparison periods) from the historian and compute every section."""
    meters = _meters(site)
    read = read_counters(hist, meters, month.start - MARGIN, month.end + MARGIN)
    groups = read.readings
    stats = meter_stats(groups, meters, month.start, month.end, ENERGY_ROLES)
    energies = role_totals(stats)
    if Role.FACILITY_ENERGY not in energies:
        raise DataError(f"--month {month.label}: site {site.name} has no utility-meter readings in that month")
    if not any(r in energies for r in kpi.IT_ENERGY_ROLES.values()):
        raise DataError(f"--month {month.label}: site {site.name} has no IT energy readings in that month")
    edges = month.hour_edges()
    hourly = hourly_energy(groups, meters, edges, ENERGY_ROLES)
    wide, role_of = _gauges(hist, site, month)
    hours = pd.DatetimeIndex(edges[:-1])
    wide = wide.reindex(hours)
    ci_cols = [c for c in wide.columns if role_of.get(c) is Role.CARBON_INTENSITY]
    co2 = None
    if ci_cols:
        ci = wide[ci_cols].mean(axis=1) * kpi.carbon_scale(SeriesKey.parse(ci_cols[0]).field)
        co2 = float(np.nansum(hourly[Role.FACILITY_ENERGY] * ci.ffill().bfill().to_numpy()))
    rep = pue_report(stats, month.start, month.end, co2_kg=co2)
    if rep.category == 0:  # the same rule as `aidc pue`: a signed report never states a figure that one refuses
        raise DataError(f"--month {month.label}: site {site.name}: {rep.note}")
    it_role = kpi.IT_ENERGY_ROLES[rep.category]
    pue_stats = [s for s in stats if s.role in (Role.FACILITY_ENERGY, it_role)]
    gaps = [(s.series, a, b) for s in pue_stats for a, b in s.energy.gaps]
    unmetered = uncovered_mask(edges, [(a, b) for _, a, b in gaps])
    e_dc_h, e_it_h = hourly[Role.FACILITY_ENERGY], hourly[it_role]
    wb_cols = [c for c in wide.columns if role_of.get(c) is Role.OUTDOOR_WETBULB]
    wetbulb = wide[wb_cols].mean(axis=1).to_numpy() if wb_cols else np.full(len(hours), np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        pue_h = np.where(e_it_h > 0, e_dc_h / e_it_h, np.nan)
    hourly_df = pd.DataFrame({"ts": hours, "e_dc_kwh": e_dc_h, "e_it_kwh": e_it_h, "pue": pue_h,
                              "wetbulb_c": wetbulb, "metered": ~unmetered})  # fmt: skip
    day = hours.tz_convert(month.tz).strftime("%Y-%m-%d")
    daily = (
        hourly_df.assign(date=day, uncovered_h=unmetered.astype(float))
        .groupby("date", sort=True)[["e_dc_kwh", "e_it_kwh", "uncovered_h"]]
        .sum()
        .reset_index()
    )
    daily["pue"] = daily["e_dc_kwh"] / daily["e_it_kwh"].where(daily["e_it_kwh"] > 0)
    breakdown, notes = _breakdown(rep, wide, role_of)
    notes += read.notes(month.start, month.end)  # which rollup tiers stood in for aged-out raw rows
    used = []
    for role, group in itertools.groupby(sorted(stats, key=lambda s: s.role.value), key=lambda s: s.role):
        if role in energies:
            used.append((role.value, ROLE_POINT.get(role, role.value), len(list(group))))
    return MonthReport(
        site=site.name,
        timezone=month.tz,
        month=month,
        pue=rep,
        category_text=category_text(rep.category, _frequency(groups, meters)),
        meters_used=used,
        comparisons=_comparisons(hist, meters, month, rep, cfg.pue_target),
        target=cfg.pue_target,
        daily=daily,
        hourly=hourly_df,
        breakdown=breakdown,
        free_cooling=_free_cooling(hist, site, month),
        kpis=_kpis(rep),
        savings=estimate_savings(hist, site, month, cfg),
        meter_stats=stats,
        gaps=sorted(gaps, key=lambda g: (g[1], g[0])),
        notes=notes,
        tenants=_tenants(hist, site, month),
    )
