"""The one live forecast service: its refit policy, its worker, and the dashboard and the API reading one state."""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import subprocess
import sys
import threading
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import flask
import numpy as np
import pandas as pd
import pytest

from aidc.clock import SteppedClock
from aidc.config import load_site, site_from_dict
from aidc.live import LiveState
from aidc.model import Batch
from aidc.sitegen import SiteTemplate, render_site
from analytics.alarms.engine import AlarmEngine
from analytics.forecast.live import LivePueForecast
from analytics.forecast.live_load import LiveLoadForecast
from analytics.forecast.load import LoadForecaster
from analytics.forecast.policy import RefitPolicy
from analytics.forecast.pue import FacilityForecaster
from analytics.forecast.service import ForecastService
from api.app import create_app
from api.auth import TokenStore
from api.context import ApiContext
from api.errors import ApiError
from api.server import ApiServer
from api.views import forecast
from dashboards.app import DashboardConfig, DashboardService
from dashboards.auth import Role, UserStore
from dashboards.data import DashboardData
from historian import open_historian
from tests.sim_helpers import free_port_block
from tests.test_api import call

READ = "read-token-0123456789abcdef"
PASSWORD = "correct-horse-battery"
NOW = pd.Timestamp("2026-07-10T00:00Z")
HORIZONS = ("1h", "4h")  # two horizons keep each fit to seconds


def _data(tmp_path: Path) -> DashboardData:
    """A 2-rack site with an empty historian, on a clock stopped at NOW."""
    site = site_from_dict(tomllib.loads(render_site(SiteTemplate(racks=2, data_dir=str(tmp_path)))))
    hist = open_historian(site.config.historian, tmp_path)
    return DashboardData(site, LiveState(), hist, SteppedClock(NOW.value), AlarmEngine.from_site(site))


def _store_it_power(data: DashboardData, start: pd.Timestamp, end: pd.Timestamp) -> None:
    """Five-minute PDU output power with a daily cycle from ``start`` up to ``end``, written to the historian."""
    pdu_ids = [s for s in data.power_meters.ids if s.startswith("pdu,") and s.endswith(" active_power_w")]
    assert pdu_ids
    ts = np.arange(start.value, end.value, 300 * 10**9, dtype=np.int64)
    day = np.sin(2 * np.pi * (ts / 1e9 % 86400) / 86400)
    n = len(ts) * len(pdu_ids)
    batch = Batch(np.array([s for s in pdu_ids for _ in ts], dtype=object), np.tile(ts, len(pdu_ids)),
                  np.tile(100_000 + 20_000 * day, len(pdu_ids)), np.zeros(n, dtype=np.uint8), [])  # fmt: skip
    data.historian.write(batch)
    data.historian.flush()


def _service(data: DashboardData, **kwargs: Any) -> ForecastService:
    return ForecastService.for_historian(data.historian, data.site, data.now, horizons=HORIZONS, **kwargs)


@pytest.mark.parametrize(
    ("trained_end", "last", "due"),
    [
        (None, "2026-07-01T00:00Z", True),  # no model yet: fit
        ("2026-07-01T00:00Z", "2026-07-01T23:55Z", False),  # under a day of new telemetry: keep the model
        ("2026-07-01T00:00Z", "2026-07-02T00:00Z", True),  # a day of new telemetry: refit
    ],
)
def test_refit_policy_counts_new_telemetry(trained_end: str | None, last: str, due: bool) -> None:
    """The one rule: fit without a model, refit once a day of telemetry newer than the training window has arrived."""
    end = None if trained_end is None else pd.Timestamp(trained_end)
    assert RefitPolicy().due(end, pd.Timestamp(last)) is due


def test_refit_policy_refuses_a_non_positive_span() -> None:
    """A refit interval of zero is refused with a line naming the fields."""
    with pytest.raises(ValueError, match="history, refit and check_every_s must be positive"):
        RefitPolicy(refit=pd.Timedelta(0))


def test_short_history_says_how_many_days_are_needed_and_fits_nothing(tmp_path: Path) -> None:
    """Without IT power, then with five hours, the IT-load forecast says it needs 3 days of history; nothing fits."""
    data = _data(tmp_path)
    svc = _service(data)
    st = svc.update()
    assert st.load.frame is None
    assert st.load.message == (
        "IT-load forecast: needs 3 days of history (5-minute IT power), has 0.0: no stored IT power readings yet"
    )
    _store_it_power(data, NOW - pd.Timedelta("5h"), NOW)
    st = svc.update()
    assert st.load.message == "IT-load forecast: needs 3 days of history (5-minute IT power), has 0.2"
    assert not st.load.pending
    assert st.pue.frame is None  # (PDU power alone: the PUE forecast says which plant series it lacks)
    assert svc.fits == 0


