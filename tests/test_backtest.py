"""Backtest honesty and scoring: fold split, same-point baselines, bootstrap interval, horizons."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

import analytics.forecast.backtest as bt
from analytics.forecast.load import HorizonModel

FIVE = pd.Timedelta("5min")


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """One OpenMP thread: the machine is shared, and spinning threads under contention make fits 10x slower."""
    with threadpool_limits(1):
        yield


def _load(days: int, step: pd.Timedelta = FIVE, seed: int = 3) -> pd.Series:
    """A daily + weekly cycle with noise on a regular grid starting on a Monday."""
    n = int(pd.Timedelta(days=days) / step)
    t = np.arange(n) * (step / pd.Timedelta("1h"))
    rng = np.random.default_rng(seed)
    v = 100 + 30 * np.sin(2 * np.pi * t / 24) + 10 * np.sin(2 * np.pi * t / 168) + rng.normal(0, 3, n)
    return pd.Series(v, index=pd.date_range("2026-01-05T00:00Z", periods=n, freq=step))


@pytest.mark.parametrize("horizon", ["1h", "24h"])
def test_no_training_target_after_a_scored_origin(monkeypatch: pytest.MonkeyPatch, horizon: str) -> None:
    """Every fold's models are trained only on targets at or before the earliest origin they are scored from."""
    y = _load(16, step=pd.Timedelta("15min"))
    fits: list[pd.Timestamp] = []
    scored: list[pd.Timestamp] = []
    real_fit, real_predict = bt.fit_horizon, HorizonModel.predict_gated

    def spy_fit(*args: Any, **kwargs: Any) -> HorizonModel:
        """Record the latest target time the fit may use (fit_horizon keeps targets before train_end)."""
        end = kwargs.get("train_end", args[3] if len(args) > 3 else None)
        fits.append(y.index[y.index < end].max())
        return real_fit(*args, **kwargs)

    def spy_predict(self: HorizonModel, x: pd.DataFrame, y_: pd.Series, anchor: pd.Series, origins: Any) -> Any:
        """Record the earliest origin of each scored block (row positions of the origin-indexed feature frame)."""
        scored.append(pd.Timestamp(x.index[int(np.min(origins))]))
        return real_predict(self, x, y_, anchor, origins)

    monkeypatch.setattr(bt, "fit_horizon", spy_fit)
    monkeypatch.setattr(HorizonModel, "predict_gated", spy_predict)
    bt.backtest(y, horizon, pd.Timedelta("15min"), folds=3, max_iter=10)
    assert len(fits) == len(scored) == 3
    for last_target, first_origin in zip(fits, scored, strict=True):
        assert last_target <= first_origin


def test_frame_records_origin_and_training_end() -> None:
    """The per-point frame says, for each point, its origin (target - h) and the fold's last training target."""
    y = _load(16, step=pd.Timedelta("15min"))
    fc = bt.backtest_frame(y, "6h", pd.Timedelta("15min"), folds=2, max_iter=10)
    assert (fc.index - fc["origin"] == pd.Timedelta("6h")).all()
    assert (fc["train_last_target"] <= fc["origin"]).all()
    assert fc["fold"].nunique() == 2
    assert fc.index.max() == y.index[-1]


def test_fold_blocks_cover_the_test_targets_once() -> None:
    """Fold blocks are consecutive origin ranges whose targets are exactly the last test_share of the series."""
    blocks = bt.fold_blocks(1000, 12, 3, 0.25)
    assert blocks[0][0] == 750 - 12
    assert blocks[-1][1] == 1000 - 12
    assert all(b == c for (_, b), (c, _) in itertools.pairwise(blocks))


def test_scores_baselines_on_the_same_points() -> None:
    """The ratios are MAE ratios on the same points, and the best baseline is the one with the lowest MAE."""
    idx = pd.date_range("2026-01-05T00:00Z", periods=40, freq="1h")
    y = np.arange(40.0)
    fc = pd.DataFrame(
        {
            "y": y,
            "p50": y + 1,
            "p10": y - 2,
            "p90": y + 2,
            "snaive_day": y + 4,
            "snaive_week": y - 2,
            "persistence": y + 8,
        },
        index=idx,
    )
    r = bt.score(fc, "1h", 1)
    assert r.mae == pytest.approx(1.0)
    assert r.mase == pytest.approx(0.25)
    assert r.vs_weekly == pytest.approx(0.5)
    assert r.vs_persistence == pytest.approx(0.125)
    assert r.best_baseline == "snaive_week"
    assert r.vs_best == pytest.approx(0.5)
    assert r.vs_best_lo == pytest.approx(0.5)
    assert r.vs_best_hi == pytest.approx(0.5)
    assert r.coverage_80 == 1.0


def test_weekly_baseline_missing_somewhere_is_left_out() -> None:
    """Where the weekly seasonal naive is missing at some test point it is not a candidate for the best baseline."""
    idx = pd.date_range("2026-01-05T00:00Z", periods=20, freq="1h")
    y = np.zeros(20)
    week = np.zeros(20)
    week[0] = np.nan
    fc = pd.DataFrame(
        {
            "y": y,
            "p50": y + 1,
            "p10": y - 1,
            "p90": y + 1,
            "snaive_day": y + 2,
            "snaive_week": week,
            "persistence": y + 3,
        },
        index=idx,
    )
    r = bt.score(fc, "1h", 1)
    assert np.isnan(r.vs_weekly)
    assert r.best_baseline == "snaive_day"


def test_bootstrap_interval_brackets_the_ratio() -> None:
    """The block-bootstrap interval contains the point ratio and narrows as the sample grows."""
    rng = np.random.default_rng(0)
    small = bt.bootstrap_ratio(rng.normal(0, 1, 200), rng.normal(0, 2, 200), block=10)
    large = bt.bootstrap_ratio(rng.normal(0, 1, 20000), rng.normal(0, 2, 20000), block=10)
    assert small[0] < 0.5 < small[1]
    assert large[0] < 0.5 < large[1]
    assert large[1] - large[0] < small[1] - small[0]


def test_short_series_is_a_data_error() -> None:
    """A series without two days of history before the test block is refused with a clear message."""
    y = _load(2, step=pd.Timedelta("1h"))
    with pytest.raises(bt.DataError, match="too short to backtest horizon 24h"):
        bt.backtest(y, "24h", pd.Timedelta("1h"))


def test_baselines_read_the_last_observed_value() -> None:
    """A missing sample one day before the target does not drop the point: the daily naive takes the value before."""
    y = _load(12, step=pd.Timedelta("1h"))
    target = y.index[-5]
    y[target - pd.Timedelta("1D")] = np.nan
    fc = bt.backtest_frame(y, "1h", pd.Timedelta("1h"), folds=2, max_iter=10)
    expected = y[target - pd.Timedelta("1D") - pd.Timedelta("1h")]
    assert fc.loc[target, "snaive_day"] == expected
