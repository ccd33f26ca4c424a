"""`aidc demo` with the dashboard: start-up progress, the operator's password printed once, SIGTERM stops it all."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import duckdb
import pytest

from tests.browser import free_port
from tests.sim_helpers import site_doc, write_site

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("how", ["sigterm", "ctrl-c"])
def test_demo_serves_the_dashboard_and_stops_cleanly(tmp_path: Path, how: str) -> None:
    """The demo prints numbered progress and a one-time operator password, serves the sign-in page, and on SIGTERM
    (to the demo) or Ctrl-C (SIGINT to the terminal's whole process group, simulator included) stops the dashboard,
    the collectors, the historian and the simulator process with exit status 0 and no traceback."""
    doc = site_doc(tmp_path, racks=2)
    port = free_port(doc)
    doc["dashboard"] = {"port": port}
    path = write_site(tmp_path, doc)
    log = (tmp_path / "demo.log").open("w+")
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "demo", "--config", str(path), "--summary-every", "2"],
                            cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while "[4/4]" not in (out := (tmp_path / "demo.log").read_text()):
            assert proc.poll() is None, out
            assert time.monotonic() < deadline, out
            time.sleep(0.2)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=10) as resp:
            assert b"Sign in" in resp.read()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as resp:
            assert resp.url.endswith("/login")  # pages need a sign-in
        while "stored" not in (out := (tmp_path / "demo.log").read_text()):
            assert time.monotonic() < deadline, out
            time.sleep(0.2)
    finally:
        if how == "sigterm":
            proc.send_signal(signal.SIGTERM)
        else:
            os.killpg(proc.pid, signal.SIGINT)
        code = proc.wait(timeout=60)
    out = (tmp_path / "demo.log").read_text()
    assert code == 0, out
    for step in ("[1/4]", "[2/4]", "[3/4]", "[4/4]"):
        assert step in out
    assert f"dashboard: http://127.0.0.1:{port}" in out
    passwords = re.findall(r"sign in as 'operator' with password (\S+)", out)
    assert len(passwords) == 1
    assert len(passwords[0]) >= 16
    assert "dashboard stopped" in out
    assert "stopping (dashboard, collectors, historian, then the simulator)" in out
    assert "simulated facility stopped" in out
    assert "Traceback" not in out
    users = (tmp_path / "var" / "dashboard-users.json").read_text()
    assert passwords[0] not in users  # only its hash is stored
    # The historian was closed: another process can open its file.
    db = next((tmp_path / "var").rglob("*.duckdb"))
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("select count(*) from points_all").fetchone()[0] > 0  # type: ignore[index]


def test_a_port_chosen_beside_a_site_is_none_of_its_device_ports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                                   ) -> None:
    """A dashboard port drawn for a site skips the site's device ports and the control port below each (its
    simulator binds them only when it starts: a CI run lost the demo test to a dashboard port the simulator took)."""
    import tests.browser as browser

    doc = site_doc(tmp_path, racks=2)
    plant = urlsplit(doc["plant"]["endpoint"]).port  # the OPC-UA plant the failing run's dashboard collided with
    assert plant is not None
    draws = iter([plant, plant - 1, 9999])
    monkeypatch.setattr(browser, "free_port_block", lambda n: next(draws))
    monkeypatch.setattr(browser, "_bindable", lambda p: True)
    assert browser.free_port(doc) == 9999
