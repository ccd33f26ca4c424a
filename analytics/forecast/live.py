"""A PUE and facility-power forecast kept fresh from the historian on a worker thread (for the dashboard and the API).

Fitting the workload forecaster and the plant model, with the calibration on a validation window, takes tens of
seconds; a page callback or an HTTP request must never wait for it. :class:`PueForecastService` refits every
``refit`` of facility time (a day by default) on up to ``history`` of telemetry, forecasts again whenever a new
hour of telemetry is complete, and hands out the latest result through :meth:`PueForecastService.latest`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
from threadpoolctl import threadpool_limits

from aidc.config import Site
from aidc.errors import AidcError, DataError
from aidc.model import SeriesKey
from aidc.roles import Role
from analytics.energy.kpi import IT_POWER_ROLES
from analytics.forecast.pue import HOUR, VALIDATION, FacilityForecaster, hourly_frame
from analytics.forecast.weather import WeatherForecast, read_open_meteo
from analytics.historian_adapter import wide_frame
from analytics.plant_model import plant_frame
from historian import Historian

log = logging.getLogger(__name__)

MIN_HISTORY = pd.Timedelta("7D")  # FacilityForecaster.fit's minimum
HISTORY = pd.Timedelta("28D")
REFIT = pd.Timedelta("1D")

# The roles the plant frame is built from (analytics.plant_model.plant_frame).
PLANT_ROLES = (
    Role.GPU_UTIL,
    Role.OUTDOOR_DRYBULB,
    Role.OUTDOOR_WETBULB,
    Role.TCS_SUPPLY_TEMP_SETPOINT,
    Role.TCS_DP_SETPOINT,
    Role.FWS_SUPPLY_TEMP_SETPOINT,
    Role.GPU_TEMP,
    Role.RACK_COOLANT_OUTLET_TEMP,
    Role.FACILITY_POWER,
    Role.COOLING_POWER,
    *IT_POWER_ROLES.values(),
)


def device_roles(site: Site, columns: Iterable[str]) -> dict[str, Role]:
    """The role of each series id from its own device (two devices may share a measurement and field but not a role:
    the utility meter's ``meter active_power_w`` is facility power, a UPS meter's the same field is IT power)."""
    devices = {d.name: d for d in site.devices}
    out: dict[str, Role] = {}
    for sid in columns:
        key = SeriesKey.parse(str(sid))
        dev = devices.get(key.tag_dict.get("device", ""))
        role = dev.role_of(key.field) if dev is not None else None
        if role is not None:
            out[str(sid)] = role
    return out


def plant_history(historian: Historian, site: Site, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """The 5-min plant frame (:func:`analytics.plant_model.plant_frame`) between ``start`` and ``end``; may be empty."""
    wide, roles = wide_frame(historian, site, PLANT_ROLES, start, end, "5m")
    if wide.empty:
        return pd.DataFrame()
    wide.index = pd.DatetimeIndex(pd.to_datetime(wide.index, utc=True))
    return plant_frame(wide, {**roles, **device_roles(site, wide.columns)})


@dataclass(frozen=True, slots=True)
class PueForecastState:
    """The latest forecast (None until there is one), the measured hours before it and a line saying what it is."""

    frame: pd.DataFrame | None  # FacilityForecaster.predict: hourly P10/P50/P90 of PUE, facility and IT power
    history: pd.DataFrame | None  # hourly measured pue, facility_power_kw, it_power_kw over the last two days
    message: str
    origin: pd.Timestamp | None = None
    trained: tuple[pd.Timestamp, pd.Timestamp] | None = None
    weather: str = ""
    pending: bool = False  # a first check or first fit is under way (ask again shortly)


class PueForecastService:
    """Keeps the next ``hours`` of PUE and facility power forecast from a worker thread.

    ``read(start, end)`` returns the 5-min plant frame (e.g. :func:`plant_history` under the caller's historian
    lock); ``clock()`` the facility's time. ``weather_file`` is an Open-Meteo hourly forecast (JSON or CSV), read
    again at every forecast so a job that refreshes it is picked up; without one, or when it does not cover the
    horizon, the current weather is moved along the recent daily cycle
    (:func:`analytics.forecast.pue.diurnal_persistence`; the message says so).
    """

    def __init__(
        self,
        read: Callable[[pd.Timestamp, pd.Timestamp], pd.DataFrame],
        clock: Callable[[], pd.Timestamp],
        *,
        weather_file: Path | None = None,
        hours: int = 48,
        history: pd.Timedelta = HISTORY,
        refit: pd.Timedelta = REFIT,
        check_every_s: float = 300.0,
    ) -> None:
        self.read, self.clock = read, clock
        self.weather_file, self.hours = weather_file, hours
        self.history, self.refit, self.check_every_s = history, refit, check_every_s
        self._model: FacilityForecaster | None = None
        self._latest = PueForecastState(
            None, None, "PUE forecast: waiting for the first check of stored history", pending=True
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def latest(self) -> PueForecastState:
        """What the dashboard panel and the API serve now."""
        return self._latest

    def start(self) -> PueForecastService:
        """Start the worker thread."""
        self._thread = threading.Thread(target=self._run, name="pue forecast", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the worker (a fit in progress finishes first)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.update()
            except AidcError as exc:  # bad telemetry or weather file: say so on the panel, keep trying
                message = f"PUE forecast unavailable: {exc}"
                # Logged once at WARNING, then at DEBUG while the same fault lasts.
                log.log(logging.DEBUG if message == self._latest.message else logging.WARNING, "%s", message)
                self._latest = PueForecastState(None, None, message)
            except Exception:  # the forecast is advisory: log and keep the dashboard and API running
                log.exception("PUE forecast update failed")
            self._stop.wait(self.check_every_s)

    def update(self) -> PueForecastState:
        """Read history, refit when due, forecast from the last complete hour; returns the new state."""
        now = pd.Timestamp(self.clock())
        data = self.read(now - self.history, now)
        have = data.index[-1] - data.index[0] if len(data) > 1 else pd.Timedelta(0)
        if have < MIN_HISTORY:
            self._latest = PueForecastState(
                None,
                None,
                f"PUE forecast: collecting history, {have / pd.Timedelta('1D'):.1f} of the "
                f"{MIN_HISTORY / pd.Timedelta('1D'):.0f} days of complete plant telemetry needed",
            )
            return self._latest
        origin = pd.Timestamp(data.index[-1]).floor(HOUR)
        last = pd.Timestamp(data.index[-1])
        if self._latest.frame is not None and self._latest.origin == origin and not self._due(last):
            # Nothing new: the same hour's forecast stands (its line says so if the telemetry has stopped).
            self._latest = replace(self._latest, message=self._describe(now, last))
            return self._latest
        with threadpool_limits(1):  # the API and dashboard threads share the cores
            if self._due(last):
                log.info("fitting the PUE forecast on %d five-minute plant rows", len(data))
                if self._latest.frame is None:
                    self._latest = PueForecastState(
                        None, None, f"PUE forecast: first fit under way on {have / pd.Timedelta('1D'):.1f} days "
                        "of telemetry", pending=True,
                    )  # fmt: skip
                self._model = FacilityForecaster.fit(data)
            assert self._model is not None
            weather, source = self._weather(origin)
            frame = self._model.predict(data, weather, hours=self.hours)
        hist = hourly_frame(data[["facility_power_kw", "it_power_kw"]])
        hist = hist[hist.index > origin - pd.Timedelta("48h")]
        self._latest = PueForecastState(
            frame, hist[hist.index <= origin], self._describe(now, last), origin, self._model.fitted_on, source
        )
        return self._latest

    def _describe(self, now: pd.Timestamp, last: pd.Timestamp) -> str:
        """What the forecast is and what it was trained on; flags telemetry that stopped over two hours ago."""
        fitted = self._model.fitted_on if self._model is not None else None
        text = "learned plant model and workload forecast, refitted daily"
        if fitted is not None:
            days = (fitted[1] - fitted[0]) / pd.Timedelta("1D")
            text += f"; trained on {days:.1f} days to {fitted[1]:%Y-%m-%d %H:%M} UTC"
        if self._model is not None and not self._model.widen:
            text += f"; band not yet calibrated (needs {(MIN_HISTORY + VALIDATION) / pd.Timedelta('1D'):.0f} days)"
        if now - last > 2 * HOUR:
            text += f"; STALE: plant telemetry ends {last:%Y-%m-%d %H:%M} UTC"
        return text

    def _due(self, last: pd.Timestamp) -> bool:
        """A refit is due when ``refit`` of new telemetry has arrived since the last one (not merely of time: a
        historian that stopped receiving data would otherwise be refitted on the same rows every check)."""
        fitted = self._model.fitted_on if self._model is not None else None
        return fitted is None or last - fitted[1] >= self.refit

    def _weather(self, origin: pd.Timestamp) -> tuple[WeatherForecast | None, str]:
        if self.weather_file is None:
            return None, "recent daily cycle from the current weather (no weather forecast file)"
        try:
            wf = read_open_meteo(self.weather_file, origin=origin)
        except DataError as exc:
            log.warning("PUE forecast: %s; using the recent daily cycle instead", exc)
            return None, f"recent daily cycle from the current weather ({exc})"
        idx = pd.date_range(origin + HOUR, periods=self.hours, freq=HOUR)
        if wf.frame.reindex(idx).isna().any().any():
            gap = f"{self.weather_file} does not cover {idx[0]} .. {idx[-1]}"
            return None, f"recent daily cycle from the current weather ({gap})"
        return wf, f"Open-Meteo file {self.weather_file}"
