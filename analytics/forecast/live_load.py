"""The live IT-load forecast: P10/P50/P90 of the site's IT power for the next 24 h, from the historian.

Gradient-boosted quantile models (:class:`analytics.forecast.load.LoadForecaster`) need history: at least
``MIN_HISTORY`` of 5-minute IT power before the first fit. :class:`LiveLoadForecast` is one half of
:class:`analytics.forecast.service.ForecastService`, whose worker thread calls :meth:`LiveLoadForecast.update` under
the one refit policy (:mod:`analytics.forecast.policy`); the dashboard and the API read
:meth:`LiveLoadForecast.latest`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import pandas as pd
from threadpoolctl import threadpool_limits

from analytics.forecast.load import LoadForecaster
from analytics.forecast.policy import RefitPolicy, needs_history, stale

log = logging.getLogger(__name__)

STEP = pd.Timedelta("5min")
MIN_HISTORY = pd.Timedelta("3D")
HORIZONS = ("30min", "1h", "2h", "4h", "8h", "12h", "24h")
MAX_ITER = 60  # boosting rounds per quantile model: a full fit of the seven horizons stays near a minute
FILL_STEPS = 6  # gaps up to 30 min are interpolated before fitting and forecasting; longer ones stay missing


@dataclass(frozen=True, slots=True)
class LoadForecastState:
    """The latest forecast (None until there is one), the last day of measured load and a line saying what it is."""

    frame: pd.DataFrame | None  # LoadForecaster.predict: one row per horizon with ts, p10, p50, p90 (kW)
    history: pd.Series | None  # the measured 5-minute IT power (kW) over the day before the origin
    message: str
    origin: pd.Timestamp | None = None  # the last measured value the forecast starts from
    trained: dict[str, object] | None = None  # LoadForecaster.metadata() of the model in use
    pending: bool = False  # a first check or first fit is under way (ask again shortly)


class LiveLoadForecast:
    """The site's IT load at each of ``horizons``, brought up to date by :meth:`update` (the service's worker).

    ``read(start, end)`` returns the site's IT power in kW at 5-minute steps (e.g.
    :func:`analytics.historian_adapter.it_load_series` under the caller's historian lock), or None when no IT power
    meter has readings; ``clock()`` is the facility's time.
    """

    def __init__(
        self,
        read: Callable[[pd.Timestamp, pd.Timestamp], pd.Series | None],
        clock: Callable[[], pd.Timestamp],
        *,
        horizons: Sequence[str] = HORIZONS,
        policy: RefitPolicy | None = None,
    ) -> None:
        self.read, self.clock = read, clock
        self.horizons = tuple(horizons)
        self.policy = policy or RefitPolicy()
        self.fits = 0  # models fitted so far (each one takes up to a minute)
        self._model: LoadForecaster | None = None
        self._latest = LoadForecastState(
            None, None, "IT-load forecast: waiting for the first check of stored history", pending=True
        )

    def latest(self) -> LoadForecastState:
        """What the dashboard panel and the API serve now."""
        return self._latest

    def unavailable(self, reason: str, *, exc_info: bool = False) -> LoadForecastState:
        """Bad telemetry (or a fault): say so on the panel and in the API; logged once, then at DEBUG while it lasts."""
        message = f"IT-load forecast unavailable: {reason}"
        first = message != self._latest.message
        log.log(logging.WARNING if first else logging.DEBUG, "%s", message, exc_info=exc_info and first)
        self._latest = LoadForecastState(None, None, message)
        return self._latest

    def update(self) -> LoadForecastState:
        """Read history, refit when the policy says so, forecast from the last measured value; returns the state."""
        now = pd.Timestamp(self.clock())
        series = self.read(now - self.policy.history, now)
        valid = series.dropna() if series is not None else pd.Series(dtype=float)
        if valid.empty:
            line = needs_history("IT-load forecast", pd.Timedelta(0), MIN_HISTORY, "5-minute IT power")
            self._latest = LoadForecastState(None, None, f"{line}: no stored IT power readings yet")
            return self._latest
        assert series is not None
        first, last = pd.Timestamp(valid.index[0]), pd.Timestamp(valid.index[-1])
        if last - first < MIN_HISTORY:
            line = needs_history("IT-load forecast", last - first, MIN_HISTORY, "5-minute IT power")
            self._latest = LoadForecastState(None, None, line)
            return self._latest
        trained_end = self._model.train_end if self._model is not None else None
        if self._latest.frame is not None and self._latest.origin == last and not self.policy.due(trained_end, last):
            # No new value since the last forecast: it stands (its line says so if the telemetry has stopped).
            self._latest = replace(self._latest, message=self._describe(now, last))
            return self._latest
        y = series.loc[first:last].asfreq("5min").interpolate(limit=FILL_STEPS, limit_area="inside")
        with threadpool_limits(1):  # the API and dashboard threads share the cores
            if self.policy.due(trained_end, last):
                log.info("fitting the IT-load forecast on %d five-minute values", len(y))
                if self._latest.frame is None:
                    days = (last - first) / pd.Timedelta("1D")
                    line = f"IT-load forecast: first fit under way on {days:.1f} days of IT power"
                    self._latest = LoadForecastState(None, None, line, pending=True)
                self._model = LoadForecaster.fit(y, list(self.horizons), STEP, max_iter=MAX_ITER)
                self.fits += 1
            assert self._model is not None
            frame = self._model.predict(y)
        self._latest = LoadForecastState(
            frame, y[y.index > last - pd.Timedelta("1D")], self._describe(now, last), last, self._model.metadata()
        )
        return self._latest

    def _describe(self, now: pd.Timestamp, last: pd.Timestamp) -> str:
        """What the forecast is and what it was trained on; flags IT power that stopped over two hours ago."""
        text = f"gradient-boosted quantile models, {self.policy.describe()}"
        if self._model is not None and self._model.train_start is not None and self._model.train_end is not None:
            days = (self._model.train_end - self._model.train_start) / pd.Timedelta("1D")
            text += f"; trained on {days:.1f} days to {self._model.train_end:%Y-%m-%d %H:%M} UTC"
        return text + stale(now, last, "IT power")
