"""PUE / facility-power forecast: Open-Meteo files, weather error model, expected setpoints, the end-to-end chain."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from aidc.errors import DataError
from analytics.forecast.pue import (
    expected_setpoints,
    read_open_meteo,
    weather_error_sd,
    weather_with_error,
)
from app.cli import main

T0 = pd.Timestamp("2026-07-01T00:00Z")


def _json_file(tmp_path: Path, hourly: dict[str, object]) -> Path:
    """An Open-Meteo API reply with the given hourly block."""
    f = tmp_path / "om.json"
    f.write_text(json.dumps({"latitude": 39.0, "longitude": -77.5, "hourly": hourly}), encoding="utf-8")
    return f


def test_open_meteo_json_with_humidity_gives_wet_bulb(tmp_path: Path) -> None:
    """The API's JSON reply (time, temperature_2m, relative_humidity_2m) gives hourly dry and wet bulb in UTC."""
    f = _json_file(
        tmp_path,
        {"time": ["2026-07-01T00:00", "2026-07-01T01:00"], "temperature_2m": [30.0, 20.0],
         "relative_humidity_2m": [100.0, 50.0]},
    )  # fmt: skip
    wf = read_open_meteo(f)
    assert list(wf.frame.index) == [T0, T0 + pd.Timedelta("1h")]
    assert wf.frame["wetbulb_c"].iloc[0] == pytest.approx(30.0, abs=0.05)  # saturated: wet bulb = dry bulb
    assert 13.0 < wf.frame["wetbulb_c"].iloc[1] < 15.0  # 20 °C at 50 % RH: about 13.7 °C
    assert wf.frame["drybulb_sd"].iloc[1] > wf.frame["drybulb_sd"].iloc[0]


def test_open_meteo_csv_download(tmp_path: Path) -> None:
    """The CSV download (location block, then a 'time,...' table with units in the header) is read too."""
    f = tmp_path / "om.csv"
    f.write_text(
        "latitude,longitude,elevation,utc_offset_seconds,timezone,timezone_abbreviation\n"
        "39.0,-77.5,100.0,0,GMT,GMT\n\n"
        "time,temperature_2m (°C),wet_bulb_temperature_2m (°C)\n"
        "2026-07-01T00:00,25.5,20.1\n2026-07-01T01:00,24.0,19.5\n",
        encoding="utf-8",
    )
    wf = read_open_meteo(f)
    assert wf.frame["drybulb_c"].tolist() == [25.5, 24.0]
    assert wf.frame["wetbulb_c"].tolist() == [20.1, 19.5]


@pytest.mark.parametrize(
    ("hourly", "message"),
    [
        ({"time": ["2026-07-01T00:00"], "relative_humidity_2m": [50]}, "needs 'time' and 'temperature_2m'"),
        ({"time": ["2026-07-01T00:00"], "temperature_2m": [20]}, "needs 'wet_bulb_temperature_2m' or"),
        ({"time": ["soon"], "temperature_2m": [20], "wet_bulb_temperature_2m": [15]}, "field 'time': 'soon'"),
        ({"time": ["2026-07-01T00:00"], "temperature_2m": ["hot"], "wet_bulb_temperature_2m": [15]},
         "field 'temperature_2m': 'hot'"),
    ],
)  # fmt: skip
def test_bad_open_meteo_file_names_file_and_field(tmp_path: Path, hourly: dict[str, object], message: str) -> None:
    """A malformed forecast file is one DataError naming the file and the field at fault."""
    f = _json_file(tmp_path, hourly)
    with pytest.raises(DataError, match=message) as info:
        read_open_meteo(f)
    assert str(info.value).startswith(str(f))


def test_weather_error_grows_with_lead() -> None:
    """Forecast error spread grows with lead time, about 1 K at first and 2 K at two days; wet bulb errs less."""
    dry, wet = weather_error_sd(np.array([0.0, 48.0]))
    assert 0.8 < dry[0] < 1.2
    assert 1.8 < dry[1] < 2.3
    assert (wet < dry).all()


def test_simulated_forecast_error_matches_its_spread() -> None:
    """The stand-in forecast's errors have the stated spread (checked over many origins), and no bias."""
    idx = pd.date_range(T0, periods=24 * 400, freq="1h")
    truth = pd.DataFrame({"drybulb_c": 20.0, "wetbulb_c": 15.0}, index=idx)
    errs = np.array(
        [weather_with_error(truth, idx[24 * k], 48, seed=k).frame["drybulb_c"].to_numpy() - 20.0 for k in range(300)]
    )
    sd = weather_error_sd(np.arange(1, 49, dtype=float))[0]
    assert abs(errs.mean()) < 0.15
    assert np.std(errs[:, 47]) == pytest.approx(sd[47], rel=0.2)


