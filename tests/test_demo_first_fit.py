"""The demo's first fits after its backfill, made cheaper without changing what they compute: the wide frame of
window means is placed with array indexing (the same frame as pandas' pivot_table)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analytics.historian_adapter import pivot_means


def _long(rng: np.random.Generator, *, repeat: bool = False) -> pd.DataFrame:
    """Window means as a historian query returns them: ts (UTC), series, value; some NaN, some series short."""
    ts = pd.date_range("2026-11-01", periods=40, freq="5min", tz="UTC")
    rows = []
    for k in range(6):
        for t in ts[k : 40 - k]:
            rows.append((t, f"gpu_rack,device=r{k},gpu=0 gpu_temp_c", float(rng.normal(60, 5))))
    rows.append((ts[3], "meter,device=m active_power_w", np.nan))  # a window with only a NaN: left out by both
    rows.append((ts[5], "meter,device=n active_power_w", np.nan))  # a series with only NaN: no column in either
    if repeat:
        rows.append((ts[10], "gpu_rack,device=r0,gpu=0 gpu_temp_c", 1.0))
    df = pd.DataFrame(rows, columns=["ts", "series", "value"])
    return df.sample(frac=1.0, random_state=1).reset_index(drop=True)  # any order


def test_pivot_means_equals_pandas_pivot_table() -> None:
    """Unique (ts, series) pairs: the same frame as pivot_table's mean (index, columns, names, values, NaN)."""
    long = _long(np.random.default_rng(3))
    want = long.pivot_table(index="ts", columns="series", values="value", aggfunc="mean")
    pd.testing.assert_frame_equal(pivot_means(long), want)


def test_pivot_means_averages_repeated_pairs_as_pandas_does() -> None:
    """A (ts, series) pair given twice is averaged, as pivot_table averages it."""
    long = _long(np.random.default_rng(4), repeat=True)
    want = long.pivot_table(index="ts", columns="series", values="value", aggfunc="mean")
    pd.testing.assert_frame_equal(pivot_means(long), want)


def test_pivot_means_on_the_historians_string_column() -> None:
    """With the series as the historian's query returns them (its string dtype), the same frame as pivot_table's."""
    from historian.base import make_result

    long = _long(np.random.default_rng(7))
    long["series"] = long["series"].astype(make_result(["x"], [0], [0.0])["series"].dtype)
    want = long.pivot_table(index="ts", columns="series", values="value", aggfunc="mean")
    pd.testing.assert_frame_equal(pivot_means(long), want)


def test_first_fit_calibrates_on_half_the_origins_then_the_full_set_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """ForecastService.first_fit fits the PUE forecast with origins every 12 h; the next refit every 6 h again."""
    from analytics.forecast import live
    from analytics.forecast.live import LivePueForecast
    from analytics.forecast.live_load import LiveLoadForecast
    from analytics.forecast.pue import FIRST_FIT_EVERY, VALIDATION_EVERY
    from analytics.forecast.service import ForecastService

    now = pd.Timestamp("2026-12-07T09:00Z")
    plant = pd.DataFrame({"pue": 1.1}, index=pd.date_range(now - pd.Timedelta("14D"), now, freq="1h"))
    spacing: list[str] = []

    def fit(history: pd.DataFrame, *, every: str = VALIDATION_EVERY, **_: object) -> None:
        spacing.append(every)
        raise RuntimeError("stop here: the spacing is what this test checks")

    monkeypatch.setattr(live.FacilityForecaster, "fit", staticmethod(fit))
    service = ForecastService(LiveLoadForecast(lambda a, b: None, lambda: now),
                              LivePueForecast(lambda a, b: plant, lambda: now))  # fmt: skip
    service.first_fit(pd.Timedelta("14D"))
    service.pue.clock = lambda: now + pd.Timedelta("1h")
    service.update()
    assert FIRST_FIT_EVERY == "12h"
    assert spacing == [FIRST_FIT_EVERY, VALIDATION_EVERY]


def test_pivot_rows_equals_pandas_pivot_nan_kept() -> None:
    """The fault detector's frame: the same as pandas' pivot, NaN windows and all-NaN series kept."""
    from analytics.historian_adapter import pivot_rows

    long = _long(np.random.default_rng(5))
    pd.testing.assert_frame_equal(pivot_rows(long), long.pivot(index="ts", columns="series", values="value"))
    with pytest.raises(ValueError, match="duplicate"):
        pivot_rows(_long(np.random.default_rng(6), repeat=True))
