"""How the pages write values: the site's time zone, engineering units with sensible decimals, states for flags.

One place decides that a rack's power reads ``121.4 kW`` (not ``121437.52 W``), a leak flag reads ``dry`` (not
``0.00``), a temperature has one decimal and a timestamp on an axis is wall-clock time at the site (UTC on hover and
in exports). Every page uses these helpers, so the same quantity reads the same everywhere: the device tables and
trends (:func:`number`, :func:`cell`, :func:`axis_range`), the Control page's sentences (:func:`num`,
:func:`local_time`) and the operations pages' figures (:func:`power_text`, :func:`energy_text`, :func:`site_time`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

# Units shown in a larger unit (value × scale): operators read rack and pump power in kW, energy in kWh.
DISPLAY_UNIT: dict[str, tuple[str, float]] = {"W": ("kW", 1e-3), "Wh": ("kWh", 1e-3)}
# Decimals per displayed unit: what the sensor resolves and an operator acts on.
DECIMALS: dict[str, int] = {
    "°C": 1,
    "K": 1,
    "kW": 1,
    "kWh": 0,
    "MW": 2,
    "L/min": 0,
    "kPa": 1,
    "%": 0,
    "V": 0,
    "A": 1,
    "ms": 0,
    "s": 0,
    "min": 0,
    "Hz": 2,
    "": 2,  # ratios (COP, power factor)
}
# Field-name suffixes and their units (units live in names: ``tcs_supply_temp_c``, ``pump_power_w``).
SUFFIX_UNITS: dict[str, str] = {
    "_c": "°C",
    "_k": "K",
    "_lpm": "L/min",
    "_kpa": "kPa",
    "_pct": "%",
    "_w": "W",
    "_kw": "kW",
    "_ms": "ms",
    "_s": "s",
    "_v": "V",
    "_a": "A",
    "_wh": "Wh",
    "_kwh": "kWh",
    "_minutes": "min",
}
# Flags as words: (word when 0, word when set). A generic flag reads off/on.
FLAG_WORDS: dict[str, tuple[str, str]] = {
    "leak_detected": ("dry", "leak"),
    "alarm_leak": ("ok", "leak"),
    "fallback_active": ("remote", "local fallback"),
    "condensation_risk": ("ok", "risk"),
    "dp_setpoint_not_reached": ("reached", "not reached"),
    "fws_above_class": ("within class", "above class"),
    "on_battery": ("mains", "on battery"),
    "up": ("down", "up"),
}
FREE_COOLING_STATES = {0: "mechanical (chiller only)", 1: "partial free cooling", 2: "full free cooling"}
# The CDU alarm word's bits (simulators and the Vertiv XDU profile: docs/physics.md, "Racks and CDUs").
CDU_ALARM_BITS = ("high temperature", "leak", "pump fault", "heartbeat lost", "condensation risk", "dp not reached")
# The smallest y-axis span per displayed unit: absolute, and as a share of the largest value. Sensor noise of
# 0.05 K on a 2 K axis reads as noise; on an autoscaled ±0.04 K axis it reads as a swing.
MIN_SPAN: dict[str, tuple[float, float]] = {
    "°C": (2.0, 0.0),
    "K": (2.0, 0.0),
    "kW": (1.0, 0.05),
    "W": (10.0, 0.05),
    "MW": (0.01, 0.05),
    "L/min": (5.0, 0.05),
    "kPa": (5.0, 0.05),
    "%": (5.0, 0.0),
    "": (0.02, 0.02),
}


@functools.lru_cache(maxsize=4096)  # a 1,000-rack cooling table asks for the same dozen names every second
def unit_of(name: str) -> str:
    """The unit a field name carries in its suffix (``pump_power_w`` -> ``W``), or ``""``."""
    for suffix, unit in sorted(SUFFIX_UNITS.items(), key=lambda kv: -len(kv[0])):
        if name.endswith(suffix):
            return unit
    return ""


def display(value: float | None, unit: str) -> tuple[float | None, str]:
    """A value in the unit operators read it in (W -> kW, Wh -> kWh), and that unit."""
    shown, scale = DISPLAY_UNIT.get(unit, (unit, 1.0))
    return (None if value is None else value * scale), shown


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def number(value: float | None, unit: str, *, digits: int | None = None) -> str:
    """A value already in ``unit`` with the unit's decimals and thousands separators; an em dash where unknown."""
    if _missing(value):
        return "—"
    assert value is not None
    d = DECIMALS.get(unit, 1) if digits is None else digits
    if unit == "%" and digits is None and abs(value) < 10:
        d = 1  # a valve at 3.4 % is not "3 %"
    if round(value, d) == 0:
        value = 0.0  # no "-0.0"
    return f"{value:,.{d}f}"


