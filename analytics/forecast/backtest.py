"""Rolling-origin backtests of the load forecaster against persistence and seasonal-naive baselines.

Folds are cut by *origin*: the origins whose targets fall in the last ``test_share`` of the series are split into
``folds`` consecutive blocks. For each block the models are refitted on pairs whose target time is at or before the
block's earliest origin (expanding window), so no training target lies after any origin the model is scored from;
then every origin of the block is forecast from data up to that origin only (the model also forecasts the week
before the block, so its gate to persistence reads recent errors from the block's first origin on; see
:func:`analytics.forecast.load.gate_to_persistence`). Metrics are computed over the test points
where the truth, the model and the baselines exist, so all are scored on the same points.

Scores per horizon: MAE; MASE against the daily seasonal naive (the value ``m`` days before the target, the smallest
``m`` with ``m`` days >= the horizon; at 24 h that is persistence); the MAE ratio to the weekly seasonal naive and to
persistence; the ratio to the *best* of those baselines with a block-bootstrap 95 % interval (a ratio below 1 whose
interval stays below 1 is a win that is not luck); mean pinball loss over P10/P50/P90 and P10-P90 coverage.
MASE at short horizons against a daily seasonal naive flatters any model (the daily naive is a poor forecast one hour
ahead), which is why the ratio to the best baseline is the figure to read.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from aidc.errors import DataError
from analytics.forecast.load import DAY, WEEK, build_features, fit_horizon, persistence, seasonal_naive, steps

# Horizons the CLI backtests by default (those shorter than the series step are skipped).
DEFAULT_HORIZONS = ("5min", "1h", "6h", "24h", "48h")
BASELINES = ("snaive_day", "snaive_week", "persistence")
F64 = npt.NDArray[np.float64]


def mae(y: F64, f: F64) -> float:
    """Mean absolute error."""
    return float(np.mean(np.abs(y - f)))


def mape(y: F64, f: F64) -> float:
    """Mean absolute percentage error over points with a non-zero truth, in percent."""
    nz = y != 0
    return float(100 * np.mean(np.abs((y[nz] - f[nz]) / y[nz]))) if nz.any() else float("nan")


def pinball(y: F64, f: F64, q: float) -> float:
    """Mean pinball (quantile) loss of forecast ``f`` for quantile ``q``."""
    d = y - f
    return float(np.mean(np.maximum(q * d, (q - 1) * d)))


def coverage(y: F64, lo: F64, hi: F64) -> float:
    """Share of truths inside ``[lo, hi]``."""
    return float(np.mean((y >= lo) & (y <= hi)))


def bootstrap_ratio(
    err_model: F64, err_base: F64, block: int, *, n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Interval of ``mean|err_model| / mean|err_base|`` by a paired circular block bootstrap over time.

    Forecast errors are autocorrelated (neighbouring origins share most of their history), so whole blocks of
    ``block`` consecutive points are resampled, the same blocks for both methods.
    """
    a, b = np.abs(np.asarray(err_model)), np.abs(np.asarray(err_base))
    n = len(a)
    block = int(min(max(1, block), max(1, n // 4)))
    rng = np.random.default_rng(seed)
    n_blocks = -(-n // block)
    starts = rng.integers(0, n, size=(n_boot, n_blocks))
    idx = (starts[:, :, None] + np.arange(block)[None, None, :]).reshape(n_boot, -1)[:, :n] % n
    sa, sb = a[idx].sum(axis=1), b[idx].sum(axis=1)
    ratios = sa / np.where(sb > 0, sb, np.nan)
    tail = (1 - level) / 2
    return float(np.nanquantile(ratios, tail)), float(np.nanquantile(ratios, 1 - tail))


def fold_blocks(n: int, h: int, folds: int, test_share: float) -> list[tuple[int, int]]:
    """Origin index ranges ``[a, b)`` of each fold: origins whose target lies in the last ``test_share``."""
    first_target = int(n * (1 - test_share))
    lo, hi = max(0, first_target - h), n - h
    if hi - lo < folds:
        return []
    bounds = np.linspace(lo, hi, folds + 1).astype(int)
    return [(int(a), int(b)) for a, b in itertools.pairwise(bounds)]


def thin_origins(blocks: list[tuple[int, int]], most: int) -> list[npt.NDArray[np.int64]]:
    """Origin indices of each block, every ``stride``-th from its start so that at most ``most`` remain (0: all)."""
    total = sum(b - a for a, b in blocks)
    stride = max(1, -(-total // most)) if most > 0 else 1
    return [np.arange(a, b, stride, dtype=np.int64) for a, b in blocks]


@dataclass(frozen=True, slots=True)
class BacktestResult:
    """Scores of one horizon on one series."""

    horizon: str
    points: int
    mae: float
    mape: float
    mase: float  # model MAE / daily seasonal-naive MAE on the same points
    vs_weekly: float  # model MAE / weekly seasonal-naive MAE (NaN when a week of history is missing)
    vs_persistence: float  # model MAE / persistence MAE
    best_baseline: str  # the baseline with the lowest MAE on these points
    vs_best: float  # model MAE / best baseline MAE
    vs_best_lo: float  # block-bootstrap 95 % interval of vs_best
    vs_best_hi: float
    pinball: float  # mean over P10, P50, P90
    coverage_80: float  # share of truths inside P10-P90

    def to_dict(self) -> dict[str, float | int | str]:
        """Plain figures for JSON."""
        return {k: getattr(self, k) for k in self.__slots__}


def backtest_frame(
    y: pd.Series,
    horizon: str,
    step: pd.Timedelta,
    *,
    folds: int = 3,
    test_share: float = 0.25,
    max_iter: int = 150,
    window: pd.Timedelta | None = None,
    thin: int = 0,
) -> pd.DataFrame:
    """Per-point forecasts of one horizon, indexed by target time, with the baselines, origin, fold and train end.

    Column ``train_last_target`` is the latest target time the fold's models could have been trained on; it is never
    after ``origin`` (tested). ``thin`` > 0 keeps at most that many origins, evenly spaced (see :func:`thin_origins`).
    """
    h = steps(horizon, step)
    day, week = steps(DAY, step), steps(WEEK, step)
    n = len(y)
    blocks = fold_blocks(n, h, folds, test_share)
    if not blocks or blocks[0][0] < 2 * day:
        raise DataError(
            f"series of {n} steps is too short to backtest horizon {horizon}: need 2 days of history before the test"
        )
    x, anchor = build_features(y, h, step)
    parts = []
    for k, origins in enumerate(thin_origins(blocks, thin)):
        origin0 = pd.Timestamp(y.index[origins[0]])
        # Pairs whose target is at or before the block's first origin: the value at the origin is known there.
        model = fit_horizon(
            y, h, step, train_end=origin0 + step, max_iter=max_iter, window=window, prebuilt=(x, anchor)
        )
        q = model.predict_gated(x, y, anchor, origins) + anchor.iloc[origins].to_numpy()[:, None]
        part = pd.DataFrame(q, columns=["p10", "p50", "p90"], index=y.index[origins + h])
        part["origin"] = y.index[origins]
        part["fold"] = k
        part["train_last_target"] = origin0
        parts.append(part)
    fc = pd.concat(parts)
    fc["y"] = y.reindex(fc.index)
    # Baselines read the last observed value at or before their lag (a forward fill looks only backwards), so a
    # missing sample a day or a week back does not drop the point; the truth itself is never filled.
    past = y.ffill()
    fc["snaive_day"] = seasonal_naive(past, h, day).reindex(fc.index)
    fc["snaive_week"] = seasonal_naive(past, h, week).reindex(fc.index)
    fc["persistence"] = persistence(past, h).reindex(fc.index)
    return fc


def score(fc: pd.DataFrame, horizon: str, h: int, *, model: str = "p50") -> BacktestResult:
    """Scores of the forecast column ``model`` (with ``p10``/``p90`` for the interval) against the baselines."""
    need = ["y", model, "p10", "p90", "snaive_day", "persistence"]
    sc = fc[fc[need].notna().all(axis=1)]
    if len(sc) < 10:
        raise DataError(f"horizon {horizon}: only {len(sc)} test points with truth and baselines")
    yv, pv = sc["y"].to_numpy(), sc[model].to_numpy()
    m = mae(yv, pv)
    base = {b: mae(yv, sc[b].to_numpy()) for b in BASELINES if sc[b].notna().all()}
    best = min(base, key=lambda b: base[b])
    lo, hi = bootstrap_ratio(yv - pv, yv - sc[best].to_numpy(), block=h)
    return BacktestResult(
        horizon=horizon,
        points=len(sc),
        mae=m,
        mape=mape(yv, pv),
        mase=m / base["snaive_day"],
        vs_weekly=m / base["snaive_week"] if "snaive_week" in base else float("nan"),
        vs_persistence=m / base["persistence"],
        best_baseline=best,
        vs_best=m / base[best],
        vs_best_lo=lo,
        vs_best_hi=hi,
        pinball=float(
            np.mean([pinball(yv, sc[c].to_numpy(), q) for c, q in (("p10", 0.1), (model, 0.5), ("p90", 0.9))])
        ),
        coverage_80=coverage(yv, sc["p10"].to_numpy(), sc["p90"].to_numpy()),
    )


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
    fc = backtest_frame(y, horizon, step, folds=folds, test_share=test_share, max_iter=max_iter, window=window)
    return score(fc, horizon, steps(horizon, step)), fc


def format_results(name: str, results: list[BacktestResult]) -> str:
    """Fixed-width table of backtest scores; the header states the MASE definition."""
    lines = [
        f"backtest {name}: rolling origin (training targets never after a scored origin); "
        "MASE = model MAE / daily seasonal-naive MAE; vs_best = model MAE / best baseline MAE, 95 % block bootstrap",
        f"{'horizon':>8} {'points':>7} {'MAE':>11} {'MAPE%':>7} {'MASE':>6} {'vs_wk':>6} {'vs_pers':>7} "
        f"{'best baseline':>13} {'vs_best':>7} {'95% interval':>13} {'pinball':>11} {'P10-P90 cov%':>12}",
    ]
    for r in results:
        lines.append(
            f"{r.horizon:>8} {r.points:>7} {r.mae:>11.4g} {r.mape:>7.2f} {r.mase:>6.3f} {r.vs_weekly:>6.3f} "
            f"{r.vs_persistence:>7.3f} {r.best_baseline:>13} {r.vs_best:>7.3f} "
            f"{f'{r.vs_best_lo:.3f}-{r.vs_best_hi:.3f}':>13} {r.pinball:>11.4g} {100 * r.coverage_80:>12.1f}"
        )
    return "\n".join(lines)
