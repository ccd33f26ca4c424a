"""The Control page for operators (issue 23, item 3): decisions in words, the model's provenance from the real
supervisor's status, predicted against realised saving, and the audit log as a filterable table, with no JSON on
the page. Callbacks run through the real Dash app's test client (no browser)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import dash
import flask
import numpy as np
import pandas as pd
import pytest

from aidc.clock import SteppedClock, format_ns
from aidc.config import Site, load_site
from aidc.live import LiveState
from aidc.sitegen import SiteTemplate, render_site
from analytics.alarms.engine import AlarmEngine
from analytics.plant_model import OnlinePlantModel
from control.supervisor import Supervisor
from dashboards.app import DashboardConfig, create_app
from dashboards.auth import Role, UserStore
from dashboards.control_data import savings_frame, totals
from dashboards.control_provenance import provenance_rows
from dashboards.control_view import Names, describe_decision
from dashboards.data import DashboardData
from dashboards.fmt import local_time
from dashboards.forecast import service_for
from dashboards.table_query import parse_filter, query_rows
from historian import open_historian

PW = "correct-horse-battery"
NOW_NS = 1_800_000_000 * 10**9  # 2027-01-15 08:00 UTC: 03:00 in New York (EST)
CDU, PLANT = "cdu-h1-01", "plant-1"
TCS, DP, FWS = "tcs_supply_temp_setpoint_c", "dp_setpoint_kpa", "fws_supply_temp_setpoint_c"


def _decision(t_ns: int, tcs: float, fws: float, *, mode: str = "auto", saving: float | None = 25.8,
              binding: list[str] | None = None, gpu: float = 81.2, **extra: Any) -> dict[str, Any]:
    """A decision line as ``control.supervisor.Supervisor.decide_once`` audits it (in auto mode: written)."""
    return {
        "ts": format_ns(t_ns), "kind": "decision", "mode": mode, "state": "deciding" if saving is not None else
        "commissioning", "inputs": {"gpu_max_c": gpu, "gpu_max_cdu": CDU, "gpu_util_pct": 80.0, "drybulb_c": 12.3456,
                                    "wetbulb_c": 8.7654321, "fws_supply_c": 26.01234, "facility_kw": 1011.123456},
        "candidates": 125, "chosen": {CDU: {TCS: tcs, DP: 120.0}, PLANT: {FWS: fws}},
        "predicted_facility_kw": None if saving is None else 956.2849455432581, "predicted_saving_kw": saving,
        "binding": ["gpu margin at 100 % load"] if binding is None else binding, "hold_reason": "",
        "decision_ms": 12.345, **({"written": []} if mode == "auto" else {}), **extra,
    }  # fmt: skip


class App(NamedTuple):
    """The dashboard app, its data and the real supervisor behind it."""

    app: dash.Dash
    data: DashboardData
    sup: Supervisor


@pytest.fixture(scope="module")
def control_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    """The real dashboard on a one-CDU site in New York with the real supervisor (not deciding), an operator account,
    a fitted plant model in the supervisor's core and a few audited decisions, writes and operator actions."""
    tmp = tmp_path_factory.mktemp("dash_ctl")
    path = tmp / "site.toml"
    text = render_site(SiteTemplate(racks=2, data_dir="var"))
    path.write_text(re.sub(r'timezone = "[^"]*"', 'timezone = "America/New_York"', text))
    site = load_site(path)
    assert site.config.site.timezone == "America/New_York"
    clock = SteppedClock(NOW_NS)
    sup = Supervisor(site, LiveState(), None, clock)
    _fit_model(sup)
    sup.set_mode("advisory", "ann")
    _write_audit(site)
    with open_historian(site.config.historian, site.data_dir) as hist:
        data = DashboardData(site, LiveState(), hist, clock, AlarmEngine.from_site(site), supervisor=sup)
        config = DashboardConfig.from_site(site)
        users = UserStore(config.users_path(site))
        users.add("otto", PW, Role.OPERATOR)
        yield App(create_app(data, users, config, service_for(data, None)), data, sup)