def quantity(value: float | None, unit: str) -> str:
    """Value and unit for a table cell or a card: ``4.8 kW``, ``31.2 °C``, ``792 L/min``."""
    v, shown = display(value, unit)
    text = number(v, shown)
    return text if not shown or text == "—" else f"{text} {shown}"


def state_text(name: str, value: float | None, *, is_flag: bool = False) -> str | None:
    """The word for a state or flag point (``alarm_leak`` 0 -> ``ok``), or None when ``name`` is a plain quantity."""
    if name == "free_cooling_state":
        return "—" if _missing(value) else FREE_COOLING_STATES.get(int(value or 0), f"state {value:g}")
    if name == "alarm_word":
        if _missing(value):
            return "—"
        bits = [label for i, label in enumerate(CDU_ALARM_BITS) if int(value or 0) >> i & 1]
        return ", ".join(bits) if bits else "ok"
    words = FLAG_WORDS.get(name)
    if words is None and (is_flag or name.startswith("alarm_")):
        words = ("ok", "alarm") if name.startswith("alarm_") else ("off", "on")
    if words is None:
        return None
    return "—" if _missing(value) else words[1] if value else words[0]


def point_value(
    name: str, value: float | None, unit: str, *, is_flag: bool = False, is_count: bool = False
) -> tuple[str, str]:
    """One device point for a table: (text, unit shown); states as words with no unit, counts without decimals."""
    word = state_text(name, value, is_flag=is_flag)
    if word is not None:
        return word, ""
    v, shown = display(value, unit)
    return number(v, shown, digits=0 if is_count and not shown else None), shown


@functools.lru_cache(maxsize=4096)
def column_header(name: str) -> str:
    """A table header from a field name, in the displayed unit: ``pump_power_w`` -> ``pump power (kW)``."""
    unit = unit_of(name)
    if not unit:
        return name.replace("_", " ")
    base = name[: name.rfind("_")] if not name.endswith("_minutes") else name[: -len("_minutes")]
    return f"{base.replace('_', ' ')} ({display(None, unit)[1]})"


def cell(name: str, value: Any) -> str:
    """A table cell for column ``name``: the unit from the name's suffix, states as words, text as it is."""
    if isinstance(value, bool):
        value = float(value)
    if isinstance(value, int | float | np.floating | np.integer):
        word = state_text(name, float(value))
        if word is not None:
            return word
        v, shown = display(float(value), unit_of(name))
        return number(v, shown)
    return "—" if value is None else str(value)


# ---------------------------------------------------------------------------------------------------- time


def site_times(ts: Iterable[Any] | pd.Series | pd.DatetimeIndex, tz: str) -> pd.DatetimeIndex:
    """Timestamps (UTC or naive UTC) as wall-clock times at the site, rounded to the second, without zone.

    Plotly draws naive times as they are, so an axis of these reads site time; rounding keeps sub-second window
    starts (``20:46:59.9995``) off the ticks.
    """
    idx = pd.DatetimeIndex(
        pd.to_datetime(pd.Series(list(ts) if not isinstance(ts, pd.Series) else ts), utc=True, format="ISO8601")
    )
    return idx.round("s").tz_convert(tz).tz_localize(None)


def utc_labels(ts: Iterable[Any] | pd.Series | pd.DatetimeIndex) -> list[str]:
    """Timestamps as ``YYYY-MM-DD HH:MM:SS`` UTC strings (hover text and the exports' UTC column)."""
    idx = pd.DatetimeIndex(
        pd.to_datetime(pd.Series(list(ts) if not isinstance(ts, pd.Series) else ts), utc=True, format="ISO8601")
    )
    return [t.strftime("%Y-%m-%d %H:%M:%S") for t in idx.round("s")]


def site_label(ts: pd.Timestamp, tz: str, fmt: str = "%Y-%m-%d %H:%M:%S %Z") -> str:
    """One instant as site time with the zone's abbreviation (``2026-12-07 04:00:00 EST``)."""
    t = ts.tz_localize("UTC") if ts.tzinfo is None else ts
    return t.tz_convert(tz).strftime(fmt)


def zone_abbrev(tz: str, at: pd.Timestamp | None = None) -> str:
    """The site zone's short name at an instant (EST/EDT), or the IANA name where it has none."""
    t = pd.Timestamp.now(tz="UTC") if at is None else at
    name = (t.tz_localize("UTC") if t.tzinfo is None else t).tz_convert(tz).strftime("%Z")
    return name if name and not name.startswith(("+", "-")) else tz


# ---------------------------------------------------------------------------------------------------- axes


