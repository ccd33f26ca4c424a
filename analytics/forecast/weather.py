"""Weather forecasts for the PUE forecast: Open-Meteo files, a lead-growing error model, and a fallback without a file.

A site gives an Open-Meteo hourly forecast as JSON (the API's reply) or CSV (its download): :func:`read_open_meteo`.
Without one, :func:`diurnal_persistence` moves the current weather along the recent daily cycle. The simulated
facility's backtest stands in a forecast by adding realistic, autocorrelated error to its own weather
(:func:`weather_with_error`). Every forecast carries the standard deviation of its error by lead
(:func:`weather_error_sd`), which the PUE forecast samples. :func:`hourly_means` is the hourly averaging that the
weather, the plant model and the backtest's truth share.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
import psychrolib

from aidc.datasets import read_text
from aidc.errors import DataError

HOUR = pd.Timedelta("1h")
F64 = npt.NDArray[np.float64]
# What each field can physically be; anything else (inf, -1e300) is a broken file, refused with the hour it is at.
VALID = {
    "temperature_2m": (-100.0, 70.0, "°C"),
    "wet_bulb_temperature_2m": (-100.0, 70.0, "°C"),
    "relative_humidity_2m": (0.0, 100.0, "%"),
    "surface_pressure": (300.0, 1_200.0, "hPa"),
}


def hourly_means(data: pd.DataFrame) -> pd.DataFrame:
    """Hourly means over (t - 1 h, t], labelled t; PUE (where the powers are there) as the ratio of the hour's energies.

    Telemetry up to an origin fills every hour up to and including the origin's, so a forecast made then sees
    complete hours only. Hours with less than half their samples (an outage, the edge of the window) are dropped.
    """
    res = data.resample(HOUR, label="right", closed="right")
    out = res.mean()
    idx = pd.DatetimeIndex(data.index)
    # Timedelta arithmetic, not integer ticks: the index may be in ns or us (pandas 3 defaults differ by source).
    step = pd.Timedelta(pd.Series(idx[1:] - idx[:-1]).median()) if len(idx) > 1 else HOUR
    need = max(1, int(0.5 * float(HOUR / step))) if step > pd.Timedelta(0) else 1
    out = out[res.size() >= need]
    if "facility_power_kw" in out and "it_power_kw" in out:
        out["pue"] = out["facility_power_kw"] / out["it_power_kw"].where(out["it_power_kw"] > 0)
    return out.dropna()


def weather_error_sd(lead_h: F64 | float) -> tuple[F64, F64]:
    """Standard deviation (K) of a weather forecast's dry-bulb and wet-bulb error at ``lead_h`` hours.

    Typical of global NWP 2 m temperature: about 1 K in the first hours, 2 K at day 2 (MAE 0.8 / 1.6 K);
    wet bulb, damped by humidity, errs about 0.7 times as much.
    """
    lead = np.asarray(lead_h, dtype=np.float64)
    dry = 0.9 + 0.023 * lead
    return dry, 0.7 * dry


@dataclass
class WeatherForecast:
    """Hourly dry and wet bulb (°C) from an origin, with their error standard deviations."""

    frame: pd.DataFrame  # index: UTC hours; columns drybulb_c, wetbulb_c, drybulb_sd, wetbulb_sd
    source: str = ""


def _wet_bulb(dry: F64, rh: F64, pressure_pa: F64) -> F64:
    psychrolib.SetUnitSystem(psychrolib.SI)
    rows = zip(dry, rh, pressure_pa, strict=True)
    return np.array(
        [psychrolib.GetTWetBulbFromRelHum(float(t), min(max(r, 0.0), 100.0) / 100, float(p)) for t, r, p in rows]
    )


def read_open_meteo(path: Path, origin: pd.Timestamp | None = None) -> WeatherForecast:
    """An Open-Meteo hourly forecast file (JSON from the API, or its CSV download); errors name the file and field.

    Needs ``temperature_2m`` and either ``wet_bulb_temperature_2m`` or ``relative_humidity_2m`` (then the wet bulb is
    computed at ``surface_pressure`` where given, else at standard pressure). Times are read as UTC (request the
    forecast with ``timezone=GMT``, the API's default). Error spread grows with the lead from ``origin`` (default: the
    first hour in the file).
    """
    text = read_text(path, "weather forecast")
    if text.lstrip().startswith("{"):
        try:
            hourly = json.loads(text)["hourly"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise DataError(f"{path}: not an Open-Meteo JSON forecast with an 'hourly' block ({exc})") from None
        cols = {k: v for k, v in hourly.items() if isinstance(v, list)}
    else:
        lines = text.splitlines()
        # The CSV download starts with a location block; the hourly table's header begins with "time".
        head = next((i for i, ln in enumerate(lines) if ln.startswith("time,")), None)
        if head is None:
            raise DataError(f"{path}: no hourly table (a header line starting 'time,') in the Open-Meteo CSV")
        rows = [ln.split(",") for ln in lines[head:] if ln.strip()]
        names = [c.split(" (")[0].strip() for c in rows[0]]
        cols = {n: [r[i] if i < len(r) else "" for r in rows[1:]] for i, n in enumerate(names)}
    if "time" not in cols or "temperature_2m" not in cols:
        raise DataError(f"{path}: Open-Meteo forecast needs 'time' and 'temperature_2m' (has {', '.join(cols)})")
    times = pd.to_datetime(pd.Series(cols["time"]), utc=True, errors="coerce")
    if times.isna().any():
        bad = cols["time"][int(np.flatnonzero(times.isna().to_numpy())[0])]
        raise DataError(f"{path}: field 'time': {bad!r} is not a time")

    def num(name: str) -> F64:
        v = pd.to_numeric(pd.Series(cols[name]), errors="coerce")
        bad = v.isna() & pd.Series(cols[name]).notna() & (pd.Series(cols[name]).astype(str) != "")
        if bad.any():
            raise DataError(f"{path}: field {name!r}: {cols[name][int(np.flatnonzero(bad)[0])]!r} is not a number")
        lo, hi, unit = VALID[name]
        wild = (v < lo) | (v > hi)  # inf and -1e300 too; an empty cell (NaN) is a missing hour, dropped below
        if wild.any():
            k = int(np.flatnonzero(wild.to_numpy())[0])
            raise DataError(
                f"{path}: field {name!r} at {cols['time'][k]}: {cols[name][k]!r} is outside {lo:g} to {hi:g} {unit}"
            )
        return v.to_numpy(dtype=np.float64)

    dry = num("temperature_2m")
    if "wet_bulb_temperature_2m" in cols:
        wet = num("wet_bulb_temperature_2m")
    elif "relative_humidity_2m" in cols:
        p = num("surface_pressure") * 100.0 if "surface_pressure" in cols else np.full(len(dry), 101325.0)
        wet = _wet_bulb(dry, num("relative_humidity_2m"), p)
    else:
        raise DataError(f"{path}: Open-Meteo forecast needs 'wet_bulb_temperature_2m' or 'relative_humidity_2m'")
    idx = pd.DatetimeIndex(times)
    frame = pd.DataFrame({"drybulb_c": dry, "wetbulb_c": wet}, index=idx).dropna()
    if frame.empty:
        raise DataError(f"{path}: no hourly values")
    start = origin if origin is not None else idx[0]
    return _with_sd(frame, pd.Timestamp(start), str(path))


def _with_sd(frame: pd.DataFrame, origin: pd.Timestamp, source: str) -> WeatherForecast:
    lead = np.maximum((pd.DatetimeIndex(frame.index) - origin) / HOUR, 0.0)
    dry_sd, wet_sd = weather_error_sd(lead)
    out = frame[["drybulb_c", "wetbulb_c"]].copy()
    out["drybulb_sd"], out["wetbulb_sd"] = dry_sd, wet_sd
    return WeatherForecast(out, source)


def weather_with_error(truth: pd.DataFrame, origin: pd.Timestamp, hours: int, seed: int) -> WeatherForecast:
    """A stand-in forecast for the simulated facility: the true weather plus lead-growing, autocorrelated error."""
    idx = pd.date_range(origin + HOUR, periods=hours, freq=HOUR)
    t = truth[["drybulb_c", "wetbulb_c"]].reindex(idx, method="nearest")
    lead = np.arange(1, hours + 1, dtype=np.float64)
    dry_sd, wet_sd = weather_error_sd(lead)
    rng = np.random.default_rng(seed)
    # AR(1) along the lead with a 12 h memory: forecast errors persist for hours (a front arrives early or late).
    phi = math.exp(-1 / 12)
    e = np.empty(hours)
    e[0] = rng.normal()
    for k in range(1, hours):
        e[k] = phi * e[k - 1] + math.sqrt(1 - phi**2) * rng.normal()
    frame = pd.DataFrame(
        {"drybulb_c": t["drybulb_c"].to_numpy() + e * dry_sd, "wetbulb_c": t["wetbulb_c"].to_numpy() + e * wet_sd},
        index=idx,
    )
    return _with_sd(frame, origin, "weather file + simulated forecast error")


def diurnal_persistence(history: pd.DataFrame, origin: pd.Timestamp, hours: int) -> WeatherForecast:
    """Without a forecast file: the weather now, moved along the mean daily cycle of the last three days.

    ``now + profile(hour of t) - profile(hour now)``, the profile being the median by hour of day over the last 72 h:
    continuous at the origin (repeating yesterday's hours instead jumps wherever yesterday's start meets today's
    end, by 5 K after a front) and keeping today's departure from the recent days. Its error is taken as at least a
    day-two forecast's.
    """
    hourly = hourly_means(history[["drybulb_c", "wetbulb_c"]])
    hourly = hourly[hourly.index <= origin]
    recent = hourly[hourly.index > origin - pd.Timedelta("3D")]
    if len(recent[recent.index > origin - pd.Timedelta("1D")]) < 12:
        raise DataError("forecast: less than half a day of outdoor temperature telemetry for a weather forecast")
    hour = np.asarray(pd.DatetimeIndex(recent.index).hour)
    # The median of the three days' values at each hour: one day with a front does not bend the cycle.
    profile = recent.groupby(hour).median().reindex(range(24))
    # Hours of day missing from the window (gaps) are interpolated around the clock.
    profile = pd.concat([profile, profile, profile]).reset_index(drop=True).interpolate(limit_direction="both")
    profile = profile.iloc[24:48].set_axis(range(24))
    now = hourly.iloc[-1]
    idx = pd.date_range(origin + HOUR, periods=hours, freq=HOUR)
    cols = ("drybulb_c", "wetbulb_c")
    frame = pd.DataFrame(
        {c: now[c] + profile[c].to_numpy()[idx.hour] - profile[c].iloc[origin.hour] for c in cols}, index=idx
    )
    frame["wetbulb_c"] = np.minimum(frame["wetbulb_c"], frame["drybulb_c"])  # a wet bulb never exceeds the dry bulb
    wf = _with_sd(frame, origin, "recent daily cycle from the current weather (no forecast file)")
    floor = weather_error_sd(48.0)
    wf.frame["drybulb_sd"] = np.maximum(wf.frame["drybulb_sd"], float(floor[0]))
    wf.frame["wetbulb_sd"] = np.maximum(wf.frame["wetbulb_sd"], float(floor[1]))
    return wf
