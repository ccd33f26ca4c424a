"""The main job: `aidc demo` starts the simulated 32-rack facility and collects it into the historian."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import duckdb

from aidc.config import load_site
from historian import SeriesSelector, open_historian
from tests.sim_helpers import free_port_block

REPO = Path(__file__).resolve().parents[1]


def test_demo_runs_32_racks_all_devices_up_and_stores(tmp_path: Path) -> None:
    """`aidc demo` brings up 32 racks' devices on 127.0.0.1, collects every one and stores points in DuckDB."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    api = ["--api-port", str(free_port_block(1))]  # not the default 8081, which a running job may hold
    proc = subprocess.run(
        [sys.executable, "-m", "app.cli", "demo", "--racks", "32", "--duration", "14", "--summary-every", "3", *api],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        check=False,
    )
    out = proc.stdout
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "every device answers on 127.0.0.1" in out
    assert "modbus://127.0.0.1:15041" in out
    assert "meter-utility (unit 1), meter-cooling (unit 2)" in out
    assert "opc.tcp://127.0.0.1:4841/aidc/h1" in out
    ups = [m for m in re.finditer(r"devices (\d+)/(\d+) up", out)]
    assert ups, out
    assert ups[-1].group(1) == ups[-1].group(2) == "77"
    power = re.findall(r"IT ([\d.]+) MW(?: \(category \d\))? \| facility ([\d.]+) MW", out)
    it, fac = (float(x) for x in power[-1])
    assert 1.0 < fac / it < 1.5, "instantaneous PUE of the simulated facility is plausible"
    dbs = list((tmp_path / "var" / "demo").rglob("*.duckdb"))
    assert dbs, "the historian file exists"
    con = duckdb.connect(str(dbs[0]), read_only=True)
    tables = {r[0] for r in con.execute("select table_name from information_schema.tables").fetchall()}
    assert tables
    counts = [con.execute(f'select count(*) from "{t}"').fetchone()[0] for t in tables]  # noqa: S608 - table names from the catalogue
    assert max(counts) > 1000
    # The cooling supervisor runs in the main job: advisory by default, it decided and audited (no writes).
    assert "cooling supervisor: mode advisory" in out
    audit = tmp_path / "var" / "demo" / "audit" / "control.jsonl"
    assert audit.is_file(), "the supervisor's audit log exists"
    records = [json.loads(line) for line in audit.read_text(encoding="utf-8").splitlines() if line.strip()]
    decisions = [r for r in records if r.get("kind") == "decision"]
    assert decisions, records[-3:]
    assert all(r["mode"] == "advisory" and not r.get("written") for r in decisions)
    con.close()
    # The generated demo site stores the simulated GPUs at NVML's resolution (whole °C here): its history grows slower.
    site = load_site(tmp_path / "var" / "demo" / "site.toml")
    hist = open_historian(site.config.historian, site.data_dir)
    try:
        temps = hist.query(SeriesSelector.parse("gpu_rack,*,gpu_temp_c"), 0, 2**62)["value"].dropna()
    finally:
        hist.close()
    assert len(temps) > 100
    assert (temps == temps.round()).all(), temps[temps != temps.round()].head()