def _fit_model(sup: Supervisor) -> None:
    """Give the supervisor's core a plant model fitted as its retrain does (real provenance, not a copy)."""
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.uniform(20, 95, 300), rng.uniform(5, 30, 300), rng.uniform(3, 20, 300),
                         rng.uniform(28, 36, 300), rng.uniform(90, 150, 300), rng.uniform(22, 30, 300)])  # fmt: skip
    y = {"facility_power_kw": 900 + 2 * x[:, 0] - 3 * x[:, 5] + rng.normal(0, 2, 300),
         "gpu_margin_c": -20 + 0.1 * x[:, 0] + 0.5 * x[:, 3] + rng.normal(0, 0.3, 300)}  # fmt: skip
    sup.core.model = OnlinePlantModel.fit(x, y, window=(format_ns(NOW_NS - 86_400 * 10**9), format_ns(NOW_NS)))
    sup.core.last_fit_ns = NOW_NS - 600 * 10**9


def _write_audit(site: Site) -> None:
    """Decisions and operator actions in ``control.jsonl`` and writes in ``writes.jsonl``, as the real ones read."""
    audit = site.data_dir / "audit"
    audit.mkdir(parents=True, exist_ok=True)
    step = 300 * 10**9
    lines = [
        _decision(NOW_NS - 3 * step, 32.0, 26.0),
        _decision(NOW_NS - 2 * step, 33.5, 27.0),
        {"ts": format_ns(NOW_NS - step), "kind": "override", "user": "bob", "device": CDU, "point": TCS,
         "value": 30.0, "until": format_ns(NOW_NS + 3600 * 10**9)},
    ]
    with (audit / "control.jsonl").open("a", encoding="utf-8") as f:
        f.writelines(json.dumps(x) + "\n" for x in lines)
    write = {"ts": format_ns(NOW_NS - 2 * step), "who": "aidc-supervisor", "role": "operator", "device": CDU,
             "point": TCS, "old": 32.0, "requested": 33.5, "new": 33.5, "readback": 33.500000000000004,
             "clamped": False, "why": "supervisor decision", "ok": True, "error": ""}  # fmt: skip
    (audit / "writes.jsonl").write_text(json.dumps(write) + "\n", encoding="utf-8")


@pytest.fixture
def operator(control_app: App) -> flask.testing.FlaskClient:
    """A test browser signed in as an operator."""
    c = control_app.app.server.test_client()
    m = re.search(r'name="csrf_token" value="([^"]+)"', c.get("/login").get_data(as_text=True))
    assert m
    assert c.post("/login", data={"username": "otto", "password": PW, "csrf_token": m.group(1)}).status_code == 302
    return c


def _call(c: flask.testing.FlaskClient, app: dash.Dash, inputs: list[dict[str, Any]]) -> Any:
    """POST the registered callback with exactly these inputs as the renderer does; its outputs by component id."""
    wanted = [(i["id"], i["property"]) for i in inputs]
    key = next(k for k, cb in app.callback_map.items() if [(i["id"], i["property"]) for i in cb["inputs"]] == wanted)
    outs = [{"id": o.rsplit(".", 1)[0], "property": o.rsplit(".", 1)[1]} for o in key.strip(".").split("...")]
    body = {"output": key, "outputs": outs if key.startswith("..") else outs[0], "inputs": inputs, "state": [],
            "changedPropIds": [f"{inputs[0]['id']}.{inputs[0]['property']}"]}  # fmt: skip
    token = c.get_cookie("_csrf_token")
    r = c.post("/_dash-update-component", data=json.dumps(body),
               headers={"Content-Type": "application/json", "X-CSRFToken": token.value if token else ""})  # fmt: skip
    assert r.status_code == 200, r.get_data(as_text=True)[:500]
    return r.get_json()["response"]


