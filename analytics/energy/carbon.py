"""Grid carbon: the hourly intensity reader, and location- and market-based Scope 2 emissions.

The GHG Protocol's Scope 2 guidance asks for both methods side by side:

- **location-based**: the grid's average intensity where and when the energy was used, hour by hour
  (Σ_h E_h · CI_h), here from an hourly series such as EIA-930-derived ``avg_CI`` (gCO2/kWh, UTC);
- **market-based**: the factors of the contracts the operator bought (PPAs, green tariffs, certificates), each
  covering a share of consumption, and the supplier's *residual mix* for the rest. Without a residual mix the grid
  average of the period stands in (the guidance's last step in its factor hierarchy), and the result says so.

CUE (ISO/IEC 30134-8) = kg CO2 of the data centre's energy / IT energy (kWh), in :func:`analytics.energy.kpi.cue`.

An intensity file of one whole year (the bundled series are 2022) applied to another year is used as a typical
year: each hour takes the value of the same month, day and hour of the file's year (29 February takes the 28th),
as TMY weather is replayed. The reader reports that it did so.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from aidc.errors import DataError

TIME_COLUMN = "timestamp"
VALUE_COLUMN = "avg_CI"
MAX_FILL_H = 48  # longer holes in a series are refused rather than bridged


@dataclass(frozen=True, slots=True)
class Intensity:
    """An hourly grid carbon-intensity series (gCO2/kWh, hour-start UTC index) and where it came from."""

    g_per_kwh: pd.Series
    source: str
    filled_hours: int = 0  # hours missing in the file, filled by linear interpolation in time

    def hourly(self, start: pd.Timestamp, end: pd.Timestamp) -> tuple[pd.Series, str]:
        """Values for every hour in ``[start, end)`` and a note on how they were found (direct or typical year)."""
        hours = pd.date_range(pd.Timestamp(start).floor("h"), pd.Timestamp(end), freq="h", inclusive="left")
        s = self.g_per_kwh
        if len(hours) and hours[0] >= s.index[0] and hours[-1] <= s.index[-1]:
            out = s.reindex(hours).interpolate(limit_direction="both")
            return out, f"{self.source} (hourly, as measured)"
        years = pd.DatetimeIndex(s.index).year.unique()
        if len(years) != 1 or len(s) < 8700:
            raise DataError(
                f"{self.source}: covers {s.index[0]} .. {s.index[-1]}, not the period {start} .. {end}, "
                "and is not one whole year that could stand in as a typical year"
            )
        year = int(years[0])
        day = np.where((hours.month == 2) & (hours.day == 29), 28, hours.day)
        keys = pd.to_datetime(
            {"year": year, "month": hours.month, "day": day, "hour": hours.hour}, utc=True
        )
        values = s.reindex(pd.DatetimeIndex(keys)).interpolate(limit_direction="both").to_numpy()
        return pd.Series(values, index=hours), f"{self.source} (year {year} applied by hour of year)"


def load_intensity(path: Path | str) -> Intensity:
    """Read an hourly intensity CSV (optionally gzip) with ``timestamp`` and ``avg_CI``; DataError names the field."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise DataError(f"{p}: cannot read carbon-intensity file: {exc.strerror}") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DataError(f"{p}: corrupt gzip file ({exc})") from None
    try:
        df = pd.read_csv(io.BytesIO(raw), dtype=str)
    except (ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"{p}: not a CSV file ({str(exc).splitlines()[0]})") from None
    for col in (TIME_COLUMN, VALUE_COLUMN):
        if col not in df.columns:
            raise DataError(f"{p}: no column {col!r} (columns: {', '.join(map(str, df.columns))})")
    ts = pd.to_datetime(df[TIME_COLUMN], utc=True, errors="coerce")
    bad_ts = ts.isna()
    if bad_ts.any():
        i = int(np.flatnonzero(bad_ts.to_numpy())[0])
        raise DataError(f"{p}: line {i + 2}: {TIME_COLUMN} {df[TIME_COLUMN].iloc[i]!r} is not a time")
    empty = df[VALUE_COLUMN].isna()  # an hour the source did not report (EIA-930 has a few)
    values = pd.to_numeric(df[VALUE_COLUMN], errors="coerce")
    bad = (values.isna() & ~empty) | (values < 0) | (values > 3000)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"{p}: line {i + 2}: {VALUE_COLUMN} {df[VALUE_COLUMN].iloc[i]!r} is not a gCO2/kWh value")
    series = pd.Series(values.to_numpy(dtype=np.float64), index=pd.DatetimeIndex(ts)).sort_index()
    if series.index.has_duplicates:
        dup = series.index[series.index.duplicated()][0]
        raise DataError(f"{p}: {TIME_COLUMN} {dup} appears twice")
    if series.notna().sum() < 2:
        raise DataError(f"{p}: needs at least two hourly values")
    hourly = series.resample("h").mean()
    missing = int(hourly.isna().sum())
    hourly = hourly.interpolate(method="time", limit=MAX_FILL_H, limit_area="inside")
    if hourly.isna().any():
        hole = hourly.index[hourly.isna()][0]
        raise DataError(f"{p}: {VALUE_COLUMN} missing from {hole} for more than {MAX_FILL_H} h")
    note = f"{p} ({missing} missing hours interpolated)" if missing else str(p)
    return Intensity(hourly, note, missing)


@dataclass(frozen=True, slots=True)
class Contract:
    """A contractual instrument: a share of consumption at an emission factor (gCO2/kWh)."""

    name: str
    share: float
    g_per_kwh: float = 0.0


@dataclass(frozen=True, slots=True)
class MarketFactor:
    """The market-based factor of a period and how it was built."""

    g_per_kwh: float
    note: str


def market_factor(
    contracts: Sequence[Contract], residual_mix_g_per_kwh: float | None, grid_average_g_per_kwh: float | None
) -> MarketFactor | None:
    """Σ share_k · f_k + (1 − Σ share_k) · residual mix; None when neither a residual mix nor a grid average exists."""
    covered = sum(c.share for c in contracts)
    contracted = sum(c.share * c.g_per_kwh for c in contracts)
    parts = [f"{c.name} {100 * c.share:.4g} % at {c.g_per_kwh:.4g} g/kWh" for c in contracts]
    rest = max(1.0 - covered, 0.0)
    if rest <= 1e-12:
        return MarketFactor(contracted, "; ".join(parts) or "fully contracted")
    if residual_mix_g_per_kwh is not None:
        factor, how = residual_mix_g_per_kwh, "residual mix"
    elif grid_average_g_per_kwh is not None:
        factor, how = grid_average_g_per_kwh, "grid average of the period (no residual mix configured)"
    else:
        return None
    parts.append(f"remaining {100 * rest:.4g} % at {factor:.4g} g/kWh ({how})")
    return MarketFactor(contracted + rest * factor, "; ".join(parts))


def location_kg(energy_kwh: np.ndarray, g_per_kwh: np.ndarray) -> float:
    """Location-based emissions (kg): Σ_h E_h · CI_h over aligned hourly arrays."""
    return float(np.dot(np.asarray(energy_kwh, dtype=np.float64), np.asarray(g_per_kwh, dtype=np.float64))) / 1000.0


def flat_kg(energy_kwh: np.ndarray, annual_mean_g_per_kwh: float) -> float:
    """Emissions (kg) at one flat factor, for comparison with the hourly method."""
    return float(np.sum(energy_kwh)) * annual_mean_g_per_kwh / 1000.0
