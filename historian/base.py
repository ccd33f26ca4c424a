"""The one historian interface every package uses, its series selector and the shape of query results.

Query results are long pandas frames: ``ts`` (datetime64[ns, UTC]), ``series`` (canonical series id),
``value`` (float64, NaN where missing) and ``quality`` (uint8: the sample's quality for raw rows, the worst
quality in the window for aggregated rows). Windows are aligned to the Unix epoch, labelled by their start,
and clipped to the query range ``[start, end)``; aggregates ignore missing values.
"""

from __future__ import annotations

import abc
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from typing import Literal, get_args

import numpy as np
import pandas as pd

from aidc.errors import ConfigError
from aidc.model import Batch, SeriesKey

Agg = Literal["mean", "min", "max", "last", "sum", "count"]
AGGS: tuple[str, ...] = get_args(Agg)
TimeLike = datetime | pd.Timestamp | int | str
NS = 1_000_000_000
_UNITS_NS = {"ms": 1_000_000, "s": NS, "m": 60 * NS, "h": 3600 * NS, "d": 86400 * NS}
_WINDOW_RE = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d)\s*$")
QUALITY_SUFFIX = "_quality"
RESULT_COLUMNS = ["ts", "series", "value", "quality"]


def parse_window(window: str | timedelta | int) -> int:
    """A window as ns: ``"1m"``, ``"15s"``, ``"1h"``, a timedelta or ns; raises ConfigError naming the value."""
    if isinstance(window, timedelta):
        ns = int(window.total_seconds() * NS)
    elif isinstance(window, int):
        ns = window
    else:
        m = _WINDOW_RE.match(window)
        if not m:
            raise ConfigError(f"window {window!r}: expected a number and a unit (ms, s, m, h, d), e.g. '1m'")
        ns = int(m.group(1)) * _UNITS_NS[m.group(2)]
    if ns <= 0:
        raise ConfigError(f"window {window!r}: must be positive")
    return ns


def to_ns(t: TimeLike) -> int:
    """UTC ns since the epoch from an aware datetime, an ISO string or ns; naive times are refused."""
    if isinstance(t, int | np.integer):
        return int(t)
    ts = pd.Timestamp(t)
    if ts.tzinfo is None:
        raise ConfigError(f"time {t!r}: give a timezone (e.g. '2025-01-01T00:00Z'); aidc stores UTC")
    return int(ts.tz_convert("UTC").value)


def check_agg(agg: str) -> None:
    """Raise ConfigError unless ``agg`` is one of :data:`AGGS`."""
    if agg not in AGGS:
        raise ConfigError(f"aggregation {agg!r}: expected one of {', '.join(AGGS)}")


@dataclass(frozen=True, slots=True)
class SeriesSelector:
    """Which series a query reads: measurement, tag constraints and field, each exact or a ``*``/``?`` glob.

    Tags not named are unconstrained; ``field=None`` means every field.
    """

    measurement: str
    tags: dict[str, str] = field(default_factory=dict)
    field: str | None = None

    @classmethod
    def parse(cls, text: str) -> SeriesSelector:
        """Parse ``pdu,rack=r03-*,active_power_w``, ``pdu,*,active_power_w`` or ``pdu,rack=r03 active_power_w``."""
        text = text.strip()
        if not text:
            raise ConfigError("series selector is empty; expected e.g. 'pdu,rack=r03-*,active_power_w'")
        head, _, fld = text.partition(" ")
        parts = [p for p in head.split(",") if p]
        fld = fld.strip()
        if not fld and len(parts) >= 2 and "=" not in parts[-1] and parts[-1] != "*":
            fld = parts.pop()
        tags: dict[str, str] = {}
        for item in parts[1:]:
            if item == "*":
                continue
            k, sep, v = item.partition("=")
            if not sep or not k or not v:
                raise ConfigError(f"series selector {text!r}: bad tag {item!r}, expected key=value")
            tags[k] = v
        return cls(parts[0], tags, fld or None)

    def matches_key(self, key: SeriesKey) -> bool:
        """True when ``key`` satisfies every part of the selector."""
        if not fnmatchcase(key.measurement, self.measurement):
            return False
        if self.field is not None and not fnmatchcase(key.field, self.field):
            return False
        tags = key.tag_dict
        return all(k in tags and fnmatchcase(tags[k], pat) for k, pat in self.tags.items())

    def matches(self, series_id: str) -> bool:
        """True when the series id satisfies the selector."""
        return self.matches_key(SeriesKey.parse(series_id))

    def with_field(self, fld: str | None) -> SeriesSelector:
        """Same measurement and tags, another field pattern."""
        return SeriesSelector(self.measurement, dict(self.tags), fld)

    def __str__(self) -> str:
        tags = "".join(f",{k}={v}" for k, v in sorted(self.tags.items()))
        return f"{self.measurement}{tags} {self.field or '*'}"


