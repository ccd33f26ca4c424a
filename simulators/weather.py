"""Weather replay: EPW typical years and hourly CSV files, with wet bulb from psychrolib.

Formats read:

* **EPW** (EnergyPlus): 8 header lines, then hourly rows; columns 6-9 are dry bulb (°C), dew point (°C),
  relative humidity (%) and station pressure (Pa). Rows are hour-ending in local standard time; the time zone
  from the ``LOCATION`` line shifts them to UTC. A typical year maps by hour of year.
* **Open-Meteo CSV**: ``time,temperature_2m,relative_humidity_2m[,surface_pressure|pressure_msl (hPa)]``, UTC
  timestamps. Pressure, when absent, is the standard atmosphere at the site elevation. A file spanning several
  years replays by timestamp modulo its span.
* **Bundled typical-year CSV**: ``hour,drybulb_c,rh_pct,pressure_pa``, hourly rows, ``hour`` the (fractional) UTC
  hour of year at which each row applies.

Values between hours are interpolated linearly. Missing values (EPW sentinels, empty cells) are filled by linear
interpolation between neighbours; a file with more than a quarter of one column missing is rejected.
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


@dataclass(frozen=True, eq=False)
class Weather:
    """Hourly outdoor conditions with interpolation in time."""

    source: str
    drybulb_c: Arr
    rh_pct: Arr
    pressure_pa: Arr
    wetbulb_c: Arr
    # Typical year: hour 0 is 1 January 00:00 UTC of whatever year is simulated. Otherwise the UTC start.
    start_ns: int | None = None
    # Hours after that origin at which record 0 applies (EPW: 0.5 − time zone, the hour-ending mid-point in UTC).
    offset_h: float = 0.0

    def __post_init__(self) -> None:
        # Plain lists index faster than numpy scalars in the per-step path; the year window is cached.
        object.__setattr__(self, "_db", self.drybulb_c.tolist())
        object.__setattr__(self, "_wb", self.wetbulb_c.tolist())
        object.__setattr__(self, "_dp", dew_point(self.drybulb_c, self.rh_pct).tolist())
        object.__setattr__(self, "_year", [0, -1])  # [start, end) of the cached calendar year, UTC ns

    @property
    def hours(self) -> int:
        """Number of hourly records."""
        return len(self.drybulb_c)

    def position(self, t_ns: int) -> float:
        """Fractional record index for a UTC time."""
        origin = self.start_ns
        if origin is None:
            year: list[int] = self.__dict__["_year"]
            if not year[0] <= t_ns < year[1]:
                y = datetime.fromtimestamp(t_ns / 1e9, tz=UTC).year
                year[0] = int(datetime(y, 1, 1, tzinfo=UTC).timestamp()) * 1_000_000_000
                year[1] = int(datetime(y + 1, 1, 1, tzinfo=UTC).timestamp()) * 1_000_000_000
            origin = year[0]
        return ((t_ns - origin) / _NS_PER_H - self.offset_h) % self.hours

    def at(self, t_ns: int) -> tuple[float, float]:
        """Dry bulb and wet bulb (°C) at a UTC time, interpolated between hours."""
        x = self.position(t_ns)
        i = int(x)
        f = x - i
        j = (i + 1) % self.hours
        db: list[float] = self.__dict__["_db"]
        wb: list[float] = self.__dict__["_wb"]
        return db[i] + (db[j] - db[i]) * f, wb[i] + (wb[j] - wb[i]) * f


    def dewpoint_at(self, t_ns: int) -> float:
        """Outdoor dew point (°C) at a UTC time, interpolated between hours."""
        x = self.position(t_ns)
        i = int(x)
        j = (i + 1) % self.hours
        dp: list[float] = self.__dict__["_dp"]
        return dp[i] + (dp[j] - dp[i]) * (x - i)


def constant_weather(drybulb_c: float, rh_pct: float, pressure_pa: float = 101325.0) -> Weather:
    """Unchanging outdoor conditions (steady-state tests and what-if runs)."""
    db, rh, pa = np.full(24, drybulb_c), np.full(24, rh_pct), np.full(24, pressure_pa)
    return Weather(f"constant {drybulb_c} °C {rh_pct} %", db, rh, pa, wet_bulb(db, rh, pa, "constant weather"))


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


def _num(text: str, source: str, row: int, column: str, missing: float | None = None) -> float | None:
    text = text.strip()
    if text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{source}: row {row}: {column}: {text!r} is not a number") from None
    if not math.isfinite(value) or (missing is not None and value >= missing):
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
    for n, row in enumerate(csv.reader(lines[8:]), start=9):
        if not row:
            continue
        if len(row) < 10:
            raise DataError(f"{source}: row {n}: {len(row)} fields, an EPW data row has at least 10")
        for c in cols:
            cols[c].append(_num(row[c], source, n, names[c], _EPW_MISSING[c]))
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
    cols: dict[str, list[float | None]] = {k: [] for k in index}
    for n, row in enumerate(reader, start=2):
        if not row or not "".join(row).strip():
            continue
        if len(row) < len(header):
            raise DataError(f"{source}: row {n}: {len(row)} fields, header has {len(header)}")
        times.append(row[header.index(clock)])
        for key, i in index.items():
            cols[key].append(_num(row[i], source, n, header[i]))
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
        try:
            first = datetime.fromisoformat(times[0].replace("Z", "+00:00"))
        except ValueError:
            raise DataError(f"{source}: row 2: time {times[0]!r} is not an ISO-8601 time") from None
        first = first if first.tzinfo else first.replace(tzinfo=UTC)
        start_ns = int(first.timestamp()) * 1_000_000_000
    return Weather(source, db, rh, pa, wet_bulb(db, rh, pa, source), start_ns=start_ns, offset_h=offset_h)


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
