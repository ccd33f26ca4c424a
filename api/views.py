"""What each endpoint computes, from the historian through the analytics engines, as JSON-ready values."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd

from aidc.errors import AidcError, ConfigError, DataError
from aidc.model import SeriesKey
from aidc.roles import Role
from analytics import answers
from analytics.answers import jsonable as clean  # one JSON-safe conversion for the API and the CLI
from analytics.energy.metering import PowerMeters, live_pue
from analytics.forecast.service import ForecastService
from analytics.leasing.billing import month_bounds
from analytics.leasing.headroom import CduState, RackState, can_place, summary
from analytics.leasing.headroom_data import states
from analytics.limits import Budget, pue_rows
from api.context import ApiContext
from api.errors import ApiError
from historian import SeriesSelector

ALARM_ROLES = (Role.ALARM, Role.LEAK)
STATES_TTL_S = 60.0  # headroom inputs are refreshed at most once a minute


def pue(
    ctx: ApiContext,
    a: pd.Timestamp,
    b: pd.Timestamp,
    period: str | None,
    category: int | None,
    budget: Budget | None = None,
) -> list[Any]:
    """One PUE report per calendar period (or one for the whole range): the answer ``aidc pue`` prints, within the
    stated limits, stopped by ``budget`` between periods; the historian lock is held one period at a time."""
    return pue_rows(ctx.historian, ctx.site, a, b, period, category, budget, lock=ctx.lock)


def live_power(ctx: ApiContext) -> dict[str, Any]:
    """Instantaneous PUE and power by the one metering rule, from the live state (main job) or the historian's
    latest values (stand-alone API, judged fresh against the API's clock); no value, and the meters, when none is
    complete."""
    meters: PowerMeters | None = ctx.cache.get("power_meters")
    if meters is None:
        meters = ctx.cache["power_meters"] = PowerMeters.of(ctx.site)
    if ctx.live is not None:
        inst = live_pue(meters, ctx.live, now=ctx.clock())
    else:
        frames = []
        with ctx.lock:
            for meas, fld in sorted({(k.measurement, k.field) for k in map(SeriesKey.parse, meters.ids)}):
                frames.append(ctx.historian.latest(SeriesSelector(meas, {}, fld)))
        latest = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["series", "ts", "value"])
        inst = live_pue(meters, latest, now=ctx.clock())
    return clean({"pue": inst.value, "category": inst.category, "it_w": inst.it_w, "facility_w": inst.facility_w,
                  "missing": list(inst.missing), "note": inst.note, "label": inst.label})  # fmt: skip


def live(ctx: ApiContext, selector: str) -> list[Any]:
    """Latest samples matching a selector, from the live state when the API runs in the main job."""
    try:
        sel = SeriesSelector.parse(selector)
    except ConfigError as exc:
        raise ApiError(422, str(exc), "selector") from None
    except (IndexError, ValueError):  # the parser trips on some malformed text (e.g. ",,") instead of a ConfigError
        raise ApiError(422, f"selector {selector!r}: expected measurement,tag=value,...,field", "selector") from None
    if ctx.live is not None:
        frame = ctx.live.select()
        frame = frame[frame["series"].map(sel.matches)]
        rows = [
            {"series": s, "ts": t.isoformat(), "value": v, "quality": q}
            for s, t, v, q in zip(frame["series"], frame["ts"], frame["value"], frame["quality"], strict=True)
        ]
        return clean(rows)
    with ctx.lock:
        frame = ctx.historian.latest(sel)
    labels = ("good", "uncertain", "bad")
    cols = (frame["series"], frame["ts"], frame["value"], frame["quality"])
    rows = [{"series": s, "ts": t.isoformat(), "value": v, "quality": labels[min(int(q), 2)]}
            for s, t, v, q in zip(*cols, strict=True)]  # fmt: skip
    return clean(rows)


def forecast_service(ctx: ApiContext) -> ForecastService:
    """The live forecast service the endpoints read (503 when this process runs none); they never fit anything."""
    if ctx.forecasts is None:
        raise ApiError(503, "no forecast service in this process (the main job and `aidc api` run one)")
    return ctx.forecasts


def forecast(ctx: ApiContext, horizon: str) -> dict[str, Any]:
    """P10/P50/P90 of site IT power at the horizon, from the live forecast service's latest forecast."""
    service = forecast_service(ctx)
    st, offered = service.latest().load, service.load.horizons
    chosen = next((hz for hz in offered if pd.Timedelta(hz) == pd.Timedelta(horizon)), None)
    if chosen is None:
        raise ApiError(422, f"horizon {horizon!r}: one of {', '.join(offered)}", "horizon")
    if st.frame is None or st.origin is None:
        raise ApiError(503 if st.pending else 409, st.message)
    row = st.frame.loc[st.frame["horizon"] == chosen].iloc[0]
    return clean({
        "series": "site IT power", "unit": "kW", "origin": st.origin.isoformat(), "horizon": horizon,
        "ts": row["ts"].isoformat(), "p10": float(row["p10"]), "p50": float(row["p50"]), "p90": float(row["p90"]),
        "method": st.message, "trained": st.trained,
    })  # fmt: skip


def pue_forecast(ctx: ApiContext, hours: int) -> dict[str, Any]:
    """The live PUE / facility-power forecast's next ``hours`` rows, or why there is none yet."""
    st = forecast_service(ctx).latest().pue
    if st.frame is None:
        raise ApiError(503 if st.pending else 409, st.message)
    rows = st.frame.iloc[:hours].reset_index()
    rows.insert(1, "lead_h", np.arange(1, len(rows) + 1))
    rows["ts"] = rows["ts"].map(lambda t: t.isoformat())
    return clean({
        "origin": st.origin, "hours": len(rows), "method": st.message, "weather": st.weather,
        "trained": {"start": st.trained[0], "end": st.trained[1]} if st.trained else None,
        "units": {"pue": "1", "facility_power_kw": "kW", "it_power_kw": "kW", "gpu_util_pct": "%",
                  "drybulb_c": "°C", "wetbulb_c": "°C"},
        "rows": rows.to_dict(orient="records"),
    })  # fmt: skip


def _states(ctx: ApiContext, hours: float) -> tuple[dict[str, RackState], dict[str, CduState], float | None]:
    """Rack and CDU states, reused for ``STATES_TTL_S`` (a week of telemetry per request is costly on a big hall)."""
    key = f"states:{hours:g}"
    hit = ctx.cache.get(key)
    if hit is not None and time.monotonic() - hit[0] < STATES_TTL_S:
        return hit[1]
    with ctx.lock:
        value = states(ctx.historian, ctx.site, ctx.clock(), hours)
    ctx.cache[key] = (time.monotonic(), value)
    return value


def headroom(ctx: ApiContext, hours: float, gpu_limit_c: float) -> dict[str, Any]:
    """Headroom per rack, row, CDU and hall."""
    racks, cdus, ups = _states(ctx, hours)
    out = summary(list(racks.values()), list(cdus.values()), ups, gpu_limit_c)
    return clean({"hours": hours, **out})


def placement(ctx: ApiContext, names: list[str], kw: float, hours: float, gpu_limit_c: float) -> dict[str, Any]:
    """The placement answer."""
    unknown = [n for n in names if n not in {r.name for _, r in ctx.site.racks()}]
    if unknown:
        raise ApiError(422, f"racks: {unknown[0]!r} is not a rack of site {ctx.site.name}", "racks")
    racks, cdus, ups = _states(ctx, hours)
    try:
        p = can_place(racks, cdus, names, kw, hours, ups_rated_kw=ups, gpu_limit_c=gpu_limit_c)
    except DataError as exc:
        raise ApiError(422, str(exc), "racks") from None
    return clean({"racks": names, "kw": kw, "hours": hours, **p.to_dict()})


def tenants(ctx: ApiContext, month: str) -> dict[str, Any]:
    """The month's tenant report: the answer ``aidc tenants`` prints."""
    if not ctx.site.config.tenants:
        raise ApiError(404, f"site {ctx.site.name} has no [[tenants]]")
    try:
        month_bounds(month, ctx.site.config.site.timezone)
    except AidcError as exc:
        raise ApiError(422, str(exc).replace("--month", "month"), "month") from None
    with ctx.lock:
        return answers.tenants(ctx.historian, ctx.site, month)


def alarms(ctx: ApiContext) -> dict[str, Any]:
    """Active device alarms (non-zero alarm words, leak flags, alarm bits) and predictive alarms."""
    active = []
    for dev in ctx.site.devices:
        points = [p for p in dev.profile.points
                  if not p.array and (dev.role_of(p.name) in ALARM_ROLES or p.name.startswith("alarm_"))]  # fmt: skip
        if not points:
            continue
        ids = {SeriesKey.of(dev.profile.measurement, p.name, dev.tags).id: p.name for p in points}
        with ctx.lock:
            frame = ctx.historian.latest(SeriesSelector(dev.profile.measurement, {"device": dev.name}, None))
        for sid, ts, value in zip(frame["series"], frame["ts"], frame["value"], strict=True):
            if sid in ids and np.isfinite(value) and value != 0:
                active.append({"device": dev.name, "point": ids[sid], "value": float(value), "ts": ts.isoformat()})
    return clean({"device": active, "predictive": ctx.predictive()})
