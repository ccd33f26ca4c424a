"""The tenant bill read as per-series arrays gives the same figures as the earlier per-series frame scan."""

from __future__ import annotations

import dataclasses
import math
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import analytics.leasing.billing as billing
import analytics.leasing.tenants as tenants
from aidc.config import load_site
from aidc.model import Batch, Quality
from aidc.roles import Role
from analytics.energy import counter_read
from analytics.energy.counter_read import CounterRead, read_counter_frame, read_counters
from analytics.energy.counters import CounterEnergy, counter_energy, interval_energy
from analytics.energy.pue import MeterInfo
from analytics.leasing.billing import report_from_historian
from analytics.report.energy import split_readings
from historian import Historian, open_historian
from tests import tenant_fixture as fx


def _old_energy(
    readings: pd.DataFrame, meters: Mapping[str, MeterInfo], sids: Sequence[str], a: pd.Timestamp, b: pd.Timestamp,
    max_gap: pd.Timedelta,
) -> CounterEnergy:  # fmt: skip
    """The billing's energy before the array path: one scan of the whole frame per series."""
    total: CounterEnergy | None = None
    for sid in sids:
        rows = readings[readings["series"] == sid]
        e = counter_energy(rows, a, b, modulus=meters[sid].modulus, max_gap=max_gap, scale=meters[sid].scale)
        total = e if total is None else total + e
    return total if total is not None else CounterEnergy(0.0, 0.0, 0.0)


def _old_intervals(
    readings: pd.DataFrame, meters: Mapping[str, MeterInfo], sids: Sequence[str], edges: pd.DatetimeIndex
) -> np.ndarray:
    """The billing's interval energies before the array path."""
    out = np.zeros(len(edges) - 1)
    for sid in sids:
        rows = readings[readings["series"] == sid]
        out += interval_energy(rows, edges, modulus=meters[sid].modulus, scale=meters[sid].scale)
    return out


def _rack_series(frame: pd.DataFrame, rack: str) -> str:
    return next(s for s in frame["series"].unique() if f"rack={rack}" in s and "active_energy_wh" in s)


