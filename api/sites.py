"""``GET /api/v1/sites``: each site's PUE, facility power, active alarms and headroom, over one site or a portfolio.

A site job answers for itself. A central server (``aidc serve``) answers for every site that forwards to its
central store, each read through a site-scoped, read-only view of that store (:class:`historian.victoria.SiteView`)
with the site's own file for its devices and roles, by the very functions the single-site routes use: the ISO/IEC
30134-2 energy report (:func:`analytics.limits.pue_rows`), the one power-metering rule (:func:`api.views.live_power`),
the headroom summary (:func:`api.views.headroom`) and the device alarm scan (:func:`api.views.alarms`).

PUE is energy-based (counters over the last ``PUE_WINDOW``) where the counters allow it, else the instantaneous
power-based figure; ``pue_method`` says which. A figure that cannot be had is null, with the reason in ``notes``.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from aidc.errors import AidcError
from analytics.limits import pue_rows
from api import views
from api.context import ApiContext
from api.errors import ApiError

log = logging.getLogger(__name__)

PUE_WINDOW_TEXT = "1h"
PUE_WINDOW = pd.Timedelta(PUE_WINDOW_TEXT)  # energy PUE of the last hour (the report trims it to what was metered)
HEADROOM_HOURS = 4.0  # the headroom route's default horizon
GPU_LIMIT_C = 87.0  # the headroom route's default GPU limit
ALARMS_LISTED = 20  # active alarms listed per site (all are counted)
ROWS_TTL_S = 10.0  # the portfolio's rows are reused this long


def energy_report(ctx: ApiContext, now: pd.Timestamp) -> dict[str, Any]:
    """The energy report of the last hour as ``aidc pue`` makes it (its ``pue`` is null where the counters do not
    allow one, and its ``note`` says why)."""
    rows = pue_rows(ctx.historian, ctx.site, now - PUE_WINDOW, now, None, None, lock=ctx.lock)
    report = rows[0] if rows else None
    return report if isinstance(report, dict) else {"pue": None, "note": "no energy report"}


def headroom_kw(summary: Mapping[str, Any]) -> tuple[float | None, str]:
    """Power headroom of the site: the racks' rated minus drawn power, or the UPS's headroom when that is less."""
    halls = summary.get("halls", {}).values()
    racks = [h.get("power_headroom_kw") for h in halls]
    if not racks or any(v is None for v in racks):
        return None, "racks' power incomplete"
    total, limit = float(sum(racks)), "racks"
    ups = [h.get("ups_headroom_kw") for h in halls if "ups_headroom_kw" in h]
    if ups and all(v is not None for v in ups) and (u := float(min(ups))) < total:
        total, limit = u, "ups"
    return total, limit


def blank_row(site: str) -> dict[str, Any]:
    """A site's row before any figure is known (every key the route answers)."""
    return {"site": site, "pue": None, "pue_method": None, "pue_category": None, "facility_kw": None,
            "alarms_active": None, "alarms": [], "headroom_kw": None, "headroom_limit": None, "notes": []}  # fmt: skip


