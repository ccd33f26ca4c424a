"""Grid carbon: the intensity reader on the real PJM series, hourly vs flat factors, market-based factors."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aidc.errors import DataError
from analytics.energy.carbon import Contract, flat_kg, load_intensity, location_kg, market_factor

DATA = Path(__file__).resolve().parents[1] / "data" / "carbon"
PJM = DATA / "PJM_hourly_2022.csv.gz"


def _raw_pjm() -> list[tuple[str, float]]:
    """The PJM file read with the csv module alone; its few empty hours filled linearly between their neighbours."""
    with gzip.open(PJM, "rt", encoding="utf-8") as f:
        rows = [(row["timestamp"], row["avg_CI"]) for row in csv.DictReader(f)]
    known = [i for i, (_, v) in enumerate(rows) if v]
    out = []
    for i, (ts, v) in enumerate(rows):
        if v:
            out.append((ts, float(v)))
            continue
        lo = max(k for k in known if k < i)
        hi = min(k for k in known if k > i)
        a, b = float(rows[lo][1]), float(rows[hi][1])
        out.append((ts, a + (b - a) * (i - lo) / (hi - lo)))
    return out


def test_reader_real_pjm_series() -> None:
    """The reader returns every hour of 2022 in UTC with the file's values."""
    raw = _raw_pjm()
    ci = load_intensity(PJM).g_per_kwh
    assert len(ci) == len(raw) == 8760
    assert ci.index[0] == pd.Timestamp("2022-01-01T00:00Z")
    assert ci.iloc[0] == pytest.approx(raw[0][1])
    assert float(ci.mean()) == pytest.approx(sum(v for _, v in raw) / len(raw))
    assert load_intensity(PJM).filled_hours == 23, "the 23 hours EIA-930 left empty are interpolated and counted"


def test_pjm_day_night_load_against_flat_factor() -> None:
    """Hourly location-based carbon differs from the flat annual factor by ΔL·(Σ_day CI − N_day·mean CI)."""
    raw = _raw_pjm()
    ci = load_intensity(PJM).g_per_kwh
    local_hour = ci.index.tz_convert("America/New_York").hour
    day = (local_hour >= 8) & (local_hour < 20)
    # 60 kW always, 120 kW during the local working day: one hour's energy in kWh equals its kW.
    load = np.where(day, 120.0, 60.0)
    hourly = location_kg(load, ci.to_numpy())
    mean = sum(v for _, v in raw) / len(raw)
    flat = flat_kg(load, mean)
    # By hand: the 60 kW base load carries the annual mean either way; only the extra 60 kW of day hours differs.
    day_values = [v for (_, v), d in zip(raw, day, strict=True) if d]
    expected = 60.0 * (sum(day_values) - len(day_values) * mean) / 1000.0
    assert hourly - flat == pytest.approx(expected, rel=1e-9)
    assert expected > 100.0, "PJM day hours run above the annual mean, so a flat factor under-reports a day load"


def test_typical_year_applied_by_hour_of_year() -> None:
    """A 2022 series applied to 2026 takes the same month, day and hour, and says so."""
    intensity = load_intensity(PJM)
    values, note = intensity.hourly(pd.Timestamp("2026-10-01T00:00Z"), pd.Timestamp("2026-10-02T00:00Z"))
    assert len(values) == 24
    src = intensity.g_per_kwh
    assert values.iloc[5] == pytest.approx(src[pd.Timestamp("2022-10-01T05:00Z")])
    assert "hour of year" in note
    leap, _ = intensity.hourly(pd.Timestamp("2028-02-29T00:00Z"), pd.Timestamp("2028-02-29T02:00Z"))
    assert leap.iloc[1] == pytest.approx(src[pd.Timestamp("2022-02-28T01:00Z")])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("time,avg_CI\n2022-01-01T00:00Z,300\n", "no column 'timestamp'"),
        ("timestamp,CI\n2022-01-01T00:00Z,300\n", "no column 'avg_CI'"),
        ("timestamp,avg_CI\n2022-01-01T00:00Z,300\n2022-01-01T01:00Z,-5\n", "line 3: avg_CI '-5'"),
        ("timestamp,avg_CI\n2022-01-01T00:00Z,300\nyesterday,310\n", "line 3: timestamp 'yesterday'"),
    ],
)
def test_bad_intensity_file_names_field(tmp_path: Path, text: str, message: str) -> None:
    """A malformed intensity file is one DataError naming the file, line and field."""
    p = tmp_path / "ci.csv"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=message) as err:
        load_intensity(p)
    assert str(p) in str(err.value)


def test_short_series_not_covering_period_is_refused(tmp_path: Path) -> None:
    """A series that neither covers the period nor is a whole year is refused rather than stretched."""
    p = tmp_path / "ci.csv"
    p.write_text("timestamp,avg_CI\n2022-01-01T00:00Z,300\n2022-01-01T01:00Z,310\n", encoding="utf-8")
    with pytest.raises(DataError, match="not the period"):
        load_intensity(p).hourly(pd.Timestamp("2026-01-01T00:00Z"), pd.Timestamp("2026-01-02T00:00Z"))


def test_market_factor_contracts_and_residual() -> None:
    """Market-based factor: contracted shares at their factors, the rest at the residual mix or the grid average."""
    wind = Contract("wind PPA", 0.4, 0.0)
    tariff = Contract("green tariff", 0.1, 50.0)
    f = market_factor([wind, tariff], 480.0, 350.0)
    assert f is not None
    assert f.g_per_kwh == pytest.approx(0.1 * 50.0 + 0.5 * 480.0)
    g = market_factor([wind], None, 350.0)
    assert g is not None
    assert g.g_per_kwh == pytest.approx(0.6 * 350.0)
    assert "grid average" in g.note
    assert market_factor([], None, None) is None
    full = market_factor([Contract("all", 1.0, 10.0)], None, None)
    assert full is not None
    assert full.g_per_kwh == pytest.approx(10.0)