def test_load_forecast_refits_on_new_telemetry_and_forecasts_each_new_value(tmp_path: Path) -> None:
    """One fit on 80 h; an hour later a new forecast from the same model; a day of new telemetry later, a refit."""
    data = _data(tmp_path)
    _store_it_power(data, NOW - pd.Timedelta("80h"), NOW)
    svc = _service(data)
    first = svc.update().load
    assert first.frame is not None, first.message
    assert list(first.frame["horizon"]) == list(HORIZONS)
    assert (first.frame["p10"] <= first.frame["p50"]).all()
    assert (first.frame["p50"] <= first.frame["p90"]).all()
    assert first.origin == NOW - pd.Timedelta("5min")
    assert (first.frame["ts"] > first.origin).all()
    assert "trained on 3.3 days" in first.message
    assert svc.load.fits == 1
    assert svc.update().load.frame is first.frame  # nothing new: the same forecast stands, no refit
    clock = data.clock
    assert isinstance(clock, SteppedClock)
    _store_it_power(data, NOW, NOW + pd.Timedelta("1h"))
    clock.advance(3600)
    later = svc.update().load
    assert later.origin == first.origin + pd.Timedelta("1h")
    assert svc.load.fits == 1  # a new forecast from the same model
    clock.advance(3 * 3600)  # the clock moves, the telemetry does not
    assert "STALE: IT power ends" in svc.update().load.message
    assert svc.load.fits == 1
    _store_it_power(data, NOW + pd.Timedelta("1h"), NOW + pd.Timedelta("24h"))
    clock.advance(20 * 3600)
    assert svc.update().load.origin == NOW + pd.Timedelta("24h") - pd.Timedelta("5min")
    assert svc.load.fits == 2  # a day of new telemetry since the first fit's window ended


def test_worker_thread_keeps_the_state_fresh_and_stops(tmp_path: Path) -> None:
    """Started, the worker replaces the 'waiting' state without anyone asking; stopped, its thread ends."""
    data = _data(tmp_path)
    svc = _service(data, policy=RefitPolicy(check_every_s=0.05)).start()
    try:
        assert svc.running
        deadline = time.monotonic() + 30
        while svc.latest().load.pending or svc.latest().pue.pending:
            assert time.monotonic() < deadline, svc.latest()
            time.sleep(0.02)
        assert "needs 3 days of history" in svc.latest().load.message
    finally:
        svc.stop()
    assert not svc.running


def test_api_without_a_forecast_service_says_so(tmp_path: Path) -> None:
    """A context with no forecast service answers 503 with one line, and never computes a forecast itself."""
    data = _data(tmp_path)
    _store_it_power(data, NOW - pd.Timedelta("80h"), NOW)  # enough history: the old endpoint fitted on it
    ctx = ApiContext(site=data.site, historian=data.historian, tokens=TokenStore.from_env({}), clock=data.now)
    with pytest.raises(ApiError, match="no forecast service in this process") as err:
        forecast(ctx, "1h")
    assert err.value.status == 503


Shared = tuple[ForecastService, str, flask.Flask, list[str]]


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shared]:
    """One service fitted on 80 h, handed to both the API (served over HTTP) and the dashboard; later fits counted."""
    tmp = tmp_path_factory.mktemp("shared")
    data = _data(tmp)
    _store_it_power(data, NOW - pd.Timedelta("80h"), NOW)
    svc = _service(data)
    svc.update()
    users = UserStore(tmp / "users.json")
    users.add("viewer", PASSWORD, Role.VIEWER)
    dashboard = DashboardService(data, users, DashboardConfig(), forecasts=svc)
    tokens = TokenStore.from_env({"AIDC_API_TOKENS": f"sched:read:{READ}"})
    ctx = ApiContext(site=data.site, historian=data.historian, tokens=tokens, clock=data.now, forecasts=svc)
    fits: list[str] = []  # the thread of every fit from here on (none is expected)
    with pytest.MonkeyPatch.context() as mp, ApiServer(create_app(ctx), port=free_port_block(1)) as server:
        for cls in (LoadForecaster, FacilityForecaster):
            mp.setattr(cls, "fit", _counting(cls.fit, fits))
        yield svc, server.url, dashboard.app.server, fits


