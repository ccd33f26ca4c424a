"""The one refit policy of the live forecasts (IT load and PUE / facility power), in one place.

The rule, for both forecasts, applied by :class:`analytics.forecast.service.ForecastService` on its worker thread:

1. Every ``check_every_s`` (60 s) read up to ``history`` (28 days) of stored telemetry ending at the facility's now.
2. Until the forecast's minimum history is stored (IT load 3 days, PUE 7 days) fit nothing; the state says
   "needs N days of history, has M" (:func:`needs_history`).
3. Fit when there is no model yet; refit when ``refit`` (one day) of *new telemetry* has arrived since the end of
   the last fit's training window. New telemetry, not clock time: a historian that stopped receiving data is not
   refitted on the same rows every check (its state says STALE instead).
4. Forecast again with the current model whenever a new step of telemetry is complete (IT load: the next 5-minute
   value; PUE: the next complete hour, so once it has a forecast it reads the plant telemetry once per facility hour).
5. Never in an HTTP request or a page callback: the dashboard and the API read the latest state only.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

DAY = pd.Timedelta("1D")
HISTORY = pd.Timedelta("28D")
STALE_AFTER = pd.Timedelta("2h")  # telemetry older than this at a check is flagged on the state's line


@dataclass(frozen=True, slots=True)
class RefitPolicy:
    """How much history the models learn from, when they are refitted and how often the worker looks."""

    history: pd.Timedelta = HISTORY
    refit: pd.Timedelta = DAY
    check_every_s: float = 60.0

    def __post_init__(self) -> None:
        if self.history <= pd.Timedelta(0) or self.refit <= pd.Timedelta(0) or self.check_every_s <= 0:
            raise ValueError(f"refit policy: history, refit and check_every_s must be positive (got {self})")

    def due(self, trained_end: pd.Timestamp | None, last: pd.Timestamp) -> bool:
        """True without a model, or when ``refit`` of telemetry newer than the model's training window has arrived."""
        return trained_end is None or pd.Timestamp(last) - pd.Timestamp(trained_end) >= self.refit

    def describe(self) -> str:
        """The rule in a few words, for the forecast's line on the dashboard and in the API."""
        return f"refitted after each {_span(self.refit)} of new telemetry on up to {_span(self.history)}"


def needs_history(what: str, have: pd.Timedelta, need: pd.Timedelta, of: str) -> str:
    """The line a forecast shows until its minimum history is stored, e.g. 'needs 3 days of history, has 1.2'."""
    return f"{what}: needs {need / DAY:g} days of history ({of}), has {max(have, pd.Timedelta(0)) / DAY:.1f}"


def stale(now: pd.Timestamp, last: pd.Timestamp, of: str) -> str:
    """'; STALE: ... ends <time>' when the newest telemetry is over two hours old at ``now``, else ''."""
    return f"; STALE: {of} ends {last:%Y-%m-%d %H:%M} UTC" if now - last > STALE_AFTER else ""


def _span(span: pd.Timedelta) -> str:
    """'day', '28 days' or '6 h'."""
    days = span / DAY
    if days == 1:
        return "day"
    return f"{days:g} days" if days > 1 else f"{span / pd.Timedelta('1h'):g} h"
