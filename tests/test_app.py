"""The main job wired together: simulator process, collectors, historian (local + remote) and live state."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import duckdb

from aidc.config import load_site
from app.job import MainJob
from simulators.process import SimulatorProcess
from tests.sim_helpers import FAKE_PHYSICS, site_doc, write_site


def _closed_port() -> int:
    """A loopback port nothing listens on (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _poll_every(node: object, seconds: float) -> None:
    """Set every device's poll interval in a site document."""
    if isinstance(node, dict):
        if "poll_interval_s" in node:
            node["poll_interval_s"] = seconds
        for v in node.values():
            _poll_every(v, seconds)
    elif isinstance(node, list):
        for v in node:
            _poll_every(v, seconds)


def test_app_keeps_collecting_into_spool_when_remote_is_down_at_start(tmp_path: Path) -> None:
    """With VictoriaMetrics unreachable from the start, the job still collects every device, keeps the local
    DuckDB store current and spools everything for the remote."""
    doc = site_doc(tmp_path, racks=2)
    _poll_every(doc, 1.0)
    doc["historian"] = {
        "backend": "victoriametrics",
        "keep_local": True,
        "remote": {"url": f"http://127.0.0.1:{_closed_port()}", "timeout_s": 1},
    }
    path = write_site(tmp_path, doc)
    site = load_site(path)
    lines: list[str] = []
    with SimulatorProcess(path, physics=FAKE_PHYSICS):
        job = MainJob.build(site)
        assert job.historian.backend == "duckdb+victoriametrics"
        asyncio.run(job.run(duration_s=8, summary_every_s=2, printer=lines.append))
    n_dev = len(site.devices)
    assert f"devices {n_dev}/{n_dev} up" in lines[-1]
    assert job.writer.write_errors == 0
    spool = site.data_dir / "historian-spool"
    assert any(p.stat().st_size > 0 for p in spool.rglob("*") if p.is_file()), "batches wait in the spool"
    con = duckdb.connect(str(site.data_dir / "historian.duckdb"), read_only=True)
    stored = con.execute("select count(*) from points_all").fetchone()
    assert stored is not None
    assert stored[0] >= job.writer.points_written * 0.5
    assert stored[0] > 1000, "more than one poll round of every device (about 500 points) is stored locally"
