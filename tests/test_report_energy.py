"""The report's energy bookkeeping agrees with the PUE engine, and its calendar months follow the site's zone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aidc.errors import ConfigError
from analytics.energy.counter_read import read_counter_frame, read_counters
from analytics.energy.counters import counter_energy, interval_energy
from analytics.energy.pue import ENERGY_ROLES, compute_pue
from analytics.historian_adapter import site_meters
from analytics.report.energy import (
    Readings,
    hourly_energy,
    meter_stats,
    pue_report,
    role_totals,
    series_energy,
    series_intervals,
    split_readings,
)
from analytics.report.period import Month, check_complete, parse_month
from historian.duckdb_store import DuckDBHistorian
from tests.report_fixture import END, START, fixture_batch, fixture_site


def _readings(tmp_path: Path) -> tuple[pd.DataFrame, dict]:  # type: ignore[type-arg]
    site = fixture_site(tmp_path)
    b = fixture_batch(site)
    frame = pd.DataFrame({"ts": pd.to_datetime(b.ts_ns, unit="ns", utc=True), "series": b.series,
                          "value": b.values, "quality": b.quality})  # fmt: skip
    return frame, site_meters(site, ENERGY_ROLES)


def test_report_figures_equal_compute_pue(tmp_path: Path) -> None:
    """Per-series bookkeeping gives exactly compute_pue's PUE, energies, coverage and companion KPIs."""
    frame, meters = _readings(tmp_path)
    engine = compute_pue(frame, meters, START, END)
    ours = pue_report(meter_stats(split_readings(frame), meters, START, END, ENERGY_ROLES), START, END)
    a, b = engine.to_dict(), ours.to_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert b[k] == (pytest.approx(a[k], rel=1e-12) if isinstance(a[k], float) else a[k]), k


def test_hours_add_up_to_the_month(tmp_path: Path) -> None:
    """The hourly split (wrap and gap included) sums to the month's energy for every role."""
    frame, meters = _readings(tmp_path)
    groups = split_readings(frame)
    energies = role_totals(meter_stats(groups, meters, START, END, ENERGY_ROLES))
    hourly = hourly_energy(groups, meters, Month(2026, 10).hour_edges(), ENERGY_ROLES)
    for role, e in energies.items():
        assert hourly[role].sum() == pytest.approx(e.energy, rel=1e-9), role
    assert len(hourly[next(iter(hourly))]) == 744


@pytest.mark.parametrize(("label", "hours"), [("2026-03", 743.0), ("2026-11", 721.0), ("2026-10", 744.0)])
def test_months_are_local_calendar_months(label: str, hours: float) -> None:
    """Months in America/New_York lose or gain the daylight-saving hour and start at local midnight."""
    m = parse_month(label, "America/New_York")
    assert m.hours == hours
    assert len(m.hour_edges()) == hours + 1
    assert m.start.tz_convert("America/New_York").hour == 0


def test_month_arithmetic_crosses_years() -> None:
    """Shifting by months crosses year ends both ways."""
    assert Month(2026, 1).shift(-1) == Month(2025, 12)
    assert Month(2026, 12).shift(1).label == "2027-01"
    assert Month(2026, 10).shift(-12).label == "2025-10"


@pytest.mark.parametrize("text", ["2026-13", "2026-1", "26-10", "October", ""])
def test_bad_month_text_is_refused(text: str) -> None:
    """Anything but YYYY-MM with a month 01-12 is refused naming the option."""
    with pytest.raises(ConfigError, match=r"--month .*expected a month as YYYY-MM"):
        parse_month(text)


def test_incomplete_and_future_months_are_refused() -> None:
    """The month in progress and later months are refused; the month just ended is accepted."""
    now = pd.Timestamp("2026-12-01T09:00Z")
    check_complete(Month(2026, 11), now)
    with pytest.raises(ConfigError, match="incomplete until 2027-01-01 00:00"):
        check_complete(Month(2026, 12), now)
    with pytest.raises(ConfigError, match="in the future"):
        check_complete(Month(2027, 1), now)


