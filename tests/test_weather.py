"""Weather replay: EPW and CSV loaders, wet bulb, time mapping, interpolation and clear errors."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from aidc.clock import parse_time
from aidc.errors import ConfigError, DataError
from simulators.weather import constant_weather, load_weather, parse_csv, parse_epw, wet_bulb
from tests.conftest import DATA

WEATHER_DIR = DATA / "weather"
EPWS = ["USA_VA_Leesburg.Exec.epw.gz", "USA_AZ_Phoenix-Sky.Harbor.epw.gz", "USA_IL_Chicago.OHare.epw.gz"]
EPW_HEAD = "LOCATION,Test,ST,USA,SRC,1,40.0,-75.0,-5.0,10.0\n" + "X\n" * 7


@pytest.mark.parametrize("name", EPWS)
def test_bundled_weather_files_load_with_plausible_values(name: str) -> None:
    """Every bundled weather file loads; wet bulb never exceeds dry bulb and values are physical."""
    w = load_weather(str(WEATHER_DIR / name))
    assert w.hours == 8760
    assert (w.wetbulb_c <= w.drybulb_c + 1e-9).all()
    assert -40.0 < w.drybulb_c.min() < w.drybulb_c.max() < 50.0
    assert 60000.0 < w.pressure_pa.min() <= w.pressure_pa.max() < 110000.0
    assert np.isfinite(w.wetbulb_c).all()


def test_phoenix_is_hotter_and_drier_than_chicago() -> None:
    """Phoenix has a higher mean dry bulb and a larger wet-bulb depression than Chicago."""
    phx = load_weather(str(WEATHER_DIR / EPWS[1]))
    chi = load_weather(str(WEATHER_DIR / EPWS[2]))
    assert phx.drybulb_c.mean() > chi.drybulb_c.mean() + 8.0
    assert (phx.drybulb_c - phx.wetbulb_c).mean() > (chi.drybulb_c - chi.wetbulb_c).mean()


def test_bundled_leesburg_matches_the_epw() -> None:
    """The bundled compact Leesburg file replays the same hours as the EPW it was reduced from."""
    bundled = load_weather("builtin:leesburg")
    epw = load_weather(str(WEATHER_DIR / EPWS[0]))
    assert np.allclose(bundled.drybulb_c, epw.drybulb_c, atol=0.051)
    assert np.allclose(bundled.wetbulb_c, epw.wetbulb_c, atol=0.1)


def test_bundled_default_loads_without_shared_data() -> None:
    """The bundled default needs nothing outside the package and has a summer afternoon peak in UTC evening."""
    w = load_weather("builtin:leesburg")
    assert w.hours == 8760
    july = [w.at(parse_time(f"2026-07-{d:02d}T{h:02d}:00:00Z"))[0] for d in range(1, 29) for h in range(24)]
    by_hour = np.array(july).reshape(28, 24).mean(axis=0)
    assert 17 <= int(by_hour.argmax()) <= 23  # mid-afternoon at UTC-5 is evening UTC


@pytest.mark.parametrize(("db", "rh", "expected"), [(30.0, 40.0, 20.0), (20.0, 100.0, 20.0), (35.0, 10.0, 15.9)])
def test_wet_bulb_from_psychrolib(db: float, rh: float, expected: float) -> None:
    """Wet bulb matches psychrometric-chart values at sea level."""
    wb = wet_bulb(np.array([db]), np.array([rh]), np.array([101325.0]), "test")
    assert wb[0] == pytest.approx(expected, abs=0.3)


def test_interpolates_between_hours_and_wraps_the_year() -> None:
    """Values between hourly records are interpolated linearly; a typical year wraps by hour of year."""
    text = "hour,drybulb_c,rh_pct,pressure_pa\n" + "".join(f"{h},{h % 24},50,101325\n" for h in range(8760))
    w = parse_csv(text, "test.csv")
    assert w.at(parse_time("2026-01-01T05:30:00Z"))[0] == pytest.approx(5.5)
    assert w.at(parse_time("2031-01-01T05:00:00Z"))[0] == pytest.approx(5.0)


def test_a_timestamped_file_maps_by_its_timestamps() -> None:
    """A timestamped file maps by its own timestamps; pressure defaults to the standard atmosphere."""
    rows = "".join(f"2020-01-01T{h:02d}:00,{h},50\n" for h in range(24))
    w = parse_csv("time,temperature_2m,relative_humidity_2m\n" + rows, "om.csv", elevation_m=119.0)
    assert w.at(parse_time("2020-01-01T07:00:00Z"))[0] == pytest.approx(7.0)
    assert w.pressure_pa[0] == pytest.approx(99898.0, abs=50.0)  # standard atmosphere at 119 m


def _hourly_csv(start: str, hours: int) -> str:
    """An Open-Meteo style CSV from ``start``: dry bulb = day of year / 10 + hour / 1000 (a row is readable)."""
    t0 = np.datetime64(start, "h")
    rows = []
    for k in range(hours):
        t = (t0 + np.timedelta64(k, "h")).astype(object)
        rows.append(f"{t:%Y-%m-%dT%H:%M},{t.timetuple().tm_yday / 10 + t.hour / 1000:.3f},50\n")
    return "time,temperature_2m,relative_humidity_2m\n" + "".join(rows)


def test_a_multi_year_file_replays_other_years_by_calendar_date() -> None:
    """A file of two whole years maps its own times exactly and other years onto the same calendar date and hour
    (not modulo its span, which would drift a day per leap year and more)."""
    w = parse_csv(_hourly_csv("2021-01-01T00", 2 * 8760), "om.csv")
    assert w.at(parse_time("2022-03-05T10:00:00Z"))[0] == pytest.approx(6.410)
    assert w.at(parse_time("2026-07-15T06:00:00Z"))[0] == pytest.approx(19.606)  # 15 July: day 196
    assert w.at(parse_time("2031-12-31T23:00:00Z"))[0] == pytest.approx(36.523)
    assert w.at(parse_time("2028-02-29T12:00:00Z"))[0] == pytest.approx(5.912)  # a leap day: 28 February's
    w.check_span(parse_time("2026-01-01T00:00:00Z"), None)  # a whole-year file may run open-ended


def test_a_short_file_is_never_repeated() -> None:
    """A file cut to 200 hours answers its own hours and refuses any other time, in one line naming the file and
    what it holds (it used to repeat the 200 hours as if they were a year)."""
    w = parse_csv(_hourly_csv("2026-07-01T00", 200), "cut.csv")
    assert w.at(parse_time("2026-07-02T03:00:00Z"))[0] == pytest.approx(18.303)
    assert w.at(parse_time("2026-07-09T08:00:00Z"))[0] == pytest.approx(19.007)  # the last row holds its hour
    with pytest.raises(DataError) as err:
        w.at(parse_time("2026-07-20T00:00:00Z"))
    assert str(err.value) == (
        "cut.csv: no weather for 2026-07-20T00:00Z: the file holds 200 hours, 2026-07-01T00:00Z to "
        "2026-07-09T08:00Z, not a whole year"
    )
    with pytest.raises(DataError, match="no weather for 2027-07-02T03:00Z"):
        w.at(parse_time("2027-07-02T03:00:00Z"))  # another year: only whole-year files replay by calendar date


def test_a_short_typical_year_covers_only_its_hours() -> None:
    """A typical-year CSV cut to 200 rows covers the first 200 hours of each year and nothing else."""
    text = "hour,drybulb_c,rh_pct,pressure_pa\n" + "".join(f"{h},{h / 10},50,101325\n" for h in range(200))
    w = parse_csv(text, "tmy-cut.csv")
    assert w.at(parse_time("2031-01-02T00:00:00Z"))[0] == pytest.approx(2.4)
    with pytest.raises(DataError, match=r"tmy-cut.csv: no weather for 2026-07-01T00:00Z: the file holds 200 hours"):
        w.at(parse_time("2026-07-01T00:00:00Z"))


def test_check_span_refuses_a_span_the_file_does_not_cover() -> None:
    """check_span passes a span inside the file and refuses, in one line with both spans, one that runs past it
    or is open-ended."""
    w = parse_csv(_hourly_csv("2026-07-01T00", 200), "cut.csv")
    w.check_span(parse_time("2026-07-01T00:00:00Z"), parse_time("2026-07-09T08:00:00Z"))
    with pytest.raises(DataError) as err:
        w.check_span(parse_time("2026-07-01T00:00:00Z"), parse_time("2026-08-01T00:00:00Z"), "the evaluation")
    assert str(err.value) == (
        "cut.csv: the file holds 200 hours, 2026-07-01T00:00Z to 2026-07-09T08:00Z, not a whole year; the "
        "evaluation needs 2026-07-01T00:00Z to 2026-08-01T00:00Z (744 hours): no weather from 2026-07-09T09:00Z"
    )
    with pytest.raises(DataError, match="runs open-ended from 2026-07-01T00:00Z"):
        w.check_span(parse_time("2026-07-01T00:00:00Z"), None)
    load_weather("builtin:leesburg").check_span(0, None)  # a typical year covers everything


def test_epw_rows_shift_from_local_standard_time_to_utc() -> None:
    """EPW hour-ending local standard time rows land at the right UTC hour (UTC-5 here)."""
    rows = "".join(f"2010,1,1,{h % 24 + 1},0,x,{float(h % 24)},0.0,50,101325\n" for h in range(8760))
    w = parse_epw(EPW_HEAD + rows, "t.epw")
    # Record 0 is 00:00-01:00 local, centred 00:30 local = 05:30 UTC.
    assert w.at(parse_time("2026-01-01T05:30:00Z"))[0] == pytest.approx(0.0, abs=1e-9)


def test_epw_missing_values_are_interpolated() -> None:
    """EPW missing-value sentinels (99.9 °C) are filled from the neighbouring hours."""
    vals = [10.0, 99.9, 14.0] + [12.0] * 21
    rows = "".join(f"2010,1,1,{h + 1},0,x,{v},0.0,50,101325\n" for h, v in enumerate(vals))
    w = parse_epw(EPW_HEAD + rows, "t.epw")
    assert 12.0 in np.round(w.drybulb_c, 6).tolist()
    assert w.drybulb_c.max() < 15.0


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bad.epw", "NOT AN EPW\n", "not an EPW file"),
        ("bad.epw", EPW_HEAD + "2010,1,1,1,0,x,warm,0,50,101325\n", "row 9: dry bulb: 'warm' is not a number"),
        ("short.epw", EPW_HEAD + "2010,1,1\n", "row 9: 3 fields"),
        ("bad.csv", "when,temp\n1,2\n", "needs a time or hour column"),
        ("bad.csv", "time,temperature_2m,relative_humidity_2m\n2020-01-01T00:00,x,50\n", "row 2: temperature_2m"),
        ("bad.csv", "time,temperature_2m,relative_humidity_2m\nyesterday,1,50\n", "is not an ISO-8601 time"),
        ("bad.txt", "hello\n", "unknown weather format"),
        ("bad.csv.gz", "not gzip", "corrupt gzip file"),
    ],
)
def test_malformed_weather_file_is_one_clear_line(tmp_path: Path, name: str, content: str, message: str) -> None:
    """Malformed weather files raise a one-line DataError naming the file and the row or field."""
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError) as err:
        load_weather(str(path))
    assert str(path) in str(err.value)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("w.csv", "time,temperature_2m,relative_humidity_2m\n2026-01-01T00:00,inf,50\n",
         "row 2: temperature_2m: 'inf' is outside -100 to 70 °C"),
        ("w.csv", "time,temperature_2m,relative_humidity_2m\n2026-01-01T00:00,-1e300,50\n",
         "row 2: temperature_2m: '-1e300' is outside -100 to 70 °C"),
        ("w.csv", "time,temperature_2m,relative_humidity_2m\n2026-01-01T00:00,20,-1e300\n",
         "row 2: relative_humidity_2m: '-1e300' is outside 0 to 110 %"),
        ("w.csv", "time,temperature_2m,relative_humidity_2m,surface_pressure\n2026-01-01T00:00,20,50,1e300\n",
         "row 2: surface_pressure: '1e300' is outside 300 to 1200 hPa"),
        ("w.epw", EPW_HEAD + "2010,1,1,1,0,x,-1e300,0.0,50,101325\n",
         "row 9: dry bulb: '-1e300' is outside -100 to 70 °C"),
        ("w.epw", EPW_HEAD + "2010,1,1,1,0,x,20,0.0,-5,101325\n", "row 9: relative humidity: '-5' is outside 0 to 110 %"),
    ],
)  # fmt: skip
def test_impossible_weather_values_are_one_line(tmp_path: Path, name: str, content: str, message: str) -> None:
    """A weather value outside its physical range (inf, -1e300) is one DataError naming the file, row and column;
    it was read as missing, fed to psychrolib (a wet-bulb error) or, for humidity, used as it was."""
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError) as err:
        load_weather(str(path))
    assert str(err.value) == f"{path}: {message}"


def test_missing_file_and_unknown_builtin(tmp_path: Path) -> None:
    """A missing file is a DataError naming it; an unknown builtin is a ConfigError listing the bundled ones."""
    with pytest.raises(DataError, match=r"nope\.epw: cannot read weather file"):
        load_weather("nope.epw", site_dir=tmp_path)
    with pytest.raises(ConfigError, match="builtin:leesburg"):
        load_weather("builtin:atlantis")


def test_gzipped_csv_and_relative_paths_resolve_against_site_dir(tmp_path: Path) -> None:
    """A gzipped CSV next to the site file loads through a relative path."""
    text = "hour,drybulb_c,rh_pct,pressure_pa\n" + "".join(f"{h},15,60,101000\n" for h in range(24))
    (tmp_path / "w.csv.gz").write_bytes(gzip.compress(text.encode()))
    w = load_weather("w.csv.gz", site_dir=tmp_path)
    assert w.at(parse_time("2026-01-01T12:00:00Z"))[0] == pytest.approx(15.0)


def test_constant_weather_is_constant() -> None:
    """constant_weather gives the same dry and wet bulb at every instant."""
    w = constant_weather(25.0, 50.0)
    a, b = w.at(0), w.at(parse_time("2026-07-01T15:17:00Z"))
    assert a == pytest.approx(b)
    assert a[1] < a[0]


MEASURED = WEATHER_DIR / "openmeteo_DE-LU_2020-2024_hourly.csv.gz"


def test_bundled_measured_years_answer_by_absolute_utc_time() -> None:
    """The bundled Open-Meteo file is 2020-2024 hour by hour (UTC, no gap): a given hour has the file's values and
    its psychrolib wet bulb at the site elevation's standard pressure."""
    w = load_weather(str(MEASURED), elevation_m=110.0)
    assert w.hours == 43848  # 1,827 days
    assert w.measured
    assert w.filled == 0
    db, wb = w.at(parse_time("2023-07-15T14:00:00Z"))  # row 31000: 2023-07-15T14:00,26.8,53
    assert db == pytest.approx(26.8)
    expected = wet_bulb(np.array([26.8]), np.array([53.0]), np.array([w.pressure_pa[0]]), "x")[0]
    assert wb == pytest.approx(expected)
    assert w.pressure_pa[0] == pytest.approx(100_010.0, abs=50.0)  # standard atmosphere at 110 m
    assert w.at(parse_time("2020-01-01T00:00:00Z"))[0] == pytest.approx(-3.1)
    assert w.at(parse_time("2024-12-31T23:00:00Z"))[0] == pytest.approx(0.6)


