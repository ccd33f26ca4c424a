"""Energy over a period from cumulative counter readings, the way ISO/IEC 30134-2 wants it (meters, not averages).

A counter reading is cumulative, so the energy between two readings is their difference even when the readings
in between are missing: a gap in the data is not a gap in the measurement. The rules, in order:

1. Readings with quality ``bad`` or no value are dropped.
2. A decrease larger than half the counter's modulus is a **wrap**: the increase is ``modulus - prev + cur``
   (at most one wrap per interval is assumed, which holds whenever readings are closer than the time a meter
   needs to count through its whole range).
3. Any other decrease is a **reset** (meter replaced or cleared). The counter only saw ``cur`` since the reset; the
   energy of the interval is estimated as ``max(cur, rate x dt)``, where ``rate`` is the mean of the neighbouring
   normal intervals' power. The whole interval's energy is marked *estimated*.
4. An interval longer than ``max_gap`` is a **gap**. Its energy is still the counter difference (exact), but the
   time it spans counts as not covered. Where a gap (or any interval) straddles a period boundary its energy is
   split in proportion to time (constant power); the share of a gap so split is marked *estimated*.
5. Before the first or after the last reading the period is not covered; the energy there is extrapolated at the
   mean power of the readings available and marked *estimated*.

Coverage is the fraction of the period's time spanned by intervals no longer than ``max_gap``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pandas as pd

from aidc.model import Quality

NS_PER_H = 3_600_000_000_000
# Readings further apart than this leave the time between them uncovered (3 missed polls at 5 min).
DEFAULT_MAX_GAP = pd.Timedelta("15min")


@dataclass(frozen=True, slots=True)
class CounterEnergy:
    """Energy of one counter (or a sum of counters) over one period."""

    energy: float  # engineering units of the counter (kWh after unit conversion)
    estimated: float  # the part obtained by a fill rule, included in ``energy``
    coverage: float  # 0..1 share of the period's time with readings no further apart than max_gap
    wraps: int = 0
    resets: int = 0
    gaps: tuple[tuple[pd.Timestamp, pd.Timestamp], ...] = field(default_factory=tuple)

    def __add__(self, other: CounterEnergy) -> CounterEnergy:
        """Sum of two meters over the same period (coverage is the worse of the two)."""
        return CounterEnergy(
            self.energy + other.energy,
            self.estimated + other.estimated,
            min(self.coverage, other.coverage),
            self.wraps + other.wraps,
            self.resets + other.resets,
            self.gaps + other.gaps,
        )


def clean_readings(frame: pd.DataFrame) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Sorted (ts ns, value) of usable readings: quality not bad and value present."""
    ok = frame["value"].notna()
    if "quality" in frame.columns:
        ok &= frame["quality"].astype(int) < int(Quality.BAD)
    sub = frame.loc[ok, ["ts", "value"]].sort_values("ts", kind="stable")
    ts = pd.DatetimeIndex(pd.to_datetime(sub["ts"], utc=True)).as_unit("ns").asi8.astype(np.int64)
    return ts, sub["value"].to_numpy(dtype=np.float64)


