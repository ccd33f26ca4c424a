"""Energies per role over a period and per hour, from counter readings, for sites with thousands of meters.

The rules are those of :mod:`analytics.counters` (the same public functions do the work), and the PUE figures are
those of :func:`analytics.pue.compute_pue`; what differs is the bookkeeping: readings are split by series once
(``compute_pue`` filters the whole frame per series, which is quadratic in the number of rack meters), and the
hourly split comes from :func:`analytics.counters.interval_energy`, so the hours of a month add up exactly to the
month. ``tests/test_report_energy.py`` checks that the figures equal ``compute_pue``'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from aidc.errors import DataError
from aidc.model import Quality
from aidc.roles import Role
from analytics import kpi
from analytics.counters import DEFAULT_MAX_GAP, CounterEnergy, counter_energy, interval_energy
from analytics.pue import MeterInfo, PueReport


def split_readings(readings: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Readings per series id (one pass over the frame)."""
    if readings.empty:
        return {}
    return {str(k): g for k, g in readings.groupby("series", sort=True, observed=True)}


@dataclass(frozen=True, slots=True)
class MeterStats:
    """One meter's record over the period: energy, coverage, gaps, wraps, resets and sample qualities."""

    series: str
    role: Role
    energy: CounterEnergy
    samples: int
    bad_samples: int
    uncertain_samples: int

    @property
    def problems(self) -> list[str]:
        """Short phrases for the data-quality table (empty when the meter is clean)."""
        out = []
        if self.energy.coverage < 0.9999:
            out.append(f"coverage {100 * self.energy.coverage:.2f} %")
        if self.energy.resets:
            out.append(f"{self.energy.resets} reset(s)")
        if self.bad_samples:
            out.append(f"{self.bad_samples} bad sample(s)")
        if self.uncertain_samples:
            out.append(f"{self.uncertain_samples} uncertain sample(s)")
        return out


def meter_stats(
    groups: Mapping[str, pd.DataFrame],
    meters: Mapping[str, MeterInfo],
    start: pd.Timestamp,
    end: pd.Timestamp,
    roles: tuple[Role, ...],
    max_gap: pd.Timedelta = DEFAULT_MAX_GAP,
) -> list[MeterStats]:
    """Per-meter energy and quality over ``[start, end)`` for every series whose role is in ``roles``."""
    out = []
    empty = pd.DataFrame({"ts": pd.to_datetime([], utc=True), "value": [], "quality": []})
    for sid in sorted(meters):
        info = meters[sid]
        if info.role not in roles:
            continue
        rows = groups.get(sid, empty)
        e = counter_energy(rows, start, end, modulus=info.modulus, max_gap=max_gap, scale=info.scale)
        inside = rows[(rows["ts"] >= start) & (rows["ts"] < end)] if len(rows) else rows
        q = inside["quality"].astype(int) if "quality" in inside.columns and len(inside) else pd.Series([], dtype=int)
        out.append(
            MeterStats(
                sid,
                info.role,
                e,
                len(inside),
                int((q >= int(Quality.BAD)).sum()),
                int((q == int(Quality.UNCERTAIN)).sum()),
            )
        )
    return out


def role_totals(stats: list[MeterStats]) -> dict[Role, CounterEnergy]:
    """Sum of the meters of each role (coverage is the worst meter's); a role none of whose meters has a reading
    in the period is left out (the site does not meter it), while one silent meter among many counts, at zero
    coverage, as ``compute_pue`` counts it."""
    reporting = {s.role for s in stats if s.samples > 0 or s.energy.energy != 0.0}
    out: dict[Role, CounterEnergy] = {}
    for s in stats:
        if s.role in reporting:
            out[s.role] = s.energy if s.role not in out else out[s.role] + s.energy
    return out


def choose_category(energies: Mapping[Role, CounterEnergy], category: int | None = None) -> int:
    """The most advanced ISO/IEC 30134-2 category metered (or the one asked for, if it is metered)."""
    available = [c for c, role in kpi.IT_ENERGY_ROLES.items() if role in energies]
    if category is None:
        if not available:
            raise DataError("no IT energy counter (roles it_energy_ups_output/pdu_output/equipment_input)")
        return max(available)
    if category not in available:
        raise DataError(f"category {category}: no series with role {kpi.IT_ENERGY_ROLES.get(category, '?')}")
    return category


def pue_report(
    energies: Mapping[Role, CounterEnergy],
    start: pd.Timestamp,
    end: pd.Timestamp,
    *,
    category: int | None = None,
    co2_kg: float | None = None,
) -> PueReport:
    """The :class:`PueReport` ``compute_pue`` would give for these role energies (same KPI functions)."""
    dc = energies.get(Role.FACILITY_ENERGY)
    if dc is None:
        raise DataError("no series with role facility_energy: PUE needs the utility meter's energy counter")
    cat = choose_category(energies, category)
    it = energies[kpi.IT_ENERGY_ROLES[cat]]

    def kwh(role: Role) -> float | None:
        en = energies.get(role)
        return None if en is None else en.energy

    e_cool, e_other = kwh(Role.COOLING_ENERGY), kwh(Role.OTHER_ENERGY)
    losses = kpi.power_losses(dc.energy, it.energy, e_cool, e_other)
    ups_in, ups_out = kwh(Role.UPS_INPUT_ENERGY), kwh(Role.IT_ENERGY_UPS_OUTPUT)
    return PueReport(
        start=start,
        end=end,
        category=cat,
        e_dc_kwh=dc.energy,
        e_it_kwh=it.energy,
        pue=kpi.pue(dc.energy, it.energy),
        coverage=min(dc.coverage, it.coverage),
        estimated_kwh=dc.estimated + it.estimated,
        energies=dict(energies),
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
    )


def hourly_energy(
    groups: Mapping[str, pd.DataFrame],
    meters: Mapping[str, MeterInfo],
    edges: pd.DatetimeIndex,
    roles: tuple[Role, ...],
) -> dict[Role, npt.NDArray[np.float64]]:
    """Energy per interval between ``edges`` summed per role (the hours of a month add up to the month)."""
    out: dict[Role, npt.NDArray[np.float64]] = {}
    for sid, info in sorted(meters.items()):
        if info.role not in roles or sid not in groups:
            continue
        e = interval_energy(groups[sid], edges, modulus=info.modulus, scale=info.scale)
        out[info.role] = e if info.role not in out else out[info.role] + e
    return out


def uncovered_mask(edges: pd.DatetimeIndex, gaps: list[tuple[pd.Timestamp, pd.Timestamp]]) -> npt.NDArray[np.bool_]:
    """True for each interval between ``edges`` that a gap overlaps (its energy is interpolated, not metered)."""
    lo = edges[:-1].as_unit("ns").asi8
    hi = edges[1:].as_unit("ns").asi8
    mask = np.zeros(len(lo), dtype=bool)
    for a, b in gaps:
        mask |= (lo < pd.Timestamp(b).value) & (hi > pd.Timestamp(a).value)
    return mask
