"""The one rule for the IT metering point (ISO/IEC 30134-2 categories), used by every PUE figure aidc shows.

IT energy or power is metered at UPS output (category 1, basic), PDU output (2, intermediate) or IT equipment input
(3, advanced); higher is more accurate. **The highest category whose every meter is complete wins**, and a lower
complete category is used before no figure at all. Summing the meters of a category with one of them silent is never
done: one unreachable PDU of two halves E_IT and doubles PUE (a 2-rack site showed 2.208 where the truth was 1.1).

- Energy periods (``aidc pue``, the monthly report, the dashboard's interim PUE, the API):
  :func:`choose_energy_category`, complete = every meter's readings cover :data:`MIN_COVERAGE` of the period.
- Live power (the dashboard's Overview, the API, ``/metrics``): :func:`live_pue`, complete = every meter has a
  good value no older than :data:`FRESH_POLLS` poll intervals; with no complete category there is no PUE value,
  only the list of missing meters.
- Windowed power (trends, forecasts, the plant model): :func:`it_power_windows`, the live rule per window.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from aidc.config import Site
from aidc.errors import DataError
from aidc.live import LiveState
from aidc.model import Quality, SeriesKey
from aidc.roles import Role
from analytics.energy import kpi

# A meter counts towards a PUE only when readings cover at least this share of the period (gaps no longer than
# max_gap). A silent meter is not 0 kWh: summing it as 0 understates E_IT and inflates PUE (one silent rack meter
# of two gives 2.5 where the truth is 1.25). Below the threshold the category is not used; the next complete one
# is, or there is no PUE and the meters are named.
MIN_COVERAGE = 0.95
# A live value older than this many poll intervals of its device is not fresh: one more than the collectors' stale
# watchdog (3), so in the main job the watchdog's bad mark decides first; values read back from a historian (the
# stand-alone API) have no such mark and are judged by their age alone.
FRESH_POLLS = 4
POWER_ROLES: tuple[Role, ...] = (Role.FACILITY_POWER, *kpi.IT_POWER_ROLES.values())
INSTANT_LABEL = "instantaneous PUE (power-based, for live display; not ISO/IEC 30134-2 PUE)"
_NAMED = 5  # meters named in a note before "and N more" (a 1,000-rack hall has 1,000 PDU meters)


@dataclass(frozen=True, slots=True)
class MeterInfo:
    """What a series is: its role, the factor to kWh (L, kg/kWh, kW) and the counter's wrap modulus (raw units)."""

    role: Role
    scale: float = 1.0
    modulus: float | None = None


def site_meters(site: Site, roles: Iterable[Role]) -> dict[str, MeterInfo]:
    """Series id -> :class:`MeterInfo` for every scalar point of the site whose role is in ``roles``."""
    wanted = set(roles)
    out: dict[str, MeterInfo] = {}
    for dev in site.devices:
        for p in dev.profile.points:
            role = dev.role_of(p.name)
            if role is None or role not in wanted or p.array:
                continue
            sid = SeriesKey.of(dev.profile.measurement, p.name, dev.tags).id
            if role is Role.CARBON_INTENSITY:
                scale = kpi.carbon_scale(p.name, p.unit)
            elif role in POWER_ROLES:
                scale = kpi.power_scale(p.name, p.unit)
            else:
                scale = kpi.energy_scale(p.name, p.unit)
            out[sid] = MeterInfo(role, scale, p.modulus)
    return out


def _names(ids: Iterable[str]) -> str:
    """``a, b, c and 4 more``: a note stays one readable line on a 1,000-rack site."""
    items = list(ids)
    head = ", ".join(items[:_NAMED])
    return head if len(items) <= _NAMED else f"{head} and {len(items) - _NAMED} more"


def _device(sid: str) -> str:
    """The device tag of a series id (the name an operator knows), else the id."""
    return SeriesKey.parse(sid).tag_dict.get("device", sid)


# ---------------------------------------------------------------------------------------------- energy periods


@dataclass(frozen=True, slots=True)
class CategoryChoice:
    """Which category a period's PUE uses, with each metered category's coverage and the meters that fell short."""

    category: int | None  # None: no complete category, so no PUE
    coverage: dict[int, float]  # per metered category: its worst meter's coverage (0..1)
    missing: tuple[str, ...]  # ``series (80% covered)`` of every short meter of a category passed over
    note: str  # why a category was passed over ("" when the highest metered one is used)


