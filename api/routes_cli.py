"""The routes the command line needs beside a running job: series reads, the facility forecast, fault scans, reports.

Each route calls the function of :mod:`analytics.answers` (or its bounded form in :mod:`analytics.limits`) that the
command runs on a store it opened itself, on the job's one historian handle (under the context's lock), so
``aidc query``, ``forecast``, ``faults`` and ``report`` answer alike with and without a job. Errors of those
functions (AidcError) become 400 with their one-line message (:mod:`api.errors`), a stated limit 422, which the
command prints as it would have locally. Every route but the latest values runs in the heavy pool
(:mod:`api.heavy`), never on the threads the other routes use.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, Field

from aidc.errors import AidcError
from analytics import answers, limits
from analytics.limits import Budget, parse_time
from api.context import ApiContext
from api.errors import ApiError
from api.heavy import HeavyPool
from historian.base import Agg


class WeatherFile(BaseModel):
    """An Open-Meteo hourly forecast file as the caller read it (JSON or CSV text)."""

    name: str = Field(min_length=1, max_length=500)
    text: str = Field(max_length=20_000_000)


class ForecastQuery(BaseModel):
    """Fit on ``days`` of telemetry up to ``to`` and forecast ``hours`` ahead."""

    to: str
    days: float = Field(28.0, ge=answers.FORECAST_MIN_DAYS, le=366)
    hours: int = Field(48, ge=1, le=answers.FORECAST_MAX_HOURS)
    weather: WeatherFile | None = None


def _ctx(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.ctx
    return ctx


def _time(text: str, name: str, ctx: ApiContext) -> pd.Timestamp:
    try:
        return parse_time(text, name, int(ctx.clock().value))
    except AidcError as exc:
        raise ApiError(422, str(exc), name) from None


def router(reader: Callable[..., Any], operator: Callable[..., Any], heavy: HeavyPool) -> APIRouter:
    """The routes, guarded by the app's token checks (``reader`` for reads, ``operator`` for writing reports), the
    long ones run by ``heavy``."""
    r = APIRouter(prefix="/api/v1", dependencies=[Depends(reader)])
    writes = [Depends(operator)]

    @r.get("/series/latest", tags=["state"])
    def series_latest(request: Request, selector: str) -> list[Any]:
        """Latest stored sample of each series matching the selector (``aidc query latest``), from the historian."""
        ctx = _ctx(request)
        with ctx.lock:
            return answers.series_latest(ctx.historian, selector)

    @r.get("/series", tags=["state"])
    async def series_range(
        request: Request,
        selector: str,
        start: Annotated[str, Query(alias="from", description="ISO time with zone, now, or -1h")],
        end: Annotated[str, Query(alias="to")] = "now",
        window: Annotated[str | None, Query(description="e.g. 1m, 15m, 1h")] = None,
        agg: Agg | None = None,
    ) -> list[Any]:
        """Samples or per-window aggregates in ``[from, to)`` (``aidc query range``), at most MAX_ROWS rows (a raw
        range is counted first and refused with 422 when it holds more)."""
        ctx = _ctx(request)
        a, b = _time(start, "from", ctx), _time(end, "to", ctx)

        def work(_: Budget) -> list[Any]:
            with ctx.lock:
                return limits.series_range(ctx.historian, selector, a, b, window, agg)

        return await heavy.run(request, work)

    @r.post("/forecast/facility", tags=["forecasts"])
    async def facility_forecast(request: Request, q: ForecastQuery) -> dict[str, Any]:
        """``aidc forecast``: fit the workload and plant models on the history now and forecast (takes a while)."""
        ctx = _ctx(request)
        end = _time(q.to, "to", ctx)

        def work(_: Budget) -> dict[str, Any]:
            with ctx.lock:  # only the read: fitting must not hold up the other endpoints
                data = answers.forecast_history(ctx.historian, ctx.site, end, q.days)
            if q.weather is None:
                return answers.facility_forecast(data, q.hours, None)
            with tempfile.TemporaryDirectory(prefix="aidc-weather-") as tmp:
                # read_open_meteo reads a file; the caller's file name is kept so any message names it.
                path = Path(tmp) / Path(q.weather.name).name
                path.write_text(q.weather.text, encoding="utf-8")
                return answers.facility_forecast(data, q.hours, path)

        return await heavy.run(request, work)

    @r.get("/faults/scan", tags=["alarms"])
    async def faults_scan(
        request: Request,
        start: Annotated[str, Query(alias="from")],
        end: Annotated[str, Query(alias="to")] = "now",
        healthy_from: str | None = None,
        healthy_to: str | None = None,
    ) -> dict[str, Any]:
        """``aidc faults``: fit on a healthy window (two days or more; default: the baseline the job learns), scan
        another; the predictive alarms and how the baseline was learnt."""
        ctx = _ctx(request)
        if (healthy_from is None) != (healthy_to is None):
            raise ApiError(422, "healthy_from and healthy_to go together (or give neither to learn the baseline)")
        h = None
        if healthy_from is not None and healthy_to is not None:
            h = (_time(healthy_from, "healthy_from", ctx), _time(healthy_to, "healthy_to", ctx))
        s = (_time(start, "from", ctx), _time(end, "to", ctx))

        def work(_: Budget) -> dict[str, Any]:
            with ctx.lock:
                return answers.faults(ctx.historian, ctx.site, h, s)

        return await heavy.run(request, work)

    @r.post("/reports/month/{month}", tags=["reports"], dependencies=writes)
    async def month_report(
        request: Request, month: Annotated[str, PathParam(pattern=r"^\d{4}-\d{2}$")], pdf: bool = True
    ) -> dict[str, Any]:
        """Write the monthly PUE report of a finished month under ``<data_dir>/reports``; the paths written."""
        ctx = _ctx(request)

        def work(_: Budget) -> dict[str, Any]:
            with ctx.lock:
                return answers.month_report(ctx.historian, ctx.site, month, ctx.clock(), None, pdf)

        return await heavy.run(request, work)

    @r.post("/reports/eed/{year}", tags=["reports"], dependencies=writes)
    async def eed_export(request: Request, year: Annotated[int, PathParam(ge=2000, le=2200)]) -> dict[str, Any]:
        """Write the annual EU EED export under ``<data_dir>/reports``; obligation, missing items and paths."""
        ctx = _ctx(request)

        def work(_: Budget) -> dict[str, Any]:
            with ctx.lock:
                return answers.eed_export(ctx.historian, ctx.site, year, ctx.clock(), None)

        return await heavy.run(request, work)

    return r