def site_row(ctx: ApiContext) -> dict[str, Any]:
    """One site's figures; a part that cannot be computed is null and its reason is in ``notes``."""
    now = ctx.clock()
    row = blank_row(ctx.site.name)
    notes: list[str] = row["notes"]

    def part(name: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except (AidcError, ApiError) as exc:  # one part's missing data must not hide the others
            notes.append(f"{name}: {exc}")

    def pue() -> None:
        live = views.live_power(ctx)
        if live.get("facility_w") is not None:
            row["facility_kw"] = live["facility_w"] / 1000.0
        try:
            report = energy_report(ctx, now)
        except AidcError as exc:  # e.g. no counter reading in the window at all
            report = {"pue": None, "note": str(exc)}
        if report.get("pue") is not None:
            row.update(pue=report["pue"], pue_method="energy", pue_category=report.get("category"),
                       pue_from=report.get("start"), pue_to=report.get("end"))  # fmt: skip
        elif live.get("pue") is not None:
            row.update(pue=live["pue"], pue_method="power", pue_category=live.get("category"))
            notes.append(f"pue: instantaneous (power-based); no energy-based PUE: {report.get('note') or 'no data'}")
        else:
            notes.append(f"pue: no energy-based PUE ({report.get('note') or 'no data'}) and no power-based one "
                         f"({live.get('note') or 'no data'})")  # fmt: skip

    def alarms() -> None:
        active = views.alarms(ctx)["device"]
        row["alarms_active"] = len(active)
        row["alarms"] = active[:ALARMS_LISTED]

    def headroom() -> None:
        kw, limit = headroom_kw(views.headroom(ctx, HEADROOM_HOURS, GPU_LIMIT_C))
        row["headroom_kw"] = kw
        row["headroom_limit"] = limit if kw is not None else None
        if kw is None:
            notes.append(f"headroom: {limit}")

    part("pue", pue)
    part("alarms", alarms)
    part("headroom", headroom)
    return views.clean(row)


@dataclass
class Portfolio:
    """The sites a central server answers for: each site's API context on its view of the central store, and the
    site names the store holds (a site that forwards without a site file here is listed with that note)."""

    contexts: dict[str, ApiContext]
    stored_sites: Callable[[], list[str]] = field(default=lambda: [])
    ttl_s: float = ROWS_TTL_S
    _cache: tuple[float, list[dict[str, Any]]] | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def names(self) -> list[str]:
        """Every site: those with a site file here and those the store holds."""
        try:
            stored = self.stored_sites()
        except AidcError as exc:
            log.warning("portfolio: the central store does not list its sites (%s)", exc)
            stored = []
        return sorted(set(self.contexts) | set(stored))

    def rows(self) -> list[dict[str, Any]]:
        """One row per site, in name order; computed at most once per ``ttl_s`` (every site's figures are a few
        store queries per device with alarm points: the dashboard and API callers share them)."""
        with self._lock:  # one computation at a time: callers arriving meanwhile get its result
            if self._cache is not None and time.monotonic() - self._cache[0] < self.ttl_s:
                return copy.deepcopy(self._cache[1])
            out = self._compute()
            self._cache = (time.monotonic(), out)
            return copy.deepcopy(out)

    def _compute(self) -> list[dict[str, Any]]:
        out = []
        for name in self.names():
            ctx = self.contexts.get(name)
            if ctx is None:
                row = blank_row(name)
                row["notes"].append("no site file for this site on the central server: its devices and meters are "
                                    "unknown, so no figure can be computed")  # fmt: skip
                out.append(row)
                continue
            out.append(site_row(ctx))
        return out


def sites(ctx: ApiContext) -> dict[str, Any]:
    """The route's answer: the portfolio's rows on a central server, else this site's row alone."""
    portfolio = ctx.portfolio
    rows = portfolio.rows() if portfolio is not None else [site_row(ctx)]
    return {"sites": rows, "central": portfolio is not None, "pue_window": PUE_WINDOW_TEXT}


TREND_WINDOW = "5m"


def facility_trend(ctx: ApiContext, hours: float) -> pd.DataFrame:
    """Facility power (kW) of the last ``hours`` in 5-minute means, summed over the facility meters (columns ts,
    kw); a window where a meter has no value is left out rather than shown low."""
    from aidc.model import SeriesKey
    from analytics.energy.metering import PowerMeters
    from historian import SeriesSelector

    meters: PowerMeters | None = ctx.cache.get("power_meters")
    if meters is None:
        meters = ctx.cache["power_meters"] = PowerMeters.of(ctx.site)
    now = ctx.clock()
    parts = []
    for sid in meters.facility:
        key = SeriesKey.parse(sid)
        sel = SeriesSelector(key.measurement, key.tag_dict, key.field)
        with ctx.lock:
            frame = ctx.historian.query(sel, now - pd.Timedelta(hours=hours), now, TREND_WINDOW, "mean")
        frame = frame[frame["series"] == sid]
        parts.append(frame.set_index("ts")["value"] * meters.scale_w[sid] / 1000.0)
    if not parts:
        return pd.DataFrame({"ts": pd.Series([], dtype="datetime64[ns, UTC]"), "kw": pd.Series([], dtype=float)})
    kw = pd.concat(parts, axis=1).dropna().sum(axis=1)  # every facility meter present, or the window is left out
    return pd.DataFrame({"ts": kw.index, "kw": kw.to_numpy()})
