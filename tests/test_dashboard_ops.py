"""The operations pages of issue 23 item 5: measured PUE by day and month, alarm history with filters and
acknowledgements, the power chain, and user administration for admins (checked on the server)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dash
import flask
import numpy as np
import pandas as pd
import pytest

from aidc.clock import SteppedClock
from aidc.config import Site, load_site
from aidc.errors import AidcError
from aidc.live import LiveState
from aidc.model import Batch
from aidc.roles import Role as PointRole
from aidc.sitegen import SiteTemplate, render_site
from analytics.alarms.engine import AlarmEngine
from analytics.historian_adapter import pue_from_historian
from dashboards.app import DashboardConfig, create_app, page_for
from dashboards.auth import Role, UserStore
from dashboards.data import DashboardData, power_meters
from dashboards.energy_trend import DayCache, pue_trend, trend_start
from dashboards.forecast import service_for
from dashboards.pages import alarms, energy
from dashboards.pages.alarms import AlarmFilter, select
from dashboards.power_chain import chain, most_loaded
from historian import open_historian
from tests.report_fixture import fixture_batch

PW = "correct-horse-battery"
TZ = "America/New_York"
NOW = pd.Timestamp("2026-11-03T17:00Z")  # 12:00 in New York (EST)


def _site(tmp_path: Path, racks: int = 2) -> Site:
    path = tmp_path / "site.toml"
    path.write_text(render_site(SiteTemplate(racks=racks, timezone=TZ, data_dir=str(tmp_path / "var"), name="ops")))
    return load_site(path)


# ---------------------------------------------------------------------------------------------- measured PUE


@pytest.fixture(scope="module")
def pue_site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    """A site whose counters (report fixture powers: PUE 1.24 at category 3) run from 24 Oct 22:00 UTC to NOW,
    with a 30-minute hole in the utility meter's readings on 29 Oct."""
    tmp = tmp_path_factory.mktemp("pue")
    site = _site(tmp, racks=1)
    gap = (pd.Timestamp("2026-10-29T15:00Z"), pd.Timestamp("2026-10-29T15:35Z"))
    batch = fixture_batch(site, pd.Timestamp("2026-10-25T00:00Z"), NOW - pd.Timedelta("2h"), gap=gap)
    with open_historian(site.config.historian, site.data_dir) as hist:
        hist.write(batch)
        hist.flush()
    return site


def test_trend_starts_at_midnight_site_time_on_the_first_of_last_month() -> None:
    """The trend reaches back to 00:00 site time on the 1st of last month, across a DST change (EDT in October)."""
    assert trend_start(NOW, TZ) == pd.Timestamp("2026-10-01T04:00Z")
    assert trend_start(pd.Timestamp("2027-01-15T12:00Z"), TZ) == pd.Timestamp("2026-12-01T05:00Z")


def test_measured_pue_by_site_day_and_month_with_coverage(pue_site: Site) -> None:
    """Each New York calendar day with complete counters has PUE 1.24 (category 3); a day with a hole says its
    coverage; days before the data have none; today and this month are interim; last month is incomplete."""
    with open_historian(pue_site.config.historian, pue_site.data_dir) as hist:
        t = pue_trend(hist, pue_site, NOW)
    by = {p.label: p for p in t.days}
    assert t.days[0].label == "Thu 01 Oct"
    assert t.days[-1].label == "Tue 03 Nov"
    assert by["Thu 01 Oct"].pue is None
    assert by["Thu 01 Oct"].note == "no counter readings"
    full = by["Mon 26 Oct"]
    assert full.pue == pytest.approx(1.24, abs=1e-6)
    assert full.category.startswith("category 3")
    assert full.complete
    assert not full.interim
    assert full.e_dc_kwh == pytest.approx(124.0 * 24, rel=1e-6)
    assert full.start == pd.Timestamp("2026-10-26T04:00Z")  # midnight EDT
    assert by["Sun 01 Nov"].end - by["Sun 01 Nov"].start == pd.Timedelta("25h")  # the DST day is 25 h long
    holed = by["Thu 29 Oct"]
    assert holed.pue == pytest.approx(1.24, abs=1e-3)
    assert not holed.complete
    assert "coverage" in holed.note
    assert t.today is not None
    assert t.today.interim
    assert t.today.pue == pytest.approx(1.24, abs=1e-3)
    assert t.this_month is not None
    assert t.this_month.interim
    assert t.this_month.label == "Nov 2026"
    assert t.this_month.pue == pytest.approx(1.24, abs=1e-3)
    assert t.last_month is not None
    assert not t.last_month.interim
    assert t.last_month.pue is None
    assert "insufficient data" in t.last_month.note


