"""Facility-power and PUE forecasts for the next hours (48 h by default) with P10/P50/P90.

Three forecasts are chained, each with its own uncertainty, and combined by Monte Carlo sampling:

1. the workload: an hourly :class:`analytics.forecast.load.LoadForecaster` of the mean GPU utilisation (the plant
model's
   load input, which the setpoints cannot change) at anchor horizons 1-48 h, quantiles interpolated in between;
2. the weather: a forecast file in Open-Meteo's hourly JSON or CSV format (:func:`read_open_meteo`), or, where a site
   has none, the current weather moved along the recent daily cycle (:func:`diurnal_persistence`); either way with
   the error of a numerical weather forecast growing with lead time
   (:func:`weather_error_sd`). The simulated facility's backtest uses its own weather plus that error
   (:func:`weather_with_error`);
3. the learned plant model (:class:`analytics.plant_model.PlantModel`) at the setpoints the controller is expected to
   hold: for each setpoint, its median at the same hour of day over the last week of telemetry (a supervisor resets
   setpoints with load and weather, which follow the day).

Each sample draws a utilisation and a weather error from their quantiles and a plant-model residual from its
calibrated P10/P90; the P10/P50/P90 of the samples per hour are the forecast. Then, with choices made on a
validation window at the end of the training data only (48 h forecasts from origins in its last 6 days, by models
fitted before them): persistence anchoring (the plant model's error over the last hour, carried forward with an
hourly decay), a median-error correction, and the split-conformal widening that makes P10-P90 hold 80 % there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pandas as pd

from aidc.errors import DataError
from analytics.forecast.load import LoadForecaster
from analytics.forecast.weather import (
    WeatherForecast,
    diurnal_persistence,
    hourly_means,
    read_open_meteo,
    weather_error_sd,
    weather_with_error,
)
from analytics.plant_model import FEATURES, PlantModel

__all__ = [  # the weather helpers are re-exported: callers of the PUE forecast need them beside it
    "FacilityForecaster",
    "WeatherForecast",
    "diurnal_persistence",
    "hourly_frame",
    "hourly_truth",
    "read_open_meteo",
    "weather_error_sd",
    "weather_with_error",
]

HOUR = pd.Timedelta("1h")
LOAD_HORIZONS_H = (1, 3, 6, 12, 24, 36, 48)
SETPOINTS = ("tcs_supply_sp_c", "tcs_dp_sp_kpa", "fws_supply_sp_c")
TARGETS = ("facility_power_kw", "it_power_kw", "pue")
Z90 = 1.2815515655446004  # standard normal P90
# Calibration window at the end of the training data: 48 h forecasts from origins every 6 h over its first 4 days.
# Six days rather than four: on the bundled simulated month a 4-day window's band swung from 60 % to 86 % coverage
# between folds (a calm stretch calibrates a band too narrow for the next); more origins over the same days did not
# help, more days did.
VALIDATION = pd.Timedelta("6D")
VALIDATION_EVERY = "6h"
# The demo's first fit after its backfill (before /health turns 200) calibrates on origins every 12 h over the same
# six days: 9 forecasts instead of 17, each a few seconds, and the window's days (which mattered, see above) are
# all there. Its first refit, a day later, calibrates on every 6 h again.
FIRST_FIT_EVERY = "12h"
ANCHOR_RHOS = (0.0, 0.5, 0.8, 0.9, 0.95, 0.98, 1.0)  # candidate hourly decays of the anchoring residual
F64 = npt.NDArray[np.float64]


def expected_setpoints(history: pd.DataFrame, idx: pd.DatetimeIndex) -> pd.DataFrame:
    """Each setpoint's median over the last week of ``history`` within an hour of the same time of day, for ``idx``.

    Three hours a day (the target's and its neighbours) rather than one: a week holds only seven values of one
    hour, and the median of so few of a setpoint that an exploring or trimming controller moves every 20-60 min
    jumps from hour to hour with no cause the forecast could know; a supervisor's daily pattern is smooth on that
    scale and survives.
    """
    week = history[history.index > history.index[-1] - pd.Timedelta("7D")][list(SETPOINTS)]
    hour = np.asarray(pd.DatetimeIndex(week.index).hour)
    by_hour = pd.DataFrame(
        [week[np.isin(hour, [(h - 1) % 24, h, (h + 1) % 24])].median() for h in range(24)], index=range(24)
    )
    out = by_hour.reindex(idx.hour).set_axis(idx)
    return out.fillna(week.median())


def _draw(p10: F64, p50: F64, p90: F64, z: F64) -> F64:
    """Values at standard-normal scores ``z`` of a two-piece normal through the P10, P50 and P90."""
    return p50 + np.where(z > 0, (p90 - p50), (p50 - p10)) * z / Z90


@dataclass
class FacilityForecaster:
    """Workload forecaster and plant model fitted on one plant frame (:func:`analytics.plant_model.plant_frame`)."""

    load: LoadForecaster
    plant: PlantModel
    samples: int = 400
    fitted_on: tuple[pd.Timestamp, pd.Timestamp] | None = None
    # Calibration on a validation window inside the training data: median error (added to the P50) and the
    # split-conformal widening of the P10-P90 band, per target.
    bias: dict[str, float] = field(default_factory=dict)
    widen: dict[str, float] = field(default_factory=dict)
    # Persistence anchoring: the plant model's error over the last hour carries into the forecast, decaying by this
    # factor per hour of lead (0: none), chosen on the same validation window.
    anchor_rho: dict[str, float] = field(default_factory=dict)
    calibration_origins: int = 0  # the validation window's 48 h forecasts the calibration was chosen on

    @classmethod
    def fit(
        cls, history: pd.DataFrame, *, max_iter: int = 100, calibrate: bool = True, every: str = VALIDATION_EVERY
    ) -> FacilityForecaster:
        """Fit on telemetry up to its last row (5-min plant frame); needs a week or more (13 days to calibrate).
        ``every``: the spacing of the validation window's forecast origins (:data:`VALIDATION_EVERY`; the demo's
        first fit after its backfill takes :data:`FIRST_FIT_EVERY`, half the origins over the same six days)."""
        if history.index[-1] - history.index[0] < pd.Timedelta("7D"):
            raise DataError("forecast: need at least 7 days of telemetry to fit the workload and plant models")
        fc = cls._fit_models(history, max_iter)
        if calibrate and history.index[-1] - history.index[0] >= VALIDATION + pd.Timedelta("7D"):
            got = validation_errors(history, max_iter, every)
            fc.bias, fc.widen, fc.anchor_rho = calibration(got)
            fc.calibration_origins = len(np.unique(next(iter(got.values()))[:, 6])) if got else 0
        return fc

    @classmethod
    def _fit_models(cls, history: pd.DataFrame, max_iter: int) -> FacilityForecaster:
        hourly = hourly_frame(history)
        horizons = [f"{h}h" for h in LOAD_HORIZONS_H]
        load = LoadForecaster.fit(hourly["gpu_util_pct"], horizons, HOUR, name="gpu_util_pct", max_iter=max_iter)
        # The plant model learns hourly means, the scale it is queried at: a tree fitted on 5-min rows, where the
        # utilisation of a hall of bursty jobs sits in two clusters (busy, between steps), puts an hourly mean that
        # falls between them on one side of a split and under-forecasts IT and facility power by tens of kW.
        plant = PlantModel.fit(hourly, max_iter=max_iter * 2)
        return cls(load, plant, fitted_on=(pd.Timestamp(history.index[0]), pd.Timestamp(history.index[-1])))

    def predict(
        self, history: pd.DataFrame, weather: WeatherForecast | None = None, *, hours: int = 48, seed: int = 0
    ) -> pd.DataFrame:
        """Hourly P10/P50/P90 of GPU utilisation, facility power, IT power and PUE for ``hours`` after the history."""
        origin = pd.Timestamp(history.index[-1]).floor(HOUR)
        idx = pd.date_range(origin + HOUR, periods=hours, freq=HOUR)
        wf = weather if weather is not None else diurnal_persistence(history, origin, hours)
        w = wf.frame.reindex(idx)
        if w.isna().any().any():
            raise DataError(f"forecast: weather forecast ({wf.source}) does not cover {idx[0]} .. {idx[-1]}")
        util_q = self._util_quantiles(history, idx, origin)
        sp = expected_setpoints(history, idx)
        rng = np.random.default_rng(seed)
        n, s = hours, self.samples
        z_u, z_w = rng.standard_normal((s, n)), rng.standard_normal((s, n))
        uq = [util_q[c].to_numpy(dtype=np.float64) for c in ("p10", "p50", "p90")]
        cand = pd.DataFrame(
            {
                "gpu_util_pct": np.clip(_draw(uq[0], uq[1], uq[2], z_u), 0, 100).reshape(-1),
                "drybulb_c": (w["drybulb_c"].to_numpy() + z_w * w["drybulb_sd"].to_numpy()).reshape(-1),
                "wetbulb_c": (w["wetbulb_c"].to_numpy() + z_w * w["wetbulb_sd"].to_numpy()).reshape(-1),
                **{c: np.tile(sp[c].to_numpy(), s) for c in SETPOINTS},
            }
        )[list(FEATURES)]
        x = cand.to_numpy(dtype=np.float64)
        # Only the P50 models of the forecast's targets (half the plant model's trees): the band comes from below.
        pred = {f"{t}_p50": self.plant.models[t].predict(x) for t in TARGETS}
        out = pd.DataFrame(index=idx)
        out.index.name = "ts"
        for c in ("p10", "p50", "p90"):
            out[f"gpu_util_pct_{c}"] = util_q[c].to_numpy()
        z_r = rng.standard_normal((s, n))  # one plant residual score per sample, shared by the targets
        r0 = origin_residual(self.plant, history)
        lead = np.arange(1, n + 1, dtype=np.float64)
        for t in TARGETS:
            lo, hi = self.plant.offsets[t]
            p50 = pred[f"{t}_p50"].reshape(s, n)
            v = p50 + np.where(z_r > 0, max(hi, 0.0), -min(lo, 0.0)) * z_r / Z90
            anchor = r0[t] * self.anchor_rho.get(t, 0.0) ** lead
            q = np.quantile(v, [0.1, 0.5, 0.9], axis=0) + anchor + self.bias.get(t, 0.0)
            wd = self.widen.get(t, 0.0)
            out[f"{t}_p10"], out[f"{t}_p50"], out[f"{t}_p90"] = (
                np.minimum(q[0] - wd, q[1]),
                q[1],
                np.maximum(q[2] + wd, q[1]),
            )
        for c in ("drybulb_c", "wetbulb_c"):
            out[c] = w[c].to_numpy()
        for c in SETPOINTS:
            out[c] = sp[c].to_numpy()
        return out

    def _util_quantiles(self, history: pd.DataFrame, idx: pd.DatetimeIndex, origin: pd.Timestamp) -> pd.DataFrame:
        util = hourly_frame(history)["gpu_util_pct"]
        util = util[util.index <= origin]
        anchors = self.load.predict(util)
        lead = np.asarray((idx - origin) / HOUR, dtype=np.float64)
        at = np.array([float(pd.Timedelta(h) / HOUR) for h in anchors["horizon"]])
        return pd.DataFrame(
            {c: np.interp(lead, at, anchors[c].to_numpy(dtype=np.float64)) for c in ("p10", "p50", "p90")}, index=idx
        )


# Hourly means of a plant frame over (t - 1 h, t], labelled t, with PUE as the ratio of the hour's energies: the
# scale every part of the forecast works at.
hourly_frame = hourly_means


def hourly_truth(data: pd.DataFrame) -> pd.DataFrame:
    """Hourly means labelled by the hour's end (what a forecast for that time means); PUE as the energy ratio."""
    return hourly_frame(data[["facility_power_kw", "it_power_kw", "drybulb_c", "wetbulb_c"]])