def _texts(node: Any) -> list[str]:
    """Every text a rendered component tree shows (children strings), not ids, styles or figures."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, list):
        return [t for x in node for t in _texts(x)]
    if isinstance(node, dict):
        props = node.get("props")
        if isinstance(props, dict):
            return _texts(props.get("children")) + _texts(props.get("data")) if "data" in props else _texts(
                props.get("children"))  # fmt: skip
        return [t for v in node.values() for t in _texts(v)]
    return []


def test_a_decision_reads_as_a_sentence_with_the_change_the_saving_and_the_binding_constraint(
    control_app: App,
) -> None:
    """What moved (old → new with units), the predicted saving in kW and the GPU headroom to limit − margin."""
    site = control_app.data.site
    limits = control_app.sup.status()["limits"]
    assert isinstance(limits, dict)
    ceiling = limits["gpu_ceiling_c"][CDU]
    before = {(CDU, TCS): 32.0, (CDU, DP): 120.0, (PLANT, FWS): 26.0}
    d = describe_decision(_decision(NOW_NS, 33.5, 27.0), before, Names(site), "America/New_York", limits)
    text = " ".join(d.sentences())
    assert "CDU h1-01 supply 32.0 → 33.5 °C" in text
    assert "plant FWS 26.0 → 27.0 °C" in text
    assert "dp" not in d.change  # unchanged points are not listed
    assert "Predicted saving 25.8 kW" in text
    assert f"hottest GPU 81.2 °C (racks of CDU h1-01), {ceiling - 81.2:.1f} K below limit − margin" in text
    assert d.when == "2027-01-15 03:00:00 EST"
    advisory = describe_decision(_decision(NOW_NS, 33.5, 27.0, mode="advisory"), before, Names(site), "UTC", limits)
    assert advisory.change.startswith("Recommends")
    assert "not written" in advisory.change


def test_holds_and_commissioning_are_said_in_words(control_app: App) -> None:
    """A site-wide hold names its reason and duration; a held CDU and the lock-out are sentences too."""
    names = Names(control_app.data.site)
    rec = {"ts": format_ns(NOW_NS), "kind": "decision", "mode": "auto", "state": "holding", "held_s": 120.0,
           "hold_reason": "bad input: FWS supply missing or NaN",
           "cdu_holds": {CDU: {"kind": "inputs", "reason": "stale inputs", "held_s": 30.0, "action": "hold"}},
           "lockout": {"until": format_ns(NOW_NS + 900 * 10**9), "source": "thermal guard", "cdus": [CDU]}}  # fmt: skip
    d = describe_decision(rec, None, names, "UTC")
    assert "Holding every setpoint for 2 min: bad input: FWS supply missing or NaN." in d.holds
    assert "CDU h1-01 held for 30 s: stale inputs." in d.holds
    assert "Lock-out after the thermal guard until 2027-01-15 08:15:00 UTC" in d.holds
    first = describe_decision(_decision(NOW_NS, 30.0, 25.0, saving=None), None, names, "UTC")
    assert "commissioning" in first.saving


def test_provenance_rows_come_from_the_real_supervisor_status(control_app: App) -> None:
    """Training rows, validation error, last refit time and features are rows, read from the supervisor's status."""
    rows = {r["item"]: r["value"] for r in provenance_rows(control_app.sup.status(), "America/New_York")}
    assert rows["rows in the last fit"] == "300"
    assert rows["last refit"] == local_time(NOW_NS - 600 * 10**9, "America/New_York")
    assert rows["last refit"].endswith("EST")
    assert rows["validation error: facility power"].startswith("± ")
    assert " kW " in rows["validation error: facility power"]
    assert "validation error: hottest GPU against its limit" in rows
    assert rows["feature: GPU utilisation"].endswith("% seen in training")
    assert "feature: FWS supply" in rows
    assert "training window" in rows


def test_savings_realised_is_baseline_less_measured_over_auto_intervals() -> None:
    """Realised = predicted facility + predicted saving − measured mean until the next decision; advisory: none."""
    t0 = NOW_NS - 3600 * 10**9
    recs = [_decision(t0, 32, 26), _decision(t0 + 300 * 10**9, 33, 27, mode="advisory"),
            _decision(t0 + 600 * 10**9, 33, 27)]  # fmt: skip
    idx = pd.date_range(pd.Timestamp(t0, unit="ns", tz="UTC"), periods=15, freq="1min")
    facility = pd.Series(960.0, index=idx)
    frame = savings_frame(recs, facility)
    assert frame["realised_kw"].iloc[0] == pytest.approx(956.2849455432581 + 25.8 - 960.0)
    assert np.isnan(frame["realised_kw"].iloc[1])  # advisory: not written
    assert np.isnan(frame["realised_kw"].iloc[2])  # its interval is still running
    t = totals(frame)
    assert (t.intervals, t.measured) == (2, 1)
    assert t.predicted_kwh == pytest.approx(2 * 25.8 * 5 / 60)
    assert t.realised_kwh == pytest.approx((956.2849455432581 + 25.8 - 960.0) * 5 / 60)