@pytest.fixture(scope="module")
def rough_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture month (a wrap on r03, acme's move from r01 to r02) with gaps, resets, bad and missing values."""
    tmp = tmp_path_factory.mktemp("tenants_fast")
    path = fx.build(tmp)
    site = load_site(path)
    with open_historian(site.config.historian, site.data_dir) as hist:
        series = sorted(billing.site_meters(site, (*billing.RACK_ROLES, Role.FACILITY_ENERGY, Role.COOLING_ENERGY)))
        df = read_counter_frame(hist, series, fx.START - pd.Timedelta("3h"), fx.END + pd.Timedelta("3h"))
    ts = pd.DatetimeIndex(pd.to_datetime(df["ts"], utc=True))
    r01, r02, r04 = (_rack_series(df, f"h1-r01-0{i}") for i in (1, 2, 4))
    util = next(s for s in df["series"].unique() if "energy_kwh" in s and "utility" in s)
    keep = ~((df["series"] == r01) & (ts >= "2026-10-05T03:00Z") & (ts < "2026-10-05T09:00Z"))  # 6 h gap
    keep &= ~((df["series"] == r02) & (ts >= "2026-10-15T23:40Z") & (ts < "2026-10-16T00:20Z"))  # gap at the move
    keep &= ~((df["series"] == util) & (ts >= "2026-10-20T10:00Z") & (ts < "2026-10-20T10:25Z"))
    df = df.assign(value=df["value"].astype(float), quality=df["quality"].astype(np.uint8))
    for sid, at in ((r04, "2026-10-10T12:00Z"), (r02, "2026-10-22T06:00Z")):  # counter resets to zero
        after = (df["series"] == sid) & (ts >= at)
        df.loc[after, "value"] -= float(df.loc[after, "value"].iloc[0]) - 5.0
    bad = (df["series"] == _rack_series(df, "h1-r01-03")) & (ts.minute == 35) & (ts.hour % 5 == 0)
    df.loc[bad, ["value", "quality"]] = [1e12, int(Quality.BAD)]
    df.loc[(df["series"] == util) & (ts.minute == 10) & (ts.hour == 7), "value"] = math.nan
    df = df[keep.to_numpy()]
    shutil.rmtree(site.data_dir)
    with open_historian(site.config.historian, site.data_dir) as hist:
        hist.write(Batch(
            df["series"].to_numpy(dtype=object), pd.DatetimeIndex(pd.to_datetime(df["ts"], utc=True))
            .as_unit("ns").asi8.astype(np.int64), df["value"].to_numpy(dtype=np.float64),
            df["quality"].to_numpy(dtype=np.uint8),
        ))  # fmt: skip
        hist.flush()
    return path


def _close(a: object, b: object, where: str = "") -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _close(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list | tuple) and isinstance(b, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _close(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-12, abs=1e-9), where
    else:
        assert a == b, where


def _frame_read(hist: Historian, series: list[str], start: pd.Timestamp, end: pd.Timestamp) -> CounterRead:
    """The shared read with the rows as one frame in place of the arrays (the tiers it names are the same)."""
    frame = read_counter_frame(hist, series, start, end)
    return dataclasses.replace(counter_read.read_counters(hist, series, start, end), readings=frame)  # type: ignore[arg-type]


def _old_report(monkeypatch: pytest.MonkeyPatch, site_path: Path, month: str = "2026-10") -> dict[str, object]:
    """The report as billed before the array path: the frame of read_counter_frame, scanned once per series."""
    site = load_site(site_path)
    with monkeypatch.context() as m:
        m.setattr(billing, "read_counters", _frame_read)
        m.setattr(tenants, "split_readings", lambda frame: frame)
        m.setattr(billing, "_has_rows", lambda frame, ids: not frame[frame["series"].isin(ids)].empty)
        m.setattr(tenants, "_energy", _old_energy)
        m.setattr(tenants, "_intervals", _old_intervals)
        with open_historian(site.config.historian, site.data_dir) as hist:
            return report_from_historian(hist, site, *billing.month_bounds(month, "UTC")).to_dict()


def test_array_read_equals_frame_read(rough_site: Path) -> None:
    """read_counters gives exactly split_readings(read_counter_frame(...)), also where the rollup fallback is taken."""
    site = load_site(rough_site)
    series = sorted(billing.site_meters(site, (*billing.RACK_ROLES, Role.FACILITY_ENERGY, Role.COOLING_ENERGY)))
    with open_historian(site.config.historian, site.data_dir) as hist:
        for start in (fx.START - pd.Timedelta("2h"), fx.START - pd.Timedelta("6h"), fx.START + pd.Timedelta("1h")):
            end = fx.END + pd.Timedelta("2h")
            fast, slow = (
                read_counters(hist, series, start, end).readings,
                split_readings(read_counter_frame(hist, series, start, end)),
            )
            assert fast.series.keys() == slow.series.keys()
            for sid in slow.series:
                np.testing.assert_array_equal(fast.series[sid][0], slow.series[sid][0])
                np.testing.assert_array_equal(fast.series[sid][1], slow.series[sid][1])
                np.testing.assert_array_equal(fast.raw_quality[sid], slow.raw_quality[sid])


def test_fast_bill_equals_old_bill_on_rough_month(rough_site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Wraps, resets, gaps, bad and missing values and a mid-month move: the fast bill equals the old one."""
    site = load_site(rough_site)
    with open_historian(site.config.historian, site.data_dir) as hist:
        fast = report_from_historian(hist, site, fx.START, fx.END).to_dict()
    old = _old_report(monkeypatch, rough_site)
    _close(fast, old)
    lines = {t["tenant"]: t for t in fast["tenants"]}  # type: ignore[union-attr, index]
    assert lines["bolt"]["wraps"] == 1
    assert lines["acme"]["resets"] >= 1
    assert lines["acme"]["coverage"] < 1.0
    assert lines[tenants.UNALLOCATED]["resets"] == 0


def test_peak_on_unaligned_edges_matches_per_bucket_hours() -> None:
    """The vectorised 15-minute peak divides by each bucket's clipped length, as the per-bucket loop did."""
    start, end = pd.Timestamp("2026-10-01T00:07Z"), pd.Timestamp("2026-10-01T03:52Z")
    grid = pd.date_range(start, end, freq=tenants.DEMAND_INTERVAL)
    edges = pd.DatetimeIndex(sorted({*grid, end, pd.Timestamp("2026-10-01T01:05Z")})).as_unit("us")
    energy = np.random.default_rng(3).uniform(1.0, 30.0, len(edges) - 1)
    energy[-1] = 40.0  # a short last interval (07 minutes): the peak, only if divided by its own length
    starts = edges[:-1].floor(tenants.DEMAND_INTERVAL)
    buckets = pd.Series(energy, index=starts).groupby(level=0).sum()
    hours = [
        (min(t + tenants.DEMAND_INTERVAL, edges[-1]) - max(t, edges[0])) / pd.Timedelta("1h") for t in buckets.index
    ]
    kw = buckets.to_numpy() / np.array(hours)
    i = int(np.argmax(kw))
    assert tenants._peak(energy, edges) == (float(kw[i]), buckets.index[i].isoformat())