def origin_residual(plant: PlantModel, history: pd.DataFrame) -> dict[str, float]:
    """Error of the plant model's P50 over the last complete hour of telemetry, per target (what it is missing now)."""
    hourly = hourly_frame(history)
    last = hourly[hourly.index <= pd.Timestamp(history.index[-1]).floor(HOUR)].iloc[[-1]]
    pred = plant.predict(last[list(FEATURES)])
    return {t: float(np.mean(last[t].to_numpy() - pred[f"{t}_p50"].to_numpy())) for t in TARGETS}


def validation_errors(history: pd.DataFrame, max_iter: int, every: str = VALIDATION_EVERY) -> dict[str, F64]:
    """Raw forecasts from origins ``every`` in the last :data:`VALIDATION` of ``history``, by models fitted before them.

    Per target, one row per (origin, lead): truth, raw P10, P50, P90, the plant model's error over the hour before
    the origin, the lead (h) and the origin's number. The weather there is the observed weather plus the
    forecast-error model.
    """
    end = pd.Timestamp(history.index[-1]).floor(HOUR)
    first = end - VALIDATION
    early = history[history.index <= first]
    pre = FacilityForecaster._fit_models(early, max_iter)
    truth = hourly_truth(history)
    got: dict[str, list[F64]] = {t: [] for t in TARGETS}
    for j, origin in enumerate(pd.date_range(first, end - pd.Timedelta("48h"), freq=every)):
        hist = history[history.index <= origin]
        fc = pre.predict(hist, weather_with_error(truth, origin, 48, seed=j), seed=j)
        y = truth.reindex(fc.index)
        r0 = origin_residual(pre.plant, hist)
        lead = np.arange(1, len(fc) + 1, dtype=np.float64)
        for t in TARGETS:
            cols = [y[t].to_numpy(dtype=np.float64), *(fc[f"{t}_{q}"].to_numpy() for q in ("p10", "p50", "p90"))]
            got[t].append(np.column_stack([*cols, np.full(len(fc), r0[t]), lead, np.full(len(fc), float(j))]))
    return {t: np.concatenate(v) for t, v in got.items()}


