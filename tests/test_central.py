"""Several sites, one central VictoriaMetrics: store-and-forward through an outage, and the central portfolio API."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aidc.config import Site, load_site
from aidc.model import Batch, SeriesKey
from aidc.sitegen import SiteTemplate, render_site
from api.app import create_app
from api.auth import TokenStore
from api.server import ApiServer
from api.sites import Portfolio
from app.commands.serve import PortfolioFigures, central_contexts
from dashboards.pages.portfolio import table_rows
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
