"""Shared pytest fixtures for the core."""

from __future__ import annotations

import json
import os
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from aidc.config import Site, load_site, site_from_dict
from aidc.sitegen import SiteTemplate, render_site
from tests.demo_stack import FirstHourDemo, started_demo

# A demo a test starts (in process or as a child, which inherits this) simulates no history unless the test asks
# with --history-days: a month of history per demo would not fit the suite's time budget.
os.environ.setdefault("AIDC_HISTORY_DAYS", "0")


def site_dict(racks: int = 4, **kw: Any) -> dict[str, Any]:
    """A generated site document as a dict (tests mutate it to make broken files)."""
    return tomllib.loads(render_site(SiteTemplate(racks=racks, **kw)))


@pytest.fixture
def small_site(tmp_path: Path) -> Site:
    """A valid 4-rack simulated site whose data directory is under tmp_path."""
    doc = site_dict(4, data_dir=str(tmp_path / "var"))
    return site_from_dict(doc, source="small.toml", path=tmp_path / "small.toml")


DATA = Path(__file__).resolve().parents[1] / "data"  # the bundled real data (data/README.md)


class _Hook(BaseHTTPRequestHandler):
    """A webhook receiver: every POSTed JSON body is kept in ``received``."""

    received: list[dict[str, Any]] = []  # noqa: RUF012 - one list per test server, reset in the fixture

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def hook_server() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A webhook receiver on a free loopback port: its URL and the JSON bodies it received."""
    _Hook.received = []
    srv = HTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_port}/hook", _Hook.received
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="session")
def first_hour_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FirstHourDemo]:
    """The suite's one backfilled demo (tests/demo_stack.py), live; once stopped, its historian keeps the history
    (a later start reuses it: no second backfill)."""
    from app.backfill import has_history
    from historian import open_historian

    with started_demo(tmp_path_factory.mktemp("first-hour")) as demo:
        yield demo
    site = load_site(demo.site)
    with open_historian(site.config.historian, site.data_dir) as hist:
        assert has_history(hist, site), f"the demo's history is not in {site.data_dir} after it stopped"