def test_weather_without_a_file_is_continuous_and_keeps_the_daily_cycle() -> None:
    """With no forecast file the weather starts from now (no jump after a 5 K drop) and follows the daily cycle."""
    from analytics.forecast.pue import diurnal_persistence, hourly_frame

    idx = pd.date_range(T0, periods=12 * 24 * 4, freq="5min")
    cycle = 4.0 * np.sin(2 * np.pi * (idx.hour + idx.minute / 60) / 24)
    front = np.where(idx >= T0 + pd.Timedelta("3D") + pd.Timedelta("12h"), -5.0, 0.0)  # a cold front half a day ago
    hist = pd.DataFrame({"drybulb_c": 25.0 + cycle + front, "wetbulb_c": 20.0 + 0.5 * cycle + front}, index=idx)
    origin = pd.Timestamp(idx[-1]).floor("1h")
    wf = diurnal_persistence(hist, origin, 48).frame
    truth = hourly_frame(hist).loc[origin + pd.Timedelta("1h"), "drybulb_c"]  # the telemetry runs on past the origin
    assert abs(wf["drybulb_c"].iloc[0] - truth) < 0.5  # not yesterday's value, 5 K warmer
    assert wf["drybulb_c"].max() - wf["drybulb_c"].min() == pytest.approx(8.0, abs=1.0)  # the daily swing survives
    assert (wf["wetbulb_c"] <= wf["drybulb_c"]).all()
    assert (wf["drybulb_sd"] >= weather_error_sd(48.0)[0]).all()


def test_expected_setpoints_follow_the_hour_of_day() -> None:
    """The expected setpoint is the last week's median at the same hour of day."""
    idx = pd.date_range(T0, periods=12 * 24 * 10, freq="5min")
    hist = pd.DataFrame(
        {"tcs_supply_sp_c": np.where(idx.hour < 12, 30.0, 34.0), "tcs_dp_sp_kpa": 150.0, "fws_supply_sp_c": 24.0},
        index=idx,
    )
    future = pd.date_range(idx[-1] + pd.Timedelta("1h"), periods=24, freq="1h")
    sp = expected_setpoints(hist, future)
    assert (sp.loc[future.hour < 12, "tcs_supply_sp_c"] == 30.0).all()
    assert (sp.loc[future.hour >= 12, "tcs_supply_sp_c"] == 34.0).all()


