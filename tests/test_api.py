"""The REST API over real HTTP (uvicorn on a loopback port): every endpoint, auth, JSON errors, OpenAPI, /metrics."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from openapi_spec_validator import validate
from prometheus_client.parser import text_string_to_metric_families

from aidc.clock import SteppedClock
from aidc.config import load_site
from aidc.live import LiveState
from aidc.model import Batch, SeriesKey
from api.app import create_app
from api.auth import TokenStore
from api.context import ApiContext
from api.server import ApiServer
from control.supervisor import Supervisor
from historian import open_historian
from simulators.telemetry import generate
from tests import tenant_fixture as fx
from tests.sim_helpers import free_port_block
from tests.test_tenants import check_fixture_figures

READ = "read-token-0123456789abcdef"
OPERATOR = "operator-token-0123456789abcdef"
SIM_START = pd.Timestamp("2026-11-03T00:00Z")
TCS = {"device": "cdu-h1-01", "point": "tcs_supply_temp_setpoint_c"}  # a setpoint the supervisor controls


def supervisor(ctx: ApiContext, holds: int = 0) -> Supervisor:
    """The real cooling supervisor of the fixture site, idle (no writer, nothing running), on the API's clock."""
    sup = Supervisor(ctx.site, LiveState(), None, SteppedClock(int(ctx.clock().value)))
    sup.counts["holds"] = holds
    return sup


def _health_batch(site_name: str, ts: pd.Timestamp) -> Batch:
    """Collector health series as the collectors publish them."""
    rows = [("pdu-h1-r01-01", "up", 1.0), ("pdu-h1-r01-01", "latency_ms", 12.5), ("pdu-h1-r01-01", "errors_total", 2)]
    ids = [SeriesKey.of("collector", f, {"site": site_name, "device": d}).id for d, f, _ in rows]
    return Batch(np.array(ids, dtype=object), np.full(len(rows), ts.value, dtype=np.int64),
                 np.array([v for *_, v in rows], dtype=np.float64), np.zeros(len(rows), dtype=np.uint8))  # fmt: skip


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, ApiContext]]:
    """The tenant fixture month plus 2.5 simulated days of telemetry, served on a free loopback port."""
    path = fx.build(tmp_path_factory.mktemp("api"))
    site = load_site(path)
    tel = generate(site, duration_s=2.5 * 86400, sample_s=300, start_ns=SIM_START.value, schedule=None)
    now = tel.frame.index[-1] + pd.Timedelta("1min")
    with open_historian(site.config.historian, site.data_dir) as hist:
        for batch in tel.batches():
            hist.write(batch)
        hist.write(_health_batch(site.name, now))
        hist.flush()
        tokens = TokenStore.from_env({"AIDC_API_TOKENS": f"sched:read:{READ},ops:operator:{OPERATOR}"})
        ctx = ApiContext(site=site, historian=hist, tokens=tokens, clock=lambda: now)
        ctx.predictive_alarms = lambda: [{"device": "cdu-h1-01", "cause": "pump wear", "lead_h": 40.0}]
        with ApiServer(create_app(ctx), port=free_port_block(1)) as server:
            yield server.url, ctx


