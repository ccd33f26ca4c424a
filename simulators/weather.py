"""Weather replay: EPW typical years and hourly CSV files, with wet bulb from psychrolib.

Formats read:

* **EPW** (EnergyPlus): 8 header lines, then hourly rows; columns 6-9 are dry bulb (°C), dew point (°C),
  relative humidity (%) and station pressure (Pa). Rows are hour-ending in local standard time; the time zone
  from the ``LOCATION`` line shifts them to UTC. A typical year maps by hour of year.
* **Open-Meteo CSV**: ``time,temperature_2m,relative_humidity_2m[,surface_pressure|pressure_msl (hPa)]``, UTC
  timestamps (Open-Meteo's default, GMT), one row per hour: a row that is not one hour after the one before is
  refused with its row and value. Pressure, when absent, is the standard atmosphere at the site elevation. These are
  **measured** hours (e.g. the bundled ERA5 years 2020-2024): a run of a given span (an evaluation) must lie in the
  file's own hours, give or take :data:`MEASURED_EDGE_DAYS` for warm-ups and commissioning; an open-ended run (the
  live simulator) of a file of a year or more replays other years by calendar date; a shorter file covers only its
  own hours (see :class:`Weather`). Up to :data:`MAX_GAP_H` missing hours in a row are interpolated and counted
  (:attr:`Weather.filled`); a longer gap is refused with its rows.
* **Bundled typical-year CSV**: ``hour,drybulb_c,rh_pct,pressure_pa``, hourly rows, ``hour`` the (fractional) UTC
  hour of year at which each row applies.

Values between hours are interpolated linearly. Missing values (EPW sentinels, empty cells, NaN) are filled by linear
interpolation between neighbours (timestamped CSV: gaps of at most :data:`MAX_GAP_H` hours); a file with more than a
quarter of one column missing is rejected. A value outside
its physical range (:data:`VALID`: ``inf``, ``-1e300``) is refused with its file, row and column.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

import numpy as np
import numpy.typing as npt
import psychrolib

from aidc.errors import ConfigError, DataError
from simulators.physics import dew_point

Arr = npt.NDArray[np.float64]
DATA_DIR = Path(__file__).resolve().parent / "data"
BUILTIN = {"leesburg": DATA_DIR / "leesburg_tmyx.csv.gz"}
_EPW_MISSING = {6: 99.9, 7: 99.9, 8: 999.0, 9: 999999.0}
_NS_PER_H = 3600 * 1_000_000_000
YEAR_H = 8760  # hours of a typical (and of any non-leap) year
# How far a span of given length may reach outside a measured file's own hours: an evaluation's warm-up and aidc's
# 14 commissioning days before 1 January, the oracle's hour of look-ahead after 31 December. Those hours replay the
# same calendar date of a year the file holds; the evaluated days themselves are measured hours.
MEASURED_EDGE_DAYS = 31
MAX_GAP_H = 6  # missing hours in a row interpolated in a measured file; a longer gap is refused


@dataclass(frozen=True, eq=False)
class Weather:
    """Hourly outdoor conditions with interpolation in time.

    What a time maps to: a whole typical year (no timestamps, at least 8760 rows) replays by hour of year in any
    year; a timestamped (measured) file of a whole year or more replays its own hours, and other years by calendar
    date, but :meth:`check_span` refuses a span of given length outside its own years (an evaluation of 2026 on
    2020-2024 weather); a shorter file covers only its own hours (of the typical year, or its timestamps). A time
    outside that is refused with a one-line :class:`DataError`, never wrapped: :meth:`check_span` refuses a run up
    front.
    """

    source: str
    drybulb_c: Arr
    rh_pct: Arr
    pressure_pa: Arr
    wetbulb_c: Arr
    # Typical year: hour 0 is 1 January 00:00 UTC of whatever year is simulated. Otherwise the UTC start.
    start_ns: int | None = None
    # Hours after that origin at which record 0 applies (EPW: 0.5 − time zone, the hour-ending mid-point in UTC).
    offset_h: float = 0.0
    # The records repeat modulo their count whatever their length (constant weather: one repeated day).
    cyclic: bool = False
    # Missing values filled by interpolation when the file was read (all columns together).
    filled: int = 0

    def __post_init__(self) -> None:
        # Plain lists index faster than numpy scalars in the per-step path; the year and day windows are cached.
        object.__setattr__(self, "_db", self.drybulb_c.tolist())
        object.__setattr__(self, "_wb", self.wetbulb_c.tolist())
        object.__setattr__(self, "_dp", dew_point(self.drybulb_c, self.rh_pct).tolist())
        object.__setattr__(self, "_year", [0, -1])  # [start, end) of the cached calendar year, UTC ns
        object.__setattr__(self, "_day", [0, -1, 0])  # [start, end) of the cached UTC day, its calendar shift in ns
        object.__setattr__(self, "_wraps", self.cyclic or (self.start_ns is None and self.hours >= YEAR_H))

    @property
    def hours(self) -> int:
        """Number of hourly records."""
        return len(self.drybulb_c)

    @property
    def measured(self) -> bool:
        """Whether the records are timestamped hours (a measured series), not a typical year or constant weather."""
        return self.start_ns is not None and not self.cyclic

    @property
    def whole_year(self) -> bool:
        """Whether every time of every year maps to a record (a typical year, a year or more of hours, cyclic)."""
        return self.cyclic or self.hours >= YEAR_H

    def _x(self, t_ns: int) -> float | None:
        """Fractional record index for a UTC time, or None where the file has no record for it."""
        if self.start_ns is None:
            year: list[int] = self.__dict__["_year"]
            if not year[0] <= t_ns < year[1]:
                y = datetime.fromtimestamp(t_ns / 1e9, tz=UTC).year
                year[0] = int(datetime(y, 1, 1, tzinfo=UTC).timestamp()) * 1_000_000_000
                year[1] = int(datetime(y + 1, 1, 1, tzinfo=UTC).timestamp()) * 1_000_000_000
            x = (t_ns - year[0]) / _NS_PER_H - self.offset_h
            if self.__dict__["_wraps"]:
                return x % self.hours
            x %= YEAR_H  # part of a typical year: its hours of every year, nothing else
        else:
            x = (t_ns - self.start_ns) / _NS_PER_H - self.offset_h
            if not 0.0 <= x <= self.hours and self.hours >= YEAR_H:
                # Another year of a whole-year file: the same calendar date and time in a year the file holds. The
                # few hours a year whose date falls just outside it (a file starting mid-day) hold its edge value.
                x = (t_ns + self._shift(t_ns) - self.start_ns) / _NS_PER_H - self.offset_h
                x = min(max(x, 0.0), float(self.hours))
        # Each record stands for its hour: the last one holds until the end of its hour.
        return x if 0.0 <= x <= self.hours else None

    def _shift(self, t_ns: int) -> int:
        """Nanoseconds that move ``t_ns``'s UTC day onto the same calendar day in a year of the file (cached by day)."""
        cache: list[int] = self.__dict__["_day"]
        if cache[0] <= t_ns < cache[1]:
            return cache[2]
        assert self.start_ns is not None  # only timestamped files shift
        day = datetime.fromtimestamp(t_ns // 1_000_000_000, tz=UTC).date()
        lo = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * 1_000_000_000
        first = datetime.fromtimestamp(self.start_ns // 1_000_000_000, tz=UTC).year
        best: tuple[float, int] | None = None
        for y in range(first - 1, first + self.hours // YEAR_H + 2):
            try:
                same = day.replace(year=y)
            except ValueError:  # 29 February in a year without one: the 28th
                same = day.replace(year=y, day=28)
            delta = int(datetime(same.year, same.month, same.day, tzinfo=UTC).timestamp()) * 1_000_000_000 - lo
            x = (lo + delta + _NS_PER_H * 12 - self.start_ns) / _NS_PER_H - self.offset_h
            dist = 0.0 if 0.0 <= x <= self.hours else min(abs(x), abs(x - self.hours))
            if best is None or dist < best[0]:
                best = (dist, delta)
        assert best is not None
        cache[:] = [lo, lo + 24 * _NS_PER_H, best[1]]
        return best[1]

    def position(self, t_ns: int) -> float:
        """Fractional record index for a UTC time; DataError where the file has no record for it."""
        x = self._x(t_ns)
        if x is None:
            raise DataError(f"{self.source}: no weather for {_iso(t_ns)}: {self.coverage()}")
        return x

    def _next(self, i: int) -> int:
        """The record after ``i``: wrapping round a typical year, else the last one held."""
        if i + 1 < self.hours:
            return i + 1
        return 0 if self.__dict__["_wraps"] else self.hours - 1

    def at(self, t_ns: int) -> tuple[float, float]:
        """Dry bulb and wet bulb (°C) at a UTC time, interpolated between hours."""
        x = self.position(t_ns)
        i = min(int(x), self.hours - 1)
        f = x - i
        j = self._next(i)
        db: list[float] = self.__dict__["_db"]
        wb: list[float] = self.__dict__["_wb"]
        return db[i] + (db[j] - db[i]) * f, wb[i] + (wb[j] - wb[i]) * f

    def dewpoint_at(self, t_ns: int) -> float:
        """Outdoor dew point (°C) at a UTC time, interpolated between hours."""
        x = self.position(t_ns)
        i = min(int(x), self.hours - 1)
        j = self._next(i)
        dp: list[float] = self.__dict__["_dp"]
        return dp[i] + (dp[j] - dp[i]) * (x - i)

    def coverage(self) -> str:
        """What the file holds, in words: ``the file holds 200 hours, 2026-07-01T00:00Z to 2026-07-09T08:00Z``."""
        if self.whole_year:
            return "the file holds a whole year"
        if self.start_ns is None:
            # A typical year has no year: show its hours on the calendar of a year without 29 February.
            t0 = datetime(2001, 1, 1, tzinfo=UTC).timestamp() + self.offset_h % YEAR_H * 3600
            a = datetime.fromtimestamp(t0, tz=UTC)
            b = datetime.fromtimestamp(t0 + self.hours * 3600, tz=UTC)
            return (
                f"the file holds {self.hours} hours of a typical year ({a:%d %b %H:%M} to {b:%d %b %H:%M} UTC), "
                "not a whole year"
            )
        return (
            f"the file holds {self.hours} hours, {_iso(self.start_ns)} to "
            f"{_iso(self.start_ns + round((self.hours + self.offset_h) * _NS_PER_H))}, not a whole year"
        )

    def check_span(self, start_ns: int, end_ns: int | None, what: str = "the run") -> None:
        """Refuse, with one DataError line, a span (None: open-ended) the file has no weather for."""
        if self.measured and self.whole_year and end_ns is not None:
            self._check_measured(start_ns, end_ns, what)
            return
        if self.whole_year:
            return
        if end_ns is None:
            raise DataError(
                f"{self.source}: {self.coverage()}; {what} runs open-ended from {_iso(start_ns)}: "
                "give a whole-year or typical-year (EPW) weather file"
            )
        # Hourly probes and the end: coverage is one interval per year, so a gap is never narrower than a probe step.
        for t in [*range(start_ns, end_ns, _NS_PER_H), end_ns]:
            if self._x(t) is None:
                hours = (end_ns - start_ns) / _NS_PER_H
                raise DataError(
                    f"{self.source}: {self.coverage()}; {what} needs {_iso(start_ns)} to {_iso(end_ns)} "
                    f"({hours:g} hours): no weather from {_iso(t)}"
                )

    def _check_measured(self, start_ns: int, end_ns: int, what: str) -> None:
        """Refuse a span that reaches more than MEASURED_EDGE_DAYS outside a measured file's own hours."""
        assert self.start_ns is not None
        first = self.start_ns + round(self.offset_h * _NS_PER_H)
        last = first + self.hours * _NS_PER_H  # the last record holds its hour
        edge = MEASURED_EDGE_DAYS * 24 * _NS_PER_H
        if first - edge <= start_ns and end_ns <= last + edge:
            return
        # Whole calendar years the file holds: from the first 1 January at or after its first hour.
        d0 = datetime.fromtimestamp(first // 1_000_000_000, tz=UTC)
        y0 = d0.year + (d0 != datetime(d0.year, 1, 1, tzinfo=UTC))
        y1 = datetime.fromtimestamp(last // 1_000_000_000, tz=UTC).year - 1
        years = f"choose a year from {y0} to {y1}" if y1 >= y0 else "it holds no whole calendar year"
        raise DataError(
            f"{self.source}: measured weather from {_iso(first)} to {_iso(last)}; {what} needs {_iso(start_ns)} to "
            f"{_iso(end_ns)}: a measured file answers only its own years (at most {MEASURED_EDGE_DAYS} days either "
            f"side, for warm-ups, replay the same date of a year it holds): {years}"
        )


def _iso(t_ns: int) -> str:
    """A UTC time to the minute, as the messages show it."""
    return datetime.fromtimestamp(t_ns / 1e9, tz=UTC).strftime("%Y-%m-%dT%H:%MZ")


def constant_weather(drybulb_c: float, rh_pct: float, pressure_pa: float = 101325.0) -> Weather:
    """Unchanging outdoor conditions (steady-state tests and what-if runs)."""
    db, rh, pa = np.full(24, drybulb_c), np.full(24, rh_pct), np.full(24, pressure_pa)
    wb = wet_bulb(db, rh, pa, "constant weather")
    return Weather(f"constant {drybulb_c} °C {rh_pct} %", db, rh, pa, wb, cyclic=True)


def wet_bulb(drybulb_c: Arr, rh_pct: Arr, pressure_pa: Arr, source: str) -> Arr:
    """Thermodynamic wet bulb (°C) with psychrolib (SI), computed once per distinct rounded condition.

    psychrolib is scalar and iterative, so conditions are rounded (0.1 K, 1 % RH, 1 kPa; the wet bulb moves by
    about 0.02 K per kPa) and each distinct one is solved once.
    """
    psychrolib.SetUnitSystem(psychrolib.SI)
    key = np.stack([np.round(drybulb_c, 1), np.round(np.clip(rh_pct, 1.0, 100.0), 0), np.round(pressure_pa, -3)], 1)
    uniq, inverse = np.unique(key, axis=0, return_inverse=True)
    out = np.empty(len(uniq))
    for k, (t, rh, pa) in enumerate(uniq):
        try:
            out[k] = psychrolib.GetTWetBulbFromRelHum(float(t), float(rh) / 100.0, float(pa))
        except (ValueError, ZeroDivisionError) as exc:
            raise DataError(f"{source}: cannot compute wet bulb for {t} °C, {rh} %, {pa} Pa: {exc}") from None
    return np.minimum(out[inverse.ravel()], drybulb_c)


def _fill(values: list[float | None], source: str, column: str) -> Arr:
    arr = np.array([math.nan if v is None else v for v in values], dtype=np.float64)
    bad = np.isnan(arr)
    if not len(arr):
        raise DataError(f"{source}: no data rows")
    if bad.mean() > 0.25:
        raise DataError(f"{source}: column {column}: {int(bad.sum())} of {len(arr)} values missing")
    if bad.any():
        idx = np.arange(len(arr))
        arr[bad] = np.interp(idx[bad], idx[~bad], arr[~bad])
    return arr


# What a reading can physically be (EPW's own valid ranges, widened to the world's records); anything else (inf,
# -1e300) is a broken file, refused with its row, not interpolated over or fed to the psychrometrics.
VALID = {
    "db": (-100.0, 70.0, "°C"),
    "rh": (0.0, 110.0, "%"),  # EPW allows up to 110 %; the wet bulb clips at 100 %
    "pa": (30_000.0, 120_000.0, "Pa"),
    "hpa": (300.0, 1_200.0, "hPa"),
}


def _num(
    text: str, source: str, row: int, column: str, missing: float | None = None, valid: str | None = None
) -> float | None:
    text = text.strip()
    if text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{source}: row {row}: {column}: {text!r} is not a number") from None
    if math.isnan(value) or (missing is not None and value >= missing):
        return None
    if valid is not None:
        lo, hi, unit = VALID[valid]
        if not lo <= value <= hi:
            raise DataError(f"{source}: row {row}: {column}: {text!r} is outside {lo:g} to {hi:g} {unit}")
    elif not math.isfinite(value):
        return None
    return value


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read weather file: {exc.strerror or exc}") from None
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError) as exc:  # gzip.BadGzipFile is an OSError
            raise DataError(f"{path}: corrupt gzip file: {exc}") from None
    return raw.decode("utf-8-sig", errors="replace")


def parse_epw(text: str, source: str) -> Weather:
    """Weather from EPW text; rows shifted from local standard time to UTC."""
    lines = text.splitlines()
    head = lines[0].split(",") if lines else []
    if len(head) < 10 or head[0] != "LOCATION":
        raise DataError(f"{source}: not an EPW file (first line should start with LOCATION)")
    try:
        tz_h = float(head[8])
    except ValueError:
        raise DataError(f"{source}: LOCATION time zone {head[8]!r} is not a number") from None
    cols: dict[int, list[float | None]] = {6: [], 8: [], 9: []}
    names = {6: "dry bulb", 8: "relative humidity", 9: "pressure"}
    kinds = {6: "db", 8: "rh", 9: "pa"}
    for n, row in enumerate(csv.reader(lines[8:]), start=9):
        if not row:
            continue
        if len(row) < 10:
            raise DataError(f"{source}: row {n}: {len(row)} fields, an EPW data row has at least 10")
        for c in cols:
            cols[c].append(_num(row[c], source, n, names[c], _EPW_MISSING[c], kinds[c]))
    db, rh, pa = (_fill(cols[c], source, names[c]) for c in (6, 8, 9))
    # Hour-ending local standard time: record i is centred on local i + 0.5 h, i.e. UTC i + 0.5 − tz.
    return Weather(source, db, rh, pa, wet_bulb(db, rh, pa, source), offset_h=0.5 - tz_h)


def parse_csv(text: str, source: str, elevation_m: float = 0.0) -> Weather:
    """Weather from an Open-Meteo style or bundled typical-year CSV."""
    reader = csv.reader(io.StringIO(text))
    header = [h.strip() for h in next(reader, [])]
    pick = {"hour": "hour", "time": "time"}
    aliases = {
        "db": ("temperature_2m", "drybulb_c"),
        "rh": ("relative_humidity_2m", "rh_pct"),
        "pa": ("surface_pressure", "pressure_msl", "pressure_pa"),
    }
    index: dict[str, int] = {}
    for key, options in aliases.items():
        for name in options:
            if name in header:
                index[key] = header.index(name)
                break
    clock = next((pick[h] for h in header if h in pick), None)
    if clock is None or "db" not in index or "rh" not in index:
        raise DataError(
            f"{source}: CSV header {header} needs a time or hour column, temperature_2m and relative_humidity_2m"
        )
    hpa = "pa" in index and header[index["pa"]] != "pressure_pa"
    times: list[str] = []
    lines: list[int] = []
    cols: dict[str, list[float | None]] = {k: [] for k in index}
    for n, row in enumerate(reader, start=2):
        if not row or not "".join(row).strip():
            continue
        if len(row) < len(header):
            raise DataError(f"{source}: row {n}: {len(row)} fields, header has {len(header)}")
        times.append(row[header.index(clock)])
        lines.append(n)
        for key, i in index.items():
            cols[key].append(_num(row[i], source, n, header[i], valid="hpa" if key == "pa" and hpa else key))
    if clock == "time":  # measured hours: a long gap would be invented weather, not interpolation
        for key, values in cols.items():
            _check_gaps(values, lines, source, header[index[key]])
    filled = sum(v is None for values in cols.values() for v in values)
    db, rh = _fill(cols["db"], source, header[index["db"]]), _fill(cols["rh"], source, header[index["rh"]])
    if "pa" in index:
        pa = _fill(cols["pa"], source, header[index["pa"]]) * (100.0 if hpa else 1.0)
    else:
        psychrolib.SetUnitSystem(psychrolib.SI)
        pa = np.full(len(db), psychrolib.GetStandardAtmPressure(elevation_m))
    start_ns: int | None = None
    offset_h = 0.0
    if clock == "hour":
        offset_h = _num(times[0], source, 2, "hour") or 0.0
    if clock == "time":
        start_ns = _hourly_start(times, lines, source)
    wb = wet_bulb(db, rh, pa, source)
    return Weather(source, db, rh, pa, wb, start_ns=start_ns, offset_h=offset_h, filled=filled)


def _hourly_start(times: list[str], lines: list[int], source: str) -> int:
    """UTC start (ns) of a timestamped file whose rows must be one hour apart; a bad stamp names its row."""
    prev: int | None = None
    start = 0
    for k, (text, n) in enumerate(zip(times, lines, strict=True)):
        try:
            t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        except ValueError:
            raise DataError(f"{source}: row {n}: time {text!r} is not an ISO-8601 time") from None
        t = t if t.tzinfo else t.replace(tzinfo=UTC)  # Open-Meteo's default time zone is GMT
        s = int(t.timestamp())
        if prev is None:
            start = s
        elif s != prev + 3600:
            raise DataError(
                f"{source}: row {n}: time {text!r} is not one hour after the row before ({times[k - 1]!r}): "
                "the file must have one row per hour, in order"
            )
        prev = s
    return start * 1_000_000_000


def _check_gaps(values: list[float | None], lines: list[int], source: str, column: str) -> None:
    """Refuse more than MAX_GAP_H missing values in a row of a measured column, naming the rows."""
    run = 0
    for k, v in enumerate([*values, 0.0]):
        if v is None:
            run += 1
            continue
        if run > MAX_GAP_H:
            raise DataError(
                f"{source}: rows {lines[k - run]}-{lines[k - 1]}: {column}: {run} hours missing in a row "
                f"(at most {MAX_GAP_H} are interpolated)"
            )
        run = 0


@lru_cache(maxsize=16)
def _load_path(path: Path, mtime_ns: int, elevation_m: float) -> Weather:
    text = _read_text(path)
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(".epw"):
        return parse_epw(text, str(path))
    if name.endswith(".csv"):
        return parse_csv(text, str(path), elevation_m)
    raise DataError(f"{path}: unknown weather format (expected .epw or .csv, optionally .gz)")


def load_weather(spec: str, site_dir: Path | None = None, elevation_m: float = 0.0) -> Weather:
    """Weather from ``builtin:<name>`` or a path (relative paths resolve against the site file's folder)."""
    if spec.startswith("builtin:"):
        name = spec.removeprefix("builtin:").lower()
        if name not in BUILTIN:
            raise ConfigError(f"site.weather: {spec!r} is not bundled (bundled: builtin:{', builtin:'.join(BUILTIN)})")
        path = BUILTIN[name]
    else:
        path = Path(spec).expanduser()
        if not path.is_absolute() and site_dir is not None:
            path = site_dir / path
    try:
        mtime = path.stat().st_mtime_ns
    except OSError as exc:
        raise DataError(f"{path}: cannot read weather file: {exc.strerror}") from None
    return _load_path(path.resolve(), mtime, elevation_m)