def test_filter_queries_of_the_data_table_select_rows() -> None:
    """The DataTable's filter syntax (case prefixes, quotes, comparisons) selects the matching rows."""
    assert parse_filter('{actor} icontains "ann" && {time} > 2026') == [("actor", "contains", "ann"),
                                                                       ("time", ">", "2026")]  # fmt: skip
    rows = [{"actor": "Ann", "t": 2.0, "time": "b"}, {"actor": "bob", "t": 1.0, "time": "a"}]
    assert [r["actor"] for r in query_rows(rows, "{actor} scontains ann", None)] == ["Ann"]
    assert [r["actor"] for r in query_rows(rows, "{actor} != bob", None)] == ["Ann"]
    assert [r["actor"] for r in query_rows(rows, "", [{"column_id": "time", "direction": "asc"}], {"time": "t"})] == [
        "bob", "Ann"]  # fmt: skip
    assert [r["actor"] for r in query_rows(rows, "{nosuch} contains x && garbage", None)] == ["Ann", "bob"]


def test_the_audit_table_filters_and_pages_on_the_server(control_app: App, operator: flask.testing.FlaskClient) -> None:
    """Newest first, site time, old → new with units; a filter on the actor keeps only that actor's rows."""
    table: list[dict[str, Any]] = [{"id": "ct-tick", "property": "n_intervals", "value": 1},
             {"id": "audit-table", "property": "page_current", "value": 0},
             {"id": "audit-table", "property": "page_size", "value": 15},
             {"id": "audit-table", "property": "filter_query", "value": ""},
             {"id": "audit-table", "property": "sort_by", "value": []}]  # fmt: skip
    out = _call(operator, control_app.app, table)
    key = next(k for k in out if k == "audit-table")
    rows = out[key]["data"]
    assert len(rows) >= 5
    assert [r["action"] for r in rows[:2]] == ["mode change", "override set"]  # newest first
    write = next(r for r in rows if r["action"] == "write")
    assert write["change"] == "32.0 → 33.5 °C"
    assert write["target"] == f"{CDU} · {TCS}"
    assert "read back 33.5 °C" in write["result"]
    assert write["time"].endswith("EST")
    table[3]["value"] = "{actor} icontains bob"
    rows = _call(operator, control_app.app, table)["audit-table"]["data"]
    assert [(r["actor"], r["action"], r["change"]) for r in rows] == [("bob", "override set", "→ 30.0 °C")]


def test_the_control_page_shows_no_json(control_app: App, operator: flask.testing.FlaskClient) -> None:
    """Status, decisions, overrides and provenance render as sentences and tables: no '{' anywhere in their text."""
    sup = control_app.sup
    sup.last = _decision(NOW_NS - 2 * 300 * 10**9, 33.5, 27.0)
    until = NOW_NS + 3600 * 10**9
    sup.set_override(CDU, TCS, 30.0, until, "bob")
    out = _call(operator, control_app.app, [{"id": "ct-tick", "property": "n_intervals", "value": 1}])
    texts = [t for comp in out.values() for v in comp.values() for t in _texts(v)]
    joined = " | ".join(texts)
    assert "{" not in joined, joined
    assert "}" not in joined, joined
    assert "Mode advisory" in joined
    assert "Wrote CDU h1-01 supply 32.0 → 33.5 °C; plant FWS 26.0 → 27.0 °C." in joined
    assert "Predicted saving 25.8 kW" in joined
    assert "training rows kept" in joined
    assert "30.0 °C" in joined
    assert "bob" in joined
    page = operator.post("/_dash-update-component", data=json.dumps({
        "output": "..nav.children...page.children..", "outputs": [{"id": "nav", "property": "children"},
                                                                  {"id": "page", "property": "children"}],
        "inputs": [{"id": "url", "property": "pathname", "value": "/control"}], "state": [],
        "changedPropIds": ["url.pathname"]}), headers={"Content-Type": "application/json",
                                                       "X-CSRFToken": operator.get_cookie("_csrf_token").value})  # type: ignore[union-attr]  # fmt: skip
    assert page.status_code == 200
    layout_texts = " | ".join(_texts(page.get_json()["response"]["page"]["children"]))
    assert "{" not in layout_texts, layout_texts
    sup.clear_override(CDU, TCS, "bob")