def call(url: str, method: str, path: str, token: str | None = READ, body: object = None) -> tuple[int, Any]:
    """One HTTP request; JSON bodies decoded."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url + path, data=data, method=method)  # noqa: S310 - http://127.0.0.1 only
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:  # noqa: S310 - loopback test server
            status, raw, ctype = resp.status, resp.read(), resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        status, raw, ctype = exc.code, exc.read(), exc.headers.get("Content-Type", "")
    return status, json.loads(raw) if "json" in ctype else raw.decode()


def test_openapi_document_validates(api: tuple[str, ApiContext]) -> None:
    """/openapi.json is a valid OpenAPI 3 document listing every endpoint."""
    status, spec = call(api[0], "GET", "/openapi.json", token=None)
    assert status == 200
    validate(spec)
    paths = set(spec["paths"])
    assert {"/api/v1/pue", "/api/v1/live", "/api/v1/forecast", "/api/v1/headroom", "/api/v1/placement",
            "/api/v1/tenants", "/api/v1/alarms", "/api/v1/controller", "/api/v1/controller/mode",
            "/api/v1/controller/override", "/api/v1/audit", "/metrics", "/health"} <= paths  # fmt: skip


def test_tenants_fixture_month_over_http(api: tuple[str, ApiContext]) -> None:
    """GET /tenants?month=2026-10 serves the hand-computed fixture figures."""
    status, d = call(api[0], "GET", "/api/v1/tenants?month=2026-10")
    assert status == 200, d
    check_fixture_figures({t["tenant"]: t for t in d["tenants"]}, d)


def test_pue_live_forecast(api: tuple[str, ApiContext]) -> None:
    """PUE for a simulated day and the live PDU powers (forecasts: tests/test_forecast_service.py)."""
    url = api[0]
    status, reports = call(url, "GET", "/api/v1/pue?from=2026-11-03T12:00Z&to=2026-11-05T00:00Z&period=day")
    assert status == 200, reports
    assert len(reports) == 2
    assert 1.0 < reports[0]["pue"] < 1.5
    status, rows = call(url, "GET", "/api/v1/live?selector=pdu,*,active_power_w")
    assert status == 200
    assert len(rows) == 4
    assert all(r["quality"] == "good" and r["value"] > 0 for r in rows)


def test_live_state_preferred_in_the_main_job(api: tuple[str, ApiContext]) -> None:
    """With a live state (the API inside the main job) /live serves its latest samples, glob selectors included."""
    from aidc.live import LiveState

    url, ctx = api
    live = LiveState()
    sid = SeriesKey.of("cdu", "flow_lpm", {"site": "dc1", "device": "cdu-h1-01"}).id
    live.update(Batch(np.array([sid], dtype=object), np.array([SIM_START.value], dtype=np.int64),
                      np.array([812.5]), np.zeros(1, dtype=np.uint8)))  # fmt: skip
    ctx.live = live
    try:
        status, rows = call(url, "GET", "/api/v1/live?selector=cdu,device=cdu-*,flow_lpm")
    finally:
        ctx.live = None
    assert status == 200
    assert rows == [{"series": sid, "ts": SIM_START.isoformat(), "value": 812.5, "quality": "good"}]


def test_headroom_and_placement(api: tuple[str, ApiContext]) -> None:
    """Headroom lists racks, rows, CDUs and halls; placement says yes for 1 kW and no for 1 MW with the constraint."""
    url = api[0]
    status, h = call(url, "GET", "/api/v1/headroom?hours=4")
    assert status == 200, h
    assert set(h["racks"]) == set(fx.RACK_KW)
    assert h["cdus"]["cdu-h1-01"]["heat_headroom_kw"] > 0
    status, yes = call(url, "POST", "/api/v1/placement", body={"racks": ["h1-r01-01"], "kw": 1, "hours": 4})
    assert status == 200, yes
    assert yes["ok"] is True
    status, no = call(url, "POST", "/api/v1/placement", body={"racks": ["h1-r01-01"], "kw": 1000, "hours": 4})
    assert status == 200
    assert no["ok"] is False
    assert no["binding"].startswith("rack power")


def test_alarms_controller_and_audit(api: tuple[str, ApiContext]) -> None:
    """Alarms include predictive ones; the controller is reported absent, then the real supervisor is served and
    changed by an operator, audited under the token's name by both the API and the supervisor."""
    url, ctx = api
    status, alarms = call(url, "GET", "/api/v1/alarms")
    assert status == 200
    assert alarms["predictive"][0]["cause"] == "pump wear"
    assert isinstance(alarms["device"], list)
    ctx.controller = None
    assert call(url, "GET", "/api/v1/controller")[1]["available"] is False
    status, err = call(url, "PUT", "/api/v1/controller/mode", token=OPERATOR, body={"mode": "auto"})
    assert status == 503
    assert "no controller" in err["error"]["message"]
    ctx.controller = sup = supervisor(ctx)
    status, state = call(url, "GET", "/api/v1/controller")
    assert status == 200
    assert (state["available"], state["mode"], state["status"]["state"]) == (True, "advisory", "commissioning")
    assert state["overrides"] == []
    assert call(url, "PUT", "/api/v1/controller/mode", token=OPERATOR, body={"mode": "auto"}) == (200, {"mode": "auto"})
    assert sup.mode == "auto"
    hold = {**TCS, "value": 30, "minutes": 15}
    status, held = call(url, "PUT", "/api/v1/controller/override", token=OPERATOR, body=hold)
    assert status == 200, held
    assert [(o["device"], o["value"], o["user"]) for o in sup.overrides()] == [("cdu-h1-01", 30.0, "ops")]
    assert sup.overrides()[0]["until_ns"] == ctx.clock().value + 15 * 60 * 10**9
    status, _ = call(url, "PUT", "/api/v1/controller/override", token=OPERATOR, body={**hold, "value": None})
    assert (status, sup.overrides()) == (200, [])
    status, audit = call(url, "GET", "/api/v1/audit?limit=10")
    assert status == 200
    assert [a["action"] for a in audit["api"]][-3:] == ["set_mode", "set_override", "clear_override"]
    assert audit["api"][-3]["token"] == "ops"
    control = [json.loads(line) for line in (ctx.audit_dir / "control.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in control[-3:]] == ["mode", "override", "override_cleared"]
    assert {r["user"] for r in control[-3:]} == {"ops"}


@pytest.mark.parametrize(
    ("method", "path", "token", "body", "status"),
    [
        ("GET", "/api/v1/alarms", None, None, 401),
        ("GET", "/api/v1/alarms", "not-a-valid-token-at-all", None, 401),
        ("PUT", "/api/v1/controller/mode", READ, {"mode": "off"}, 403),
        ("PUT", "/api/v1/controller/override", READ, {**TCS, "value": 30}, 403),
    ],
)
def test_auth(api: tuple[str, ApiContext], method: str, path: str, token: str | None, body: object, status: int) -> None:
    """No token and a wrong token get 401; a read-only token cannot change the mode or an override (403)."""
    api[1].controller = supervisor(api[1])
    got, err = call(api[0], method, path, token=token, body=body)
    assert got == status
    assert err["error"]["status"] == status
    assert api[1].controller.mode == "advisory"


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("GET", "/api/v1/tenants?month=2026-13", None, "month"),
        ("GET", "/api/v1/tenants", None, "month"),
        ("GET", "/api/v1/pue?from=yesterday", None, "from"),
        ("GET", "/api/v1/pue?from=2026-11-04T00:00Z&to=2026-11-03T00:00Z", None, "to"),
        ("GET", "/api/v1/pue?from=-1d&category=7", None, "category"),
        ("GET", "/api/v1/live?selector=%2C%2C", None, "selector"),
        ("GET", "/api/v1/forecast?horizon=soon", None, "horizon"),
        ("GET", "/api/v1/headroom?hours=0", None, "hours"),
        ("GET", "/api/v1/audit?limit=0", None, "limit"),
        ("POST", "/api/v1/placement", {"racks": ["h1-r01-01"], "kw": -5, "hours": 1}, "kw"),
        ("POST", "/api/v1/placement", {"racks": ["nope"], "kw": 5, "hours": 1}, "racks"),
        ("POST", "/api/v1/placement", {"racks": ["h1-r01-01"], "kw": 5}, "hours"),
        ("PUT", "/api/v1/controller/mode", {"mode": "turbo"}, "mode"),
        ("PUT", "/api/v1/controller/override", {"device": "valve-9", "point": "x", "value": 1}, "device"),
        ("PUT", "/api/v1/controller/override", {"device": "pdu-h1-r01-01", "point": "x", "value": 1}, "device"),
        ("PUT", "/api/v1/controller/override", {"device": "cdu-h1-01", "point": "pump_speed_pct", "value": 1}, "point"),
        ("PUT", "/api/v1/controller/override", {**TCS, "value": 1e6}, "value"),
        ("PUT", "/api/v1/controller/override", {**TCS, "value": 30, "minutes": 0}, "minutes"),
    ],
)
def test_bad_parameters_name_the_field(api: tuple[str, ApiContext], method: str, path: str, body: object, field: str) -> None:
    """A bad parameter gets a 422 JSON error whose `field` names it."""
    api[1].controller = supervisor(api[1])
    status, err = call(api[0], method, path, token=OPERATOR, body=body)
    assert status == 422, err
    assert err["error"]["field"] == field
    assert err["error"]["message"]


def test_metrics_parse(api: tuple[str, ApiContext]) -> None:
    """/metrics parses with the Prometheus text parser and carries collector, historian, controller and API figures."""
    url, ctx = api
    ctx.controller = supervisor(ctx, holds=3)
    call(url, "GET", "/health", token=None)
    status, text = call(url, "GET", "/metrics", token=None)
    assert status == 200
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    latency = fams["aidc_collector_poll_latency_seconds"].samples
    assert latency[0].labels == {"device": "pdu-h1-r01-01"}
    assert latency[0].value == pytest.approx(0.0125)
    assert fams["aidc_collector_errors"].samples[0].value == 2
    assert fams["aidc_controller_holds"].samples[0].value == 3
    assert fams["aidc_controller_running"].samples[0].value == 1
    assert any(s.labels.get("route") == "/health" for s in fams["aidc_api_requests"].samples)
    assert "aidc_historian_spool_points" in fams
