"""Counter arithmetic behind PUE: wraps, resets, gaps, boundaries and quality, with hand-computed energies."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from aidc.model import Quality
from analytics.energy.counters import counter_energy, interval_energy

T0 = pd.Timestamp("2026-06-01T00:00Z")
H = pd.Timedelta("1h")


def frame(hours: list[float], values: list[float], quality: list[int] | None = None) -> pd.DataFrame:
    """Readings at ``T0 + hours`` with the given values."""
    return pd.DataFrame(
        {
            "ts": [T0 + h * H for h in hours],
            "value": values,
            "quality": quality if quality is not None else [0] * len(values),
        }
    )


@pytest.mark.parametrize(
    ("hours", "values", "modulus", "end_h", "energy", "estimated", "coverage", "wraps", "resets"),
    [
        # plain counter: 0 -> 30 over three hours
        ([0, 1, 2, 3], [0, 10, 20, 30], None, 3, 30.0, 0.0, 1.0, 0, 0),
        # wrap at 100: 5 + (100 - 95 + 3) + 5 = 18
        ([0, 1, 2, 3], [90, 95, 3, 8], 100.0, 3, 18.0, 0.0, 1.0, 1, 0),
        # reset to 4 in hour 3: neighbour rate 10/h over 1 h beats the 4 seen, so 10+10+10+10 = 40, 10 estimated
        ([0, 1, 2, 3, 4], [100, 110, 120, 4, 14], None, 4, 40.0, 10.0, 1.0, 0, 1),
        # 6 h gap inside the period: the counter bridges it exactly (110), 2 of 8 h covered
        ([0, 1, 7, 8], [0, 10, 100, 110], None, 8, 110.0, 0.0, 0.25, 0, 0),
        # gap straddling the end at 4 h: 10 + 90 * 3/6 = 55, the 45 split off the gap is estimated
        ([0, 1, 7], [0, 10, 100], None, 4, 55.0, 45.0, 0.25, 0, 0),
    ],
)
def test_counter_energy_rules(
    hours: list[float],
    values: list[float],
    modulus: float | None,
    end_h: float,
    energy: float,
    estimated: float,
    coverage: float,
    wraps: int,
    resets: int,
) -> None:
    """Energy, estimated share, coverage, wraps and resets follow the documented counter rules."""
    e = counter_energy(frame(hours, values), T0, T0 + end_h * H, modulus=modulus, max_gap=pd.Timedelta("2h"))
    assert e.energy == pytest.approx(energy)
    assert e.estimated == pytest.approx(estimated)
    assert e.coverage == pytest.approx(coverage)
    assert (e.wraps, e.resets) == (wraps, resets)


def test_edges_outside_readings_are_extrapolated_and_estimated() -> None:
    """Period edges the readings do not reach are filled at the mean power seen and marked estimated."""
    e = counter_energy(frame([1, 2, 3], [0, 10, 20]), T0, T0 + 4 * H, max_gap=pd.Timedelta("2h"))
    assert e.energy == pytest.approx(40.0)
    assert e.estimated == pytest.approx(20.0)
    assert e.coverage == pytest.approx(0.5)
    assert e.gaps == ((T0, T0 + H), (T0 + 3 * H, T0 + 4 * H))


def test_bad_quality_readings_are_ignored() -> None:
    """A reading flagged bad (here a spike to 999) does not count; the counter difference around it does."""
    q = [0, 0, int(Quality.BAD), 0]
    e = counter_energy(frame([0, 1, 2, 3], [0, 10, 999, 30], q), T0, T0 + 3 * H, max_gap=pd.Timedelta("2h"))
    assert e.energy == pytest.approx(30.0)
    assert e.coverage == pytest.approx(1.0)


def test_scale_converts_wh_to_kwh() -> None:
    """The scale factor converts counter units (Wh) to kWh, modulus stays in raw units."""
    e = counter_energy(
        frame([0, 1], [950.0, 400.0]), T0, T0 + H, modulus=1000.0, scale=0.001, max_gap=pd.Timedelta("2h")
    )
    assert e.energy == pytest.approx(0.45)  # 1000 - 950 + 400 Wh


def test_interval_energy_splits_by_constant_power() -> None:
    """Hourly split of a 2-hourly counter divides each interval's energy in proportion to time."""
    edges = pd.date_range(T0, T0 + 4 * H, freq="h")
    out = interval_energy(frame([0, 2, 4], [0, 20, 60]), edges)
    np.testing.assert_allclose(out, [10.0, 10.0, 20.0, 20.0])


def test_single_reading_gives_zero_coverage() -> None:
    """With fewer than two readings nothing is measured and coverage is zero."""
    e = counter_energy(frame([1], [5.0]), T0, T0 + 2 * H)
    assert (e.energy, e.coverage) == (0.0, 0.0)