def choose_energy_category(
    coverage: Mapping[str, float],
    meters: Mapping[str, MeterInfo],
    *,
    category: int | None = None,
    min_coverage: float = MIN_COVERAGE,
) -> CategoryChoice:
    """The highest category whose every meter covers ``min_coverage`` of the period (or the one asked for, if so).

    ``coverage`` is each meter's covered share of the period; a meter of ``meters`` without an entry has none.
    A category is metered when the site has a meter of its role; asking for one it has not is a DataError.
    """
    by_cat = {cat: sorted(s for s, m in meters.items() if m.role is role) for cat, role in kpi.IT_ENERGY_ROLES.items()}
    metered = sorted((c for c, ids in by_cat.items() if ids), reverse=True)
    if not metered:
        raise DataError("no IT energy counter (roles it_energy_ups_output/pdu_output/equipment_input)")
    if category is not None and category not in metered:
        raise DataError(f"category {category}: no series with role {kpi.IT_ENERGY_ROLES.get(category, '?')}")
    cover = {c: min(coverage.get(s, 0.0) for s in by_cat[c]) for c in metered}
    missing: list[str] = []
    notes: list[str] = []
    for cat in metered if category is None else [category]:
        short = [f"{s} ({100 * coverage.get(s, 0.0):.0f}% covered)" for s in by_cat[cat]
                 if coverage.get(s, 0.0) < min_coverage]  # fmt: skip
        if not short:
            return CategoryChoice(cat, cover, tuple(missing), "; ".join(notes))
        missing += short
        notes.append(f"category {cat} not used: {_names(short)} below {100 * min_coverage:.0f}% coverage")
    return CategoryChoice(None, cover, tuple(missing), "; ".join(notes))


# ---------------------------------------------------------------------------------------------- live power


@dataclass(frozen=True, slots=True)
class PowerMeters:
    """The site's facility and IT power meters by category, with each one's scale to W and freshness limit."""

    facility: tuple[str, ...]
    it: dict[int, tuple[str, ...]]  # metered categories only, highest first
    scale_w: dict[str, float]
    max_age_ns: dict[str, int]

    @classmethod
    def of(cls, site: Site) -> PowerMeters:
        """The power meters of a site (build once: a 1,000-rack site has thousands of points to scan)."""
        poll = {
            SeriesKey.of(d.profile.measurement, p.name, d.tags).id: d.config.poll_interval_s
            for d in site.devices
            for p in d.profile.points
            if not p.array and d.role_of(p.name) in POWER_ROLES
        }
        return cls.from_meters(site_meters(site, POWER_ROLES), poll)

    @classmethod
    def from_meters(cls, meters: Mapping[str, MeterInfo], poll_s: Mapping[str, float] | None = None) -> PowerMeters:
        """From a series -> MeterInfo map (scales to kW) and each series' poll interval (default 10 s)."""
        it = {c: tuple(sorted(s for s, m in meters.items() if m.role is r)) for c, r in kpi.IT_POWER_ROLES.items()}
        return cls(
            facility=tuple(sorted(s for s, m in meters.items() if m.role is Role.FACILITY_POWER)),
            it={c: ids for c, ids in sorted(it.items(), reverse=True) if ids},
            scale_w={s: m.scale * 1000.0 for s, m in meters.items() if m.role in POWER_ROLES},
            max_age_ns={s: int(FRESH_POLLS * (poll_s or {}).get(s, 10.0) * 1e9) for s in meters},
        )

    @property
    def ids(self) -> list[str]:
        """Every series the live rule reads."""
        return [*self.facility, *(s for ids in self.it.values() for s in ids)]


@dataclass(frozen=True, slots=True)
class LivePue:
    """Power-based PUE from the latest values, labelled so nobody mistakes it for the standard's figure."""

    value: float | None  # None unless the facility meters and one whole IT category are present and fresh
    category: int | None
    it_w: float | None
    facility_w: float | None
    missing: tuple[str, ...]  # series without a fresh good value that kept a category (or the PUE) out
    note: str = ""
    label: str = INSTANT_LABEL


