"""The REST API: PUE/KPIs, live state, forecasts, headroom and placement, tenants, alarms, controller and audit.

Every endpoint under ``/api/v1`` needs a bearer token (:mod:`api.auth`); ``/health`` and ``/metrics`` (Prometheus
text) do not, like most exporters, and the server binds 127.0.0.1 unless told otherwise. The OpenAPI document is
at ``/openapi.json`` and browsable at ``/docs``, with Swagger UI served by the API itself (:mod:`api.docs`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import anyio
import anyio.to_thread
import pandas as pd
from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from aidc.errors import AidcError
from analytics.limits import PUE_TIME_BUDGET_S, check_pue, parse_time
from api import docs, errors, metrics, routes_cli, sites, views
from api.auth import Identity
from api.context import ApiContext, tail_jsonl
from api.controller import ModeChange, OverrideChange, change_mode, change_override, controller_state
from api.errors import ApiError
from api.guard import Guard
from api.health import readiness
from api.heavy import HeavyPool

PREFIX = "/api/v1"
LIGHT_WORKERS = 4  # threads for /health and /metrics alone
_bearer = HTTPBearer(auto_error=False, description="an API token (see `aidc api-token`)")


class PlacementQuery(BaseModel):
    """Can ``kw`` more kilowatts (spread evenly over ``racks``) run for ``hours``?"""

    racks: list[str] = Field(min_length=1)
    kw: float = Field(ge=0, le=100_000)
    hours: float = Field(gt=0, le=168)
    gpu_limit_c: float = Field(87.0, gt=20, lt=130)


def _time(text: str, field: str, now: pd.Timestamp) -> pd.Timestamp:
    try:
        return parse_time(text, field, int(now.value))
    except AidcError as exc:
        raise ApiError(422, str(exc), field) from None


def _identity(request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Identity:
    if creds is None:
        raise ApiError(401, "no bearer token: send Authorization: Bearer <token>", "Authorization")
    ctx: ApiContext = request.app.state.ctx
    ident = ctx.tokens.identify(creds.credentials)
    if ident is None:
        raise ApiError(401, "unknown or revoked token", "Authorization")
    return ident


def _operator(ident: Annotated[Identity, Depends(_identity)]) -> Identity:
    if not ident.can_write:
        raise ApiError(403, f"token {ident.name!r} is read-only: changing the controller needs an operator token")
    return ident


Reader = Annotated[Identity, Depends(_identity)]
Operator = Annotated[Identity, Depends(_operator)]


def create_app(ctx: ApiContext) -> FastAPI:
    """The FastAPI application over ``ctx``."""
    app = docs.offline_fastapi(
        title="aidc API",
        version="1",
        description="Energy, carbon, capacity and control state of a liquid-cooled AI data centre.",
        responses=errors.RESPONSES,
    )
    app.state.ctx = ctx
    errors.install(app)
    registry, api_metrics = metrics.build(ctx)
    # Credentials and a declared body size are checked from the headers, before anything reads the body.
    app.add_middleware(Guard, tokens=lambda: ctx.tokens, observe=api_metrics.observe)

    # /health and /metrics run on threads of their own: no other route's work can keep them waiting for a thread.
    light = anyio.CapacityLimiter(LIGHT_WORKERS)
    heavy = HeavyPool()
    app.state.heavy = heavy

    @app.get("/health", tags=["health"], responses={503: {"description": "the main job is still starting"}})
    async def health(response: Response) -> dict[str, Any]:
        """Readiness: 503 ``starting`` with progress 0..1 and what is pending until the job's collectors (every
        device connected or tried once), historian writer and supervisor are live, then 200 ``ok``."""
        return await anyio.to_thread.run_sync(readiness, ctx, response, limiter=light)

    @app.get("/metrics", tags=["health"], response_class=Response)
    async def prometheus() -> Response:
        """The facility (PUE, power, racks, CDUs, plant, alarms) and aidc's own health in Prometheus text format."""
        body, content_type = await anyio.to_thread.run_sync(metrics.render, registry, limiter=light)
        return Response(body, media_type=content_type)

    @app.get(
        f"{PREFIX}/pue",
        tags=["kpis"],
        responses={503: {"model": errors.ErrorResponse, "description": "busy, or stopped at its time limit"}},
    )
    async def pue(
        request: Request,
        _: Reader,
        start: Annotated[str, Query(alias="from", description="ISO time with zone, now, or -30d")],
        end: Annotated[str, Query(alias="to", description="ISO time with zone, now, or -1d")] = "now",
        period: Literal["hour", "day", "month", "year"] | None = None,
        category: Annotated[int | None, Query(ge=1, le=3)] = None,
    ) -> list[dict[str, Any]]:
        """ISO/IEC 30134-2 PUE and companion KPIs (pPUE, CLF, PLF, WUE, ERF, REF, CUE) from energy counters.

        Limits (422 beyond them): hourly rows over at most 31 days, daily rows over 366, one report (no period)
        over 3,660; monthly and yearly rows over any range. Each question may compute for 300 s and stops when
        its client disconnects; at most two compute at once and eight wait (503 with Retry-After beyond)."""
        now = ctx.clock()
        a, b = _time(start, "from", now), _time(end, "to", now)
        if b <= a:
            raise ApiError(422, f"to {end!r} is not after from {start!r}", "to")
        check_pue(a, b, period)  # refused before it waits for a worker
        return await heavy.run(
            request, lambda budget: views.pue(ctx, a, b, period, category, budget), PUE_TIME_BUDGET_S
        )

    @app.get(f"{PREFIX}/live", tags=["state"])
    def live(_: Reader, selector: str = "pdu,*,active_power_w") -> list[dict[str, Any]]:
        """Latest value of every series matching the selector (e.g. ``cdu,*,tcs_supply_temp_c``)."""
        return views.live(ctx, selector)

    @app.get(f"{PREFIX}/forecast", tags=["forecasts"])
    def forecast(
        _: Reader,
        horizon: Annotated[str, Query(pattern=r"^\d+(min|h)$", description="e.g. 1h, 30min, 24h")] = "1h",
    ) -> dict[str, Any]:
        """IT-load forecast of the site with P10/P50/P90 at the horizon, from the historian's PDU power."""
        return views.forecast(ctx, horizon)

    @app.get(f"{PREFIX}/forecast/pue", tags=["forecasts"])
    def forecast_pue(_: Reader, hours: Annotated[int, Query(ge=1, le=48)] = 48) -> dict[str, Any]:
        """Hourly PUE, facility and IT power forecast with P10/P50/P90 for the next ``hours``, refitted daily in the
        background (409 while history is short, 503 while the first fit runs)."""
        return views.pue_forecast(ctx, hours)

    @app.get(f"{PREFIX}/headroom", tags=["capacity"])
    def headroom(
        _: Reader,
        hours: Annotated[float, Query(gt=0, le=168)] = 4.0,
        gpu_limit_c: Annotated[float, Query(gt=20, lt=130)] = 87.0,
    ) -> dict[str, Any]:
        """Power and cooling headroom per rack, row, CDU and hall."""
        return views.headroom(ctx, hours, gpu_limit_c)

    @app.post(f"{PREFIX}/placement", tags=["capacity"])
    def placement(_: Reader, q: PlacementQuery) -> dict[str, Any]:
        """Can N kW more run on these racks for H hours? Yes/no, the binding constraint and every slack."""
        return views.placement(ctx, q.racks, q.kw, q.hours, q.gpu_limit_c)

    @app.get(f"{PREFIX}/tenants", tags=["tenants"])
    def tenants(
        _: Reader, month: Annotated[str, Query(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="YYYY-MM")]
    ) -> dict[str, Any]:
        """Per-tenant IT energy, allocated overhead, peak, location- and market-based carbon and CUE for a month."""
        return views.tenants(ctx, month)

    @app.get(f"{PREFIX}/alarms", tags=["alarms"])
    def alarms(_: Reader) -> dict[str, Any]:
        """Active device alarms (alarm words, leaks) and predictive fault alarms."""
        return views.alarms(ctx)

    @app.get(f"{PREFIX}/sites", tags=["kpis"])
    def site_list(_: Reader) -> dict[str, Any]:
        """Each site's ``pue`` (energy-based over the last hour where the counters allow, else power-based:
        ``pue_method``), ``facility_kw``, active device alarms (``alarms_active``, ``alarms``) and ``headroom_kw``
        (``headroom_limit``: racks or ups); every site of the central store on a central server (``aidc serve``),
        else this site alone. A figure that cannot be computed is null with its reason in ``notes``."""
        return sites.sites(ctx)

    @app.get(f"{PREFIX}/controller", tags=["controller"])
    def controller(_: Reader) -> dict[str, Any]:
        """The supervisor's mode, status and active overrides, or that none is running."""
        return controller_state(ctx)

    @app.put(f"{PREFIX}/controller/mode", tags=["controller"])
    def set_mode(who: Operator, body: ModeChange) -> dict[str, Any]:
        """Switch the controller to off, advisory or auto (operator tokens only; audited with the token's name)."""
        return change_mode(ctx, who, body)

    @app.put(f"{PREFIX}/controller/override", tags=["controller"])
    def set_override(who: Operator, body: OverrideChange) -> dict[str, Any]:
        """Hold a setpoint at a value for some minutes, or release it with value null (operator tokens; audited)."""
        return change_override(ctx, who, body)

    @app.get(f"{PREFIX}/audit", tags=["controller"])
    def audit(_: Reader, limit: Annotated[int, Query(ge=1, le=10_000)] = 100) -> dict[str, Any]:
        """The latest setpoint writes (the writer's audit) and API control actions."""
        return {
            "writes": tail_jsonl(ctx.audit_dir / "writes.jsonl", limit),
            "api": tail_jsonl(ctx.audit_dir / "api.jsonl", limit),
        }

    app.include_router(routes_cli.router(_identity, _operator, heavy))  # what the CLI asks beside a running job
    return app
