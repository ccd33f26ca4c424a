"""The one reader of time-series data files: generic CSV/TSV and the real traces bundled under ``data/``.

Both the backtests (``analytics/``) and workload replay (``simulators/trace.py``) read files through
:func:`load_series`, so a format is parsed in one place with one set of error messages.

Formats handled (auto-detected, overridable): comma or tab separated; UTF-8 with or without BOM; gzip-compressed
(``.gz``); a timestamp column (any order, newest-first files are sorted) or none (row i is ``start + i x step``, the
step given or stated by the file name, ``alibaba2018_300s.csv``: 300 s); SQL-client trailer lines such as
``(15493 rows affected)`` or ``Completion time: ...``. Naive timestamps are read as UTC (so calendar features follow
the clock the file was written in). The result is a float series on a regular grid, NaN where a step is missing.
Every problem is one :class:`DataError` line naming the file and the column or row.

Bad readings: a value that is infinite or larger in magnitude than :data:`MAX_ABS_VALUE` (a logger's overflow or
error sentinel: ``inf``, ``-1e300``, float32's 3.4e38) is no measurement. It is excluded like a missing sample, as
meter-data validation does, and :func:`read_series` counts it so that every figure made from the series can say so;
text that is not a number is still refused, since it usually means the wrong column or file.
"""

from __future__ import annotations

import gzip
import io
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from aidc.errors import DataError

log = logging.getLogger(__name__)

TIME_NAMES = ("timestamp", "time", "ts", "datetime", "date", "time_stamp")
# The value a known trace is about, in order of preference, when --column is not given.
PREFERRED_COLUMNS = ("powerave", "cpu_util_percent", "cpu_usage", "value", "it_power_kw", "power_w")
DEFAULT_START = pd.Timestamp("2000-01-03T00:00Z")  # a Monday, for files without timestamps


# No reading this tool forecasts comes near it in any unit it reads (W, kW, %, even a PWh counter in Wh), while
# logger sentinels and overflows lie far beyond it; squares of it stay finite in the models' arithmetic.
MAX_ABS_VALUE = 1e15


@dataclass(frozen=True, slots=True)
class Excluded:
    """Bad readings a series was read without: how many, and the first one (file row and text) to show."""

    count: int
    first_row: int
    first_value: str

    def __str__(self) -> str:
        plural = "s" if self.count != 1 else ""
        return (
            f"{self.count} bad value{plural} (infinite or beyond ±{MAX_ABS_VALUE:g}) excluded as missing, "
            f"the first {self.first_value} at row {self.first_row}"
        )


REPO_DATA = Path(__file__).resolve().parents[1] / "data"  # the bundled real data of a source checkout


