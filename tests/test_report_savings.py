"""Controller savings against fixed setpoints: stated only when controller decisions are in the historian, and the
plant model's counterfactual agrees with a simulation of the same days at the fixed setpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aidc.config import Site, load_site
from aidc.model import Batch
from aidc.sitegen import SiteTemplate, render_site
from analytics.report.config import report_config
from analytics.report.period import Month
from analytics.report.savings import baseline_setpoints, estimate_savings
from historian import open_historian
from simulators.facility import Facility
from simulators.telemetry import ExplorationSchedule, generate

START = "2026-06-01T00:00:00Z"
DAYS = 6


def _site(tmp_path: Path) -> Site:
    path = tmp_path / "site.toml"
    path.write_text(render_site(SiteTemplate(racks=2, start=START, timezone="UTC", data_dir="var", name="sv1")))
    return load_site(path)


def _store(site: Site, frame_batches: list[Batch]) -> None:
    with open_historian(site.config.historian, site.data_dir) as hist:
        for b in frame_batches:
            hist.write(b)
        hist.flush()


def test_no_controller_series_means_no_savings_claim(tmp_path: Path) -> None:
    """Without series of measurement `controller` in the month the report says no controller was active."""
    site = _site(tmp_path)
    tel = generate(site, duration_s=86400, schedule=None)
    _store(site, list(tel.batches()))
    with open_historian(site.config.historian, site.data_dir) as hist:
        s = estimate_savings(hist, site, Month(2026, 6), report_config(site))
    assert s.active is False
    assert s.statement == "no controller active this month"
    assert s.saved_kwh is None


@pytest.mark.slow
def test_counterfactual_matches_a_simulation_at_fixed_setpoints(tmp_path: Path) -> None:
    """Setpoints moved by a supervisor for 6 days: the model's fixed-setpoint energy is within 3 % of a simulation
    of the same days at the fixed setpoints, and the true saving lies inside the stated range."""
    site = _site(tmp_path)
    duration = DAYS * 86400.0
    moved = Facility(site)
    tel = generate(site, duration_s=duration, schedule=ExplorationSchedule(seed=3), facility=moved)
    fixed = Facility(site)
    generate(site, duration_s=duration, schedule=None, facility=fixed)
    ts = pd.DatetimeIndex(tel.frame.index).as_unit("ns").asi8
    decisions = Batch(np.full(len(ts), "controller,site=sv1 mode", dtype=object), ts, np.full(len(ts), 2.0),
                      np.zeros(len(ts), dtype=np.uint8))  # fmt: skip
    _store(site, [*tel.batches(), decisions])
    with open_historian(site.config.historian, site.data_dir) as hist:
        s = estimate_savings(hist, site, Month(2026, 6), report_config(site))
    assert s.active is True
    assert s.saved_kwh is not None
    assert s.baseline_kwh is not None
    assert s.low_kwh is not None
    assert s.high_kwh is not None
    assert s.hours >= 100
    true_fixed_kwh = fixed.energy_wh["facility"] / 1000 * s.hours / (duration / 3600)
    true_saved = (fixed.energy_wh["facility"] - moved.energy_wh["facility"]) / 1000 * s.hours / (duration / 3600)
    assert s.baseline_kwh == pytest.approx(true_fixed_kwh, rel=0.03)
    assert s.low_kwh <= true_saved <= s.high_kwh
    assert set(s.baseline) == set(baseline_setpoints(site, report_config(site)))
    assert "kWh" in s.statement
    assert "fixed setpoints" in s.statement
