"""The main job's monthly hook: last month's report is written once when a new month begins, never twice, and a
month without data is logged once without stopping anything."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pytest

from analytics.report.schedule import MonthlyReports, last_month
from historian import open_historian
from tests.report_fixture import fixture_site, write_fixture


def test_last_month_follows_the_site_time_zone(tmp_path: Path) -> None:
    """At 02:00 UTC on 1 November it is still October in New York, so last month is September there."""
    site = fixture_site(tmp_path)
    assert last_month(site, pd.Timestamp("2026-11-01T02:00Z")).label == "2026-10"  # the fixture site is UTC
    ny = site.config.model_copy(update={"site": site.config.site.model_copy(update={"timezone": "America/New_York"})})
    site_ny = type(site)(site.path, ny, site.devices)
    assert last_month(site_ny, pd.Timestamp("2026-11-01T02:00Z")).label == "2026-09"
    assert last_month(site_ny, pd.Timestamp("2027-01-01T05:00Z")).label == "2026-12"


def test_tick_writes_last_months_report_once(tmp_path: Path) -> None:
    """The first tick of November writes October's report under <data_dir>/reports; the next tick writes nothing."""
    site = fixture_site(tmp_path)
    write_fixture(site)
    reports = MonthlyReports(site)
    with open_historian(site.config.historian, site.data_dir) as hist:
        files = reports.tick(hist, pd.Timestamp("2026-11-01T00:30Z"))
        assert files is not None
        assert files.html.parent == site.data_dir / "reports"
        assert files.pdf is not None
        assert files.pdf.stat().st_size > 0
        stamp = files.html.stat().st_mtime_ns
        assert reports.tick(hist, pd.Timestamp("2026-11-01T01:30Z")) is None
    assert files.html.stat().st_mtime_ns == stamp


def test_month_without_data_is_logged_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """No data for last month: no file, one warning naming the month, quiet retries after that."""
    site = fixture_site(tmp_path)
    reports = MonthlyReports(site)
    caplog.set_level(logging.DEBUG, logger="analytics.report.schedule")
    with open_historian(site.config.historian, site.data_dir) as hist:
        assert reports.tick(hist, pd.Timestamp("2026-09-01T08:00Z")) is None
        assert reports.tick(hist, pd.Timestamp("2026-09-01T09:00Z")) is None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "2026-08" in warnings[0].getMessage()
    assert not (site.data_dir / "reports").exists() or not any((site.data_dir / "reports").iterdir())
