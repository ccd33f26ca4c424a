"""Rolling-origin backtests of the load forecaster against persistence and seasonal-naive baselines.

The last ``test_share`` of the series is cut into ``folds`` consecutive blocks. For each block the models are
refitted on pairs whose target time lies before the block (expanding window), then forecast every target time in
the block from the origin ``h`` steps earlier, using data up to that origin only. Metrics are computed over the
test points where the truth, the model and every baseline exist, so all are scored on the same points.

MASE here is the ratio of the model's MAE to the daily seasonal-naive forecast's MAE over those same test points
(seasonal naive: the value ``m`` days before the target, the smallest ``m`` with ``m`` days >= the horizon; for a
24 h horizon that is the last observed value). Below 1 the model beats the baseline.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from aidc.errors import DataError
from analytics.forecast import DAY, WEEK, build_features, fit_horizon, persistence, seasonal_naive, steps


def mae(y: npt.NDArray[np.float64], f: npt.NDArray[np.float64]) -> float:
    """Mean absolute error."""
    return float(np.mean(np.abs(y - f)))


def mape(y: npt.NDArray[np.float64], f: npt.NDArray[np.float64]) -> float:
    """Mean absolute percentage error over points with a non-zero truth, in percent."""
    nz = y != 0
    return float(100 * np.mean(np.abs((y[nz] - f[nz]) / y[nz]))) if nz.any() else float("nan")


def pinball(y: npt.NDArray[np.float64], f: npt.NDArray[np.float64], q: float) -> float:
    """Mean pinball (quantile) loss of forecast ``f`` for quantile ``q``."""
    d = y - f
    return float(np.mean(np.maximum(q * d, (q - 1) * d)))


def coverage(y: npt.NDArray[np.float64], lo: npt.NDArray[np.float64], hi: npt.NDArray[np.float64]) -> float:
    """Share of truths inside ``[lo, hi]``."""
    return float(np.mean((y >= lo) & (y <= hi)))


@dataclass(frozen=True, slots=True)
class BacktestResult:
    """Scores of one horizon on one series."""

    horizon: str
    points: int
    mae: float
    mape: float
    mase: float  # model MAE / daily seasonal-naive MAE on the same points
    vs_weekly: float  # model MAE / weekly seasonal-naive MAE (NaN when the history is too short)
    vs_persistence: float  # model MAE / persistence MAE
    pinball: float  # mean over P10, P50, P90
    coverage_80: float  # share of truths inside P10-P90

    def to_dict(self) -> dict[str, float | int | str]:
        """Plain figures for JSON."""
        return {k: getattr(self, k) for k in self.__slots__}


def backtest(
    y: pd.Series,
    horizon: str,
    step: pd.Timedelta,
    *,
    folds: int = 3,
    test_share: float = 0.25,
    max_iter: int = 150,
    window: pd.Timedelta | None = None,
) -> tuple[BacktestResult, pd.DataFrame]:
    """Rolling-origin backtest of one horizon; returns the scores and the per-point forecasts."""
    h = steps(horizon, step)
    day, week = steps(DAY, step), steps(WEEK, step)
    n = len(y)
    first_test = int(n * (1 - test_share))
    if first_test < 2 * day + h:
        raise DataError(f"series of {n} steps is too short to backtest horizon {horizon}: need 2 days of history")
    bounds = np.linspace(first_test, n, folds + 1).astype(int)
    parts = []
    for a, b in itertools.pairwise(int(v) for v in bounds):
        block_start = pd.Timestamp(y.index[a])
        model = fit_horizon(y, h, step, train_end=block_start, max_iter=max_iter, window=window)
        x, anchor = build_features(y, h, step)
        origins = np.arange(a - h, b - h)
        origins = origins[origins >= 0]
        q = model.predict_delta(x.iloc[origins]) + anchor.iloc[origins].to_numpy()[:, None]
        parts.append(pd.DataFrame(q, columns=["p10", "p50", "p90"], index=y.index[origins + h]))
    fc = pd.concat(parts)
    fc["y"] = y.reindex(fc.index)
    fc["snaive_day"] = seasonal_naive(y, h, day).reindex(fc.index)
    fc["snaive_week"] = seasonal_naive(y, h, week).reindex(fc.index)
    fc["persistence"] = persistence(y, h).reindex(fc.index)
    ok = fc[["y", "p10", "p50", "p90", "snaive_day", "persistence"]].notna().all(axis=1)
    sc = fc[ok]
    if len(sc) < 10:
        raise DataError(f"horizon {horizon}: only {len(sc)} test points with truth and baselines")
    yv, p50 = sc["y"].to_numpy(), sc["p50"].to_numpy()
    m = mae(yv, p50)
    wk = sc["snaive_week"].notna()
    vs_week = m / mae(yv, sc["snaive_week"].to_numpy()) if wk.all() else float("nan")
    result = BacktestResult(
        horizon=horizon,
        points=len(sc),
        mae=m,
        mape=mape(yv, p50),
        mase=m / mae(yv, sc["snaive_day"].to_numpy()),
        vs_weekly=vs_week,
        vs_persistence=m / mae(yv, sc["persistence"].to_numpy()),
        pinball=float(
            np.mean([pinball(yv, sc[c].to_numpy(), q) for c, q in (("p10", 0.1), ("p50", 0.5), ("p90", 0.9))])
        ),
        coverage_80=coverage(yv, sc["p10"].to_numpy(), sc["p90"].to_numpy()),
    )
    return result, fc


def format_results(name: str, results: list[BacktestResult]) -> str:
    """Fixed-width table of backtest scores; the header states the MASE definition."""
    lines = [
        f"backtest {name}: rolling origin, MASE = model MAE / daily seasonal-naive MAE on the same test points",
        f"{'horizon':>8} {'points':>7} {'MAE':>12} {'MAPE%':>7} {'MASE':>6} {'vs_wk':>6} {'vs_pers':>7} "
        f"{'pinball':>12} {'P10-P90 cov%':>12}",
    ]
    for r in results:
        lines.append(
            f"{r.horizon:>8} {r.points:>7} {r.mae:>12.4g} {r.mape:>7.2f} {r.mase:>6.3f} {r.vs_weekly:>6.3f} "
            f"{r.vs_persistence:>7.3f} {r.pinball:>12.4g} {100 * r.coverage_80:>12.1f}"
        )
    return "\n".join(lines)
