"""Thin glue between the historian and the analytics engines: find series by role, pull frames, nothing else.

The engines take plain pandas frames so they are testable without a database; this module is the only place that
knows how to get those frames from a :class:`historian.Historian` for a :class:`aidc.config.Site`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from aidc.config import Site
from aidc.model import SeriesKey
from aidc.roles import Role
from analytics.energy import kpi
from analytics.energy.counter_read import read_counter_frame
from analytics.energy.metering import POWER_ROLES as POWER_ROLES  # re-exported for the stages that read by role
from analytics.energy.metering import it_power_windows
from analytics.energy.metering import site_meters as site_meters
from analytics.energy.pue import ENERGY_ROLES, MeterInfo, PueReport, compute_pue
from historian import Historian, SeriesSelector


def pue_from_historian(
    historian: Historian,
    site: Site,
    start: pd.Timestamp,
    end: pd.Timestamp,
    *,
    category: int | None = None,
    margin: pd.Timedelta = pd.Timedelta("2h"),  # noqa: B008 - immutable
) -> PueReport:
    """ISO/IEC 30134-2 PUE of ``[start, end)`` from the site's counters; ``margin`` brackets the period edges."""
    meters = site_meters(site, (*ENERGY_ROLES, Role.CARBON_INTENSITY))
    # raw rows, and the rollup tiers where they aged out (the same reader as the monthly report's)
    readings = read_counter_frame(historian, meters, start - margin, end + margin)
    return compute_pue(readings, meters, start, end, category=category)


def wide_frame(
    historian: Historian, site: Site, roles: Iterable[Role], start: pd.Timestamp, end: pd.Timestamp, window: str
) -> tuple[pd.DataFrame, dict[str, Role]]:
    """Window means of every series (array points included) with a role in ``roles``, one column per series."""
    wanted = set(roles)
    selectors: dict[tuple[str, str], Role] = {}
    role_of: dict[str, Role] = {}
    for dev in site.devices:
        for p in dev.profile.points:
            role = dev.role_of(p.name)
            if role in wanted and role is not None:
                selectors[(dev.profile.measurement, p.name)] = role
    frames = []
    for (meas, fld), role in sorted(selectors.items()):
        df = historian.query(SeriesSelector(meas, {"site": site.name}, fld), start, end, window=window, agg="mean")
        frames.append(df)
        for sid in df["series"].unique():
            role_of[str(sid)] = role
    if not frames:
        return pd.DataFrame(), role_of
    long = pd.concat(frames, ignore_index=True)
    wide = pivot_means(long)
    # Roles of array series (tag gpu=<i>) are those of their point; device overrides apply per device.
    return wide.sort_index(), {s: role_of[s] for s in wide.columns if s in role_of}


def pivot_means(long: pd.DataFrame) -> pd.DataFrame:
    """``long.pivot_table(index="ts", columns="series", values="value", aggfunc="mean")`` (the same frame), placed
    with array indexing when every (ts, series) pair is unique, as window means are: pandas' group-by and unstack
    took minutes on the million rows of a month of GPU series."""
    # The rows without a value are left out by their codes, not by a boolean index of the frame: that copied every
    # series name of the string column (most of a fit's first read, a month of GPU series).
    wide = _placed(long, long["value"].notna().to_numpy())
    if wide is None:  # repeated pairs (or nothing): pandas averages them
        return long.pivot_table(index="ts", columns="series", values="value", aggfunc="mean")
    return wide


def pivot_rows(long: pd.DataFrame) -> pd.DataFrame:
    """``long.pivot(index="ts", columns="series", values="value")`` (the same frame, NaN rows and columns kept),
    placed with array indexing; repeated (ts, series) pairs raise as pandas' pivot does."""
    wide = _placed(long)
    return long.pivot(index="ts", columns="series", values="value") if wide is None else wide


def _placed(rows: pd.DataFrame, keep: np.ndarray | None = None) -> pd.DataFrame | None:
    """The wide frame of unique (ts, series) rows (only the ``keep`` ones where given), index and columns sorted;
    None when a pair repeats or none."""
    t_codes, t_uniq = pd.factorize(rows["ts"], sort=True)
    s_codes, s_uniq = pd.factorize(rows["series"], sort=True)
    values = rows["value"].to_numpy(dtype=np.float64, na_value=np.nan)
    if (t_codes < 0).any() or (s_codes < 0).any():  # a missing time or name: pandas' own pivot says what it does
        return None
    if keep is not None and not keep.all():
        t_codes, t_uniq = _used(t_codes[keep], t_uniq)
        s_codes, s_uniq = _used(s_codes[keep], s_uniq)
        values = values[keep]
    flat = t_codes.astype(np.int64) * len(s_uniq) + s_codes
    seen = np.zeros(len(t_uniq) * len(s_uniq), dtype=bool)
    seen[flat] = True
    if int(seen.sum()) != len(flat) or not len(flat):
        return None
    grid = np.full(len(seen), np.nan)
    grid[flat] = values
    return pd.DataFrame(grid.reshape(len(t_uniq), len(s_uniq)), index=pd.Index(t_uniq, name="ts"),
                        columns=pd.Index(s_uniq, name="series"))  # fmt: skip


def _used(codes: np.ndarray, uniques: Any) -> tuple[np.ndarray, Any]:
    """Factorize codes and uniques narrowed to the uniques ``codes`` still uses (their sorted order kept)."""
    used = np.flatnonzero(np.bincount(codes, minlength=len(uniques)))
    if len(used) == len(uniques):
        return codes, uniques
    remap = np.zeros(len(uniques), dtype=np.intp)
    remap[used] = np.arange(len(used))
    return remap[codes], uniques[used]


def it_load(
    historian: Historian, site: Site, start: pd.Timestamp, end: pd.Timestamp, window: str = "5m", by: str | None = None
) -> dict[str, tuple[pd.Series, pd.Series]]:
    """IT power (kW) and the metering category used, per ``window``, for the facility or per value of tag ``by``.

    Each window uses the highest IT metering category all of whose meters (of the facility or the group) have a
    value in it (:func:`analytics.energy.metering.it_power_windows`); a window with none is NaN, never a part sum.
    """
    meters = site_meters(site, kpi.IT_POWER_ROLES.values())
    if not meters:
        return {}
    wide, _ = wide_frame(historian, site, {m.role for m in meters.values()}, start, end, window)
    groups: dict[str, dict[str, MeterInfo]] = {}
    for sid, info in meters.items():
        key = "facility" if by is None else SeriesKey.parse(sid).tag_dict.get(by)
        if key is not None:  # a meter without the tag (a site-wide UPS) belongs to no group
            groups.setdefault(key, {})[sid] = info
    out: dict[str, tuple[pd.Series, pd.Series]] = {}
    for key, group in groups.items():
        kw, cat = it_power_windows(wide, group)
        if kw.notna().any():
            out[key] = (kw, cat)
    return out


def it_load_series(
    historian: Historian, site: Site, start: pd.Timestamp, end: pd.Timestamp, window: str = "5m", by: str | None = None
) -> dict[str, pd.Series]:
    """IT power (kW) per ``window`` for the facility (``by=None``) or per value of tag ``by`` (e.g. ``hall``)."""
    return {k: kw for k, (kw, _) in it_load(historian, site, start, end, window, by).items()}
