"""The live PUE and facility-power forecast: the next 48 h from the historian's plant telemetry.

Fitting the workload forecaster and the plant model, with the calibration on a validation window, takes tens of
seconds; a page callback or an HTTP request must never wait for it. :class:`LivePueForecast` is one half of
:class:`analytics.forecast.service.ForecastService`, whose worker thread calls :meth:`LivePueForecast.update` under
the one refit policy (:mod:`analytics.forecast.policy`); readers take :meth:`LivePueForecast.latest`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
from threadpoolctl import threadpool_limits

from aidc.config import Site
from aidc.errors import DataError
from aidc.model import SeriesKey
from aidc.roles import Role
from analytics.energy.kpi import IT_POWER_ROLES
from analytics.forecast.policy import RefitPolicy, needs_history, stale
from analytics.forecast.pue import HOUR, VALIDATION, VALIDATION_EVERY, FacilityForecaster, hourly_frame
from analytics.forecast.weather import WeatherForecast, read_open_meteo
from analytics.historian_adapter import wide_frame
from analytics.plant_model import plant_frame
from historian import Historian

log = logging.getLogger(__name__)

MIN_HISTORY = pd.Timedelta("7D")  # FacilityForecaster.fit's minimum

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


class LivePueForecast:
    """The next ``hours`` of PUE and facility power, brought up to date by :meth:`update` (the service's worker).

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
        policy: RefitPolicy | None = None,
    ) -> None:
        self.read, self.clock = read, clock
        self.weather_file, self.hours = weather_file, hours
        self.policy = policy or RefitPolicy()
        self.fits = 0  # models fitted so far (each one takes tens of seconds)
        self.calibrate_every = VALIDATION_EVERY  # the spacing of the calibration's origins (ForecastService.first_fit)
        self._model: FacilityForecaster | None = None
        self._checked: pd.Timestamp | None = None  # the facility hour of the last read
        self._latest = PueForecastState(
            None, None, "PUE forecast: waiting for the first check of stored history", pending=True
        )

    def latest(self) -> PueForecastState:
        """What the dashboard panel and the API serve now."""
        return self._latest

    def unavailable(self, reason: str, *, exc_info: bool = False) -> PueForecastState:
        """Bad telemetry (or a fault): say so on the panel and in the API; logged once, then at DEBUG while it lasts."""
        message = f"PUE forecast unavailable: {reason}"
        first = message != self._latest.message
        log.log(logging.WARNING if first else logging.DEBUG, "%s", message, exc_info=exc_info and first)
        self._latest = PueForecastState(None, None, message)
        return self._latest

    def update(self) -> PueForecastState:
        """Read history, refit when the policy says so, forecast from the last complete hour; returns the new state."""
        now = pd.Timestamp(self.clock())
        if self._latest.frame is not None and now.floor(HOUR) == self._checked:
            return self._latest  # forecast hourly: a month of plant telemetry is not read again within the hour
        self._checked = now.floor(HOUR)
        data = self.read(now - self.policy.history, now)
        have = data.index[-1] - data.index[0] if len(data) > 1 else pd.Timedelta(0)
        if have < MIN_HISTORY:
            line = needs_history("PUE forecast", have, MIN_HISTORY, "complete plant telemetry")
            self._latest = PueForecastState(None, None, line)
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
                self._model = FacilityForecaster.fit(data, every=self.calibrate_every)
                self.fits += 1
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
        text = f"learned plant model and workload forecast, {self.policy.describe()}"
        if fitted is not None:
            days = (fitted[1] - fitted[0]) / pd.Timedelta("1D")
            text += f"; trained on {days:.1f} days to {fitted[1]:%Y-%m-%d %H:%M} UTC"
        if self._model is not None and self._model.widen:
            text += f"; band calibrated on {self._model.calibration_origins} forecasts of its last 6 days"
        if self._model is not None and not self._model.widen:
            text += f"; band not yet calibrated (needs {(MIN_HISTORY + VALIDATION) / pd.Timedelta('1D'):.0f} days)"
        return text + stale(now, last, "plant telemetry")

    def _due(self, last: pd.Timestamp) -> bool:
        """The policy's refit rule on this model's training window (new telemetry, not merely time)."""
        fitted = self._model.fitted_on if self._model is not None else None
        return self.policy.due(fitted[1] if fitted is not None else None, last)

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