class RecordingHistorian:
    """A historian that records the time ranges it is asked for (to tell which days were read again)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.ranges: list[tuple[pd.Timestamp, pd.Timestamp]] = []

    def query(self, sel: Any, start: pd.Timestamp, end: pd.Timestamp, **kw: Any) -> pd.DataFrame:
        self.ranges.append((pd.Timestamp(start), pd.Timestamp(end)))
        return self.inner.query(sel, start, end, **kw)


def test_months_add_up_their_days_and_final_days_are_not_read_again(pue_site: Site) -> None:
    """A month from its days' meter statistics matches the month computed whole from raw counters (the report's
    path); complete past days are kept, so a second computation reads no kept day and gives the same figures."""
    cache = DayCache()
    with open_historian(pue_site.config.historian, pue_site.data_dir) as hist:
        first = pue_trend(hist, pue_site, NOW, cache)
        month = first.this_month
        assert month is not None
        whole = pue_from_historian(hist, pue_site, month.start, month.end)
        # Window readings are stamped at the window's end: the fixture's readings, on the 5-minute marks, come
        # 5 minutes late, so the month's edge moves by at most 5 minutes of energy, for E_DC and E_IT alike.
        assert month.e_dc_kwh == pytest.approx(whole.e_dc_kwh, abs=124.0 * 5 / 60 + 1e-6)
        assert month.pue == pytest.approx(whole.pue, rel=1e-6)
        assert len(cache) == 8  # 25 Oct .. 2 Nov, less 29 Oct (a hole)
        rec = RecordingHistorian(hist)
        second = pue_trend(rec, pue_site, NOW, cache)  # type: ignore[arg-type]
    kept = (pd.Timestamp("2026-10-26T06:00Z"), pd.Timestamp("2026-10-27T02:00Z"))
    assert rec.ranges
    assert not [r for r in rec.ranges if r[0] < kept[1] and r[1] > kept[0]]
    for a, b in zip(second.days, first.days, strict=True):
        assert (a.label, a.category, a.coverage) == (b.label, b.category, b.coverage)
        assert (a.pue is None and b.pue is None) or a.pue == pytest.approx(b.pue, rel=1e-9)
    assert second.this_month is not None
    assert second.this_month.pue == pytest.approx(month.pue, rel=1e-9)


def test_energy_page_labels_interim_and_coverage(pue_site: Site) -> None:
    """The Energy page's cards say interim and the category; last month's says why it has no PUE; the daily chart
    draws complete, interim and incomplete days as separate, named bar sets."""
    with open_historian(pue_site.config.historian, pue_site.data_dir) as hist:
        t = pue_trend(hist, pue_site, NOW)
    today, month, last = (str(c) for c in energy.cards(t))
    assert "interim" in today
    assert "category 3" in today
    assert "1.240" in today
    assert "interim" in month
    assert "insufficient data" in last
    fig = energy.figure(t.days, "days")
    names = {tr.name for tr in fig.data}
    assert names == {"measured", "interim (in progress)", "coverage < 100 %"}
    lo, hi = fig.layout.yaxis.range
    assert hi - lo >= 0.04  # a sensible minimum span around a flat 1.24
    waiting = [str(c) for c in energy.cards(None)]
    assert all("computing" in c for c in waiting)


# ---------------------------------------------------------------------------------------------- alarms


def _engine(tmp_path: Path) -> AlarmEngine:
    """An engine with one hot rack (active), one cleared approach alarm and one predictive alarm."""
    site = _site(tmp_path)
    engine = AlarmEngine.from_site(site)
    hot = engine.rules["gpu_hot"]
    t0 = 1_800_000_000 * 10**9
    frame = pd.DataFrame(
        {
            "measurement": ["gpu_rack"],
            "field": ["gpu_temp_c"],
            "rack": ["r-hot"],
            "device": ["rc-hot"],
            "value": [hot.threshold + 5],
            "quality": ["good"],
        }
    )
    for k in range(int(hot.raise_delay_s) + 2):
        engine.evaluate(frame, t0 + k * 10**9)
    engine.add_external_rule("predicted_fouling", "predicted fouling", "minor", "K", 1.0, "fault model")
    engine.raise_external("predicted_fouling", "cdu-1", 2.0, t0, "fouling developing on cdu-1")
    engine.raise_external("predicted_fouling", "cdu-2", 2.0, t0 - 40 * 86400 * 10**9, "old fouling on cdu-2")
    engine.clear_external("predicted_fouling", "cdu-2", t0 - 39 * 86400 * 10**9)
    return engine


def test_alarm_history_filters(tmp_path: Path) -> None:
    """Severity, subject, kind (predictive), state and time range each narrow the list; old cleared alarms fall
    outside a 30-day range but stay under 'all'."""
    engine = _engine(tmp_path)
    now = 1_800_000_100 * 10**9
    everything = select(engine, now, AlarmFilter.of([], [], [], [], "all"))
    assert {a.subject for a in everything} == {"r-hot", "cdu-1", "cdu-2"}
    assert {a.subject for a in select(engine, now, AlarmFilter.of([], [], [], [], "30d"))} == {"r-hot", "cdu-1"}
    assert [a.subject for a in select(engine, now, AlarmFilter.of(["major"], [], [], [], "all"))] == ["r-hot"]
    predictive = select(engine, now, AlarmFilter.of([], [], ["predictive"], [], "all"))
    assert {a.subject for a in predictive} == {"cdu-1", "cdu-2"}
    cleared = select(engine, now, AlarmFilter.of([], [], [], ["cleared"], "all"))
    assert [a.subject for a in cleared] == ["cdu-2"]
    assert [a.subject for a in select(engine, now, AlarmFilter.of([], ["cdu-1"], [], [], "all"))] == ["cdu-1"]
    assert select(engine, now, AlarmFilter.of("major", 5, None, {"x": 1}, 7)) == select(
        engine, now, AlarmFilter.of([], [], [], [], "24h")
    )  # forged filter values count as no selection


def test_acknowledgement_is_stored_and_shown_with_who_and_when(tmp_path: Path) -> None:
    """An acknowledgement, of an active alarm or of one that cleared unacknowledged, survives a restart (the engine
    replays its store) and the table shows who and when in site time; alarms still due carry a button."""
    engine = _engine(tmp_path)
    t_ack = 1_800_000_050 * 10**9
    engine.acknowledge("gpu_hot:r-hot", "otto", t_ack)
    html = str(alarms.rows(engine, select(engine, t_ack, AlarmFilter()), TZ, ack=True))
    assert html.count("Acknowledge (cleared)") == 1  # cdu-2's predictive alarm cleared unacknowledged
    cleared = engine.history()[0]
    engine.acknowledge(cleared.id, "olga", t_ack + 1, raised_ns=cleared.raised_ns)
    again = AlarmEngine.from_site(_site(tmp_path))
    again.add_external_rule("predicted_fouling", "predicted fouling", "minor", "K", 1.0, "fault model")
    found = select(again, t_ack, AlarmFilter.of([], [], [], ["acknowledged"], "all"))
    assert [(a.id, a.acked_by, a.acked_ns, a.active) for a in found] == [
        ("gpu_hot:r-hot", "otto", t_ack, True),
        ("predicted_fouling:cdu-2", "olga", t_ack + 1, False),
    ]
    assert [a.id for a in again.active()] == ["gpu_hot:r-hot", "predicted_fouling:cdu-1"]  # none resurrected
    html = str(alarms.rows(again, select(again, t_ack, AlarmFilter.of([], [], [], [], "all")), TZ, ack=True))
    when = pd.Timestamp(t_ack, unit="ns", tz="UTC").tz_convert(TZ)
    assert f"otto, {when:%m-%d %H:%M:%S} {when.tzname()}" in html
    assert "olga, " in html
    assert html.count("'type': 'al-ack'") == 1  # only cdu-1's predictive alarm is still due
    with pytest.raises(AidcError, match="is not active"):
        again.acknowledge("predicted_fouling:cdu-2", "olga", t_ack, raised_ns=1)


# ---------------------------------------------------------------------------------------------- power chain


def test_power_chain_loads_headroom_and_most_loaded(tmp_path: Path) -> None:
    """Utility, UPS (against its rating), rows (sum of PDUs) and racks carry load and headroom; an unknown PDU
    makes its row unknown, never 0; the rack nearest its rating is the most loaded element."""
    site = _site(tmp_path)
    live = LiveState()
    with open_historian(site.config.historian, site.data_dir) as hist:
        data = DashboardData(site, live, hist, SteppedClock(NOW.value), AlarmEngine.from_site(site))
        r1, r2 = data.racks.values()
        values: dict[str, float] = {r1.power or "": 120_000.0, r2.power or "": 60_000.0}
        for role, kw in (
            (PointRole.FACILITY_POWER, 250.0),
            (PointRole.IT_POWER_UPS_OUTPUT, 190.0),
            (PointRole.UPS_INPUT_POWER, 198.0),
        ):
            for sid, m in power_meters(site, [role]).items():
                values[sid] = kw / m.scale
        pdus = power_meters(site, [PointRole.IT_POWER_PDU_OUTPUT])
        for sid, m in pdus.items():
            values[sid] = (121.0 if r1.name in sid else 61.0) / m.scale
        ids = np.array(list(values), dtype=object)
        live.update(
            Batch(
                ids,
                np.full(len(ids), NOW.value, dtype=np.int64),
                np.array(list(values.values())),
                np.zeros(len(ids), dtype=np.uint8),
                [],
            )
        )
        nodes = chain(data)
        by = {(n.level, n.name): n for n in nodes}
        assert by[("utility", "utility feed")].load_kw == pytest.approx(250.0)
        ups = by[("UPS", site.config.ups.name)]
        assert ups.load_kw == pytest.approx(190.0)
        assert ups.headroom_kw == pytest.approx(site.config.ups.rated_kw - 190)
        assert "UPS losses 8.0 kW" in ups.note
        assert by[("rack", r1.name)].headroom_kw == pytest.approx(r1.rated_kw - 120.0)
        pdu1 = next(d.name for d in site.devices if d.kind == "pdu" and d.tags.get("rack") == r1.name)
        assert by[("PDU", pdu1)].load_kw == pytest.approx(121.0)
        assert by[("rack", r1.name)].parent == pdu1
        rows = [n for n in nodes if n.level == "row"]
        assert sum(n.load_kw or 0 for n in rows) == pytest.approx(182.0)
        top = most_loaded(nodes)
        assert top is not None
        assert top.name == pdu1
        # A silent PDU: its row's load is unknown, not the sum of the others.
        live.update(
            Batch(
                np.array([next(s for s in pdus if r1.name in s)], dtype=object),
                np.array([NOW.value + 1]),
                np.array([np.nan]),
                np.array([2], dtype=np.uint8),
                [],
            )
        )
        row1 = next(n for n in chain(data) if n.level == "row" and n.name == f"{r1.hall}/{r1.row}")
        assert row1.load_kw is None
        assert row1.headroom_kw is None


# ---------------------------------------------------------------------------------------------- users


def test_the_last_admin_cannot_be_deleted_or_demoted(tmp_path: Path) -> None:
    """The store refuses to delete or demote the only admin (also through `add` replacing them), allows it once a
    second admin exists, and a new password keeps the role."""
    store = UserStore(tmp_path / "users.json")
    store.add("ada", PW, Role.ADMIN)
    store.add("otto", PW, Role.OPERATOR)
    for change in (
        lambda: store.remove("ada"),
        lambda: store.set_role("ada", Role.OPERATOR),
        lambda: store.add("ada", PW, Role.VIEWER),
    ):
        with pytest.raises(AidcError, match="last admin"):
            change()
    with pytest.raises(AidcError, match="already exists"):
        store.add("otto", PW, Role.ADMIN, replace=False)
    old = store.get("otto")
    store.set_password("otto", "another-long-password")
    new = store.get("otto")
    assert old is not None
    assert new is not None
    assert new.role is Role.OPERATOR
    assert new.password_hash != old.password_hash
    assert store.verify("otto", "another-long-password")
    store.set_role("otto", Role.ADMIN)
    store.remove("ada")
    assert [(u.name, u.role) for u in store.users()] == [("otto", Role.ADMIN)]


@pytest.fixture(scope="module")
def ops_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dash.Dash, DashboardData, UserStore]]:
    """The real dashboard app on a two-rack site, with an admin, an operator and a viewer."""
    tmp = tmp_path_factory.mktemp("ops_app")
    site = _site(tmp)
    with open_historian(site.config.historian, site.data_dir) as hist:
        data = DashboardData(site, LiveState(), hist, SteppedClock(NOW.value), AlarmEngine.from_site(site))
        config = DashboardConfig.from_site(site)
        users = UserStore(config.users_path(site))
        users.add("ada", PW, Role.ADMIN)
        users.add("otto", PW, Role.OPERATOR)
        users.add("vera", PW, Role.VIEWER)
        yield create_app(data, users, config, service_for(data, None)), data, users


def _client(app: dash.Dash, user: str) -> flask.testing.FlaskClient:
    c = app.server.test_client()
    m = re.search(r'name="csrf_token" value="([^"]+)"', c.get("/login").get_data(as_text=True))
    assert m
    assert c.post("/login", data={"username": user, "password": PW, "csrf_token": m.group(1)}).status_code == 302
    return c


def _post(c: flask.testing.FlaskClient, body: dict[str, Any]) -> Any:
    token = c.get_cookie("_csrf_token")
    return c.post(
        "/_dash-update-component",
        data=json.dumps(body),
        headers={"Content-Type": "application/json", "X-CSRFToken": token.value if token else ""},
    )


USER_STATES = ("us-new-name", "us-new-role", "us-new-pw", "us-name", "us-role", "us-pw")


def _users_action(app: dash.Dash, button: str, **state: object) -> dict[str, Any]:
    """The callback request the Users page's ``button`` sends, with the form's values."""
    key = next(k for k in app.callback_map if "us-msg.children" in k)
    outputs = [
        {"id": i, "property": p}
        for i, p in (
            ("us-msg", "children"),
            ("us-list", "children"),
            ("us-audit-box", "children"),
            ("us-name", "options"),
        )
    ]
    prop = "submit_n_clicks" if button == "us-delete" else "n_clicks"
    inputs = [
        {
            "id": b,
            "property": "submit_n_clicks" if b == "us-delete" else "n_clicks",
            "value": 1 if b == button else None,
        }
        for b in ("us-add", "us-set-role", "us-reset", "us-delete")
    ]
    return {
        "output": key,
        "outputs": outputs,
        "inputs": inputs,
        "state": [{"id": s, "property": "value", "value": state.get(s.replace("-", "_"))} for s in USER_STATES],
        "changedPropIds": [f"{button}.{prop}"],
    }


def _audit(data: DashboardData) -> list[dict[str, Any]]:
    path = data.data_dir / "audit" / "users.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def test_user_admin_needs_the_admin_role_on_the_server(ops_app: tuple[dash.Dash, DashboardData, UserStore]) -> None:
    """An operator forging the Users page's add request is refused and audited; the page, its link and its
    content are given to admins only."""
    app, data, users = ops_app
    otto = _client(app, "otto")
    reply = _post(otto, _users_action(app, "us-add", us_new_name="mallory", us_new_role="admin", us_new_pw=PW))
    assert reply.status_code == 200
    assert "needs an admin sign-in" in reply.get_data(as_text=True)
    assert users.get("mallory") is None
    last = _audit(data)[-1]
    assert (last["user"], last["action"], last["target"], last["ok"]) == ("otto", "user add", "mallory", False)
    with app.server.test_request_context():
        flask.g.aidc_user = ("otto", Role.OPERATOR)
        assert "us-refused" in str(page_for(data, "/users", users))
        from dashboards.app import _nav

        assert "/users" not in json.dumps(_nav("/").to_plotly_json(), default=str)
        flask.g.aidc_user = ("ada", Role.ADMIN)
        assert "us-add" in str(page_for(data, "/users", users))
        assert "/users" in json.dumps(_nav("/").to_plotly_json(), default=str)


def test_admin_adds_changes_resets_and_deletes_users_audited(
    ops_app: tuple[dash.Dash, DashboardData, UserStore],
) -> None:
    """An admin adds a user (hashed, generated password shown once), changes a role, resets a password (ending the
    user's sessions) and deletes the user; deleting the last admin is refused; every action lands in the audit with
    who and what, never a password."""
    app, data, users = ops_app
    ada = _client(app, "ada")
    text = _post(ada, _users_action(app, "us-add", us_new_name="nina", us_new_role="operator")).get_data(as_text=True)
    assert "user nina added as operator" in text
    assert "generated password" in text
    password = re.search(r"shown only now\): (\S+?)\"", text)
    assert password
    assert users.verify("nina", password.group(1)) is not None
    assert password.group(1) not in (data.data_dir / "audit" / "users.jsonl").read_text()
    assert "nina is now viewer" in _post(
        ada, _users_action(app, "us-set-role", us_name="nina", us_role="viewer")
    ).get_data(as_text=True)
    assert users.get("nina").role is Role.VIEWER  # type: ignore[union-attr]
    _post(ada, _users_action(app, "us-reset", us_name="nina", us_pw=PW))
    nina = _client(app, "nina")
    assert nina.get("/").status_code == 200
    reset = _post(ada, _users_action(app, "us-reset", us_name="nina", us_pw="a-brand-new-password")).get_data(
        as_text=True
    )
    assert "new password set for nina" in reset
    assert users.verify("nina", "a-brand-new-password")
    assert nina.get("/").status_code == 302  # the old password's session has ended
    assert "nina deleted" in _post(ada, _users_action(app, "us-delete", us_name="nina")).get_data(as_text=True)
    assert users.get("nina") is None
    refused = _post(ada, _users_action(app, "us-delete", us_name="ada")).get_data(as_text=True)
    assert "last admin" in refused
    assert users.get("ada") is not None
    tail = [(e["user"], e["action"], e["target"], e["ok"]) for e in _audit(data)[-6:]]
    assert tail == [
        ("ada", "user add", "nina", True),
        ("ada", "user role", "nina", True),
        ("ada", "user password", "nina", True),
        ("ada", "user password", "nina", True),
        ("ada", "user delete", "nina", True),
        ("ada", "user delete", "ada", False),
    ]


def test_alarm_acknowledge_needs_an_operator(ops_app: tuple[dash.Dash, DashboardData, UserStore]) -> None:
    """A viewer forging the Alarms page's acknowledge request is refused; an operator's is stored with their name;
    a forged raise time is refused without a 500."""
    app, data, _ = ops_app
    data.alarms.add_external_rule("predicted_fouling", "predicted fouling", "minor", "K", 1.0, "fault model")
    data.alarms.raise_external("predicted_fouling", "cdu-1", 2.0, NOW.value, "fouling developing on cdu-1")
    aid = "predicted_fouling:cdu-1"

    def body(raised: object) -> dict[str, Any]:
        ident = {"type": "al-ack", "alarm": aid, "raised": raised}
        return {
            "output": "al-ack-msg.children",
            "outputs": {"id": "al-ack-msg", "property": "children"},
            "inputs": [[{"id": ident, "property": "n_clicks", "value": 1}]],
            "state": [[{"id": ident, "property": "id", "value": ident}]],
            "changedPropIds": [json.dumps(ident, sort_keys=True, separators=(",", ":")) + ".n_clicks"],
        }

    assert "needs an operator" in _post(_client(app, "vera"), body(NOW.value)).get_data(as_text=True)
    assert data.alarms.active()[0].acked_by is None
    otto = _client(app, "otto")
    forged = _post(otto, body("yesterday"))
    assert forged.status_code < 500
    assert data.alarms.active()[0].acked_by is None
    assert f"{aid} acknowledged by otto" in _post(otto, body(NOW.value)).get_data(as_text=True)
    assert data.alarms.active()[0].acked_by == "otto"
