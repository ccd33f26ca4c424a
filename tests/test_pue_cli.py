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