def _counting(fit: Any, calls: list[str]) -> Any:
    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(threading.current_thread().name)
        return fit(*args, **kwargs)

    return counted


def _panel(server: flask.Flask, output: str) -> dict[str, Any]:
    """The Overview callback's figure for ``output``, as a signed-in viewer's browser would ask for it."""
    client = server.test_client()
    page = client.get("/login").get_data(as_text=True)
    m = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert m
    signed = client.post("/login", data={"username": "viewer", "password": PASSWORD, "csrf_token": m.group(1)})
    assert signed.status_code == 302
    csrf = client.get_cookie("_csrf_token")
    assert csrf is not None
    body = {"output": f"{output}.figure", "outputs": {"id": output, "property": "figure"},
            "inputs": [{"id": "ov-slow", "property": "n_intervals", "value": 1}],
            "changedPropIds": ["ov-slow.n_intervals"]}  # fmt: skip
    resp = client.post("/_dash-update-component", json=body, headers={"X-CSRFToken": csrf.value})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    figure: dict[str, Any] = json.loads(resp.get_data(as_text=True))["response"][output]["figure"]
    return figure


def _p50(figure: dict[str, Any]) -> list[float]:
    """The P50 trace's values (plotly sends numeric arrays as base64 ``{"dtype", "bdata"}``, lists otherwise)."""
    y = next(t for t in figure["data"] if t["name"] == "P50")["y"]
    if isinstance(y, dict):
        return [float(v) for v in np.frombuffer(base64.b64decode(y["bdata"]), dtype=y["dtype"])]
    return [float(v) for v in y]


def test_api_and_dashboard_show_the_same_forecast_and_never_fit(shared: Shared) -> None:
    """/api/v1/forecast and the Overview panel give the service's P50 at every horizon; no request or callback fits."""
    svc, url, dash_server, fits = shared
    st = svc.latest().load
    assert st.frame is not None, st.message
    api = []
    for hz in HORIZONS:
        status, body = call(url, "GET", f"/api/v1/forecast?horizon={hz}")
        assert status == 200, body
        assert body["origin"] == st.origin.isoformat()  # type: ignore[union-attr]
        assert body["p10"] <= body["p50"] <= body["p90"]
        api.append(body["p50"])
    assert api == pytest.approx(list(st.frame["p50"]))
    assert _p50(_panel(dash_server, "ov-forecast")) == pytest.approx(api)
    # Both read the one state object: a new state (as the worker would publish) shows up in both at once.
    moved = replace(st, frame=st.frame.assign(p10=[10.0, 20.0], p50=[11.0, 21.0], p90=[12.0, 22.0]))
    svc.load._latest = moved
    assert call(url, "GET", "/api/v1/forecast?horizon=4h")[1]["p50"] == 21.0
    assert _p50(_panel(dash_server, "ov-forecast")) == [11.0, 21.0]
    # The PUE halves agree too: both carry the service's line on why there is no PUE forecast (no plant data).
    status, body = call(url, "GET", "/api/v1/forecast/pue")
    assert status == 409
    assert body["error"]["message"] == svc.latest().pue.message
    assert svc.latest().pue.message in json.dumps(_panel(dash_server, "ov-pue-forecast"))
    assert fits == []


def test_api_names_the_horizons_it_offers(shared: Shared) -> None:
    """A horizon the service does not forecast is a 422 naming the field and the horizons there are; 60min is 1h."""
    url = shared[1]
    status, body = call(url, "GET", "/api/v1/forecast?horizon=3h")
    assert status == 422
    assert body["error"]["field"] == "horizon"
    assert "one of 1h, 4h" in body["error"]["message"]
    status, body = call(url, "GET", "/api/v1/forecast?horizon=60min")
    assert status == 200, body
    assert body["p50"] == pytest.approx(float(shared[0].latest().load.frame["p50"].iloc[0]))  # type: ignore[index]
    assert shared[3] == []


def test_aidc_api_runs_its_own_forecast_service(tmp_path: Path) -> None:
    """Stand-alone `aidc api` builds and starts the service: /forecast soon answers its 'needs 3 days' line."""
    site = tmp_path / "site.toml"
    site.write_text(render_site(SiteTemplate(racks=1, data_dir="var")), encoding="utf-8")
    port = free_port_block(1)
    env = {**os.environ, "AIDC_API_TOKENS": f"sched:read:{READ}"}
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "api", "--config", str(site), "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                status, body = call(f"http://127.0.0.1:{port}", "GET", "/api/v1/forecast?horizon=1h")
            except (urllib.error.URLError, ConnectionError):
                status, body = 0, None
            if status == 409 or proc.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert status == 409, (status, body, err)
    assert "IT-load forecast: needs 3 days of history" in body["error"]["message"]


