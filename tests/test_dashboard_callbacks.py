"""Forged and malformed Dash callback requests from an operator session: a 4xx (or the page's own refusal) and one
log line, never a 500 with a traceback, and never a forged value reaching the supervisor (issue 21, item 6)."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from typing import Any, NamedTuple

import dash
import flask
import pytest

from aidc.clock import SteppedClock
from aidc.config import load_site
from aidc.live import LiveState
from aidc.sitegen import SiteTemplate, render_site
from analytics.alarms.engine import AlarmEngine
from control.interface import Mode
from dashboards.app import DashboardConfig, create_app
from dashboards.auth import Role, UserStore
from dashboards.data import DashboardData
from dashboards.forecast import service_for
from dashboards.pages.control import _writable
from historian import open_historian

PW = "correct-horse-battery"


class RecordingSupervisor:
    """Stands in for the cooling supervisor (which needs a running control loop): records every change it is asked
    for, so the test can tell that no forged value got through."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    @property
    def mode(self) -> Mode:
        return "advisory"

    def set_mode(self, mode: str, user: str) -> None:
        self.calls.append(("mode", mode, user))

    def set_override(self, device: str, point: str, value: float, until_ns: int, user: str) -> None:
        self.calls.append(("override", device, point, value, until_ns, user))

    def clear_override(self, device: str, point: str, user: str) -> None:
        self.calls.append(("clear", device, point, user))

    def overrides(self) -> list[dict[str, object]]:
        return []

    def status(self) -> dict[str, object]:
        return {"mode": "advisory"}


@pytest.fixture(scope="module")
def dash_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dash.Dash, RecordingSupervisor, Point]]:
    """The real dashboard app (every page's callbacks) on a one-rack site, with an operator account."""
    tmp = tmp_path_factory.mktemp("dash_cb")
    path = tmp / "site.toml"
    path.write_text(render_site(SiteTemplate(racks=1, data_dir="var")))
    site = load_site(path)
    sup = RecordingSupervisor()
    with open_historian(site.config.historian, site.data_dir) as hist:
        data = DashboardData(site, LiveState(), hist, SteppedClock(1_800_000_000 * 10**9), AlarmEngine.from_site(site),
                             supervisor=sup)  # fmt: skip
        config = DashboardConfig.from_site(site)
        users = UserStore(config.users_path(site))
        users.add("otto", PW, Role.OPERATOR)
        app = create_app(data, users, config, service_for(data, None))
        yield app, sup, _a_writable_point(data)


def _a_writable_point(data: DashboardData) -> Point:
    """The first point the Control page offers for an override: its ``device|point`` key and limits."""
    key = _writable(data)[0]["value"]
    device, name = key.split("|", 1)
    p = next(p for p in data.site.device(device).profile.points if p.name == name)
    return Point(key, p.min, p.max)


class Point(NamedTuple):
    """A writable point's key and limits."""

    key: str
    min: float | None
    max: float | None


@pytest.fixture
def operator(dash_app: tuple[dash.Dash, RecordingSupervisor, Point]) -> flask.testing.FlaskClient:
    """A test browser signed in as an operator."""
    c = dash_app[0].server.test_client()
    page = c.get("/login").get_data(as_text=True)
    m = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert m
    assert c.post("/login", data={"username": "otto", "password": PW, "csrf_token": m.group(1)}).status_code == 302
    return c


def _post(c: flask.testing.FlaskClient, body: object, *, raw: bytes | None = None) -> Any:
    token = c.get_cookie("_csrf_token")
    return c.post(
        "/_dash-update-component",
        data=raw if raw is not None else json.dumps(body),
        headers={"Content-Type": "application/json", "X-CSRFToken": token.value if token else ""},
    )


def _override(point: object, value: object, minutes: object) -> dict[str, Any]:
    return {
        "output": "ct-msg.children@" + "x",  # replaced below by the registered key
        "outputs": {"id": "ct-msg", "property": "children"},
        "inputs": [{"id": "ct-override", "property": "n_clicks", "value": 1}],
        "state": [
            {"id": "ct-point", "property": "value", "value": point},
            {"id": "ct-value", "property": "value", "value": value},
            {"id": "ct-minutes", "property": "value", "value": minutes},
        ],
        "changedPropIds": ["ct-override.n_clicks"],
    }


