"""Forecasting: baselines, metrics, leakage-free features, quantile forecaster and its persistence."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from analytics.forecast.backtest import backtest, coverage, mae, mape, pinball
from analytics.forecast.load import LoadForecaster, build_features, persistence, seasonal_lag, seasonal_naive
from analytics.store import load_metadata, load_model, save_model

H = pd.Timedelta("1h")


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """One OpenMP thread: the machine is shared, and spinning threads under contention make fits 10x slower."""
    with threadpool_limits(1):
        yield


def series(values: list[float], step: pd.Timedelta = H) -> pd.Series:
    """A regular series starting 2026-01-05 (a Monday)."""
    return pd.Series(values, index=pd.date_range("2026-01-05T00:00Z", periods=len(values), freq=step), dtype=float)


@pytest.mark.parametrize(
    ("h", "season", "expected"),
    [(1, 24, 23), (24, 24, 0), (25, 24, 23), (48, 24, 0), (12, 288, 276), (288, 2016, 1728)],
)
def test_seasonal_lag(h: int, season: int, expected: int) -> None:
    """The seasonal-naive value is the smallest whole number of seasons back from the target, seen from the origin."""
    assert seasonal_lag(h, season) == expected


def test_baselines_align_to_target_time() -> None:
    """Persistence repeats the value h steps back; seasonal naive the value one season before the target."""
    y = series([float(i) for i in range(10)])
    assert persistence(y, 2).iloc[5] == 3.0
    assert seasonal_naive(y, 1, 4).iloc[9] == 5.0  # target 9, season 4 -> value at 5
    assert seasonal_naive(y, 5, 4).iloc[9] == 1.0  # horizon longer than a season -> two seasons back


@pytest.mark.parametrize(
    ("fn", "expected"),
    [
        (lambda y, f: mae(y, f), 2.0),  # |10-8| + |20-22| + |40-38| over 3
        (lambda y, f: mape(y, f), 100 * (0.2 + 0.1 + 0.05) / 3),
        (lambda y, f: pinball(y, f, 0.9), (0.9 * 2 + 0.1 * 2 + 0.9 * 2) / 3),
        (lambda y, f: coverage(y, f - 1.5, f + 1.5), 0.0),
        (lambda y, f: coverage(y, f - 2.0, f + 2.0), 1.0),
    ],
)
def test_metrics_hand_computed(fn: object, expected: float) -> None:
    """MAE, MAPE, pinball loss and interval coverage match hand-computed values."""
    y = np.array([10.0, 20.0, 40.0])
    f = np.array([8.0, 22.0, 38.0])
    assert fn(y, f) == pytest.approx(expected)  # type: ignore[operator]


def test_mape_skips_zero_truths() -> None:
    """Points whose truth is zero are left out of MAPE instead of dividing by zero."""
    assert mape(np.array([0.0, 10.0]), np.array([5.0, 12.0])) == pytest.approx(20.0)


def test_features_use_no_future_data() -> None:
    """Changing values after the origin leaves every feature at the origin unchanged (no leakage)."""
    rng = np.random.default_rng(0)
    y = series(list(rng.normal(100, 10, 24 * 10)))
    origin = 24 * 8
    for h in (1, 24):
        before, _ = build_features(y, h, H)
        y2 = y.copy()
        y2.iloc[origin + 1 :] += 1000.0
        after, _ = build_features(y2, h, H)
        pd.testing.assert_series_equal(before.iloc[origin], after.iloc[origin])


def _daily(days: int, seed: int = 1) -> pd.Series:
    rng = np.random.default_rng(seed)
    t = np.arange(24 * days)
    return series(
        list(500 + 200 * np.sin(2 * np.pi * t / 24) + 50 * np.sin(2 * np.pi * t / 168) + rng.normal(0, 10, len(t)))
    )


def test_forecaster_beats_seasonal_naive_on_synthetic_load() -> None:
    """On a daily+weekly cycle with noise, the 1 h forecast beats seasonal naive and its P10-P90 holds 65-95 %."""
    y = _daily(35)
    result, fc = backtest(y, "1h", H, folds=2, max_iter=80)
    assert result.mase < 1.0
    assert 0.65 <= result.coverage_80 <= 0.95
    assert (fc["p10"] <= fc["p50"]).all()
    assert (fc["p50"] <= fc["p90"]).all()


def test_forecaster_persists_with_training_window(tmp_path: Path) -> None:
    """A fitted forecaster saves and loads with its training window, horizons and features; predictions match."""
    y = _daily(21)
    fc = LoadForecaster.fit(y, ["1h", "24h"], H, max_iter=40)
    path = save_model(fc, tmp_path / "load.joblib", fc.metadata())
    meta = load_metadata(path)
    assert meta["train_start"] == "2026-01-05T00:00:00+00:00"
    assert meta["train_end"] == y.index[-1].isoformat()
    assert set(meta["horizons"]) == {"1h", "24h"}
    assert "sd0_level" in meta["features"]
    again = load_model(path)
    pred = fc.predict(y)
    pd.testing.assert_frame_equal(pred, again.predict(y))
    assert list(pred["ts"]) == [y.index[-1] + H, y.index[-1] + 24 * H]
    assert (pred["p10"] <= pred["p50"]).all()
    assert (pred["p50"] <= pred["p90"]).all()


@pytest.mark.parametrize(("age", "due"), [(pd.Timedelta("23h"), False), (pd.Timedelta("24h"), True)])
def test_retrain_schedule(age: pd.Timedelta, due: bool) -> None:
    """A forecaster is due for retraining once it is a full retraining interval old."""
    fc = LoadForecaster(H, train_end=pd.Timestamp("2026-01-01T00:00Z"))
    assert fc.due(pd.Timestamp("2026-01-01T00:00Z") + age, every=pd.Timedelta("24h")) is due


def test_smoothed_profiles_use_no_future_data() -> None:
    """On 5-min data the centred smoothing of the daily/weekly profiles never reaches past the origin."""
    step = pd.Timedelta("5min")
    rng = np.random.default_rng(1)
    y = series(list(rng.normal(100, 10, 288 * 16)), step=step)
    origin = 288 * 15
    for h in (1, 12, 288):
        before, _ = build_features(y, h, step)
        y2 = y.copy()
        y2.iloc[origin + 1 :] += 1000.0
        after, _ = build_features(y2, h, step)
        cols = [c for c in before.columns if c.startswith("prof")]
        assert len(cols) == 6
        pd.testing.assert_series_equal(before[cols].iloc[origin], after[cols].iloc[origin])


def test_changed_behaviour_is_handled_on_calibration_pairs() -> None:
    """When a long history's old part behaves differently, the calibration keeps the forecast off the old mean."""
    from analytics.forecast.load import fit_horizon

    rng = np.random.default_rng(4)
    old, new = 24 * 7 * 40, 24 * 7 * 20
    # 40 weeks of white noise (the best forecast is the mean), then 20 weeks of a random walk (persistence is best):
    # a model fitted on the whole history and used as it is expects the walk to revert to the old mean.
    walk = 100 + np.cumsum(rng.normal(0, 3, new))
    y = series(list(np.concatenate([rng.normal(100, 30, old), walk])))
    hm = fit_horizon(y, 6, H, max_iter=30)
    # Either a recent training window or a P50 shrunk toward persistence (both chosen on calibration pairs).
    assert hm.window is not None or hm.shrink + hm.lin_weight <= 0.5
    x, anchor = build_features(y, 6, H)
    p50 = hm.predict_delta(x.iloc[-24 * 7 :])[:, 1] + anchor.iloc[-24 * 7 :].to_numpy()
    far = np.abs(anchor.iloc[-24 * 7 :].to_numpy() - 100.0)
    assert np.median(np.abs(p50 - anchor.iloc[-24 * 7 :].to_numpy())) < 0.3 * np.median(far)


