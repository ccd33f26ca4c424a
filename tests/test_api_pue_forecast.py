"""GET /api/v1/forecast/pue over real HTTP: the live forecast service's rows, and honest answers before there is one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from aidc.config import load_site
from aidc.sitegen import SiteTemplate, render_site
from analytics.forecast.live import LivePueForecast, PueForecastState
from analytics.forecast.service import ForecastService
from api.app import create_app
from api.auth import TokenStore
from api.context import ApiContext
from api.server import ApiServer
from historian import open_historian
from simulators.telemetry import ExplorationSchedule, generate
from tests.sim_helpers import free_port_block
from tests.test_api import call

READ = "read-token-0123456789abcdef"
START = pd.Timestamp("2026-07-01T00:00Z")
DAYS = 8


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, ApiContext]]:
    """Eight simulated days of a 2-rack site in the historian, the live PUE forecast fitted on them, the API serving it."""
    tmp = tmp_path_factory.mktemp("api_pue")
    path = tmp / "site.toml"
    path.write_text(render_site(SiteTemplate(racks=2, start="2026-07-01T00:00:00Z", data_dir="var")))
    site = load_site(path)
    tel = generate(site, duration_s=DAYS * 86400, schedule=ExplorationSchedule(seed=3))
    now = START + pd.Timedelta(days=DAYS)
    with open_historian(site.config.historian, site.data_dir) as hist:
        for batch in tel.batches():
            hist.write(batch)
        hist.flush()
        tokens = TokenStore.from_env({"AIDC_API_TOKENS": f"sched:read:{READ}"})
        ctx = ApiContext(site=site, historian=hist, tokens=tokens, clock=lambda: now)
        svc = ForecastService.for_historian(hist, site, ctx.clock, lock=ctx.lock)
        svc.pue.update()  # the worker's PUE pass, run here so the test need not wait on it (IT load: not under test)
        ctx.forecasts = svc
        with ApiServer(create_app(ctx), port=free_port_block(1)) as server:
            yield server.url, ctx


def test_pue_forecast_rows_come_from_the_background_forecast(served: tuple[str, ApiContext]) -> None:
    """24 hourly rows after the origin with ordered P10/P50/P90 of PUE, facility and IT power, as the service has it."""
    url, ctx = served
    status, body = call(url, "GET", "/api/v1/forecast/pue?hours=24")
    assert status == 200, body
    assert body["hours"] == 24
    assert len(body["rows"]) == 24
    assert ctx.forecasts is not None
    st = ctx.forecasts.latest().pue
    assert st.frame is not None
    assert st.origin is not None
    assert body["origin"] == st.origin.isoformat()
    assert pd.Timestamp(body["rows"][0]["ts"]) == st.origin + pd.Timedelta("1h")
    assert [r["lead_h"] for r in body["rows"]] == list(range(1, 25))
    for r in body["rows"]:
        for t in ("pue", "facility_power_kw", "it_power_kw"):
            assert r[f"{t}_p10"] <= r[f"{t}_p50"] <= r[f"{t}_p90"], (t, r)
        assert 1.03 < r["pue_p50"] < 1.6
    assert body["rows"][5]["facility_power_kw_p50"] == pytest.approx(float(st.frame["facility_power_kw_p50"].iloc[5]))
    assert body["units"]["facility_power_kw"] == "kW"
    assert "recent daily cycle" in body["weather"]
    status, spec = call(url, "GET", "/openapi.json", token=None)
    assert "/api/v1/forecast/pue" in spec["paths"]


def test_pue_forecast_hours_out_of_range_names_the_field(served: tuple[str, ApiContext]) -> None:
    """hours=72 is a 422 naming the hours field; no token is a 401."""
    status, body = call(served[0], "GET", "/api/v1/forecast/pue?hours=72")
    assert status == 422
    assert body["error"]["field"] == "hours"
    status, _ = call(served[0], "GET", "/api/v1/forecast/pue", token=None)
    assert status == 401


@pytest.mark.parametrize(
    ("state", "code"),
    [
        (PueForecastState(None, None, "PUE forecast: needs 7 days of history (plant telemetry), has 2.5"), 409),
        (PueForecastState(None, None, "PUE forecast: first fit under way", pending=True), 503),
    ],
)
def test_no_forecast_yet_says_why(served: tuple[str, ApiContext], state: PueForecastState, code: int) -> None:
    """Before the first forecast: 409 while history is short, 503 while the first fit runs, with the service's line."""
    url, ctx = served
    assert ctx.forecasts is not None
    saved = ctx.forecasts.pue.latest()
    ctx.forecasts.pue._latest = state
    try:
        status, body = call(url, "GET", "/api/v1/forecast/pue")
    finally:
        ctx.forecasts.pue._latest = saved
    assert status == code
    assert body["error"]["message"] == state.message


def test_service_on_short_history_reports_collecting(tmp_path: Path) -> None:
    """A forecast over two days of plant telemetry says it needs seven days and has two; no fit is tried."""
    idx = pd.date_range(START, periods=12 * 24 * 2 + 1, freq="5min")
    frame = pd.DataFrame({"facility_power_kw": 500.0, "it_power_kw": 450.0}, index=idx)
    svc = LivePueForecast(lambda a, b: frame, lambda: idx[-1])
    st = svc.update()
    assert st.frame is None
    assert not st.pending
    assert svc.fits == 0
    assert st.message == "PUE forecast: needs 7 days of history (complete plant telemetry), has 2.0"
