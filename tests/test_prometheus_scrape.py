"""Debian's Prometheus scrapes aidc's /metrics over loopback and answers a rack's power through its HTTP API.

The target is a running job: the simulated 2-rack facility in its own process, the collectors, the live state and
the historian writer (``app.job.MainJob``), and the REST API on a free port with what the job hands it. The
test scrapes ``aidc demo`` itself (:func:`aidc_demo`), which hosts the API; :func:`job_in_process` builds the same
parts in this process, for debugging.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from aidc.config import load_site
from api.app import create_app
from api.auth import TokenStore
from api.context import ApiContext
from api.server import ApiServer
from app.job import MainJob
from simulators.process import SimulatorProcess
from tests.browser import free_port, wait_for
from tests.conftest import site_dict
from tests.debtools import require_tool
from tests.sim_helpers import site_doc, write_site

pytestmark = pytest.mark.needs_deb
REPO = Path(__file__).resolve().parents[1]
RACKS = 2


def get(url: str, timeout_s: float = 10.0) -> tuple[int, bytes]:
    """One GET on loopback: status and body (errors included)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 - http://127.0.0.1 only
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def site_file(tmp: Path) -> Path:
    """A generated 2-rack site on free ports, polled every second."""
    doc = site_doc(tmp, RACKS)
    for hall in doc["halls"]:
        for rack in hall["racks"]:
            for key in ("pdu", "controller"):
                rack[key]["poll_interval_s"] = 1.0
        for cdu in hall["cdus"]:
            cdu["poll_interval_s"] = 1.0
    for key in ("plant", "ups"):
        doc[key]["poll_interval_s"] = 1.0
    for meter in doc["meters"]:
        meter["poll_interval_s"] = 1.0
    return write_site(tmp, doc)


@contextlib.contextmanager
def job_in_process(tmp: Path) -> Iterator[str]:
    """The simulator process, the main job on a thread's loop and the API over it; yields the API's base URL."""
    path = site_file(tmp)
    site = load_site(path)
    with contextlib.ExitStack() as stack:
        sim = SimulatorProcess(path).start()
        stack.callback(sim.stop)
        job = MainJob.build(site)
        loop = asyncio.new_event_loop()
        task = loop.create_task(job.run(summary_every_s=3600, printer=lambda _: None))
        thread = threading.Thread(target=lambda: _run(loop, task), name="main job", daemon=True)
        thread.start()
        stack.callback(thread.join, 30)
        stack.callback(lambda: loop.call_soon_threadsafe(task.cancel))
        ctx = ApiContext(site=site, historian=job.historian, tokens=TokenStore.from_env({}), live=job.live,
                         collector_health=job.engine.health, writer=job.writer)  # fmt: skip
        server = stack.enter_context(ApiServer(create_app(ctx), port=free_port()))
        yield server.url


def _run(loop: asyncio.AbstractEventLoop, task: asyncio.Task[None]) -> None:
    asyncio.set_event_loop(loop)
    with contextlib.suppress(asyncio.CancelledError):
        loop.run_until_complete(task)
    loop.close()


@contextlib.contextmanager
def aidc_demo(tmp: Path) -> Iterator[str]:
    """``aidc demo`` on the same 2-rack site (its own process; the site file gives the free device ports, so no
    ``--racks``), serving the dashboard and the API on free ports; yields the API's URL."""
    port = free_port()
    cmd = [sys.executable, "-m", "app.cli", "demo", "--config", str(site_file(tmp)), "--port", str(free_port()),
           "--api-port", str(port), "--summary-every", "60"]  # fmt: skip
    log = (tmp / "demo.log").open("w")
    proc = subprocess.Popen(
        cmd, cwd=tmp, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONPATH=str(REPO))
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: get(f"{url}/health")[0] == 200 or proc.poll() is not None, 120, "aidc demo /health 200")
        assert proc.poll() is None, (tmp / "demo.log").read_text()[-3000:]
        yield url
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


TARGET: Callable[[Path], AbstractContextManager[str]] = aidc_demo  # job_in_process: the same parts in-process


@contextlib.contextmanager
def prometheus(tmp: Path, target: str) -> Iterator[str]:
    """Debian's prometheus on a free loopback port scraping ``target`` (host:port) every second; yields its URL."""
    binary = require_tool("prometheus")
    config = tmp / "prometheus.yml"
    config.write_text(json.dumps({  # YAML is a superset of JSON
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [{"job_name": "aidc", "metrics_path": "/metrics", "static_configs": [{"targets": [target]}]}],
    }), encoding="utf-8")  # fmt: skip
    port = free_port()
    log = (tmp / "prometheus.log").open("w")
    cmd = [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'tsdb'}",
           f"--web.listen-address=127.0.0.1:{port}"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=tmp, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: get(f"{url}/-/ready")[0] == 200 or proc.poll() is not None, 60, "prometheus ready")
        assert proc.poll() is None, (tmp / "prometheus.log").read_text()[-3000:]
        yield url
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def query(prom: str, expr: str) -> list[dict[str, Any]]:
    """An instant query through Prometheus's HTTP API: the result vector."""
    status, body = get(f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert status == 200, body[:500]
    doc = json.loads(body)
    assert doc["status"] == "success", doc
    result: list[dict[str, Any]] = doc["data"]["result"]
    return result


def exporter_rack_power(api: str) -> dict[str, float]:
    """Rack power straight from the exporter's /metrics, by rack."""
    text = get(f"{api}/metrics")[1].decode()
    return {s.labels["rack"]: s.value for fam in text_string_to_metric_families(text)
            for s in fam.samples if s.name == "aidc_rack_power_watts"}  # fmt: skip


def test_prometheus_scrapes_the_job_and_answers_rack_power(tmp_path: Path) -> None:
    """Prometheus scrapes a running job's /metrics each second; its HTTP API answers one aidc_rack_power_watts series
    per rack with the value the exporter serves, plus aidc_pue with its category, and the target is up."""
    racks = {r["name"] for hall in site_dict(RACKS)["halls"] for r in hall["racks"]}
    with TARGET(tmp_path) as api, prometheus(tmp_path, urllib.parse.urlsplit(api).netloc) as prom:
        series = wait_for(lambda: len(r := query(prom, "aidc_rack_power_watts")) == RACKS and r, 90,
                          "one aidc_rack_power_watts series per rack in Prometheus", every_s=0.5)  # fmt: skip
        assert {s["metric"]["rack"] for s in series} == racks
        assert {s["metric"]["hall"] for s in series} == {"h1"}
        assert all(s["metric"]["job"] == "aidc" for s in series)

        def agrees() -> bool:
            # The collectors poll each second and Prometheus scrapes each second: look for a moment both hold
            # the same poll (a rack's power changes with every poll of the simulated workload).
            stored = {s["metric"]["rack"]: float(s["value"][1]) for s in query(prom, "aidc_rack_power_watts")}
            return stored == exporter_rack_power(api)

        wait_for(agrees, 60, "Prometheus's rack power equal to the exporter's", every_s=0.2)
        power = {s["metric"]["rack"]: float(s["value"][1]) for s in query(prom, "aidc_rack_power_watts")}
        assert all(10_000 < w < 150_000 for w in power.values()), power  # watts of a GB200-class rack
        pue = wait_for(lambda: query(prom, "aidc_pue"), 60, "aidc_pue in Prometheus", every_s=0.5)
        assert pue[0]["metric"]["category"] in {"1", "2", "3"}
        assert 1.0 < float(pue[0]["value"][1]) < 2.0
        up = query(prom, 'up{job="aidc"}')
        assert [float(u["value"][1]) for u in up] == [1.0]