def test_structural_forecasts_use_no_future_data() -> None:
    """The MSTL-like structural forecasts at an origin ignore every value after it (5-min data, 1 h and 24 h)."""
    step = pd.Timedelta("5min")
    rng = np.random.default_rng(2)
    y = series(list(rng.normal(100, 10, 288 * 16)), step=step)
    origin = 288 * 15 + 7
    for h in (12, 288):
        before, _ = build_features(y, h, step)
        y2 = y.copy()
        y2.iloc[origin + 1 :] += 1000.0
        after, _ = build_features(y2, h, step)
        cols = [c for c in before.columns if c.startswith("stl")]
        assert {"stld5_3", "stlw3_3", "stlm_3"} <= set(cols)
        pd.testing.assert_series_equal(before[cols].iloc[origin], after[cols].iloc[origin])


def test_structural_forecast_follows_profile_and_level_shift() -> None:
    """On a repeating daily profile that steps up by 20, the structural forecast is the true value once settled."""
    t = np.arange(24 * 9)
    y = series(list(50 + 10 * np.sin(2 * np.pi * t / 24) + np.where(t >= 24 * 6, 20.0, 0.0)))
    x, anchor = build_features(y, 1, H)
    origin = 24 * 7 + 12
    assert float(x["stld5_3"].iloc[origin] + anchor.iloc[origin]) == pytest.approx(float(y.iloc[origin + 1]), abs=0.05)
    # Persistence misses the profile's change over the hour.
    assert abs(float(anchor.iloc[origin] - y.iloc[origin + 1])) > 1.0


