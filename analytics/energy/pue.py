"""The PUE engine: ISO/IEC 30134-2 / EN 50600-4-2 PUE and its companions from energy counters, found by role.

Input is a long frame of counter readings (``ts``, ``series``, ``value``, ``quality``: what the historian returns)
and a map from series id to :class:`MeterInfo` (role, unit scale, wrap modulus). Nothing here knows a device name
or a database, so every figure can be checked by hand. :func:`compute_pue` is the entry point.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from aidc.errors import DataError
from aidc.roles import Role
from analytics.energy import kpi
from analytics.energy.counters import DEFAULT_MAX_GAP, CounterEnergy, counter_energy, interval_energy
from analytics.energy.metering import MIN_COVERAGE, choose_energy_category
from analytics.energy.metering import MeterInfo as MeterInfo  # re-exported: where the engines' callers import it

ENERGY_ROLES: tuple[Role, ...] = (
    Role.FACILITY_ENERGY,
    *kpi.IT_ENERGY_ROLES.values(),
    Role.COOLING_ENERGY,
    Role.OTHER_ENERGY,
    Role.UPS_INPUT_ENERGY,
    Role.REUSED_ENERGY,
    Role.RENEWABLE_ENERGY,
    Role.WATER_VOLUME,
)
PERIOD_FREQ = {"hour": "h", "day": "D", "month": "MS", "year": "YS"}
# ISO/IEC 30134-2 reserves plain "PUE" for a full year of measurement; anything shorter is an interim PUE.
FULL_YEAR = pd.Timedelta(days=365)


@dataclass(frozen=True, slots=True)
class PueReport:
    """PUE and companion KPIs of one period, with the energies, coverage and estimated share behind them."""

    start: pd.Timestamp
    end: pd.Timestamp
    category: int
    e_dc_kwh: float
    e_it_kwh: float
    pue: float | None
    coverage: float
    estimated_kwh: float
    energies: dict[Role, CounterEnergy] = field(default_factory=dict)
    e_cooling_kwh: float | None = None
    e_other_kwh: float | None = None
    e_power_losses_kwh: float | None = None
    ups_losses_kwh: float | None = None
    clf: float | None = None
    plf: float | None = None
    ppue_cooling: float | None = None
    ppue_power: float | None = None
    wue: float | None = None
    erf: float | None = None
    ref: float | None = None
    cue: float | None = None
    missing: tuple[str, ...] = ()  # meters below the coverage threshold (of the facility or a skipped category)
    note: str = ""  # why a category was skipped, or why there is no PUE

    @property
    def category_name(self) -> str:
        """``category 2 intermediate (PDU output)`` style label (``insufficient data`` without a category)."""
        if self.category not in kpi.CATEGORY_NAMES:
            return "insufficient data"
        return f"category {self.category} {kpi.CATEGORY_NAMES[self.category]}"

    @property
    def label(self) -> str:
        """``PUE`` for a year or more; otherwise ``interim PUE (start .. end)`` as ISO/IEC 30134-2 requires."""
        if self.end - self.start >= FULL_YEAR:
            return "PUE"
        return f"interim PUE ({self.start.isoformat()} .. {self.end.isoformat()})"

    def to_dict(self) -> dict[str, object]:
        """Plain figures for JSON output."""
        out: dict[str, object] = {"start": self.start.isoformat(), "end": self.end.isoformat()}
        for name in (
            "category",
            "e_dc_kwh",
            "e_it_kwh",
            "pue",
            "coverage",
            "estimated_kwh",
            "e_cooling_kwh",
            "e_other_kwh",
            "e_power_losses_kwh",
            "ups_losses_kwh",
            "clf",
            "plf",
            "ppue_cooling",
            "ppue_power",
            "wue",
            "erf",
            "ref",
            "cue",
        ):
            out[name] = getattr(self, name)
        out["category_name"] = self.category_name
        out["label"] = self.label
        out["missing"] = list(self.missing)
        out["note"] = self.note
        out["wraps"] = sum(e.wraps for e in self.energies.values())
        out["resets"] = sum(e.resets for e in self.energies.values())
        return out


def _meter_energies(
    readings: pd.DataFrame,
    meters: Mapping[str, MeterInfo],
    start: pd.Timestamp,
    end: pd.Timestamp,
    max_gap: pd.Timedelta,
) -> dict[str, CounterEnergy]:
    """Energy and coverage of every meter over the period (a meter without readings has coverage 0)."""
    out: dict[str, CounterEnergy] = {}
    by_series = dict(tuple(readings.groupby("series", sort=False))) if len(readings) else {}
    empty = readings.iloc[0:0]
    for sid, info in meters.items():
        if info.role not in ENERGY_ROLES:
            continue
        rows = by_series.get(sid, empty)
        out[sid] = counter_energy(rows, start, end, modulus=info.modulus, max_gap=max_gap, scale=info.scale)
    return out


def _role_energy(
    per_meter: Mapping[str, CounterEnergy], meters: Mapping[str, MeterInfo], role: Role
) -> CounterEnergy | None:
    total: CounterEnergy | None = None
    for sid, e in per_meter.items():
        if meters[sid].role is role:
            total = e if total is None else total + e
    return total


def _short(sid: str, coverage: float) -> str:
    return f"{sid} ({100 * coverage:.0f}% covered)"


def _co2_kg(
    readings: pd.DataFrame, meters: Mapping[str, MeterInfo], start: pd.Timestamp, end: pd.Timestamp
) -> float | None:
    """Σ over hours of facility energy x mean carbon intensity in that hour (gauge, held between readings)."""
    ci_ids = [s for s, m in meters.items() if m.role is Role.CARBON_INTENSITY]
    dc_ids = [s for s, m in meters.items() if m.role is Role.FACILITY_ENERGY]
    ci = readings[readings["series"].isin(ci_ids) & readings["value"].notna()]
    if ci.empty or not dc_ids:
        return None
    edges = pd.date_range(start, end, freq="h")
    if edges[-1] < end:
        edges = pd.DatetimeIndex([*edges, end])
    energy = np.zeros(len(edges) - 1)
    for sid in dc_ids:
        energy += interval_energy(
            readings[readings["series"] == sid], edges, modulus=meters[sid].modulus, scale=meters[sid].scale
        )
    scaled = ci["value"].to_numpy() * ci["series"].map(lambda s: meters[s].scale).to_numpy()
    hourly = pd.Series(scaled, index=pd.DatetimeIndex(ci["ts"])).sort_index().resample("h").mean()
    per_edge = hourly.reindex(edges[:-1].floor("h")).ffill().bfill().to_numpy()
    if np.isnan(per_edge).all():
        return None
    return float(np.nansum(energy * np.nan_to_num(per_edge, nan=float(np.nanmean(per_edge)))))


def compute_pue(
    readings: pd.DataFrame,
    meters: Mapping[str, MeterInfo],
    start: pd.Timestamp | str,
    end: pd.Timestamp | str,
    *,
    category: int | None = None,
    max_gap: pd.Timedelta = DEFAULT_MAX_GAP,
    min_coverage: float = MIN_COVERAGE,
) -> PueReport:
    """PUE and companions over ``[start, end)`` from counter readings.

    The category is the best one whose every IT meter (and the facility meter) has readings over at least
    ``min_coverage`` of the period; a category with a silent or patchy meter is skipped and named in ``note``,
    and with no complete category the report has ``pue = None`` and says "insufficient data".
    """
    s, e = pd.Timestamp(start), pd.Timestamp(end)
    if s.tzinfo is None or e.tzinfo is None:
        raise DataError(f"period {start} .. {end}: give time zones (aidc stores UTC)")
    per_meter = _meter_energies(readings, meters, s, e, max_gap)
    energies = {r: en for r in ENERGY_ROLES if (en := _role_energy(per_meter, meters, r)) is not None}
    coverage = {sid: en.coverage for sid, en in per_meter.items()}
    co2 = _co2_kg(readings, meters, s, e)
    return period_report(s, e, energies, coverage, meters, category=category, min_coverage=min_coverage, co2_kg=co2)


def period_report(
    start: pd.Timestamp,
    end: pd.Timestamp,
    energies: dict[Role, CounterEnergy],
    coverage: Mapping[str, float],
    meters: Mapping[str, MeterInfo],
    *,
    category: int | None = None,
    min_coverage: float = MIN_COVERAGE,
    co2_kg: float | None = None,
) -> PueReport:
    """The PueReport of a period from role energies and each meter's coverage: the IT category by the one rule
    (:func:`analytics.energy.metering.choose_energy_category`), "insufficient data" without a complete one or with a
    patchy facility meter. ``aidc pue`` and the monthly report both end here, so they cannot disagree."""
    dc = energies.get(Role.FACILITY_ENERGY)
    if dc is None:
        raise DataError("no series with role facility_energy: PUE needs the utility meter's energy counter")
    choice = choose_energy_category(coverage, meters, category=category, min_coverage=min_coverage)
    fac_short = [_short(sid, c) for sid, c in coverage.items()
                 if sid in meters and meters[sid].role is Role.FACILITY_ENERGY and c < min_coverage]  # fmt: skip
    missing = (*fac_short, *choice.missing)
    if choice.category is None or fac_short:
        why = [f"facility meter {', '.join(fac_short)} below threshold"] if fac_short else []
        why += [choice.note] if choice.note else []
        return PueReport(
            start=start, end=end, category=0, e_dc_kwh=dc.energy, e_it_kwh=float("nan"), pue=None,
            coverage=min([dc.coverage, *coverage.values()]), estimated_kwh=dc.estimated, energies=energies,
            missing=missing, note=f"insufficient data: {'; '.join(why)}",
        )  # fmt: skip
    return report_from_energies(start, end, choice.category, energies, co2_kg, missing=missing, note=choice.note)


def report_from_energies(
    start: pd.Timestamp,
    end: pd.Timestamp,
    category: int,
    energies: dict[Role, CounterEnergy],
    co2_kg: float | None,
    *,
    missing: tuple[str, ...] = (),
    note: str = "",
) -> PueReport:
    """The PueReport of role energies for one period at a chosen category: PUE and the related KPIs."""
    dc = energies[Role.FACILITY_ENERGY]
    it = energies[kpi.IT_ENERGY_ROLES[category]]

    def kwh(role: Role) -> float | None:
        en = energies.get(role)
        return None if en is None else en.energy

    e_cool, e_other = kwh(Role.COOLING_ENERGY), kwh(Role.OTHER_ENERGY)
    losses = kpi.power_losses(dc.energy, it.energy, e_cool, e_other)
    ups_in, ups_out = kwh(Role.UPS_INPUT_ENERGY), kwh(Role.IT_ENERGY_UPS_OUTPUT)
    return PueReport(
        start=start,
        end=end,
        category=category,
        e_dc_kwh=dc.energy,
        e_it_kwh=it.energy,
        pue=kpi.pue(dc.energy, it.energy),
        coverage=min(dc.coverage, it.coverage),
        estimated_kwh=dc.estimated + it.estimated,
        energies=energies,
        e_cooling_kwh=e_cool,
        e_other_kwh=e_other,
        e_power_losses_kwh=losses,
        ups_losses_kwh=None if ups_in is None or ups_out is None else ups_in - ups_out,
        clf=kpi.clf(e_cool, it.energy),
        plf=kpi.plf(losses, it.energy),
        ppue_cooling=kpi.partial_pue(e_cool, it.energy),
        ppue_power=kpi.partial_pue(losses, it.energy),
        wue=kpi.wue(kwh(Role.WATER_VOLUME), it.energy),
        erf=kpi.erf(kwh(Role.REUSED_ENERGY), dc.energy),
        ref=kpi.ref(kwh(Role.RENEWABLE_ENERGY), dc.energy),
        cue=kpi.cue(co2_kg, it.energy),
        missing=missing,
        note=note,
    )


def period_edges(start: pd.Timestamp | str, end: pd.Timestamp | str, period: str, tz: str = "UTC") -> pd.DatetimeIndex:
    """Boundaries of calendar hours/days/months/years (in the site's time zone) covering ``[start, end)``."""
    if period not in PERIOD_FREQ:
        raise DataError(f"period {period!r}: expected one of {', '.join(PERIOD_FREQ)}")
    s = pd.Timestamp(start).tz_convert(tz)
    e = pd.Timestamp(end).tz_convert(tz)
    first = s.floor("h") if period == "hour" else s.normalize()
    if period == "month":
        first = first.replace(day=1)
    elif period == "year":
        first = first.replace(month=1, day=1)
    edges = pd.date_range(first, e, freq=PERIOD_FREQ[period])
    inner = [t for t in edges if s < t < e]
    return pd.DatetimeIndex([s, *inner, e]).tz_convert("UTC")


def pue_by_period(
    readings: pd.DataFrame,
    meters: Mapping[str, MeterInfo],
    start: pd.Timestamp | str,
    end: pd.Timestamp | str,
    period: str,
    *,
    tz: str = "UTC",
    category: int | None = None,
) -> list[PueReport]:
    """One report per calendar period (hour, day, month, year) in ``[start, end)``."""
    edges = period_edges(start, end, period, tz)
    return [compute_pue(readings, meters, a, b, category=category) for a, b in itertools.pairwise(edges)]


@dataclass(frozen=True, slots=True)
class PueChange:
    """How two periods compare; ``divergent`` when total energy and PUE move in opposite directions."""

    delta_e_dc_kwh: float
    delta_pue: float
    divergent: bool
    note: str


def compare(before: PueReport, after: PueReport) -> PueChange:
    """Change in total energy and in PUE between two periods, both reported (they can disagree)."""
    if before.pue is None or after.pue is None:
        raise DataError("cannot compare periods without IT energy")
    d_e, d_p = after.e_dc_kwh - before.e_dc_kwh, after.pue - before.pue
    divergent = d_e * d_p < 0
    e_word = "fell" if d_e < 0 else "rose"
    p_word = "fell" if d_p < 0 else "rose"
    note = f"total energy {e_word} by {abs(d_e):.1f} kWh while PUE {p_word} by {abs(d_p):.4f}"
    if divergent:
        note += " (judge by total energy: PUE alone points the wrong way)"
    return PueChange(d_e, d_p, divergent, note)


def format_report(reports: Sequence[PueReport]) -> str:
    """A fixed-width table of reports, one row per period, with the category and coverage stated."""
    head = (
        f"{'period start':<26} {'E_DC kWh':>12} {'E_IT kWh':>12} {'PUE':>7} {'pPUE_c':>7} {'pPUE_p':>7} "
        f"{'CLF':>6} {'PLF':>6} {'cover%':>7} {'est kWh':>9}  category"
    )
    lines = ["PUE = E_DC / E_IT from energy counters (ISO/IEC 30134-2, EN 50600-4-2)"]
    if any(r.label != "PUE" for r in reports):
        lines.append(
            "periods shorter than a year give interim PUE (ISO/IEC 30134-2 reserves PUE for 12 months of data); "
            f"a category is used only when every meter it needs covers {100 * MIN_COVERAGE:.0f}% of the period"
        )
    lines.append(head)

    def f(x: float | None, w: int, p: int) -> str:
        return f"{'-':>{w}}" if x is None else f"{x:>{w}.{p}f}"

    for r in reports:
        lines.append(
            f"{r.start.isoformat():<26} {r.e_dc_kwh:>12.1f} {r.e_it_kwh:>12.1f} {f(r.pue, 7, 3)} "
            f"{f(r.ppue_cooling, 7, 3)} {f(r.ppue_power, 7, 3)} {f(r.clf, 6, 3)} {f(r.plf, 6, 3)} "
            f"{100 * r.coverage:>7.1f} {r.estimated_kwh:>9.1f}  {r.category_name}"
        )
        extras = [
            f"{k} {v:.4g}"
            for k, v in (("WUE L/kWh", r.wue), ("ERF", r.erf), ("REF", r.ref), ("CUE kgCO2/kWh", r.cue))
            if v is not None
        ]
        if extras:
            lines.append(" " * 27 + ", ".join(extras))
        lines.append(" " * 27 + r.label)
        if r.note:
            lines.append(" " * 27 + r.note)
    return "\n".join(lines)