def axis_range(values: Iterable[float], unit: str) -> tuple[float, float] | None:
    """A y range around the data at least the unit's minimum span wide (None when there is no finite value)."""
    arr = np.asarray([v for v in values if v is not None], dtype=float)
    arr = arr[np.isfinite(arr)]
    if not len(arr):
        return None
    lo, hi = float(arr.min()), float(arr.max())
    absolute, rel = MIN_SPAN.get(unit, (0.0, 0.0))
    span = max(hi - lo, absolute, rel * max(abs(lo), abs(hi)))
    pad = 0.08 * span  # a margin so the extreme points are not on the frame
    mid = (lo + hi) / 2
    low, high = mid - span / 2 - pad, mid + span / 2 + pad
    if lo >= 0 > low and unit not in ("°C", "K"):  # powers, flows and shares are never negative
        low, high = 0.0, high - low
    return low, high


INTEGER_TYPES = frozenset({"INT16", "UINT16", "INT32", "UINT32", "INT64", "UINT64"})


def point_kinds(points: Iterable[Any]) -> Mapping[str, str]:
    """Point name -> "flag" (a BOOL point), "count" (an unscaled integer without unit: throttled GPUs, a heartbeat)
    or "" (a quantity), for :func:`point_value`."""
    out = {}
    for p in points:
        kind = str(p.type)
        flag = kind == "BOOL"
        count = kind in INTEGER_TYPES and p.scale == 1 and not p.unit
        out[p.name] = "flag" if flag else "count" if count else ""
    return out


# --- the Control page's sentences and the operations pages (Energy, Alarms, Power chain, Users) ----------------

# Decimals per unit in the Control page's sentences (:func:`num`): what a control-room reader can act on (sensor
# noise below these is not information).
UNIT_DIGITS = {"°C": 1, "K": 1, "kPa": 1, "kW": 1, "kWh": 0, "L/min": 0, "%": 0, "min": 0, "s": 0, "h": 1}


def num(value: object, unit: str = "", digits: int | None = None) -> str:
    """``value`` with the unit's sensible decimals and the unit (``32.0 °C``, ``1,234.5 kW``); ``—`` if unknown."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return "—"
    d = UNIT_DIGITS.get(unit, 1) if digits is None else digits
    text = f"{value:,.{d}f}"
    return f"{text} {unit}" if unit else text


def local_time(ts: object, tz: str, *, seconds: bool = True) -> str:
    """An ISO-8601 text, epoch seconds or nanoseconds as wall time in the site's zone (``2026-12-07 04:05:06 EST``)."""
    t = to_utc(ts)
    if t is None:
        return "—"
    return t.tz_convert(tz).strftime("%Y-%m-%d %H:%M:%S %Z" if seconds else "%Y-%m-%d %H:%M %Z")


def to_utc(ts: object) -> pd.Timestamp | None:
    """A UTC timestamp from ISO-8601 text, epoch seconds (below 1e12) or nanoseconds; None if unreadable."""
    try:
        if isinstance(ts, bool):
            return None
        if isinstance(ts, int | float):
            if not math.isfinite(ts) or ts <= 0:
                return None
            return pd.Timestamp(int(ts * 1e9) if ts < 1e12 else int(ts), unit="ns", tz="UTC")
        if isinstance(ts, str) and ts:
            t = pd.Timestamp(ts)
            return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
    except (ValueError, OverflowError):
        return None
    return None


def site_time(ts_ns: int | None, tz: str, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """A UTC time in ns as site time with the zone's abbreviation (``2026-12-07 04:15 EST``); an em dash if None."""
    if ts_ns is None:
        return "—"
    local = pd.Timestamp(int(ts_ns), unit="ns", tz="UTC").tz_convert(tz)
    return f"{local.strftime(fmt)} {local.tzname()}"


def power_text(kw: float | None) -> str:
    """A power in engineering units: ``850 kW``, ``1.25 MW``, ``12.4 kW`` (an em dash where unknown)."""
    if kw is None or not math.isfinite(kw):
        return "—"
    if abs(kw) >= 1000:
        return f"{kw / 1000:,.2f} MW"
    return f"{kw:,.1f} kW" if abs(kw) < 100 else f"{kw:,.0f} kW"


def energy_text(kwh: float | None) -> str:
    """An energy in engineering units: ``950 kWh``, ``12.3 MWh``."""
    if kwh is None or not math.isfinite(kwh):
        return "—"
    if abs(kwh) >= 1000:
        return f"{kwh / 1000:,.1f} MWh"
    return f"{kwh:,.0f} kWh"


def pct_text(x: float | None, digits: int = 0) -> str:
    """A share 0..1 as a percentage (``87 %``)."""
    if x is None or not math.isfinite(x):
        return "—"
    return f"{100 * x:.{digits}f} %"


def pue_text(x: float | None) -> str:
    """A PUE with three decimals (the resolution its meters support)."""
    if x is None or not math.isfinite(x):
        return "—"
    return f"{x:.3f}"