def increments(
    values: npt.NDArray[np.float64], dt_ns: npt.NDArray[np.int64], modulus: float | None
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Per-interval increase with wraps unwrapped and resets estimated; returns (increase, wrapped, reset)."""
    d = np.diff(values)
    neg = d < 0
    wrapped = neg & (modulus is not None) & (-d > (modulus or 0.0) / 2)
    reset = neg & ~wrapped
    inc = np.where(wrapped, d + (modulus or 0.0), d)
    if reset.any():
        normal_rate = np.where(~reset & (dt_ns > 0), inc / np.maximum(dt_ns, 1), np.nan)
        for i in (int(k) for k in np.flatnonzero(reset)):
            neighbours = [r for r in (_nearest(normal_rate, i, -1), _nearest(normal_rate, i, 1)) if r is not None]
            rate = float(np.mean(neighbours)) if neighbours else 0.0
            inc[i] = max(float(values[i + 1]), rate * float(dt_ns[i]))
    return inc, wrapped, reset


def _nearest(rates: npt.NDArray[np.float64], i: int, step: int) -> float | None:
    j = i + step
    while 0 <= j < len(rates):
        if not np.isnan(rates[j]):
            return float(rates[j])
        j += step
    return None


def counter_energy(
    frame: pd.DataFrame,
    start: pd.Timestamp,
    end: pd.Timestamp,
    *,
    modulus: float | None = None,
    max_gap: pd.Timedelta = DEFAULT_MAX_GAP,
    scale: float = 1.0,
) -> CounterEnergy:
    """Energy in ``[start, end)`` from one counter's readings (columns ts, value, optional quality), times ``scale``."""
    ts, v = clean_readings(frame)
    return series_energy(ts, v, pd.Timestamp(start), pd.Timestamp(end), modulus=modulus, max_gap=max_gap, scale=scale)


def interval_energy(
    frame: pd.DataFrame,
    edges: pd.DatetimeIndex,
    *,
    modulus: float | None = None,
    scale: float = 1.0,
) -> npt.NDArray[np.float64]:
    """Energy per interval between consecutive ``edges`` (same rules, vectorised; for CUE and hourly splits)."""
    ts, v = clean_readings(frame)
    return series_intervals(ts, v, edges, modulus=modulus, scale=scale)


def series_energy(
    ts: npt.NDArray[np.int64],
    v: npt.NDArray[np.float64],
    start: pd.Timestamp,
    end: pd.Timestamp,
    *,
    modulus: float | None = None,
    max_gap: pd.Timedelta | npt.NDArray[np.int64] = DEFAULT_MAX_GAP,
    scale: float = 1.0,
) -> CounterEnergy:
    """Energy in ``[start, end)`` from a counter's cleaned, sorted readings (see clean_readings), times ``scale``;
    ``max_gap`` may also give each interval its own limit in ns (readings from coarser rollups)."""
    s_ns, e_ns = int(start.value), int(end.value)
    period_ns = e_ns - s_ns
    if period_ns <= 0:
        raise ValueError(f"empty period {start} .. {end}")
    if len(ts) < 2:
        return CounterEnergy(0.0, 0.0, 0.0, gaps=((pd.Timestamp(start), pd.Timestamp(end)),))
    dt = np.diff(ts)
    inc, wrapped, reset = increments(v, dt, modulus)
    is_gap = dt > (max_gap if isinstance(max_gap, np.ndarray) else int(pd.Timedelta(max_gap).value))
    lo = np.maximum(ts[:-1], s_ns)
    hi = np.minimum(ts[1:], e_ns)
    overlap = np.clip(hi - lo, 0, None).astype(np.float64)
    frac = np.divide(overlap, dt, out=np.zeros_like(overlap), where=dt > 0)
    share = inc * frac
    est_mask = reset | (is_gap & (frac < 1.0))
    energy = float(share.sum())
    estimated = float(share[est_mask].sum())
    covered = float(overlap[~is_gap].sum())
    gaps = [(_ts(lo[i]), _ts(hi[i])) for i in np.flatnonzero(is_gap & (overlap > 0))]
    span = ts[-1] - ts[0]
    rate = float(inc.sum()) / span if span > 0 else 0.0
    for a, b in ((s_ns, min(ts[0], e_ns)), (max(ts[-1], s_ns), e_ns)):
        if b > a:
            extra = rate * (b - a)
            energy += extra
            estimated += extra
            gaps.append((_ts(a), _ts(b)))
    return CounterEnergy(
        energy * scale,
        estimated * scale,
        covered / period_ns,
        int((wrapped & (overlap > 0)).sum()),
        int((reset & (overlap > 0)).sum()),
        tuple(sorted(gaps)),
    )


def series_intervals(
    ts: npt.NDArray[np.int64],
    v: npt.NDArray[np.float64],
    edges: pd.DatetimeIndex,
    *,
    modulus: float | None = None,
    scale: float = 1.0,
) -> npt.NDArray[np.float64]:
    """Energy per interval between consecutive ``edges`` from cleaned, sorted readings (same rules, vectorised)."""
    out = np.zeros(max(len(edges) - 1, 0))
    if len(ts) < 2 or len(edges) < 2:
        return out
    inc, _, _ = increments(v, np.diff(ts), modulus)
    cum = np.concatenate([[0.0], np.cumsum(inc)])
    e_ns = edges.as_unit("ns").asi8.astype(np.float64)
    rate = cum[-1] / (ts[-1] - ts[0])
    c = np.interp(e_ns, ts.astype(np.float64), cum)
    c = np.where(e_ns < ts[0], (e_ns - ts[0]) * rate, c)
    c = np.where(e_ns > ts[-1], cum[-1] + (e_ns - ts[-1]) * rate, c)
    return np.diff(c) * scale


def _ts(ns: int | np.integer) -> pd.Timestamp:
    return pd.Timestamp(int(ns), unit="ns", tz="UTC")