def read_text(path: Path, what: str = "data file") -> str:
    """The UTF-8 text of a file (BOM stripped, ``.gz`` decompressed); problems are one DataError line naming it."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read {what}: {exc.strerror}") from None
    if path.suffix.lower() == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError) as exc:  # gzip.BadGzipFile is an OSError
            raise DataError(f"{path}: corrupt gzip file: {exc}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def step_from_name(path: Path) -> pd.Timedelta | None:
    """The sample step a file name states (``..._300s.csv``), or None."""
    m = re.search(r"_(\d+)s(?:\.|$)", path.name)
    return pd.Timedelta(int(m.group(1)), unit="s") if m else None


def _read_table(path: Path) -> pd.DataFrame:
    text = read_text(path)
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise DataError(f"{path}: file is empty")
    sep = "\t" if lines[0].count("\t") > lines[0].count(",") else ","
    width = lines[0].count(sep)
    # Keep rows with the header's field count; trailer lines from SQL clients have a single field.
    body = [ln for ln in lines[1:] if ln.count(sep) == width]
    if not body:
        raise DataError(f"{path}: no data rows after the header")
    try:
        return pd.read_csv(io.StringIO("\n".join([lines[0], *body])), sep=sep)
    except (pd.errors.ParserError, ValueError) as exc:
        raise DataError(f"{path}: cannot parse as a table: {str(exc).splitlines()[0]}") from None


def _pick_time_column(df: pd.DataFrame, requested: str | None, path: Path) -> str | None:
    if requested is not None:
        if requested not in df.columns:
            raise DataError(f"{path}: no time column {requested!r} (columns: {', '.join(map(str, df.columns))})")
        return requested
    for c in df.columns:
        if str(c).strip().lower() in TIME_NAMES:
            return str(c)
    return None


def _pick_value_column(df: pd.DataFrame, requested: str | None, time_col: str | None, path: Path) -> str:
    if requested is not None:
        if requested not in df.columns:
            raise DataError(f"{path}: no column {requested!r} (columns: {', '.join(map(str, df.columns))})")
        return requested
    for name in PREFERRED_COLUMNS:
        if name in df.columns:
            return name
    # Columns mostly numeric (a stray bad cell is reported by row later, not hidden by picking another column).
    numeric = [
        str(c) for c in df.columns if c != time_col and pd.to_numeric(df[c], errors="coerce").notna().mean() >= 0.5
    ]
    if not numeric:
        raise DataError(f"{path}: no numeric column to forecast; name one with --column")
    return numeric[0]


def load_series(
    path: Path | str,
    *,
    column: str | None = None,
    time_column: str | None = None,
    step: pd.Timedelta | str | None = None,
    start: pd.Timestamp | str | None = None,
) -> pd.Series:
    """A regular float series (UTC index, NaN for missing steps) from a CSV/TSV file; bad readings are logged."""
    series, excluded = read_series(path, column=column, time_column=time_column, step=step, start=start)
    if excluded is not None:
        log.warning("%s: %s", path, excluded)
    return series


def read_series(
    path: Path | str,
    *,
    column: str | None = None,
    time_column: str | None = None,
    step: pd.Timedelta | str | None = None,
    start: pd.Timestamp | str | None = None,
) -> tuple[pd.Series, Excluded | None]:
    """:func:`load_series` and the bad readings it excluded (None when there were none), for the caller to state."""
    p = Path(path)
    df = _read_table(p)
    tcol = _pick_time_column(df, time_column, p)
    vcol = _pick_value_column(df, column, tcol, p)
    values = pd.to_numeric(df[vcol], errors="coerce")
    bad = values.isna() & df[vcol].notna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"{p}: row {row + 2}, column {vcol!r}: {df[vcol].iloc[row]!r} is not a number")
    wild = (values.abs() > MAX_ABS_VALUE).to_numpy()  # inf too; NaN (an empty cell) compares False
    excluded = None
    if wild.any():
        row = int(np.flatnonzero(wild)[0])
        excluded = Excluded(int(wild.sum()), row + 2, str(df[vcol].iloc[row]))
        values = values.mask(wild)
    return _regular(p, df, tcol, vcol, values, step, start), excluded


def _regular(
    p: Path,
    df: pd.DataFrame,
    tcol: str | None,
    vcol: str,
    values: pd.Series,
    step: pd.Timedelta | str | None,
    start: pd.Timestamp | str | None,
) -> pd.Series:
    """The values on a regular grid: by row and step without a time column, else by timestamp."""
    if tcol is None:
        step = step if step is not None else step_from_name(p)
        if step is None:
            raise DataError(f"{p}: no timestamp column (looked for {', '.join(TIME_NAMES)}); give --step, e.g. 5min")
        freq = pd.Timedelta(step)
        t0 = pd.Timestamp(start) if start is not None else DEFAULT_START
        idx = pd.date_range(t0, periods=len(df), freq=freq)
        return pd.Series(values.to_numpy(dtype=float), index=idx, name=vcol)
    times = pd.to_datetime(df[tcol], errors="coerce", utc=True, format="mixed")
    if times.isna().any():
        row = int(np.flatnonzero(times.isna().to_numpy())[0])
        raise DataError(f"{p}: row {row + 2}, column {tcol!r}: {df[tcol].iloc[row]!r} is not a timestamp")
    idx = pd.DatetimeIndex(times).as_unit("ns")
    order = np.argsort(idx.asi8, kind="stable")
    idx, vals = idx[order], values.to_numpy(dtype=float)[order]
    if len(idx.unique()) < 2:
        raise DataError(f"{p}: fewer than two distinct timestamps")
    freq = pd.Timedelta(step) if step is not None else _common_step(idx.unique().asi8)
    if freq <= pd.Timedelta(0):
        raise DataError(f"{p}: cannot infer the time step from column {tcol!r}; give --step")
    floored = idx.floor(freq)
    s = pd.Series(vals, index=floored, name=vcol).groupby(level=0).mean()
    grid = pd.date_range(floored[0], floored[-1], freq=freq)
    return s.reindex(grid).rename(vcol)


def _common_step(ns: np.ndarray) -> pd.Timedelta:
    """The most common spacing (ties: the smallest), robust to missing rows."""
    diffs, counts = np.unique(np.diff(ns), return_counts=True)
    return pd.Timedelta(int(diffs[np.argmax(counts)]), unit="ns")


def infer_step(series: pd.Series) -> pd.Timedelta:
    """The regular step of a series produced by :func:`load_series`."""
    idx = pd.DatetimeIndex(series.index).as_unit("ns")
    if len(idx) < 2:
        raise DataError("a series needs at least two samples to have a step")
    return _common_step(idx.asi8)
