"""The Overview's IT-load forecast: refitted in the background from the historian, never in a page callback.

Gradient-boosted quantile models (analytics.forecast.load) need history: at least ``MIN_HISTORY`` of 5-minute IT load
before the first fit. Until then the panel says how much history there is; after that the models are refitted
every ``REFIT`` of facility time on up to four weeks and the P10/P50/P90 of the next 24 h are shown.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import pandas as pd

from analytics.forecast.load import LoadForecaster
from analytics.historian_adapter import it_load_series
from dashboards.data import DashboardData

log = logging.getLogger(__name__)

STEP = pd.Timedelta("5min")
MIN_HISTORY = pd.Timedelta("3D")
REFIT = pd.Timedelta("6h")
HORIZONS = ["30min", "1h", "2h", "4h", "8h", "12h", "24h"]


@dataclass(frozen=True, slots=True)
class Forecast:
    """The latest forecast (None until there is one), recent measured load and a line saying what it is."""

    frame: pd.DataFrame | None
    history: pd.Series | None
    message: str


class ForecastService:
    """Keeps a forecast of the facility's IT load up to date from a worker thread."""

    def __init__(self, data: DashboardData, *, check_every_s: float = 60.0) -> None:
        self.data = data
        self.check_every_s = check_every_s
        self._model: LoadForecaster | None = None
        self._latest = Forecast(None, None, "IT-load forecast: waiting for the first check of stored history")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def latest(self) -> Forecast:
        """What the panel shows now."""
        return self._latest

    def start(self) -> None:
        """Start the worker thread."""
        self._thread = threading.Thread(target=self._run, name="forecast", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the worker (a fit in progress finishes first)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.update()
            except Exception:  # the forecast is advisory: log and keep the dashboard running
                log.exception("IT-load forecast update failed")
            self._stop.wait(self.check_every_s)

    def update(self) -> None:
        """Read history, refit when due, predict."""
        now = self.data.now()
        series = it_load_series(self.data.historian, self.data.site, now - pd.Timedelta("28D"), now, "5m")
        y = series.get("facility")
        if y is None or y.dropna().empty:
            self._latest = Forecast(None, None, "IT-load forecast: no stored IT power readings yet")
            return
        y = y.asfreq(pd.tseries.frequencies.to_offset(STEP))
        have = y.dropna().index[-1] - y.dropna().index[0]
        if have < MIN_HISTORY:
            self._latest = Forecast(
                None,
                None,
                f"IT-load forecast: collecting history, {have.total_seconds() / 3600:.1f} h "
                f"of the {MIN_HISTORY.total_seconds() / 3600:.0f} h needed at 5-minute steps",
            )
            return
        if self._model is None or self._model.due(now, REFIT):
            log.info("fitting IT-load forecast on %d five-minute values", len(y))
            self._model = LoadForecaster.fit(y.interpolate(limit=6), HORIZONS, STEP, max_iter=60)
        pred = self._model.predict(y.interpolate(limit=6))
        trained = self._model.train_end
        self._latest = Forecast(
            pred,
            y.iloc[-288:],
            f"gradient-boosted quantile models, trained on "
            f"{have.total_seconds() / 86400:.1f} days to {trained:%Y-%m-%d %H:%M} UTC",
        )
