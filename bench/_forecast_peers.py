"""statsforecast peers for bench/forecast.py, scored on exactly the origins of aidc's rolling-origin backtest.

statsforecast's own ``cross_validation`` runs each fold: the models are fitted once on data up to the fold's first
origin (``refit=False``) and then rolled forward origin by origin with their fitted parameters (``forward``), which
is the protocol of :func:`analytics.forecast.backtest.backtest_frame` (no training data after the fold's first origin,
and
each forecast uses data up to its origin only). statsforecast cannot take missing values, so the peers see the series
forward-filled (the last observed value, never a later one); points whose truth is missing are not scored.

statsforecast 2.1 requires pandas < 3; 2.0.3 is the release that installs beside this project's pandas 3.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

INSTALL_HINT = "statsforecast is not installed: pip install -e '.[bench]' (a benchmark-only dependency)"


def available() -> bool:
    """True when statsforecast can be imported."""
    try:
        import statsforecast  # noqa: F401
    except ImportError:
        return False
    return True


def _nextodd(x: float) -> int:
    n = math.ceil(x)
    return n + 1 - n % 2


def _stl_jumps(period: int) -> dict[str, int]:
    """R's ``stl`` defaults for the loess jumps (a tenth of each window), which statsmodels' STL leaves at 1.

    ``forecast::mstl`` in R, the reference MSTL, runs with these; with jumps of 1 a weekly season of 5-min data
    costs 14 s per forecast origin here, with R's defaults 0.3 s, for the same decomposition to within loess noise.
    """
    s_window = 11  # statsforecast's mstl: seasonal windows 7 + 4i, the first one for the shortest season
    t_window = _nextodd(1.5 * period / (1 - 1.5 / s_window))
    return {
        "seasonal_jump": math.ceil(s_window / 10),
        "trend_jump": math.ceil(t_window / 10),
        "low_pass_jump": math.ceil(_nextodd(period) / 10),
    }


@dataclass
class Peer:
    """One statsforecast model as the bench runs it."""

    name: str
    model: Any
    note: str = ""


def build_peers(day: int, week: int, history: int) -> tuple[list[Peer], list[str]]:
    """The peers that fit ``history`` training steps (seasons of a day and a week in steps), and notes on the rest."""
    from statsforecast.models import MSTL, AutoARIMA, AutoETS, Naive, SeasonalNaive

    notes: list[str] = []
    peers = [
        Peer("Naive", Naive(alias="Naive")),
        Peer("SeasonalNaive_day", SeasonalNaive(season_length=day, alias="SeasonalNaive_day")),
    ]
    if history > week:
        peers.append(Peer("SeasonalNaive_week", SeasonalNaive(season_length=week, alias="SeasonalNaive_week")))
    else:
        notes.append(f"SeasonalNaive_week left out: {history} training steps, a week is {week}")
    if day <= 48:
        peers.append(Peer("AutoETS", AutoETS(season_length=day, alias="AutoETS"), f"full search, period {day}"))
    else:
        # With a period of 288 the full search (19 models, the seasonal ones with 288 states) chose a non-seasonal
        # model anyway on both 5-min traces (ANN on Alibaba, MNN on Azure, by AICc) and took 40 s a fit here; the
        # non-seasonal family alone picks the same model in 0.5 s.
        ets = AutoETS(season_length=day, model="ZZN", alias="AutoETS")
        peers.append(Peer("AutoETS", ets, "non-seasonal family ZZN (the full search picks one anyway, 80x slower)"))
    seasons = [s for s in (day, week) if history >= 2 * s]  # STL needs two full cycles of each season
    if seasons:
        stl = _stl_jumps(seasons[0])
        label = "daily + weekly" if len(seasons) == 2 else "daily only (under two weeks of history)"
        peers.append(Peer("MSTL", MSTL(season_length=seasons, stl_kwargs=stl, alias="MSTL"), label))
    if day <= 48:
        # R's auto.arima default for series over 150 points: conditional sums of squares during the stepwise
        # search, the chosen model refitted by maximum likelihood (statsforecast's class defaults to exact ML
        # throughout, 64 s a fit on 12 weeks of hourly data here against 0.5 s).
        arima = AutoARIMA(season_length=day, approximation=True, alias="AutoARIMA")
        peers.append(Peer("AutoARIMA", arima, f"seasonal, period {day}, R's approximation=TRUE"))
    else:
        # A seasonal ARIMA with period 288 did not finish one fit in 5 minutes on this machine; non-seasonal does.
        peers.append(
            Peer("AutoARIMA", AutoARIMA(season_length=1, alias="AutoARIMA"), "non-seasonal (period 288 is too slow)")
        )
    return peers, notes


@dataclass
class PeerRun:
    """Forecasts of every peer, indexed by target time, with the seconds each took."""

    forecasts: pd.DataFrame
    seconds: dict[str, float] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def peer_forecasts(
    y: pd.Series, h: int, blocks: list[np.ndarray], *, day: int, week: int, input_size: int | None
) -> PeerRun:
    """Forecasts ``h`` steps ahead from every origin of each block (origin indices, evenly spaced), per peer."""
    from statsforecast import StatsForecast

    freq = pd.Timedelta(y.index[1] - y.index[0])
    past = y.ffill().bfill()  # bfill only fills the leading gap before the first value, which nobody scores
    ds = pd.DatetimeIndex(y.index).tz_convert("UTC").tz_localize(None)
    history = int(blocks[0][0]) + 1 if input_size is None else min(int(blocks[0][0]) + 1, input_size)
    peers, notes = build_peers(day, week, history)
    run = PeerRun(pd.DataFrame(), notes=notes)
    cols: dict[str, list[pd.Series]] = {p.name: [] for p in peers}
    for p in peers:
        t0 = time.perf_counter()
        try:
            for origins in blocks:
                stride = int(origins[1] - origins[0]) if len(origins) > 1 else 1
                last = int(origins[-1])
                df = pd.DataFrame({"unique_id": "s", "ds": ds[: last + h + 1], "y": past.to_numpy()[: last + h + 1]})
                sf = StatsForecast(models=[p.model], freq=freq, n_jobs=1)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    cv = sf.cross_validation(
                        df=df, h=h, n_windows=len(origins), step_size=stride, input_size=input_size, refit=False
                    )
                cv = cv[cv["ds"] - cv["cutoff"] == h * freq]
                s = pd.Series(cv[p.name].to_numpy(), index=pd.DatetimeIndex(cv["ds"]).tz_localize("UTC"))
                cols[p.name].append(s)
        except Exception as exc:  # a peer that cannot fit this series is reported, not fatal to the run
            run.failed[p.name] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
            continue
        run.seconds[p.name] = time.perf_counter() - t0
        if p.note:
            run.notes.append(f"{p.name}: {p.note}")
    run.forecasts = pd.DataFrame({n: pd.concat(v) for n, v in cols.items() if v and n not in run.failed})
    return run