def test_linear_model_weighted_in_on_mean_reverting_load() -> None:
    """On a mean-reverting load (AR(1) around 100) the calibration gives the linear change model a real weight."""
    from analytics.forecast.load import fit_horizon

    rng = np.random.default_rng(5)
    v = np.zeros(24 * 60)
    for i in range(1, len(v)):
        v[i] = 0.8 * v[i - 1] + rng.normal(0, 5)
    y = series(list(100 + v))
    hm = fit_horizon(y, 3, H, max_iter=30)
    # The best change is linear in the distance from the mean, which the linear model states exactly.
    assert hm.lin_weight >= 0.3
    assert hm.linear is not None
    x, _ = build_features(y, 3, H)
    p = hm.predict_delta(x.iloc[-200:])
    assert (p[:, 0] <= p[:, 1]).all()
    assert (p[:, 1] <= p[:, 2]).all()


def test_gate_moves_to_persistence_only_after_persistence_did_better() -> None:
    """The gate keeps the model until persistence's recent known errors are smaller, then zeroes the P50 change."""
    from analytics.forecast.load import gate_to_persistence

    n, h, window = 60, 2, 10
    y = series([100.0] * n)
    anchor = y.copy()
    delta = np.zeros((n, 3))
    delta[:, 0], delta[:, 2] = -1.0, 1.0
    delta[30:, 1] = 5.0  # from origin 30 on the model predicts a rise that never comes
    out = gate_to_persistence(delta, y, anchor, np.arange(n), h, window)
    # Up to origin 31 the model's bad forecasts have no known target yet (origin 30's target is at 32).
    assert (out[: 30 + h, 1] == delta[: 30 + h, 1]).all()
    assert (out[30 + h :, 1] == 0.0).all()
    # The band moves with the P50 and keeps its width.
    assert (out[30 + h :, 2] - out[30 + h :, 0] == 2.0).all()


def test_gate_halves_the_change_where_the_half_way_forecast_did_best() -> None:
    """When half the model's change matched the recent truths best, the gate keeps half of it, band and all."""
    from analytics.forecast.load import gate_to_persistence

    n, h, window = 60, 2, 10
    y = series(list(100.0 + 1.25 * np.arange(n)))  # every 2-step change is +2.5
    delta = np.zeros((n, 3))
    delta[:, 0], delta[:, 1], delta[:, 2] = 4.0, 5.0, 6.0  # the model expects +5: twice the truth
    out = gate_to_persistence(delta, y, y.copy(), np.arange(n), h, window)
    # Until window // 2 targets are known the model stands; then the half-way forecast (+2.5) has no error.
    settled = h + window // 2
    assert (out[: settled - 1, 1] == 5.0).all()
    assert (out[settled:, 1] == 2.5).all()
    assert (out[settled:, 2] - out[settled:, 0] == 2.0).all()


def test_gate_uses_no_future_data() -> None:
    """Changing the truth after an origin leaves that origin's gated forecast unchanged."""
    from analytics.forecast.load import gate_to_persistence

    rng = np.random.default_rng(7)
    n, h, window = 200, 3, 24
    y = series(list(100 + rng.normal(0, 5, n)))
    delta = rng.normal(0, 3, (n, 3))
    before = gate_to_persistence(delta, y, y.copy(), np.arange(n), h, window)
    y2 = y.copy()
    y2.iloc[121:] += 50.0
    after = gate_to_persistence(delta, y2, y2.copy(), np.arange(n), h, window)
    np.testing.assert_array_equal(before[:121], after[:121])


def test_negative_widening_never_crosses_the_p50() -> None:
    """A band narrowed by a negative conformal widening stops at the P50 instead of crossing it."""
    from analytics.forecast.load import fit_horizon

    y = _daily(21)
    hm = fit_horizon(y, 1, H, max_iter=20)
    hm.widen = -1e6
    x, _ = build_features(y, 1, H)
    p = hm.predict_delta(x.iloc[-50:])
    assert (p[:, 0] <= p[:, 1]).all()
    assert (p[:, 1] <= p[:, 2]).all()