def _history(data: DashboardData) -> None:
    """An hour of the CDU's setpoint (a step from 32.0 to 33.5 °C), its measured supply following it, the
    supervisor's decisions and the facility power, every minute, as the historian writer stores them."""
    from aidc.model import Batch, SeriesKey

    dev = data.site.device(CDU)
    tags = dict(dev.tags)
    sp = SeriesKey.of(dev.profile.measurement, TCS, tags).id
    measured = SeriesKey.of(dev.profile.measurement, "tcs_supply_temp_c", tags).id
    decided = SeriesKey.of("controller", TCS, {"site": data.site.name, "device": CDU}).id
    ids, ts, vals = [], [], []
    for i in range(60):
        t = NOW_NS - (60 - i) * 60 * 10**9
        v = 32.0 if i < 30 else 33.5
        ids += [sp, measured]
        ts += [t, t]
        vals += [v, v - 0.3 + 0.01 * (i % 3)]
        if i % 5 == 0:
            ids.append(decided)
            ts.append(t)
            vals.append(v)
    data.historian.write(Batch(np.array(ids, dtype=object), np.array(ts, dtype=np.int64), np.array(vals),
                               np.zeros(len(ids), dtype=np.uint8), []))  # fmt: skip
    data.historian.flush()


def test_the_timeline_shows_setpoint_steps_against_measured_values(
    control_app: App, operator: flask.testing.FlaskClient
) -> None:
    """Per device: the device's setpoint as a step line, the measured supply and the aidc decisions, in site time,
    over the whole range asked for; the saving totals in kWh beside it."""
    _history(control_app.data)
    inputs: list[dict[str, Any]] = [{"id": "ct-device", "property": "value", "value": CDU},
                                    {"id": "ct-range", "property": "value", "value": "1h"},
                                    {"id": "ct-slow", "property": "n_intervals", "value": 1}]  # fmt: skip
    out = _call(operator, control_app.app, inputs)
    fig = out["ct-timeline"]["figure"]
    traces = {(t["name"], t["yaxis"] if "yaxis" in t else "y"): t for t in fig["data"]}
    step = traces[("setpoint held by the device", "y")]
    assert step["line"]["shape"] == "hv"
    assert set(np.round(_values(step["y"]), 1)) == {32.0, 33.5}
    assert ("measured", "y") in traces
    assert ("aidc decision", "y") in traces
    assert str(step["x"][0]).startswith("2027-01-15T02:")  # New York wall time (07:xx UTC)
    assert fig["layout"]["xaxis2"]["title"]["text"] == "time (America/New_York)"
    totals_text = " ".join(_texts(out["ct-saving-totals"]["children"]))
    assert "Predicted over" in totals_text
    assert "kWh" in totals_text


def _values(y: Any) -> list[float]:
    """A trace's y values, whether plotly sent a list or a typed array."""
    if isinstance(y, dict) and "bdata" in y:
        import base64

        return np.frombuffer(base64.b64decode(y["bdata"]), dtype=np.dtype(y["dtype"])).tolist()
    return [float(v) for v in y]


def test_audit_rows_are_plain_text(tmp_path: Path) -> None:
    """An unknown audit line becomes key-value text, never a JSON dump (lists and mappings are counted)."""
    from dashboards.audit_rows import control_row

    row = control_row({"ts": "2026-01-01T00:00:00Z", "kind": "new_thing", "a": 1.23456, "b": {"x": 1}, "c": [1, 2]})
    assert row["action"] == "new_thing"
    assert row["result"] == "a 1.2; b: 1 item(s); c: 2 item(s)"
    assert "{" not in " ".join(row.values())