def test_a_measured_file_refuses_an_evaluation_outside_its_years() -> None:
    """check_span passes an evaluation of a year the measured file holds (its warm-up and commissioning may reach a
    month before it) and refuses, in one line naming the file, its span and the years to choose, one of 2026 (it
    used to replay 2026 from 2020-2024 by calendar date); an open-ended run (the live simulator) still replays."""
    w = load_weather(str(MEASURED))
    w.check_span(parse_time("2019-12-17T00:00:00Z"), parse_time("2021-01-01T01:00:00Z"), "the evaluation")
    w.check_span(parse_time("2024-01-01T00:00:00Z"), parse_time("2025-01-01T01:00:00Z"), "the evaluation")
    with pytest.raises(DataError) as err:
        w.check_span(parse_time("2025-12-17T00:00:00Z"), parse_time("2027-01-01T01:00:00Z"), "the evaluation")
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"{MEASURED}: measured weather from 2020-01-01T00:00Z to 2025-01-01T00:00Z; the evaluation")
    assert msg.endswith("choose a year from 2020 to 2024")
    with pytest.raises(DataError, match="choose a year from 2020 to 2024"):
        w.check_span(parse_time("2024-06-01T00:00:00Z"), parse_time("2025-06-01T00:00:00Z"))
    w.check_span(parse_time("2026-01-01T00:00:00Z"), None, "the simulator")


