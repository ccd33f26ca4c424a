"""`aidc pue` end to end: simulated telemetry stored in the historian gives the simulator's true energy ratio."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from aidc.config import load_site
from aidc.sitegen import SiteTemplate, render_site
from historian import open_historian
from simulators.facility import Facility
from simulators.telemetry import generate

START = "2026-07-01T00:00:00Z"


def test_pue_cli_matches_simulated_energy(tmp_path: Path) -> None:
    """PUE printed by `aidc pue` from stored counters equals the simulator's facility/IT energy within 0.5 %."""
    path = tmp_path / "site.toml"
    path.write_text(render_site(SiteTemplate(racks=2, start=START, data_dir="var")))
    site = load_site(path)
    fac = Facility(site)
    telemetry = generate(site, duration_s=2 * 86400, sample_s=300, schedule=None, facility=fac)
    with open_historian(site.config.historian, site.data_dir) as hist:
        for batch in telemetry.batches():
            hist.write(batch)
        hist.flush()
    proc = subprocess.run(
        [sys.executable, "-m", "app.cli", "pue", "--config", str(path), "--from", "2026-07-01T00:00Z",
         "--to", "2026-07-03T00:00Z", "--json"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (report,) = json.loads(proc.stdout)
    truth = fac.energy_wh["facility"] / fac.energy_wh["it"]
    assert report["category"] == 3, "rack input energy is metered, so the report is category 3 (advanced)"
    assert report["pue"] == pytest.approx(truth, rel=5e-3)
    assert report["coverage"] > 0.99
    assert report["e_it_kwh"] == pytest.approx(fac.energy_wh["it"] / 1000, rel=1e-2)
    text = subprocess.run(
        [sys.executable, "-m", "app.cli", "pue", "--config", str(path), "--from", "2026-07-01T00:00Z",
         "--to", "2026-07-03T00:00Z", "--period", "day"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert text.returncode == 0, text.stderr
    assert "PUE" in text.stdout
    assert text.stdout.count("2026-07-0") >= 2, "one row per calendar day"


def test_pue_cli_bad_time_is_one_line(tmp_path: Path) -> None:
    """A time without a zone is refused with one line naming the option and the value."""
    path = tmp_path / "site.toml"
    path.write_text(render_site(SiteTemplate(racks=1, data_dir="var")))
    proc = subprocess.run(
        [sys.executable, "-m", "app.cli", "pue", "--config", str(path), "--from", "2026-07-01", "--to", "2026-07-02"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "aidc pue: --from '2026-07-01': give a time zone (e.g. 2026-07-01T00:00Z); aidc stores UTC"
    ]


def test_now_is_the_facilitys_clock_on_a_simulated_site(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """On a site running on the simulator's published clock (three days behind the wall), `--from=-1h --to now` in
    `aidc query` and `aidc pue` means the facility's last hour, as the job stores it, not the wall clock's."""
    import time

    import numpy as np

    from aidc.clock import ScaledClock
    from aidc.model import Batch, SeriesKey
    from app.cli import main

    path = tmp_path / "site.toml"
    path.write_text(render_site(SiteTemplate(racks=1, data_dir="var")), encoding="utf-8")
    site = load_site(path)
    wall = time.time_ns()
    clock = ScaledClock(sim_start_ns=wall - 3 * 86400 * 10**9, wall_start_ns=wall, speed=1.0)
    clock.save(site.data_dir / "clock.json")
    meter = next(d for d in site.devices if d.name == "meter-utility")
    sid = SeriesKey.of(meter.profile.measurement, "energy_kwh", meter.tags).id
    ts = np.arange(clock.now_ns() - 2 * 3600 * 10**9, clock.now_ns(), 60 * 10**9, dtype=np.int64)
    with open_historian(site.config.historian, site.data_dir) as hist:
        hist.write(Batch(np.array([sid] * len(ts), dtype=object), ts, np.linspace(1000, 1100, len(ts)),
                         np.zeros(len(ts), np.uint8), []))  # fmt: skip
        hist.flush()
    assert main(["query", "--config", str(path), "range", "meter,device=meter-utility,energy_kwh", "--from=-1h",
                 "--to", "now", "--json"]) == 0  # fmt: skip
    rows = json.loads(capsys.readouterr().out)
    assert 55 <= len(rows) <= 61, len(rows)
    assert main(["pue", "--config", str(path), "--from=-1h", "--to", "now", "--json"]) == 0
    (report,) = json.loads(capsys.readouterr().out)
    assert report["e_dc_kwh"] == pytest.approx(100 / 119 * 60, rel=0.05)