def test_a_failing_half_says_why_and_the_other_half_still_updates() -> None:
    """A fault reading IT power becomes the IT-load line (not a stuck 'waiting'); the PUE half is checked regardless."""
    idx = pd.date_range(NOW - pd.Timedelta("2D"), NOW, freq="5min")
    plant = pd.DataFrame({"facility_power_kw": 500.0, "it_power_kw": 450.0}, index=idx)

    def broken(a: pd.Timestamp, b: pd.Timestamp) -> pd.Series:
        raise RuntimeError("historian connection lost")

    svc = ForecastService(LiveLoadForecast(broken, lambda: NOW), LivePueForecast(lambda a, b: plant, lambda: NOW))
    st = svc.update()
    assert st.load.message == (
        "IT-load forecast unavailable: internal error (RuntimeError: historian connection lost); see the log"
    )
    assert not st.load.pending
    assert st.pue.message == "PUE forecast: needs 7 days of history (complete plant telemetry), has 2.0"


def test_one_refit_policy_for_both_halves() -> None:
    """A service whose two forecasts were given different refit policies is refused."""
    hourly = RefitPolicy(refit=pd.Timedelta("1h"))
    with pytest.raises(ValueError, match="different refit policies"):
        ForecastService(LiveLoadForecast(lambda a, b: None, lambda: NOW, policy=hourly),
                        LivePueForecast(lambda a, b: pd.DataFrame(), lambda: NOW))  # fmt: skip


def test_the_job_runs_one_service_and_hands_it_to_the_dashboard(tmp_path: Path) -> None:
    """`aidc run` wiring: one service on the job's clock, started and stopped with the job; the dashboard draws it."""
    from app.commands.run import start_parts
    from app.job import MainJob

    path = tmp_path / "site.toml"
    path.write_text(render_site(SiteTemplate(racks=1, data_dir="var")), encoding="utf-8")
    job = MainJob.build(load_site(path), clock=SteppedClock(NOW.value))
    args = argparse.Namespace(no_dashboard=False, port=free_port_block(1), no_control=True, no_api=True,
                              api_port=None)  # fmt: skip
    dashboard, alarms = start_parts(job, args, demo=False)
    try:
        assert dashboard is not None
        svc = dashboard.forecasts
        assert isinstance(svc, ForecastService)
        assert not svc.running  # the job starts it with its services, once the collectors run
        for hook in job.on_start:
            asyncio.run(hook())  # type: ignore[arg-type]
        assert svc.running
        assert svc.load.clock() == NOW  # the facility's clock, not the wall clock
        for hook in job.on_stop:
            asyncio.run(hook())  # type: ignore[arg-type]
        assert not svc.running
    finally:
        if dashboard is not None:
            dashboard.stop()
        alarms.close()
        job.historian.close()


def test_first_fit_reads_a_bounded_window_then_the_policy_applies_again() -> None:
    """ForecastService.first_fit reads at most the given window of history for both forecasts; the next update reads
    the policy's full window again."""
    now = pd.Timestamp("2026-12-07T09:00Z")
    asked: list[tuple[str, pd.Timedelta]] = []

    def read_load(a: pd.Timestamp, b: pd.Timestamp) -> pd.Series | None:
        asked.append(("load", b - a))
        return None

    def read_plant(a: pd.Timestamp, b: pd.Timestamp) -> pd.DataFrame:
        asked.append(("pue", b - a))
        return pd.DataFrame()

    policy = RefitPolicy()
    service = ForecastService(LiveLoadForecast(read_load, lambda: now, policy=policy),
                              LivePueForecast(read_plant, lambda: now, policy=policy))  # fmt: skip
    service.first_fit(pd.Timedelta("14D"))
    assert sorted(asked) == [("load", pd.Timedelta("14D")), ("pue", pd.Timedelta("14D"))]  # side by side
    assert service.load.policy == service.pue.policy == policy
    asked.clear()
    later = now + pd.Timedelta("1h")
    service.load.clock = service.pue.clock = lambda: later
    service.update()
    assert asked == [("load", policy.history), ("pue", policy.history)]