def _counter_frame(seed: int) -> pd.DataFrame:
    """A counter with jittered polls, a wrap, a reset, a 3-hour gap, bad readings and readings outside the period."""
    rng = np.random.default_rng(seed)
    ts = pd.Timestamp("2026-10-01T22:00Z") + pd.to_timedelta(np.cumsum(rng.uniform(200, 400, 900)), unit="s")
    keep = ~((ts > pd.Timestamp("2026-10-02T10:00Z")) & (ts < pd.Timestamp("2026-10-02T13:00Z")))
    ts = ts[keep]
    v = (9_900.0 + np.cumsum(rng.uniform(0.5, 1.5, len(ts)))) % 10_000.0  # wraps at 10,000
    v[len(v) // 2 :] -= v[len(v) // 2] - 3.0  # reset to 3 half way
    v[len(v) // 2 :] = np.abs(v[len(v) // 2 :])
    q = np.zeros(len(ts), dtype=np.uint8)
    q[::97] = 2
    v[5] = np.nan
    return pd.DataFrame({"ts": ts, "series": "m", "value": v, "quality": q})


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_array_versions_equal_the_counter_functions(seed: int) -> None:
    """series_energy and series_intervals give counter_energy's and interval_energy's results exactly."""
    frame = _counter_frame(seed)
    ts, v = split_readings(frame).series["m"]
    for a, b in [("2026-10-02T00:00Z", "2026-10-03T00:00Z"), ("2026-10-01T00:00Z", "2026-10-05T00:00Z"),
                 ("2026-10-02T11:00Z", "2026-10-02T12:00Z")]:  # fmt: skip
        s, e = pd.Timestamp(a), pd.Timestamp(b)
        want = counter_energy(frame, s, e, modulus=10_000.0, scale=0.5)
        got = series_energy(ts, v, s, e, modulus=10_000.0, scale=0.5)
        assert got == want
        edges = pd.date_range(s, e, freq="h")
        np.testing.assert_array_equal(series_intervals(ts, v, edges, modulus=10_000.0, scale=0.5),
                                      interval_energy(frame, edges, modulus=10_000.0, scale=0.5))  # fmt: skip
    assert counter_energy(frame, pd.Timestamp("2026-10-01T00:00Z"), pd.Timestamp("2026-10-05T00:00Z"),
                          modulus=10_000.0).resets >= 1  # fmt: skip


def test_duckdb_result_frames_equal_make_result() -> None:
    """The DuckDB store's fast result frame is exactly make_result's (order by series then time, ties, dtypes)."""
    import pyarrow as pa

    from historian.base import make_result
    from historian.duckdb_store import DuckDBHistorian

    rng = np.random.default_rng(1)
    n = 50_000
    keys = {int(i): f"pdu,device=p{i:03d},site=s energy_wh" for i in range(60)}
    keys[5], keys[17] = "Zeta energy_wh", "alpha,é=1 energy_wh"  # case and non-ASCII order
    ids = rng.integers(0, 60, n).astype(np.int32)
    ts = rng.integers(0, 500, n).astype(np.int64) * 1_000_000_000  # many equal (series, ts) pairs
    values = rng.normal(size=n)
    quality = rng.integers(0, 3, n).astype(np.uint8)
    tbl = pa.table({"series_id": ids, "ts": ts, "value": values, "quality": quality})
    got = DuckDBHistorian._frame(tbl, keys, "value")
    want = make_result(np.array([keys[int(i)] for i in ids], dtype=object), ts, values, quality)
    pd.testing.assert_frame_equal(got, want, check_exact=True)


def test_split_readings_does_not_depend_on_row_order(tmp_path: Path) -> None:
    """Shuffled readings (not grouped by series) split into the same per-series arrays as grouped ones."""
    frame, _ = _readings(tmp_path)
    grouped = split_readings(frame)
    shuffled = split_readings(frame.sample(frac=1.0, random_state=0).reset_index(drop=True))
    assert sorted(grouped.series) == sorted(shuffled.series)
    for sid, (ts, v) in grouped.series.items():
        np.testing.assert_array_equal(shuffled.series[sid][0], ts)
        np.testing.assert_array_equal(shuffled.series[sid][1], v)


def _same_readings(a: Readings, b: Readings) -> None:
    assert sorted(a.series) == sorted(b.series)
    for sid in a.series:
        for x, y in ((a.series[sid][0], b.series[sid][0]), (a.series[sid][1], b.series[sid][1]),
                     (a.raw_ts[sid], b.raw_ts[sid]), (a.raw_quality[sid], b.raw_quality[sid])):  # fmt: skip
            assert x.dtype == y.dtype
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize(
    ("start", "retention_days"),
    [
        (START - pd.Timedelta("2h"), 1e4),  # the fast path: raw rows reach back to the start
        (START - pd.Timedelta(hours=24), 1e4),  # no rows near the start: the rollup fallback, in both reads
        (START - pd.Timedelta("2h"), 20.0),  # the month's first days aged out of raw retention
    ],
)
def test_array_read_is_the_frame_read_split(tmp_path: Path, start: pd.Timestamp, retention_days: float) -> None:
    """The report's array read gives exactly the readings of split_readings(read_counter_frame(...))."""
    site = fixture_site(tmp_path)
    meters = site_meters(site, ENERGY_ROLES)
    clock = (END + pd.Timedelta("2h")).value / 1e9
    with DuckDBHistorian(site.data_dir / "h.duckdb", raw_retention_days=retention_days, clock=lambda: clock) as hist:
        hist.write(fixture_batch(site))
        hist.flush()
        end = END + pd.Timedelta("2h")
        _same_readings(
            read_counters(hist, meters, start, end).readings,
            split_readings(read_counter_frame(hist, meters, start, end)),
        )
