"""The time range of a trend: a preset ("last 6 h") or a custom range of site days, bounded and windowed.

Every trend panel asks the historian for window aggregates; :func:`resolve` turns the panel's controls into start,
end and window so that a query never asks for more than ``MAX_WINDOWS`` windows per series nor spans more than
``MAX_SPAN`` (a year of 10-second windows for a whole hall would stall every page that shares the historian).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

# preset -> label; the windows keep a preset's panel at a few hundred points
PRESETS: dict[str, str] = {"15m": "15 min", "1h": "1 h", "6h": "6 h", "24h": "24 h", "7d": "7 days", "30d": "30 days"}
PRESET_WINDOW: dict[str, str] = {"15m": "10s", "1h": "1m", "6h": "5m", "24h": "15m", "7d": "1h", "30d": "3h"}
CUSTOM = "custom"
MAX_SPAN = pd.Timedelta(days=93)  # a quarter: the longest custom range one panel queries
MAX_WINDOWS = 1500  # windows per series in one query
WINDOWS = ("10s", "1m", "5m", "15m", "1h", "3h", "6h", "1d")


@dataclass(frozen=True, slots=True)
class TrendRange:
    """Start and end (UTC), the aggregation window, a cache key and a note when the request was cut."""

    start: pd.Timestamp
    end: pd.Timestamp
    window: str
    key: str
    note: str = ""


def window_for(span: pd.Timedelta) -> str:
    """The smallest window that keeps ``span`` within ``MAX_WINDOWS`` windows."""
    return next((w for w in WINDOWS if span / pd.Timedelta(w) <= MAX_WINDOWS), WINDOWS[-1])


def _day(text: object, what: str) -> pd.Timestamp:
    if not isinstance(text, str):
        raise ValueError(f"{what}: expected a date YYYY-MM-DD, got {type(text).__name__}")
    try:
        return pd.Timestamp(text[:10])
    except ValueError:
        raise ValueError(f"{what}: {text[:20]!r} is not a date YYYY-MM-DD") from None


def resolve(preset: object, start_date: object, end_date: object, *, now: pd.Timestamp, tz: str) -> TrendRange:
    """The range a panel's controls ask for: a preset ending now, or whole site days from start to end date.

    A custom range ends at the end of its last day or now, whichever is first, and is cut to ``MAX_SPAN`` (said in
    ``note``). Raises ValueError with one line for a value no control can send (a forged request).
    """
    if not isinstance(preset, str) or (preset not in PRESETS and preset != CUSTOM):
        raise ValueError(f"range: {str(preset)[:40]!r} is not one of {[*PRESETS, CUSTOM]}")
    if preset != CUSTOM:
        return TrendRange(now - pd.Timedelta(preset), now, PRESET_WINDOW[preset], preset)
    if start_date is None or end_date is None:
        raise ValueError("custom range: choose a start and an end date")
    first = _day(start_date, "start date").tz_localize(tz, ambiguous=True, nonexistent="shift_forward")
    last = _day(end_date, "end date").tz_localize(tz, ambiguous=True, nonexistent="shift_forward")
    if first > last:
        first, last = last, first
    start = first.tz_convert("UTC")
    end = min((last + pd.Timedelta(days=1)).tz_convert("UTC"), now)
    note = ""
    if end - start > MAX_SPAN:
        start = end - MAX_SPAN
        note = f"range cut to the last {MAX_SPAN.days} days of the choice"
    if end <= start:
        raise ValueError(f"custom range: {str(start_date)[:10]} is after the facility's clock")
    window = window_for(end - start)
    return TrendRange(start, end, window, f"{start.value}:{end.value}:{window}", note)


def describe(rng: TrendRange, tz: str) -> str:
    """A short caption: ``05 Dec 00:00 → 07 Dec 09:12 (America/New_York), 15-min windows``."""
    a, b = rng.start.tz_convert(tz), rng.end.tz_convert(tz)
    text = f"{a:%d %b %H:%M} → {b:%d %b %H:%M} ({tz}), {rng.window} windows"
    return f"{text}; {rng.note}" if rng.note else text
