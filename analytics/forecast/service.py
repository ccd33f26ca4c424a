"""The one live forecast service: IT load (next 24 h) and PUE / facility power (next 48 h), for dashboard and API.

The main job builds one :class:`ForecastService` over its historian (:meth:`ForecastService.for_historian`), starts
it, and hands the same object to the dashboard and to the REST API; ``aidc api`` and a dashboard started on its own
build their own the same way. One worker thread brings both forecasts up to date under the one refit policy
(:class:`analytics.forecast.policy.RefitPolicy`, documented there); the two fits never run at the same time, and
nothing is fitted in an HTTP request or a page callback: readers take :meth:`ForecastService.latest`, an immutable
snapshot, so the dashboard panel and the API answer with the same figures.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from aidc.clock import Clock
from aidc.config import Site
from aidc.errors import AidcError
from analytics.forecast.live import LivePueForecast, PueForecastState, plant_history
from analytics.forecast.live_load import HORIZONS, LiveLoadForecast, LoadForecastState
from analytics.forecast.policy import RefitPolicy
from analytics.forecast.pue import FIRST_FIT_EVERY, VALIDATION_EVERY
from analytics.historian_adapter import it_load_series
from historian import Historian


def facility_clock(clock: Clock) -> Callable[[], pd.Timestamp]:
    """The facility's time (simulated time in the demo) as the UTC timestamps the service reads."""
    return lambda: pd.Timestamp(clock.now_ns(), unit="ns", tz="UTC")


@dataclass(frozen=True, slots=True)
class ForecastState:
    """Both forecasts as they stand now (each with its own line saying what it is or why there is none)."""

    load: LoadForecastState
    pue: PueForecastState


class ForecastService:
    """Keeps the IT-load and the PUE / facility-power forecasts fresh from one worker thread."""

    def __init__(self, load: LiveLoadForecast, pue: LivePueForecast) -> None:
        if load.policy != pue.policy:  # one refit policy for both forecasts, or the service is not what it says
            raise ValueError(f"forecast service: the IT-load and PUE forecasts have different refit policies "
                             f"({load.policy} and {pue.policy})")  # fmt: skip
        self.load, self.pue = load, pue
        self.policy = load.policy
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def for_historian(
        cls,
        historian: Historian,
        site: Site,
        clock: Callable[[], pd.Timestamp],
        *,
        lock: AbstractContextManager[object] | None = None,
        weather_file: Path | None = None,
        policy: RefitPolicy | None = None,
        horizons: Sequence[str] = HORIZONS,
    ) -> ForecastService:
        """The service reading ``historian`` (under ``lock`` when the caller serialises its queries), not started.

        ``clock()`` is the facility's time (simulated time in the demo); ``weather_file`` the site's Open-Meteo
        hourly forecast for the PUE forecast (see :class:`analytics.forecast.live.LivePueForecast`).
        """
        guard: AbstractContextManager[object] = lock if lock is not None else contextlib.nullcontext()
        policy = policy or RefitPolicy()

        def read_load(a: pd.Timestamp, b: pd.Timestamp) -> pd.Series | None:
            with guard:
                return it_load_series(historian, site, a, b, "5m").get("facility")

        def read_plant(a: pd.Timestamp, b: pd.Timestamp) -> pd.DataFrame:
            with guard:
                return plant_history(historian, site, a, b)

        return cls(
            LiveLoadForecast(read_load, clock, horizons=horizons, policy=policy),
            LivePueForecast(read_plant, clock, weather_file=weather_file, policy=policy),
        )

    def latest(self) -> ForecastState:
        """Both forecasts as they stand now; what the dashboard panels and the API endpoints read, nothing else."""
        return ForecastState(self.load.latest(), self.pue.latest())

    @property
    def fits(self) -> int:
        """How many models have been fitted so far, both forecasts together."""
        return self.load.fits + self.pue.fits

    @property
    def running(self) -> bool:
        """Whether the worker thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> ForecastService:
        """Start the worker thread (once; a second call does nothing)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="forecasts", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout_s: float = 60.0) -> None:
        """Stop the worker: no read starts after this; waits up to ``timeout_s`` for a fit in progress to finish."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)

    def update(self) -> ForecastState:
        """One pass of the worker: bring the IT-load, then the PUE forecast up to date; returns both."""
        for part in (self.load, self.pue):
            self._update_part(part)
        return self.latest()

    def _update_part(self, part: LiveLoadForecast | LivePueForecast) -> None:
        """Bring one half up to date; a failure becomes its state's line."""
        if self._stop.is_set():  # stopping: the historian may be closing, read nothing more
            return
        try:
            part.update()
        except AidcError as exc:  # bad telemetry or weather file: the state says so, the next check tries again
            part.unavailable(str(exc))
        except Exception as exc:  # the forecasts are advisory: keep the dashboard, the API and the job running
            part.unavailable(f"internal error ({type(exc).__name__}: {exc}); see the log", exc_info=True)

    def first_fit(self, history: pd.Timedelta) -> ForecastState:
        """One :meth:`update` whose fits learn from at most ``history`` of telemetry (the demo's first fits after its
        backfill, so the job goes live sooner); the policy's window applies again from the next update, and the
        first refit (after one ``refit`` of new telemetry) learns from all of it. The PUE forecast's band is
        calibrated on half the validation origins (:data:`analytics.forecast.pue.FIRST_FIT_EVERY`) until that refit.
        The states say what each model was trained and calibrated on."""
        bounded = replace(self.policy, history=min(history, self.policy.history))
        self.load.policy = self.pue.policy = bounded
        self.pue.calibrate_every = FIRST_FIT_EVERY
        try:
            # The two halves side by side (they share nothing; most of a fit is in DuckDB, numpy and scikit-learn,
            # which release the GIL), the IT-load one in a thread of its own.
            other = threading.Thread(target=self._update_part, args=(self.load,), name="first IT-load fit")
            other.start()
            try:
                self._update_part(self.pue)
            finally:
                other.join()
            return self.latest()
        finally:
            self.load.policy = self.pue.policy = self.policy
            self.pue.calibrate_every = VALIDATION_EVERY

    def _run(self) -> None:
        while not self._stop.is_set():
            self.update()
            self._stop.wait(self.policy.check_every_s)
