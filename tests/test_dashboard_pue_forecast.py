"""The Overview's PUE and facility-power forecast panel: drawn from the live forecast service, in a real browser."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from aidc.clock import SteppedClock
from aidc.config import load_site
from aidc.live import LiveState
from aidc.sitegen import SiteTemplate, render_site
from analytics.alarms.engine import AlarmEngine
from analytics.forecast.live import PueForecastState
from dashboards.app import DashboardConfig, DashboardService
from dashboards.auth import Role, UserStore
from dashboards.data import DashboardData
from dashboards.forecast import service_for
from dashboards.pue_forecast import pue_forecast_figure
from historian import open_historian
from simulators.telemetry import ExplorationSchedule, generate
from tests.browser import PASSWORDS, browser, console_errors, free_port, sign_in, wait_for
from tests.debtools import require_tool

START = pd.Timestamp("2026-07-01T00:00Z")
DAYS = 8
SHOTS = Path(os.environ.get("AIDC_SCREENSHOTS", "var/screenshots"))


def test_figure_before_a_forecast_shows_the_reason() -> None:
    """Without a forecast the panel is an empty figure carrying the service's line (e.g. how much history there is)."""
    line = "PUE forecast: needs 7 days of history (complete plant telemetry), has 2.0"
    fig = pue_forecast_figure(PueForecastState(None, None, line))
    assert line in str(fig.layout.annotations[0].text)
    assert len(fig.data) == 0


def test_dashboard_weather_file_is_under_the_data_dir() -> None:
    """[dashboard] weather_file names the PUE forecast's Open-Meteo file, relative to the site's data directory."""
    import tomllib

    from aidc.config import site_from_dict

    site = site_from_dict(tomllib.loads(render_site(SiteTemplate(racks=1))))
    assert DashboardConfig.model_validate({}).weather_path(site) is None
    cfg = DashboardConfig.model_validate({"weather_file": "open-meteo.json"})
    assert cfg.weather_path(site) == site.data_dir / "open-meteo.json"


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DashboardService]:
    """A dashboard over eight simulated days in the historian, handed a forecast service whose PUE half is up to date."""
    require_tool("chromium")
    require_tool("chromedriver", "chromium-driver")
    tmp = tmp_path_factory.mktemp("dash_pue")
    path = tmp / "site.toml"
    path.write_text(render_site(SiteTemplate(racks=2, start="2026-07-01T00:00:00Z", data_dir="var")))
    site = load_site(path)
    tel = generate(site, duration_s=DAYS * 86400, schedule=ExplorationSchedule(seed=3))
    with open_historian(site.config.historian, site.data_dir) as hist:
        for batch in tel.batches():
            hist.write(batch)
        hist.flush()
        clock = SteppedClock((START + pd.Timedelta(days=DAYS)).value)
        data = DashboardData(site, LiveState(), hist, clock, AlarmEngine.from_site(site))
        config = DashboardConfig.from_site(site, port=free_port())
        users = UserStore(config.users_path(site))
        users.add("viewer", PASSWORDS["viewer"], Role.VIEWER)
        forecasts = service_for(data, config.weather_path(site))
        # The worker's PUE pass, done here so the test need not wait for it. The service is handed over, as the main
        # job does, so the dashboard never starts it: the IT-load half (not under test) would fit for a minute.
        forecasts.pue.update()
        service = DashboardService(data, users, config, forecasts=forecasts)
        service.start()
        try:
            yield service
        finally:
            service.stop()


@pytest.mark.needs_deb
def test_overview_shows_48h_pue_and_facility_power_bands(dashboard: DashboardService, tmp_path: Path) -> None:
    """A viewer sees the next 48 h of facility power and PUE (P10-P90 band, P50) after the measured hours."""
    st = dashboard.forecasts.latest().pue
    assert not dashboard.forecasts.running
    assert st.frame is not None
    with browser(tmp_path) as driver:
        sign_in(driver, dashboard.url, "viewer")
        console_errors(driver)
        driver.get(dashboard.url + "/")

        def traces() -> dict[str, Any] | None:
            got = driver.execute_script(
                "const g = document.querySelector('#ov-pue-forecast .js-plotly-plot');"
                "return g && g._fullData ? g._fullData.map(t => [t.name, t.y.length, Number(t.y[t.y.length - 1])]) : null;"
            )
            return {n: (k, last) for n, k, last in got} if got else None

        shown = wait_for(traces, 60, "the PUE forecast traces on the Overview")
        driver.execute_script("document.getElementById('ov-pue-forecast').scrollIntoView();")
        for folder in (tmp_path, SHOTS):
            folder.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(folder / "overview-pue-forecast.png"))
        for label, col in (("facility kW", "facility_power_kw"), ("PUE", "pue")):
            assert shown[f"{label} P50"][0] == 48
            assert shown[f"{label} P10-P90"][0] == 48
            assert shown[f"{label} measured"][0] > 24
            assert shown[f"{label} P50"][1] == pytest.approx(float(st.frame[f"{col}_p50"].iloc[-1]))
        legend = driver.find_element("css selector", "#ov-pue-forecast .legend").text
        assert "PUE P50" in legend
        assert console_errors(driver) == []
