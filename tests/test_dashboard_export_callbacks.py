"""The "Download CSV" and custom date-range callbacks through the real dashboard app (signed in, CSRF checked)."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dash
import flask
import pandas as pd
import pytest

from aidc.clock import SteppedClock
from aidc.config import load_site
from aidc.live import LiveState
from aidc.sitegen import SiteTemplate, render_site
from analytics.alarms.engine import AlarmEngine
from dashboards.app import DashboardConfig, create_app
from dashboards.auth import Role, UserStore
from dashboards.data import DashboardData
from dashboards.forecast import service_for
from historian import open_historian

PW = "viewer-pass-5678"
NOW = pd.Timestamp("2026-12-07 15:00", tz="UTC")


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dash.Dash]:
    """The dashboard app on a one-rack site in America/New_York (the template's zone), a viewer account."""
    tmp: Path = tmp_path_factory.mktemp("dash_export")
    path = tmp / "site.toml"
    path.write_text(render_site(SiteTemplate(racks=1, data_dir="var")))
    site = load_site(path)
    with open_historian(site.config.historian, site.data_dir) as hist:
        data = DashboardData(site, LiveState(), hist, SteppedClock(NOW.value), AlarmEngine.from_site(site))
        config = DashboardConfig.from_site(site)
        users = UserStore(config.users_path(site))
        users.add("vera", PW, Role.VIEWER)
        yield create_app(data, users, config, service_for(data, None))


@pytest.fixture
def viewer(app: dash.Dash) -> flask.testing.FlaskClient:
    """A test browser signed in as a viewer."""
    c = app.server.test_client()
    m = re.search(r'name="csrf_token" value="([^"]+)"', c.get("/login").get_data(as_text=True))
    assert m
    assert c.post("/login", data={"username": "vera", "password": PW, "csrf_token": m.group(1)}).status_code == 302
    return c


def _post(c: flask.testing.FlaskClient, body: object) -> Any:
    token = c.get_cookie("_csrf_token")
    return c.post(
        "/_dash-update-component",
        data=json.dumps(body),
        headers={"Content-Type": "application/json", "X-CSRFToken": token.value if token else ""},
    )


FIGURE = {
    "data": [
        {
            "type": "scatter",
            "name": "facility",
            "x": ["2026-12-07T09:00:00", "2026-12-07T09:01:00"],
            "y": [1089.5, 1090.0],
            "customdata": ["2026-12-07 14:00:00", "2026-12-07 14:01:00"],
            "meta": {"unit": "kW", "time": True},
        }
    ],
    "layout": {},
}


def test_download_csv_button_returns_the_charts_points(viewer: flask.testing.FlaskClient) -> None:
    """Clicking "Download CSV" under the power trend answers a CSV of its points with UTC and site times."""
    body = {
        "output": "ov-power-download.data",
        "outputs": {"id": "ov-power-download", "property": "data"},
        "inputs": [{"id": "ov-power-csv", "property": "n_clicks", "value": 1}],
        "state": [{"id": "ov-power", "property": "figure", "value": FIGURE}],
        "changedPropIds": ["ov-power-csv.n_clicks"],
    }
    resp = _post(viewer, body)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    out = resp.get_json()["response"]["ov-power-download"]["data"]
    assert out["filename"] == "ov-power.csv"
    rows = list(csv.reader(io.StringIO(out["content"])))
    assert rows[0] == ["time_utc", "time_site (America/New_York)", "series", "value", "unit"]
    assert rows[1] == ["2026-12-07 14:00:00", "2026-12-07 09:00:00", "facility", "1089.5", "kW"]


def test_custom_range_callback_draws_the_chosen_site_days(viewer: flask.testing.FlaskClient) -> None:
    """The cooling trend with "custom" and two dates draws exactly those site days and says so in the caption."""
    body = {
        "output": "..co-trend.figure...co-decisions.figure...co-caption.children..",
        "outputs": [
            {"id": "co-trend", "property": "figure"},
            {"id": "co-decisions", "property": "figure"},
            {"id": "co-caption", "property": "children"},
        ],
        "inputs": [
            {"id": "co-range", "property": "value", "value": "custom"},
            {"id": "co-dates", "property": "data", "value": {"start": "2026-12-01", "end": "2026-12-02"}},
            {"id": "co-slow", "property": "n_intervals", "value": 1},
        ],
        "changedPropIds": ["co-dates.data"],
    }
    resp = _post(viewer, body)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    caption = resp.get_json()["response"]["co-caption"]["children"]
    assert caption.startswith("01 Dec 00:00 → 03 Dec 00:00 (America/New_York)")


def test_forged_range_is_a_400(viewer: flask.testing.FlaskClient) -> None:
    """A range no control can send (a date that is not a date) is refused with a 4xx, not drawn or a 500."""
    body = {
        "output": "..co-trend.figure...co-decisions.figure...co-caption.children..",
        "outputs": [
            {"id": "co-trend", "property": "figure"},
            {"id": "co-decisions", "property": "figure"},
            {"id": "co-caption", "property": "children"},
        ],
        "inputs": [
            {"id": "co-range", "property": "value", "value": "custom"},
            {"id": "co-dates", "property": "data", "value": {"start": "'; drop table", "end": "2026-12-02"}},
            {"id": "co-slow", "property": "n_intervals", "value": 1},
        ],
        "changedPropIds": ["co-dates.data"],
    }
    assert 400 <= _post(viewer, body).status_code < 500


def test_choosing_custom_shows_the_date_picker_with_the_dates_kept(viewer: flask.testing.FlaskClient) -> None:
    """Choosing "custom" puts a date-range picker in the panel, showing the dates chosen before."""
    body = {
        "output": "co-custom.children",
        "outputs": {"id": "co-custom", "property": "children"},
        "inputs": [{"id": "co-range", "property": "value", "value": "custom"}],
        "state": [{"id": "co-dates", "property": "data", "value": {"start": "2026-12-01", "end": "2026-12-02"}}],
        "changedPropIds": ["co-range.value"],
    }
    resp = _post(viewer, body)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    picker = resp.get_json()["response"]["co-custom"]["children"]
    assert picker["type"] == "DatePickerRange"
    assert (picker["props"]["start_date"], picker["props"]["end_date"]) == ("2026-12-01", "2026-12-02")
    body = {
        "output": "co-dates.data",
        "outputs": {"id": "co-dates", "property": "data"},
        "inputs": [
            {"id": "co-picker", "property": "start_date", "value": "2026-11-03"},
            {"id": "co-picker", "property": "end_date", "value": "2026-11-04"},
        ],
        "changedPropIds": ["co-picker.end_date"],
    }
    resp = _post(viewer, body)
    assert resp.json["response"]["co-dates"]["data"] == {"start": "2026-11-03", "end": "2026-11-04"}