def _latest(meters: PowerMeters, latest: pd.DataFrame | LiveState) -> dict[str, tuple[int, float]]:
    """(ts ns, value) of each meter's latest good sample; bad, uncertain, NaN and unseen values are left out."""
    ids = meters.ids
    if isinstance(latest, LiveState):
        ts, v, q = latest.read(latest.indices(ids))
        frame = pd.DataFrame({"series": ids, "ts": ts, "value": v, "quality": q})
    else:
        frame = latest[latest["series"].isin(ids)]
    quality = frame["quality"] if "quality" in frame.columns else pd.Series(0, index=frame.index)
    if quality.dtype == object or isinstance(quality.dtype, pd.StringDtype):
        quality = quality.map({g.label: int(g) for g in Quality}).fillna(int(Quality.BAD))
    # Only good values: an uncertain one is estimated or out of range, and the headline figure must not be wrong.
    ok = frame["value"].notna() & (quality.astype(int) == int(Quality.GOOD))
    rows = frame[ok]
    when = rows["ts"]
    if when.dtype.kind in "iu":  # LiveState.read gives ns integers, frames of samples give datetimes
        ts_ns = when.to_numpy(np.int64)
    else:
        ts_ns = pd.DatetimeIndex(pd.to_datetime(when, utc=True)).as_unit("ns").asi8
    values = zip(ts_ns.tolist(), rows["value"].astype(float).tolist(), strict=True)
    return dict(zip(rows["series"].astype(str), values, strict=True))


def live_pue(site: Site | PowerMeters, latest: pd.DataFrame | LiveState, *, now: pd.Timestamp | None = None) -> LivePue:
    """Instantaneous PUE: facility power / IT power of the highest category whose every meter is present and fresh.

    ``latest`` is a LiveState or a frame of latest samples (series, ts, value, quality as number or label). Fresh
    means no older than :data:`FRESH_POLLS` poll intervals before ``now``, or before the newest sample when ``now``
    is not given (simulated clocks). A lower complete category is used before none; with none there is no value.
    """
    meters = site if isinstance(site, PowerMeters) else PowerMeters.of(site)
    got = _latest(meters, latest)
    ref = now.value if now is not None else max((t for t, _ in got.values()), default=0)
    fresh = {s: v for s, (t, v) in got.items() if ref - t <= meters.max_age_ns.get(s, 0)}

    def total(ids: tuple[str, ...]) -> float:
        return sum(fresh[s] * meters.scale_w[s] for s in ids)

    gone_fac = [s for s in meters.facility if s not in fresh]
    facility_w = total(meters.facility) if meters.facility and not gone_fac else None
    missing: list[str] = list(gone_fac)
    notes = [f"facility meter without a fresh good value: {_names(map(_device, gone_fac))}"] if gone_fac else []
    if not meters.facility:
        notes.append("no facility power meter (role facility_power)")
    if not meters.it:
        notes.append("no IT power meter (roles it_power_ups_output/pdu_output/equipment_input)")
    for cat, ids in meters.it.items():
        gone = [s for s in ids if s not in fresh]
        if not gone:
            it_w = total(ids)
            value = None if facility_w is None else kpi.pue(facility_w, it_w)
            return LivePue(value, cat, it_w, facility_w, tuple(missing), "; ".join(notes))
        missing += gone
        notes.append(f"category {cat} not used: no fresh good value from {_names(map(_device, gone))}")
    return LivePue(None, None, None, facility_w, tuple(missing), "; ".join(notes))


# ---------------------------------------------------------------------------------------------- windowed power


def it_power_windows(wide: pd.DataFrame, meters: Mapping[str, MeterInfo]) -> tuple[pd.Series, pd.Series]:
    """IT power (kW) per row of a wide frame (one column per series) by the live rule, and the category used.

    Each row takes the highest category all of whose meters in ``meters`` have a value in that row (a meter with
    no column has none); rows with no complete category are NaN (category 0), never a partial sum.
    """
    kw = pd.Series(np.nan, index=wide.index, dtype=float)
    cat_of = pd.Series(0, index=wide.index, dtype=int)
    for cat, role in sorted(kpi.IT_POWER_ROLES.items()):  # lowest first: higher complete categories overwrite
        ids = sorted(s for s, m in meters.items() if m.role is role)
        if not ids or not set(ids) <= set(wide.columns):
            continue
        block = wide[ids].to_numpy(dtype=np.float64)
        complete = ~np.isnan(block).any(axis=1)
        total = block @ np.array([meters[s].scale for s in ids])
        kw = kw.where(~complete, total)
        cat_of = cat_of.where(~complete, cat)
    return kw, cat_of
