"""Counters read tier by tier (raw rows, 1-minute rollups, hourly rollups): where a site keeps its 1-minute rollups
for less than a month and the raw rows have aged out, the monthly report and the tenant bill come from the hourly
rollups, with the same energies, and say so."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aidc.config import load_site
from aidc.model import Batch, SeriesKey
from analytics.energy.counter_read import HOUR_NS, TIERS, read_counter_frame, read_counters
from analytics.energy.counters import series_energy
from analytics.leasing.billing import report_from_historian
from analytics.report.build import build_month_report
from analytics.report.config import report_config
from analytics.report.energy import split_readings
from analytics.report.period import parse_month
from historian import open_historian
from historian.duckdb_store import DuckDBHistorian
from tests import tenant_fixture as fx
from tests.report_fixture import EXPECTED, MONTH, fixture_batch, fixture_site, write_fixture

# Raw rows kept a week, 1-minute rollups two weeks: a month ending seven weeks before the newest data is in the
# hourly rollups only.
SHORT_TIERS = "\n[historian]\nraw_retention_days = 7\nrollup_1m_retention_days = 14\n"
LATER = (pd.Timestamp("2026-12-20T00:00Z"), pd.Timestamp("2026-12-21T00:00Z"))


def test_month_report_energy_comes_from_hourly_rollups(tmp_path: Path) -> None:
    """Raw rows and 1-minute rollups of the month aged out: the report's PUE, energies and coverage are the
    hand-computed ones, read from the hourly rollups, and a note says so."""
    site = fixture_site(tmp_path, SHORT_TIERS)
    write_fixture(site)
    write_fixture(site, fixture_batch(site, *LATER, pd.Timedelta("5min"), None))  # newer data ages October out
    with open_historian(site.config.historian, site.data_dir) as hist:
        month = parse_month(MONTH, "UTC")
        rep = build_month_report(hist, site, month, report_config(site))
    assert rep.pue.e_dc_kwh == pytest.approx(EXPECTED["e_dc"], rel=1e-9)
    assert rep.pue.e_it_kwh == pytest.approx(EXPECTED["e_it"], rel=1e-9)
    assert rep.pue.pue == pytest.approx(EXPECTED["pue"], rel=1e-9)
    assert rep.pue.coverage == pytest.approx(EXPECTED["coverage"], rel=1e-9)  # the 6-hour gap is still seen
    assert any("hourly rollups" in n and "at hourly resolution" in n for n in rep.notes)


def test_tenant_bill_from_hourly_rollups_equals_the_bill_from_raw_rows(tmp_path: Path) -> None:
    """The tenant bill of a month whose raw rows and 1-minute rollups aged out has the figures it had from raw
    rows, and a note naming the hourly rollups."""
    path = fx.build(tmp_path)
    site = load_site(path)
    with open_historian(site.config.historian, site.data_dir) as hist:
        before = report_from_historian(hist, site, fx.START, fx.END).to_dict()
    path.write_text(path.read_text(encoding="utf-8") + SHORT_TIERS, encoding="utf-8")
    site = load_site(path)
    with open_historian(site.config.historian, site.data_dir) as hist:
        probe = SeriesKey.of("probe", "value", {"site": site.name}).id  # newer data ages October out
        hist.write(
            Batch(np.array([probe], dtype=object), np.array([LATER[0].value]), np.ones(1), np.zeros(1, np.uint8))
        )
        hist.flush()
        after = report_from_historian(hist, site, fx.START, fx.END).to_dict()
    notes = after.pop("notes")
    assert isinstance(notes, list)
    assert any("hourly rollups" in n for n in notes)
    others = [n for n in before.pop("notes") if not n.startswith("counters of")]  # type: ignore[attr-defined]
    assert [n for n in notes if not n.startswith("counters of")] == others  # the other notes stay as they were
    _close(after, before)


def _close(a: object, b: object, where: str = "") -> None:
    """Equal structures; energies and coverage to 1e-9 relative, carbon and peak demand to 1e-3: an hourly reading is
    stamped at the end of its hour, five minutes after the fixture's last poll in it, which moves that much energy
    across the hours of the carbon intensity and the 15-minute demand intervals (the fixture's power is constant, so
    when its peak falls is a tie and not compared)."""
    if where.endswith(".peak_at"):
        return
    if isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _close(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _close(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        rel = 1e-3 if any(k in where for k in ("co2", "cue", "peak")) else 1e-9
        assert a == pytest.approx(b, rel=rel, abs=1e-6), where
    else:
        assert a == b, where


def test_tiers_nest_without_double_counting(tmp_path: Path) -> None:
    """A counter over 30 days with raw rows for the last week, 1-minute rollups for the week before and hourly ones
    before that reads back in time order, each span from one tier, with the energy to one poll interval and full
    coverage."""
    sid = SeriesKey.of("meter", "energy_kwh", {"device": "m1"}).id
    start = pd.Timestamp("2026-10-01T00:00Z")
    ts = pd.date_range(start, start + pd.Timedelta(days=30), freq="5min", inclusive="left")
    kwh = 100.0 * ((ts - start) / pd.Timedelta("1h")).to_numpy()  # 100 kW
    with DuckDBHistorian(tmp_path / "h.duckdb", raw_retention_days=7, rollup_1m_retention_days=14) as hist:
        hist.write(Batch(np.full(len(ts), sid, dtype=object), ts.as_unit("ns").asi8, kwh,
                         np.zeros(len(ts), dtype=np.uint8)))  # fmt: skip
        hist.flush()
        end = start + pd.Timedelta(days=30)
        read = read_counters(hist, [sid], start, end)
        frame = read_counter_frame(hist, [sid], start, end)
    assert [t.window for t in read.tiers_used(start, end)] == [t.window for t in TIERS]  # both rollup tiers
    t, v = read.readings.series[sid]
    assert bool((np.diff(t) > 0).all())
    np.testing.assert_array_equal(split_readings(frame).series[sid][0], t)
    hourly = next(s for s in read.spans if s.tier.resolution_ns == HOUR_NS)
    minute = next(s for s in read.spans if s.tier.resolution_ns < HOUR_NS)
    assert hourly.last < minute.first
    assert minute.last < pd.Timestamp(int(read.readings.raw_ts[sid][-1]), tz="UTC")
    a, b = start + pd.Timedelta("2h"), end - pd.Timedelta("2h")
    e = series_energy(t, v, a, b, max_gap=read.readings.gap_limits(sid, t, pd.Timedelta("15min")))
    # The start edge is read from the hourly tier, whose readings stand at the end of their hour: the last poll in
    # it was 5 minutes earlier, so at most one poll interval of energy (100 kW x 5 min) is added.
    assert 0.0 <= e.energy - 100.0 * (b - a) / pd.Timedelta("1h") <= 100.0 * 5 / 60 + 1e-6
    assert e.coverage == pytest.approx(1.0)
    assert e.gaps == ()
    # Without the tier allowance the hourly span would count as one long gap (readings an hour apart).
    assert series_energy(t, v, a, b).coverage < 0.9