def test_a_refused_decision_says_it_wrote_nothing_and_the_next_change_starts_from_what_was_written(
    control_app: App,
) -> None:
    """An auto decision without writes (refused or held) is not said to have written; the next is against the last
    written setpoints, and long holds read in hours and minutes."""
    from dashboards.control_view import describe_decisions

    step = 300 * 10**9
    written = _decision(NOW_NS, 32.0, 26.0)
    refused = _decision(NOW_NS + step, 40.0, 26.0, state="holding", held_s=18_864.0,
                        hold_reason="hard-limit check refused: step +8 K exceeds 2 K")  # fmt: skip
    del refused["written"]
    after = _decision(NOW_NS + 2 * step, 33.0, 26.0)
    newest, middle, _ = describe_decisions([written, refused, after], Names(control_app.data.site), "UTC")
    assert middle.change == "Chose CDU h1-01 supply 32.0 → 40.0 °C, but wrote nothing (see the hold below)."
    assert "Holding every setpoint for 5 h 14 min: hard-limit check refused" in middle.holds
    assert newest.change == "Wrote CDU h1-01 supply 32.0 → 33.0 °C."


def test_heartbeat_writes_stay_out_of_the_audit_table_unless_they_failed(tmp_path: Path) -> None:
    """Heartbeats (one per device every few seconds) would bury the log: only failed ones are rows."""
    from dashboards.supervisor import audit_entries

    (tmp_path / "audit").mkdir()
    beats = [{"ts": f"2026-01-01T00:00:0{i}Z", "who": "sup", "device": CDU, "point": "heartbeat", "old": i,
              "new": i + 1, "why": "heartbeat", "ok": i != 2, "error": "" if i != 2 else "not connected"}
             for i in range(4)]  # fmt: skip
    (tmp_path / "audit" / "writes.jsonl").write_text("".join(json.dumps(b) + "\n" for b in beats))
    rows = audit_entries(tmp_path)
    assert [(r["action"], r["result"]) for r in rows] == [("write failed", "heartbeat; FAILED: not connected")]


def test_the_decision_log_reads_only_what_was_appended(tmp_path: Path) -> None:
    """Decisions appended after the first read are picked up; a line still being written waits; a replaced (shorter)
    file is read afresh; other kinds of line are not decisions."""
    from dashboards.control_data import DecisionLog

    (tmp_path / "audit").mkdir()
    path = tmp_path / "audit" / "control.jsonl"
    path.write_text(json.dumps(_decision(NOW_NS, 30, 24)) + "\n" + json.dumps({"kind": "mode", "to": "auto"}) + "\n")
    log = DecisionLog(tmp_path, limit=3)
    assert [r["chosen"][CDU][TCS] for r in log.records()] == [30]
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(_decision(NOW_NS + 1, 31, 24)) + "\n" + json.dumps(_decision(NOW_NS + 2, 32, 24))[:50])
    assert [r["chosen"][CDU][TCS] for r in log.records()] == [30, 31]
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(_decision(NOW_NS + 2, 32, 24))[50:] + "\n" + json.dumps(_decision(NOW_NS + 3, 33, 24)) + "\n")
    assert [r["chosen"][CDU][TCS] for r in log.records()] == [31, 32, 33]  # at most ``limit``
    path.write_text(json.dumps(_decision(NOW_NS + 4, 29, 24)) + "\n")
    assert [r["chosen"][CDU][TCS] for r in log.records()] == [29]


def test_user_administration_events_reach_the_control_audit_table(tmp_path: Path) -> None:
    """A user-administration event (done or refused) is a plain row of the Control page's audit table."""
    from dashboards.pages.users import audit as user_audit
    from dashboards.supervisor import audit_entries

    user_audit(tmp_path, "admin", "add", "alice", ok=True)
    user_audit(tmp_path, "bob", "delete", "admin", ok=False, detail="not an admin")
    rows = [r for r in audit_entries(tmp_path) if r["source"] == "users"]
    assert [(r["actor"], r["action"], r["target"], r["result"]) for r in rows] == [
        ("bob", "user delete", "admin", "refused: not an admin"),
        ("admin", "user add", "alice", "done"),
    ]
