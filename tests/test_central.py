"""Several sites, one central VictoriaMetrics: store-and-forward through an outage, and the central portfolio API."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from aidc.config import Site, load_site
from aidc.model import Batch, SeriesKey
from aidc.sitegen import SiteTemplate, render_site
from api.app import create_app
from api.auth import TokenStore
from api.context import ApiContext
from api.server import ApiServer
from api.sites import Portfolio
from api.sites import sites as answer_sites
from app.cli import main as cli_main
from app.commands.serve import PortfolioFigures, central_contexts
from dashboards.auth import Role, UserStore
from dashboards.pages.portfolio import table_rows
from dashboards.portfolio_app import create_portfolio_app
from historian import open_historian
from historian.fanout import FanoutHistorian
from historian.forward import RemoteHistorian
from historian.lineproto import LineEncoder, to_line_protocol
from historian.reconcile import Reconciliation, reconcile
from historian.victoria import CentralStore
from simulators.telemetry import generate
from tests.vm_server import VMServer, free_port, require_vm

READ = "central-read-token"
SAMPLE_S = 10.0
MINUTES = 30  # of telemetry per site, ending now: the portfolio's energy PUE needs counters over a span


def site_file(tmp: Path, name: str, base_port: int, url: str) -> Site:
    """A one-rack site forwarding to ``url`` with its local DuckDB store kept (store-and-forward)."""
    text = render_site(SiteTemplate(racks=1, name=name, base_port=base_port, opcua_port=base_port + 100,
                                    poll_interval_s=SAMPLE_S, data_dir=str(tmp / name)))  # fmt: skip
    text += (
        f'\n[historian]\nbackend = "victoriametrics"\nkeep_local = true\n'
        f'[historian.remote]\nurl = "{url}"\nbackoff_initial_s = 0.05\nbackoff_max_s = 0.5\n'
    )
    path = tmp / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return load_site(path)


def settled(check: Callable[[], Reconciliation], timeout_s: float = 30.0) -> Reconciliation:
    """The reconciliation once nothing is missing, or the last one after ``timeout_s`` (waits on state)."""
    deadline = time.monotonic() + timeout_s
    while True:
        r = check()
        if r.lost == 0 or time.monotonic() > deadline:
            return r
        time.sleep(0.5)


@pytest.fixture(scope="module")
def central(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[VMServer, list[Site], int]]:
    """Two site writers forwarding to one central store that is down for a stretch in the middle."""
    require_vm()
    tmp = tmp_path_factory.mktemp("central")
    server = VMServer(tmp / "vmdata", free_port())
    server.start()
    sites = [site_file(tmp, "north", 21000, server.url), site_file(tmp, "south", 22000, server.url)]
    start_ns = time.time_ns() - MINUTES * 60 * 1_000_000_000
    stores, batches = [], []
    for i, site in enumerate(sites):
        tel = generate(site, duration_s=MINUTES * 60, sample_s=SAMPLE_S, start_ns=start_ns, schedule=None)
        parts = list(tel.batches(rows_per_batch=12))
        # A health series without a site tag, as the job's writer makes: the centre must tell the sites' apart.
        health = SeriesKey.of("aidc_writer", "points_written", {}).id
        parts.append(Batch(np.array([health], dtype=object), np.array([start_ns + i], dtype=np.int64),
                           np.array([float(i)]), np.zeros(1, dtype=np.uint8)))  # fmt: skip
        batches.append(parts)
        stores.append(open_historian(site.config.historian, site.data_dir, site=site.name))
    try:
        n = len(batches[0])
        for k in range(n):
            if k == n // 3:
                server.stop()  # the outage: both sites spool
            if k == 2 * n // 3:
                server.start()
            for store, parts in zip(stores, batches, strict=True):
                if k < len(parts):
                    store.write(parts[k])
        for store in stores:
            assert isinstance(store, FanoutHistorian)
            assert isinstance(store.remote, RemoteHistorian)
            assert store.remote.wait_drained(60)
        for store in stores:
            store.close()  # the site jobs stop; their local DuckDB files are read back by the test
        stores = []
        server.flush()
        yield server, sites, start_ns
    finally:
        for store in stores:
            store.close()
        server.stop()


@pytest.mark.needs_deb
def test_every_point_reaches_the_central_store_after_an_outage(central: tuple[VMServer, list[Site], int]) -> None:
    """Each site's local points (series, ms, value, quality) are all in the central store under its site tag, and
    the centre holds none the site did not store."""
    server, sites, start_ns = central
    store = CentralStore(server.url)
    try:
        assert store.site_names() == ["north", "south"]
        end = time.time_ns() + 60 * 1_000_000_000
        for site in sites:
            local = open_historian(site.config.historian.model_copy(update={"backend": "duckdb"}), site.data_dir)
            try:
                # New series become searchable a moment after the flush: read again until the store has settled.
                r = settled(partial(reconcile, local, store.site(site.name), site.name, start_ns - 1, end))
            finally:
                local.close()
            assert r.local_points > 3000
            assert (r.missing, r.different, r.extra) == (0, 0, 0), r.examples
    finally:
        store.close()


@pytest.mark.needs_deb
def test_sites_route_lists_every_site_with_pue(central: tuple[VMServer, list[Site], int]) -> None:
    """GET /api/v1/sites on the central server lists both sites with a PUE, facility power and headroom; a token is
    needed as on every route."""
    server, sites, _ = central
    store = CentralStore(server.url)
    tokens = TokenStore.from_env({"AIDC_API_TOKENS": f"portfolio:read:{READ}"})
    contexts = central_contexts(store, sites, tokens)
    portfolio = Portfolio(contexts, store.site_names)
    home = contexts[sites[0].name]
    home.portfolio = portfolio
    try:
        with ApiServer(create_app(home), port=free_port()) as api:
            req = urllib.request.Request(api.url + "/api/v1/sites")  # noqa: S310 - loopback test server
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(req, timeout=60)  # noqa: S310 - loopback test server
            assert refused.value.code == 401
            req.add_header("Authorization", f"Bearer {READ}")
            with urllib.request.urlopen(req, timeout=120) as resp:  # noqa: S310 - loopback test server
                body: dict[str, Any] = json.loads(resp.read())
            with urllib.request.urlopen(api.url + "/openapi.json", timeout=60) as resp:  # noqa: S310 - loopback
                assert "/api/v1/sites" in json.loads(resp.read())["paths"]
        rows = {r["site"]: r for r in body["sites"]}
        assert body["central"] is True
        assert sorted(rows) == ["north", "south"]
        for name, row in rows.items():
            assert row["pue"] is not None, (name, row)
            assert 1.0 < row["pue"] < 2.0, (name, row)
            assert row["pue_method"] == "energy", (name, row["notes"])
            assert row["facility_kw"] > 0
            assert row["headroom_kw"] is not None
            assert row["alarms_active"] is not None
        cells = table_rows(body["sites"])
        assert [c["site"] for c in cells] == ["north", "south"]
        assert all(c["PUE"] != "—" and c["facility power"].endswith(" kW") for c in cells)
        # A site the store holds but the centre has no file for is listed, without figures, saying why.
        partial_rows = Portfolio({"north": contexts["north"]}, store.site_names).rows()
        assert [r["site"] for r in partial_rows] == ["north", "south"]
        assert partial_rows[1]["pue"] is None
        assert "no site file" in partial_rows[1]["notes"][0]
        trend = PortfolioFigures(portfolio).trend("north", 1.0)
        assert len(trend) >= 3
        assert (trend["kw"] > 0).all()
    finally:
        store.close()


def test_site_tag_added_only_where_missing() -> None:
    """The line protocol a site forwards gives its site name to series without one and leaves the others alone."""
    own = SeriesKey.of("pdu", "active_power_w", {"site": "north", "device": "p1"}).id
    bare = SeriesKey.of("aidc_writer", "points_written", {}).id
    batch = Batch(np.array([own, bare], dtype=object), np.array([1, 2], dtype=np.int64), np.array([1.0, 2.0]),
                  np.zeros(2, dtype=np.uint8))  # fmt: skip
    text = to_line_protocol(batch).data.decode()
    assert "aidc_writer points_written" in text
    lines = LineEncoder(site="south").encode(batch).data.decode().splitlines()
    assert lines == [f"{own}=1 1", "aidc_writer,site=south points_written=2 2"]


@pytest.mark.needs_deb
def test_a_site_job_answers_sites_for_itself(central: tuple[VMServer, list[Site], int]) -> None:
    """Without a portfolio (a site's own API on its local store), GET /api/v1/sites answers with that one site."""
    _, sites, _ = central
    site = sites[1]
    local = open_historian(site.config.historian.model_copy(update={"backend": "duckdb"}), site.data_dir)
    try:
        ctx = ApiContext(site=site, historian=local, tokens=TokenStore.from_env({}), predictive_alarms=list)
        body = answer_sites(ctx)
    finally:
        local.close()
    assert body["central"] is False
    assert [r["site"] for r in body["sites"]] == ["south"]
    assert body["sites"][0]["pue_method"] == "energy"


class FakePortfolio:
    """Two sites' figures as the central server computes them: one complete, one without data yet."""

    def rows(self) -> list[dict[str, Any]]:
        """The rows."""
        return [
            {"site": "north", "pue": 1.08234, "pue_method": "energy", "pue_category": 2, "facility_kw": 312.456,
             "alarms_active": 1, "headroom_kw": 42.04, "headroom_limit": "racks", "notes": []},
            {"site": "west", "pue": None, "pue_method": None, "facility_kw": None, "alarms_active": None,
             "headroom_kw": None, "notes": ["no site file for this site on the central server"]},
        ]  # fmt: skip

    def trend(self, site: str, hours: float) -> pd.DataFrame:
        """Three 5-minute windows for north, nothing for west."""
        if site != "north":
            return pd.DataFrame({"ts": pd.Series([], dtype="datetime64[ns, UTC]"), "kw": pd.Series([], dtype=float)})
        ts = pd.date_range("2026-12-01T10:00Z", periods=3, freq="5min")
        return pd.DataFrame({"ts": ts, "kw": [300.0, 310.0, 312.0]})


def test_portfolio_page_behind_sign_in_shows_readable_figures(tmp_path: Path) -> None:
    """The central dashboard asks for a sign-in, then its Portfolio page lists every site with readable figures (an
    em dash where a figure is unknown) and a trend per site."""
    users = UserStore(tmp_path / "users.json")
    users.add("vera", "correct-horse-battery", Role.VIEWER)
    app = create_portfolio_app(FakePortfolio(), users)
    c = app.server.test_client()
    assert c.get("/").headers["Location"].endswith("/login")
    page = c.get("/login").get_data(as_text=True)
    m = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert m
    form = {"username": "vera", "password": "correct-horse-battery", "csrf_token": m.group(1)}
    assert c.post("/login", data=form).status_code == 302
    token = c.get_cookie("_csrf_token")
    body = {
        "output": "..nav.children...page.children..",
        "outputs": [{"id": "nav", "property": "children"}, {"id": "page", "property": "children"}],
        "inputs": [{"id": "url", "property": "pathname", "value": "/"}],
        "changedPropIds": ["url.pathname"],
    }
    resp = c.post("/_dash-update-component", data=json.dumps(body),
                  headers={"Content-Type": "application/json", "X-CSRFToken": token.value if token else ""})  # fmt: skip
    assert resp.status_code == 200
    text = json.dumps(resp.get_json(), ensure_ascii=False)
    for shown in ("north", "west", "1.082", "312.5 kW", "42.0 kW (racks)", "energy (ISO/IEC 30134-2, last hour)",
                  "no site file", "north: facility power", "west: no complete facility-power window yet"):  # fmt: skip
        assert shown in text, shown
    cells = table_rows(FakePortfolio().rows())
    assert cells[1]["PUE"] == "—"
    assert cells[1]["facility power"] == "—"


def test_serve_refuses_bad_input_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """aidc serve without a site file, or with two files of one site, stops with one line naming the problem."""
    url = f"http://127.0.0.1:{free_port()}"
    assert cli_main(["serve", "--backend", "victoriametrics", "--url", url, "--no-dashboard"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "--site" in err[0]
    a = site_file(tmp_path, "north", 21000, url).path
    assert cli_main(["serve", "--backend", "victoriametrics", "--url", url, "--site", str(a), "--site", str(a)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "'north' is already given" in err[0]