def is_glob(pattern: str) -> bool:
    """True when the pattern has glob characters (``*``, ``?``, ``[...]``)."""
    return any(c in pattern for c in "*?[")


def glob_to_regex(pattern: str) -> str:
    """The body of an anchored RE2/Go regex equivalent to an fnmatch glob (``*``, ``?``, ``[...]``, ``[!...]``)."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        close = pattern.find("]", i + 2) if c == "[" else -1
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[" and close != -1:
            body = pattern[i + 1 : close]
            neg = body.startswith("!")
            body = body[1:] if neg else body
            out.append("[" + ("^" if neg else "") + body.replace("\\", "\\\\") + "]")
            i = close
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def empty_result() -> pd.DataFrame:
    """A query result with no rows and the right dtypes."""
    return pd.DataFrame(
        {
            "ts": pd.Series([], dtype="datetime64[ns, UTC]"),
            "series": pd.Series([], dtype=object),
            "value": pd.Series([], dtype="float64"),
            "quality": pd.Series([], dtype="uint8"),
        }
    )


def make_result(series: object, ts_ns: object, values: object, quality: object = None) -> pd.DataFrame:
    """Assemble a result frame sorted by series then time."""
    ts = np.asarray(ts_ns, dtype=np.int64)
    q = np.zeros(len(ts), dtype=np.uint8) if quality is None else np.asarray(quality, dtype=np.uint8)
    df = pd.DataFrame(
        {
            "ts": pd.to_datetime(ts, unit="ns", utc=True),
            "series": np.asarray(series, dtype=object),
            "value": np.asarray(values, dtype=np.float64),
            "quality": q,
        }
    )
    return df.sort_values(["series", "ts"], kind="stable").reset_index(drop=True)


def ts_ns_of(column: pd.Series) -> np.ndarray:
    """Int64 ns since the epoch from a UTC datetime column."""
    return np.asarray(pd.DatetimeIndex(column).asi8, dtype=np.int64)


def counter_deltas_from_raw(raw: pd.DataFrame, start_ns: int, interval_ns: int, wrap: float | None) -> pd.DataFrame:
    """Per-interval increase of counters from raw samples, wrap-aware.

    A decrease by more than half of ``wrap`` is a wrap (the increase is ``wrap - prev + cur``); any other
    decrease is a reset (the increase is the new value, counted from zero) and is flagged. Each increase is
    credited to the interval of the later sample. Columns: ts, series, delta, wraps, resets, samples.
    """
    cols = ["ts", "series", "delta", "wraps", "resets", "samples"]
    raw = raw[raw["value"].notna()]
    if raw.empty:
        return pd.DataFrame({c: [] for c in cols})
    raw = raw.sort_values(["series", "ts"], kind="stable")
    same = raw["series"].to_numpy() == np.roll(raw["series"].to_numpy(), 1)
    same[0] = False
    v = raw["value"].to_numpy(dtype=np.float64)
    prev = np.roll(v, 1)
    d = np.where(same, v - prev, 0.0)
    neg = same & (d < 0)
    is_wrap = neg & (wrap is not None) & (-d > (wrap or 0.0) / 2)
    is_reset = neg & ~is_wrap
    if wrap is not None:
        d = np.where(is_wrap, d + wrap, d)
    d = np.where(is_reset, v, d)
    ts_ns = ts_ns_of(raw["ts"])
    bucket = start_ns + (ts_ns - start_ns) // interval_ns * interval_ns
    frame = pd.DataFrame(
        {"series": raw["series"].to_numpy(), "b": bucket, "delta": d, "wraps": is_wrap, "resets": is_reset}
    )
    out = frame.groupby(["series", "b"], sort=True).agg(
        delta=("delta", "sum"), wraps=("wraps", "sum"), resets=("resets", "sum"), samples=("delta", "size")
    )
    out = out.reset_index()
    out["ts"] = pd.to_datetime(out["b"].to_numpy(), unit="ns", utc=True)
    return out[cols]


@dataclass(frozen=True, slots=True)
class RawArrays:
    """Raw samples as arrays, for readers of millions of rows: ``names`` sorted, and per row the index of its
    series in ``names`` (``codes``), ts ns, value and quality; rows ordered by series, then time (stably), as
    :meth:`Historian.query` orders them."""

    names: list[str]
    codes: np.ndarray
    ts_ns: np.ndarray
    values: np.ndarray
    quality: np.ndarray

    @classmethod
    def from_frame(cls, df: pd.DataFrame) -> RawArrays:
        """The arrays of a query result frame (sorted by series, then time)."""
        if df.empty:
            return cls([], np.zeros(0, np.intp), np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.uint8))
        df = df.sort_values(["series", "ts"], kind="stable")
        codes, uniques = pd.factorize(df["series"].to_numpy(dtype=object), sort=True)
        return cls(
            [str(u) for u in uniques],
            codes.astype(np.intp),
            np.asarray(pd.DatetimeIndex(df["ts"]).as_unit("ns").asi8, dtype=np.int64),
            df["value"].to_numpy(dtype=np.float64),
            df["quality"].to_numpy(dtype=np.uint8),
        )


class Historian(abc.ABC):
    """Store and read telemetry. Writes come from one writer task; reads may come from other threads."""

    backend: str = "?"

    @abc.abstractmethod
    def write(self, batch: Batch) -> None:
        """Store a columnar batch; returns once it is stored or durably spooled."""

    def write_once(self, batch: Batch, seq: int) -> bool:
        """Store a batch the writer may hand over again after a failed write, tagged with its sequence number ``seq``;
        False when the store already holds it. A store that cannot tell (or overwrites equal points) just writes."""
        self.write(batch)
        return True

    @abc.abstractmethod
    def query(
        self,
        selector: SeriesSelector,
        start: TimeLike,
        end: TimeLike,
        window: str | timedelta | int | None = None,
        agg: Agg | None = None,
    ) -> pd.DataFrame:
        """Samples in ``[start, end)``, raw or aggregated per epoch-aligned window (agg defaults to mean)."""

    def query_arrays(self, selector: SeriesSelector, start: TimeLike, end: TimeLike) -> RawArrays:
        """Raw samples in ``[start, end)`` as arrays: the rows of ``query`` without building a frame (a backend
        may override it to skip the per-row series strings and datetimes)."""
        return RawArrays.from_frame(self.query(selector, start, end))

    @abc.abstractmethod
    def latest(self, selector: SeriesSelector) -> pd.DataFrame:
        """The most recent sample of each matching series."""

    def counter_deltas(
        self,
        selector: SeriesSelector,
        start: TimeLike,
        end: TimeLike,
        interval: str | timedelta | int,
        wrap: float | None = None,
    ) -> pd.DataFrame:
        """Energy (or any counter) increase per interval from ``start``; see :func:`counter_deltas_from_raw`."""
        raw = self.query(selector, start, end)
        return counter_deltas_from_raw(raw, to_ns(start), parse_window(interval), wrap)

    def stats_batch(self, now_ns: int) -> Batch:
        """The historian's own health series (spool depth, replay lag, drops) as a batch; empty if none."""
        return Batch.empty()

    def flush(self) -> None:  # noqa: B027 - optional hook, most backends have nothing to flush
        """Make everything written so far visible to readers and rollups (a no-op where nothing is buffered)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release files, connections and threads."""

    def __enter__(self) -> Historian:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