def _registered(app: dash.Dash, body: dict[str, Any]) -> None:
    """Name the override callback as the renderer does: its key, and the output property with the key's suffix."""
    body["output"] = _key(app, "ct-msg.children@", "ct-override")
    body["outputs"]["property"] = body["output"].split(".", 1)[1]  # "children@<hash>" (allow_duplicate)


def _key(app: dash.Dash, prefix: str, first_input: str) -> str:
    """The registered callback key whose output starts with ``prefix`` and whose first input is ``first_input``."""
    return next(
        k for k, cb in app.callback_map.items() if k.startswith(prefix) and cb["inputs"][0]["id"] == first_input
    )


MODE: dict[str, Any] = {
    "output": "ct-msg.children",
    "outputs": {"id": "ct-msg", "property": "children"},
    "inputs": [{"id": "ct-apply", "property": "n_clicks", "value": 1}],
    "state": [{"id": "ct-mode", "property": "value", "value": "auto"}],
    "changedPropIds": ["ct-apply.n_clicks"],
}

MALFORMED: dict[str, Any] = {
    "not json": None,
    "a list": [1, 2, 3],
    "unknown output": {**MODE, "output": "nowhere.children"},
    "output not a string": {**MODE, "output": ["ct-msg.children"]},
    "inputs missing": {k: v for k, v in MODE.items() if k != "inputs"},
    "inputs not a list": {**MODE, "inputs": {"id": "ct-apply"}},
    "too many inputs": {**MODE, "inputs": MODE["inputs"] * 3},
    "input of another component": {**MODE, "inputs": [{"id": "ct-tick", "property": "n_clicks", "value": 1}]},
    "input entry a string": {**MODE, "inputs": ["ct-apply.n_clicks"]},
    "state missing": {k: v for k, v in MODE.items() if k != "state"},
    "outputs a number": {**MODE, "outputs": 7},
    "changedPropIds not strings": {**MODE, "changedPropIds": [{"a": 1}]},
    "pattern input not a pattern": {
        "output": "ov-ack-msg.children",
        "outputs": {"id": "ov-ack-msg", "property": "children"},
        "inputs": [[{"id": "ack-1", "property": "n_clicks", "value": 1}]],
        "state": [[]],
        "changedPropIds": [],
    },
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_callback_gets_400_and_one_line(
    case: str,
    dash_app: tuple[dash.Dash, RecordingSupervisor, Point],
    operator: flask.testing.FlaskClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A callback body that does not match the callback it names is a 400 with one warning line, no traceback."""
    caplog.set_level(logging.INFO)
    caplog.clear()
    body = MALFORMED[case]
    resp = _post(operator, body, raw=b"{not json" if body is None else None)
    assert resp.status_code == 400, resp.get_data(as_text=True)
    assert "bad callback request" in resp.get_data(as_text=True)
    lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert lines[0].exc_info is None
    assert "Traceback" not in caplog.text
    assert dash_app[1].calls == []


FORGED_VALUES: dict[str, tuple[object, object, object]] = {
    "value a string": ("POINT", "abc", 60),
    "value a list": ("POINT", [1], 60),
    "value NaN-like text": ("POINT", "NaN", 60),
    "value a bool": ("POINT", True, 60),
    "minutes a string": ("POINT", 20.0, "sixty"),
    "minutes a dict": ("POINT", 20.0, {"m": 1}),
    "point unknown": ("nodev|nopoint", 20.0, 60),
    "point a number": (5, 20.0, 60),
    "point without separator": ("cdu", 20.0, 60),
}


@pytest.mark.parametrize("case", sorted(FORGED_VALUES))
def test_forged_override_values_are_refused_without_a_traceback(
    case: str,
    dash_app: tuple[dash.Dash, RecordingSupervisor, Point],
    operator: flask.testing.FlaskClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An override whose point, value or expiry has the wrong type is refused (4xx or the page's message), never
    a 500, never logged with a traceback, and never reaches the supervisor."""
    app, sup, point = dash_app
    caplog.set_level(logging.INFO)
    p, v, m = FORGED_VALUES[case]
    body = _override(point.key if p == "POINT" else p, v, m)
    _registered(app, body)
    resp = _post(operator, body)
    assert resp.status_code < 500
    if resp.status_code == 200:
        assert "Override" not in resp.get_data(as_text=True)
    assert "Traceback" not in caplog.text
    assert all(r.exc_info is None for r in caplog.records)
    assert sup.calls == []


def test_forged_clear_and_acknowledge_ids_are_refused(
    dash_app: tuple[dash.Dash, RecordingSupervisor, Point],
    operator: flask.testing.FlaskClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A clear-override or acknowledge button id with a forged key is refused without a 500 or a traceback."""
    app, sup, _ = dash_app
    caplog.set_level(logging.INFO)
    clear = {
        "output": _key(app, "ct-msg.children@", '{"key":["ALL"],"type":"ct-clear"}'),
        "outputs": {"id": "ct-msg", "property": "children"},
        "inputs": [[{"id": {"type": "ct-clear", "key": 5}, "property": "n_clicks", "value": 1}]],
        "changedPropIds": ['{"key":5,"type":"ct-clear"}.n_clicks'],
    }
    ack = {
        "output": "ov-ack-msg.children",
        "outputs": {"id": "ov-ack-msg", "property": "children"},
        "inputs": [[{"id": {"type": "ack", "alarm": 7}, "property": "n_clicks", "value": 1}]],
        "state": [[{"id": {"type": "ack", "alarm": 7}, "property": "id", "value": {"type": "ack", "alarm": 7}}]],
        "changedPropIds": ['{"alarm":7,"type":"ack"}.n_clicks'],
    }
    for body in (clear, ack):
        resp = _post(operator, body)
        assert resp.status_code < 500, resp.get_data(as_text=True)
    assert "Traceback" not in caplog.text
    assert sup.calls == []


def test_wrong_types_for_chart_inputs_are_a_400_not_a_500(
    operator: flask.testing.FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A chart callback fed a value of the wrong type answers 400 with one line, not a 500 with a traceback."""
    caplog.set_level(logging.INFO)
    caplog.clear()
    body = {
        "output": "rk-trend.figure",
        "outputs": {"id": "rk-trend", "property": "figure"},
        "inputs": [
            {"id": "rk-range", "property": "value", "value": {"forged": True}},
            {"id": "rk-slow", "property": "n_intervals", "value": 1},
        ],
        "state": [{"id": "rk-name", "property": "data", "value": ["not", "a", "rack"]}],
        "changedPropIds": ["rk-range.value"],
    }
    resp = _post(operator, body)
    assert 400 <= resp.status_code < 500
    assert "Traceback" not in caplog.text
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 1


def test_a_valid_operator_request_still_works(
    dash_app: tuple[dash.Dash, RecordingSupervisor, Point], operator: flask.testing.FlaskClient
) -> None:
    """The guard lets a well-formed request through: an operator's mode change and override reach the supervisor."""
    app, sup, point = dash_app
    sup.calls.clear()
    resp = _post(operator, MODE)
    assert resp.status_code == 200
    assert "Mode set to auto by otto" in resp.get_data(as_text=True)
    body = _override(point.key, None, 60)
    _registered(app, body)
    assert "Choose a point and a value" in _post(operator, body).get_data(as_text=True)
    value = point.min if point.min is not None else point.max if point.max is not None else 20.0
    body = _override(point.key, value, 30)
    _registered(app, body)
    assert _post(operator, body).status_code == 200
    device, name = point.key.split("|", 1)
    assert [c[:4] for c in sup.calls] == [("mode", "auto", "otto"), ("override", device, name, float(value))]
    sup.calls.clear()
