"""What each endpoint computes, from the historian through the analytics engines, as JSON-ready values."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from aidc.errors import AidcError, ConfigError, DataError
from aidc.model import SeriesKey
from aidc.roles import Role
from analytics import answers
from analytics.forecast.live import PueForecastService, plant_history
from analytics.forecast.load import LoadForecaster
from analytics.historian_adapter import it_load_series
from analytics.leasing.billing import month_bounds
from analytics.leasing.headroom import CduState, RackState, can_place, summary
from analytics.leasing.headroom_data import states
from api.context import ApiContext
from api.errors import ApiError
from historian import SeriesSelector

FORECAST_HISTORY = pd.Timedelta("14D")
FORECAST_MIN_HISTORY = pd.Timedelta("2D")
FORECAST_STEP = pd.Timedelta("5min")
ALARM_ROLES = (Role.ALARM, Role.LEAK)
STATES_TTL_S = 60.0  # headroom inputs are refreshed at most once a minute
_PUE_START = threading.Lock()


def clean(x: Any) -> Any:
    """JSON-safe: NaN and infinities become null, numpy scalars plain numbers, timestamps ISO text."""
    if isinstance(x, dict):
        return {str(k): clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [clean(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, pd.Timestamp):
        return x.isoformat()
    return x


def pue(ctx: ApiContext, a: pd.Timestamp, b: pd.Timestamp, period: str | None, category: int | None) -> list[Any]:
    """One PUE report per calendar period (or one for the whole range): the answer ``aidc pue`` prints."""
    with ctx.lock:
        return answers.pue(ctx.historian, ctx.site, a, b, period, category)


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
        rows = [{"series": s, "ts": t.isoformat(), "value": v, "quality": q}
                for s, t, v, q in zip(frame["series"], frame["ts"], frame["value"], frame["quality"], strict=True)]
        return clean(rows)
    with ctx.lock:
        frame = ctx.historian.latest(sel)
    labels = ("good", "uncertain", "bad")
    cols = (frame["series"], frame["ts"], frame["value"], frame["quality"])
    rows = [{"series": s, "ts": t.isoformat(), "value": v, "quality": labels[min(int(q), 2)]}
            for s, t, v, q in zip(*cols, strict=True)]  # fmt: skip
    return clean(rows)


def forecast(ctx: ApiContext, horizon: str) -> dict[str, Any]:
    """P10/P50/P90 of site IT power at the horizon; the model is refitted once a day on the last two weeks."""
    h = pd.Timedelta(horizon)
    if not FORECAST_STEP <= h <= pd.Timedelta("48h"):
        raise ApiError(422, f"horizon {horizon!r}: between 5min and 48h", "horizon")
    now = ctx.clock()
    with ctx.lock:
        series = it_load_series(ctx.historian, ctx.site, now - FORECAST_HISTORY, now, "5m").get("facility")
    if series is None or series.dropna().empty:
        raise ApiError(409, "no IT power in the historian to forecast from")
    y = series.asfreq("5min")
    span = y.dropna().index[-1] - y.dropna().index[0]
    if span < FORECAST_MIN_HISTORY:
        raise ApiError(409, f"{span} of IT power history; the forecaster needs at least {FORECAST_MIN_HISTORY}")
    key = f"forecast:{horizon}"
    model: LoadForecaster | None = ctx.cache.get(key)
    if model is None or model.due(y.index[-1]):
        with threadpool_limits(1):
            model = LoadForecaster.fit(y, [horizon], FORECAST_STEP, max_iter=60)
        ctx.cache[key] = model
    row = model.predict(y).iloc[0]
    return clean({
        "series": "site IT power (PDU output)", "unit": "kW", "origin": y.index[-1].isoformat(),
        "horizon": horizon, "ts": row["ts"].isoformat(), "p10": float(row["p10"]), "p50": float(row["p50"]),
        "p90": float(row["p90"]), "trained": model.metadata(),
    })  # fmt: skip


def pue_service(ctx: ApiContext, weather_file: Path | None = None) -> PueForecastService:
    """The context's PUE forecast service, started here on first use (it reads the historian under ``ctx.lock``)."""
    with _PUE_START:
        if ctx.pue_forecast is None:

            def read(a: pd.Timestamp, b: pd.Timestamp) -> pd.DataFrame:
                with ctx.lock:
                    return plant_history(ctx.historian, ctx.site, a, b)

            ctx.pue_forecast = PueForecastService(read, ctx.clock, weather_file=weather_file).start()
        return ctx.pue_forecast


def pue_forecast(ctx: ApiContext, hours: int) -> dict[str, Any]:
    """The background PUE / facility-power forecast's next ``hours`` rows, or why there is none yet."""
    st = pue_service(ctx).latest()
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