def calibration(got: dict[str, F64]) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """Per target from validation rows: the anchoring decay that minimises the P50's error, the median error
    (bias) and the widening that makes the P10-P90 band hold 80 % of the errors (split-conformal, CQR)."""
    bias, widen, rho = {}, {}, {}
    for t, rows in got.items():
        a = rows[np.isfinite(rows).all(axis=1)]
        if len(a) < 20:
            continue
        yv, p10, p50, p90, r, lead = a.T[:6]
        rho[t] = min(ANCHOR_RHOS, key=lambda k: float(np.mean(np.abs(yv - p50 - r * k**lead))))
        shift = r * rho[t] ** lead
        p10, p50, p90 = p10 + shift, p50 + shift, p90 + shift
        b = float(np.median(yv - p50))
        scores = np.maximum(p10 + b - yv, yv - p90 - b)
        bias[t] = b
        widen[t] = float(np.quantile(scores, min(1.0, 0.8 * (1 + 1 / len(scores)))))
    return bias, widen, rho


def format_forecast(fc: pd.DataFrame, every_h: int = 3) -> str:
    """Fixed-width table of the forecast, one row per ``every_h`` hours."""
    lines = [
        f"{'time (UTC)':<17} {'GPU util %':>16} {'facility kW P10/P50/P90':>26} {'IT kW P50':>10} "
        f"{'PUE P10/P50/P90':>20} {'drybulb':>8}"
    ]
    for ts, (_, r) in zip(fc.index[every_h - 1 :: every_h], fc.iloc[every_h - 1 :: every_h].iterrows(), strict=True):
        lines.append(
            f"{ts.strftime('%Y-%m-%d %H:%M'):<17} "
            f"{r['gpu_util_pct_p10']:>5.1f}/{r['gpu_util_pct_p50']:>4.1f}/{r['gpu_util_pct_p90']:>5.1f} "
            f"{r['facility_power_kw_p10']:>8.0f}/{r['facility_power_kw_p50']:>7.0f}/{r['facility_power_kw_p90']:>8.0f} "
            f"{r['it_power_kw_p50']:>10.0f} "
            f"{r['pue_p10']:>6.3f}/{r['pue_p50']:>6.3f}/{r['pue_p90']:>6.3f} {r['drybulb_c']:>8.1f}"
        )
    return "\n".join(lines)