def test_forecast_cli_bad_horizon_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`aidc forecast --horizon 72h` exits 2 with one line naming the option and the value."""
    assert main(["forecast", "--config", str(tmp_path / "site.toml"), "--horizon", "72h"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "--horizon 72h" in err


def test_forecast_cli_bad_weather_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`aidc forecast --weather bad.json` exits 2 with one line naming the file and the bad field, before any fit."""
    bad = _json_file(tmp_path, {"time": ["2026-07-01T00:00"], "temperature_2m": ["hot"], "relative_humidity_2m": [50]})
    assert main(["forecast", "--config", str(tmp_path / "missing.toml"), "--weather", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert str(bad) in err
    assert "'temperature_2m'" in err


@pytest.mark.parametrize(
    ("field", "value", "shown"),
    [
        ("temperature_2m", "inf", "'inf' is outside -100 to 70 °C"),
        ("temperature_2m", "-1e300", "'-1e300' is outside -100 to 70 °C"),
        ("relative_humidity_2m", "-1e300", "'-1e300' is outside 0 to 100 %"),
        ("surface_pressure", "1e300", "'1e300' is outside 300 to 1200 hPa"),
    ],
)
def test_forecast_cli_weather_with_impossible_values_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], field: str, value: str, shown: str
) -> None:
    """`aidc forecast --weather` on a CSV with inf or -1e300 exits 2 with one line naming the file, the field, the
    hour and the value (it was a psychrolib ValueError traceback, or an inf forecast)."""
    cells = {"temperature_2m": "25", "relative_humidity_2m": "50", "surface_pressure": "1000"}
    rows = []
    for h in range(3):
        row = dict(cells, **({field: value} if h == 1 else {}))
        rows.append(f"2026-07-01T0{h}:00," + ",".join(row.values()))
    bad = tmp_path / "om.csv"
    bad.write_text("time," + ",".join(cells) + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    assert main(["forecast", "--config", str(tmp_path / "missing.toml"), "--weather", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [f"aidc forecast: {bad}: field {field!r} at 2026-07-01T01:00: {shown}"]


def test_forecast_cli_end_to_end_from_the_historian(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`aidc forecast` on 8 days of simulated telemetry prints 24 hourly rows with ordered, plausible quantiles."""
    from aidc.config import load_site
    from aidc.sitegen import SiteTemplate, render_site
    from historian import open_historian
    from simulators.telemetry import ExplorationSchedule, generate

    path = tmp_path / "site.toml"
    path.write_text(render_site(SiteTemplate(racks=2, start="2026-07-01T00:00:00Z", data_dir="var")))
    site = load_site(path)
    telemetry = generate(site, duration_s=8 * 86400, schedule=ExplorationSchedule(seed=3))
    with open_historian(site.config.historian, site.data_dir) as hist:
        for batch in telemetry.batches():
            hist.write(batch)
        hist.flush()
    argv = ["forecast", "--config", str(path), "--to", "2026-07-09T00:00Z", "--days", "8", "--horizon", "24h", "--json"]
    assert main(argv) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 24
    for r in rows:
        for t in ("pue", "facility_power_kw", "it_power_kw"):
            assert r[f"{t}_p10"] <= r[f"{t}_p50"] <= r[f"{t}_p90"], (t, r)
        assert 1.03 < r["pue_p50"] < 1.6
        assert 0.0 <= r["gpu_util_pct_p50"] <= 100.0
    # With a site's Open-Meteo file the forecast's weather is the file's.
    hours = pd.date_range("2026-07-08T00:00", periods=60, freq="1h")
    om = tmp_path / "om.csv"
    om.write_text("time,temperature_2m (°C),wet_bulb_temperature_2m (°C)\n"
                  + "".join(f"{t:%Y-%m-%dT%H:%M},31.5,23.0\n" for t in hours), encoding="utf-8")  # fmt: skip
    assert main([*argv, "--weather", str(om)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["drybulb_c"] for r in rows} == {31.5}
    assert {r["wetbulb_c"] for r in rows} == {23.0}


def _bursty_plant_frame(days: int, seed: int = 0) -> pd.DataFrame:
    """5-min plant frame of a hall whose GPU utilisation sits in two clusters (busy 94 %, between steps 74 %)."""
    from analytics.plant_model import FEATURES, TARGETS

    idx = pd.date_range(T0, periods=12 * 24 * days, freq="5min")
    rng = np.random.default_rng(seed)
    # Each hour holds 6-10 busy 5-min samples out of 12 (more by day), in a random order: hourly means follow the
    # day exactly, the 5-min samples never lie between the clusters.
    busy = np.round(8 + 2 * np.sin(2 * np.pi * np.arange(24 * days) / 24)).astype(int)
    util = np.concatenate([rng.permutation(np.r_[np.full(k, 94.0), np.full(12 - k, 74.0)]) for k in busy])
    dry = 25.0 + 5.0 * np.sin(2 * np.pi * (idx.hour + idx.minute / 60) / 24)
    it = 100.0 + 4.1 * util
    cooling = 0.1 * it + 2.0 * (dry - 20.0)
    frame = pd.DataFrame(
        {
            "gpu_util_pct": util, "drybulb_c": dry, "wetbulb_c": dry - 4.0, "tcs_supply_sp_c": 30.0,
            "tcs_dp_sp_kpa": 140.0, "fws_supply_sp_c": 23.0, "facility_power_kw": it + cooling + 20.0,
            "cooling_power_kw": cooling, "it_power_kw": it, "gpu_temp_max_c": 40.0 + 0.4 * util,
            "rack_outlet_max_c": 30.0 + 0.1 * util,
        },
        index=idx,
    )  # fmt: skip
    frame["pue"] = frame["facility_power_kw"] / frame["it_power_kw"]
    return frame[list(FEATURES) + list(TARGETS)]


def test_facility_power_forecast_is_unbiased_on_bursty_utilisation() -> None:
    """With 5-min utilisation in two clusters, the hourly facility-power P50 is unbiased (it once read ~30 kW low).

    Two faults made it: the workload forecast's anchor was the one 5-min sample at the origin (the hourly bin that
    starts there), and the plant model learnt 5-min rows and was asked about hourly means that fall between the
    clusters. Facility power here is a fixed function of the inputs, so the forecast should be within a few kW.
    """
    from analytics.forecast.pue import FacilityForecaster, hourly_truth

    data = _bursty_plant_frame(16)
    origin = T0 + pd.Timedelta("14D")
    hist = data[data.index <= origin]
    with threadpool_limits(1):  # as the CLI runs it; OpenMP threads on a busy machine only slow it down
        model = FacilityForecaster.fit(hist, max_iter=60, calibrate=False)
        fc = model.predict(hist, hours=24)
    truth = hourly_truth(data).reindex(fc.index)
    bias_kw = float(np.mean(fc["facility_power_kw_p50"] - truth["facility_power_kw"]))
    assert abs(bias_kw) < 4.0, bias_kw
    # Hourly means move in steps of one 5-min sample (6.8 kW of IT power); a step's miss at a turn of the day is fair.
    assert abs(float(np.mean(fc["it_power_kw_p50"] - truth["it_power_kw"]))) < 4.0
    assert float(np.mean(np.abs(fc["it_power_kw_p50"] - truth["it_power_kw"]))) < 10.0
    inside = (truth["facility_power_kw"] >= fc["facility_power_kw_p10"]) & (
        truth["facility_power_kw"] <= fc["facility_power_kw_p90"]
    )
    assert inside.mean() > 0.5


def test_service_refits_on_new_telemetry_not_on_the_clock() -> None:
    """The background service refits after a day of new telemetry, not when only time passes (stale data: flagged)."""
    from analytics.forecast.live import LivePueForecast

    data = _bursty_plant_frame(10)
    now = {"t": T0 + pd.Timedelta("8D"), "data_end": T0 + pd.Timedelta("8D")}
    svc = LivePueForecast(lambda a, b: data[(data.index > a) & (data.index <= now["data_end"])], lambda: now["t"])
    with threadpool_limits(1):
        first = svc.update()
        model = svc._model
        assert first.frame is not None
        assert "STALE" not in first.message
        assert "band not yet calibrated (needs 13 days)" in first.message  # 8 days: no validation window yet
        now["t"] += pd.Timedelta("3h")  # the clock moves, the telemetry does not
        again = svc.update()
        assert svc._model is model
        assert svc.fits == 1
        assert again.origin == first.origin
        assert "STALE: plant telemetry ends" in again.message
        now["data_end"] = now["t"] = T0 + pd.Timedelta("9D")
        later = svc.update()
    assert svc._model is not model
    assert svc.fits == 2
    assert later.origin is not None
    assert first.origin is not None
    assert later.origin - first.origin == pd.Timedelta("24h")
    assert "STALE" not in later.message


def test_service_uses_the_sites_weather_file_and_falls_back_with_the_reason(tmp_path: Path) -> None:
    """A weather file that covers the horizon is used; a short or malformed one falls back, saying why (file, field)."""
    from analytics.forecast.live import LivePueForecast

    data = _bursty_plant_frame(9)
    origin = T0 + pd.Timedelta("8D")
    hours = pd.date_range(origin - pd.Timedelta("2h"), periods=60, freq="1h")
    good = _json_file(tmp_path, {"time": [f"{t:%Y-%m-%dT%H:%M}" for t in hours], "temperature_2m": [27.5] * 60,
                                 "wet_bulb_temperature_2m": [21.0] * 60})  # fmt: skip
    svc = LivePueForecast(lambda a, b: data[data.index <= origin], lambda: origin, weather_file=good, hours=24)
    with threadpool_limits(1):
        st = svc.update()
    assert st.frame is not None
    assert st.weather == f"Open-Meteo file {good}"
    assert (st.frame["drybulb_c"] == 27.5).all()
    short = tmp_path / "short.csv"
    short.write_text("time,temperature_2m,wet_bulb_temperature_2m\n2026-07-09T01:00,20,15\n", encoding="utf-8")
    svc.weather_file = short
    wf, why = svc._weather(origin)
    assert wf is None
    assert f"{short} does not cover" in why
    bad = tmp_path / "bad.csv"
    bad.write_text("time,temperature_2m,wet_bulb_temperature_2m\n2026-07-09T01:00,warm,15\n", encoding="utf-8")
    svc.weather_file = bad
    wf, why = svc._weather(origin)
    assert wf is None
    assert f"{bad}: field 'temperature_2m': 'warm' is not a number" in why