def test_a_measured_file_interpolates_short_gaps_and_counts_them() -> None:
    """Up to 6 missing hours in a row are interpolated and counted in ``filled``."""
    lines = _hourly_csv("2021-01-01T00", 9000).splitlines(keepends=True)
    for k in range(101, 107):  # six hours without a temperature
        t, _, rh = lines[k].split(",")
        lines[k] = f"{t},,{rh}"
    w = parse_csv("".join(lines), "gap.csv")
    assert w.filled == 6
    assert w.at(parse_time("2021-01-05T08:00:00Z"))[0] == pytest.approx(0.5 + 0.0075, abs=1e-3)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda ls: [*ls[:101], *(f"{s.split(',')[0]},,50\n" for s in ls[101:108]), *ls[108:]],
         r"bad\.csv: rows 102-108: temperature_2m: 7 hours missing in a row \(at most 6 are interpolated\)"),
        (lambda ls: [*ls[:50], ls[50].rsplit(",", 1)[0] + ",150\n", *ls[51:]],
         r"bad\.csv: row 51: relative_humidity_2m: '150' is outside 0 to 110 %"),
        (lambda ls: [*ls[:50], *ls[51:]],
         r"bad\.csv: row 51: time '2021-01-03T02:00' is not one hour after the row before \('2021-01-03T00:00'\)"),
        (lambda ls: [*ls[:50], "2021-01-03T00:xx,1,50\n", *ls[51:]],
         r"bad\.csv: row 51: time '2021-01-03T00:xx' is not an ISO-8601 time"),
    ],
    ids=["long-gap", "humidity", "missing-hour", "bad-time"],
)  # fmt: skip
def test_a_bad_measured_file_is_one_line_naming_row_and_value(edit: object, message: str) -> None:
    """A long gap, an impossible humidity, a missing hour or a bad timestamp is one DataError naming the rows and
    value (a missing hour used to shift every later row by an hour silently, a long gap was interpolated over)."""
    lines = _hourly_csv("2021-01-01T00", 9000).splitlines(keepends=True)
    with pytest.raises(DataError, match=message):
        parse_csv("".join(edit(lines)), "bad.csv")  # type: ignore[operator]
