"""VictoriaMetrics reads: raw samples from ``/api/v1/export``, aggregates and latest values from the
Prometheus-compatible ``/api/v1/query`` and ``/api/v1/query_range``. Writes use the shared influxdb-client
path (VictoriaMetrics accepts line protocol at ``/api/v2/write``).

VictoriaMetrics names a line-protocol series ``<measurement>_<field>{tags}`` and keeps ms timestamps.
Windows are made exact: for a window ``[b, b+w)`` the query asks ``<fn>_over_time(m[w])`` at ``b + w - 1 ms``,
whose range ``(t - w, t]`` is exactly that window on ms timestamps; partial windows at the edges of the
range are asked one by one with their own width. All requests pass ``nocache=1`` so the server neither
aligns the range to the step nor hides the last 30 s.
"""

from __future__ import annotations

import json
from datetime import timedelta
from fnmatch import fnmatchcase
from typing import Any

import numpy as np
import pandas as pd
import urllib3

from aidc.errors import AidcError
from aidc.model import Batch, SeriesKey
from historian.base import (
    Agg,
    Historian,
    SeriesSelector,
    TimeLike,
    check_agg,
    empty_result,
    glob_to_regex,
    is_glob,
    make_result,
    parse_window,
    to_ns,
)
from historian.forward import RemoteReads

_FN = {
    "mean": "avg_over_time",
    "min": "min_over_time",
    "max": "max_over_time",
    "last": "last_over_time",
    "sum": "sum_over_time",
    "count": "count_over_time",
}
MS = 1_000_000
_MAX_STEPS = 10_000  # under VictoriaMetrics' -search.maxPointsPerTimeseries (30k by default)


class RemoteReadError(AidcError):
    """The remote answered a read with an error or not at all."""


def _prom_str(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def selector_matcher(selector: SeriesSelector) -> str:
    """A PromQL series selector for the VictoriaMetrics names of the selected series."""
    meas, fld = selector.measurement, selector.field
    if fld is not None and not is_glob(meas + fld):
        parts = [f"__name__={_prom_str(meas + '_' + fld)}"]
    else:
        fld_rx = glob_to_regex(fld) if fld is not None else ".+"
        parts = [f"__name__=~{_prom_str(glob_to_regex(meas) + '_' + fld_rx)}"]
    for k, v in sorted(selector.tags.items()):
        op = "=~" if is_glob(v) else "="
        parts.append(f"{k}{op}{_prom_str(glob_to_regex(v) if op == '=~' else v)}")
    return "{" + ", ".join(parts) + "}"


def series_id_of(metric: dict[str, str], selector: SeriesSelector) -> str | None:
    """Map a VictoriaMetrics metric back to a series id, splitting the name where the selector says."""
    name = metric.get("__name__", "")
    tags = {k: v for k, v in metric.items() if k != "__name__"}
    meas, fld = selector.measurement, selector.field
    if not is_glob(meas):
        split = [(meas, name[len(meas) + 1 :])] if name.startswith(meas + "_") else []
    elif fld is not None and not is_glob(fld):
        split = [(name[: -len(fld) - 1], fld)] if name.endswith("_" + fld) else []
    else:
        split = [(name[:i], name[i + 1 :]) for i, c in enumerate(name) if c == "_"]
    for m, f in split:
        if m and f and fnmatchcase(m, meas) and (fld is None or fnmatchcase(f, fld)):
            return SeriesKey.of(m, f, tags).id
    return None


class VictoriaReader:
    """Read side of the ``victoriametrics`` backend."""

    def __init__(self, url: str, *, token: str = "", timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = urllib3.PoolManager(timeout=urllib3.Timeout(total=timeout_s), retries=False)

    def _post(self, path: str, fields: dict[str, str]) -> bytes:
        try:
            resp = self._http.request_encode_body(
                "POST",
                self.url + path,
                fields={**fields, "nocache": "1"},
                headers=self._headers,
                encode_multipart=False,
            )
        except urllib3.exceptions.HTTPError as exc:
            raise RemoteReadError(f"{self.url}{path}: {type(exc).__name__}") from None
        if resp.status != 200:
            raise RemoteReadError(f"{self.url}{path}: HTTP {resp.status} {resp.data[:200]!r}")
        return bytes(resp.data)

    def label_values(self, label: str, lookback: timedelta = timedelta(days=30)) -> list[str]:
        """Every value of ``label`` over the series stored within ``lookback`` of now."""
        path = f"/api/v1/label/{label}/values"
        start = pd.Timestamp.now(tz="UTC") - pd.Timedelta(lookback)
        body = json.loads(self._post(path, {"start": f"{start.value / 1e9:.3f}"}))
        if body.get("status") != "success":
            raise RemoteReadError(f"{self.url}{path}: {body.get('error', body)}")
        return [str(v) for v in body.get("data", [])]

    def _prom(self, path: str, fields: dict[str, str]) -> list[dict[str, Any]]:
        body = json.loads(self._post(path, fields))
        if body.get("status") != "success":
            raise RemoteReadError(f"{self.url}{path}: {body.get('error', body)}")
        return list(body["data"]["result"])

    def fetch(
        self, selector: SeriesSelector, start: TimeLike, end: TimeLike, window: Any = None, agg: Agg | None = None
    ) -> pd.DataFrame:
        """Raw samples in ``[start, end)``, or aggregates per epoch-aligned window clipped to the range."""
        lo, hi = -(-to_ns(start) // MS), -(-to_ns(end) // MS)  # first ms at or after each bound
        if hi <= lo:
            return empty_result()
        if window is None and agg is None:
            return self._export(selector, lo, hi)
        agg = agg or "mean"
        check_agg(agg)
        expr = _FN[agg]
        if window is None:
            return self._frame(self._instant(selector, expr, hi - 1, hi - lo, lo))
        w = parse_window(window) // MS
        if w <= 0:
            raise RemoteReadError(f"window {window!r}: VictoriaMetrics keeps ms, windows must be ≥ 1 ms")
        rows: list[tuple[str, int, float]] = []
        first_full = -(-lo // w) * w
        last_end = hi // w * w
        if first_full > lo:  # partial window at the start
            rows += self._instant(selector, expr, min(first_full, hi) - 1, min(first_full, hi) - lo, lo // w * w)
        if last_end > first_full:
            rows += self._range(selector, expr, first_full, last_end, w)
        if hi > last_end >= first_full:  # partial window at the end
            rows += self._instant(selector, expr, hi - 1, hi - last_end, last_end)
        return self._frame(rows)

    def _instant(
        self, sel: SeriesSelector, fn: str, t_ms: int, d_ms: int, label_ms: int
    ) -> list[tuple[str, int, float]]:
        q = f"{fn}({selector_matcher(sel)}[{d_ms}ms]) keep_metric_names"
        out = []
        for item in self._prom("/api/v1/query", {"query": q, "time": f"{t_ms / 1000:.3f}"}):
            sid = series_id_of(item["metric"], sel)
            if sid is not None:
                out.append((sid, label_ms, float(item["value"][1])))
        return out

    def _range(self, sel: SeriesSelector, fn: str, a_ms: int, b_ms: int, w: int) -> list[tuple[str, int, float]]:
        """Full windows starting in ``[a_ms, b_ms)``, asked in pieces of at most ``_MAX_STEPS`` steps."""
        q = f"{fn}({selector_matcher(sel)}[{w}ms]) keep_metric_names"
        out = []
        for s in range(a_ms, b_ms, w * _MAX_STEPS):
            e = min(s + w * _MAX_STEPS, b_ms) - w  # last window start in this piece
            fields = {
                "query": q,
                "start": f"{(s + w - 1) / 1000:.3f}",
                "end": f"{(e + w - 1) / 1000:.3f}",
                "step": f"{w}ms",
            }
            for item in self._prom("/api/v1/query_range", fields):
                sid = series_id_of(item["metric"], sel)
                if sid is None:
                    continue
                for t, v in item["values"]:
                    out.append((sid, round(float(t) * 1000) - w + 1, float(v)))
        return out

    def _export(self, sel: SeriesSelector, lo: int, hi: int) -> pd.DataFrame:
        fields = {"match[]": selector_matcher(sel), "start": f"{lo / 1000:.3f}", "end": f"{(hi - 1) / 1000:.3f}"}
        body = self._post("/api/v1/export", fields)
        series, ts, vals = [], [], []
        for line in body.splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            sid = series_id_of(item["metric"], sel)
            if sid is None:
                continue
            t = np.asarray(item["timestamps"], dtype=np.int64)
            keep = (t >= lo) & (t < hi)
            series.append(np.full(int(keep.sum()), sid, dtype=object))
            ts.append(t[keep] * MS)
            vals.append(np.asarray(item["values"], dtype=np.float64)[keep])
        if not series:
            return empty_result()
        return make_result(np.concatenate(series), np.concatenate(ts), np.concatenate(vals))

    def fetch_latest(self, selector: SeriesSelector, lookback: timedelta = timedelta(days=30)) -> pd.DataFrame:
        """The last sample of each matching series within ``lookback`` of now."""
        now_ms = pd.Timestamp.now(tz="UTC").value // MS + 1
        d = int(lookback.total_seconds() * 1000)
        m = selector_matcher(selector)
        at = f"{now_ms / 1000:.3f}"
        vals = self._prom("/api/v1/query", {"query": f"last_over_time({m}[{d}ms]) keep_metric_names", "time": at})
        times = self._prom("/api/v1/query", {"query": f"tlast_over_time({m}[{d}ms]) keep_metric_names", "time": at})
        t_of = {json.dumps(i["metric"], sort_keys=True): float(i["value"][1]) for i in times}
        rows = []
        for item in vals:
            sid = series_id_of(item["metric"], selector)
            t = t_of.get(json.dumps(item["metric"], sort_keys=True))
            if sid is not None and t is not None:
                rows.append((sid, round(t * 1000), float(item["value"][1])))
        return self._frame(rows)

    @staticmethod
    def _frame(rows: list[tuple[str, int, float]]) -> pd.DataFrame:
        if not rows:
            return empty_result()
        series, ts, vals = zip(*rows, strict=True)
        return make_result(list(series), np.asarray(ts, dtype=np.int64) * MS, list(vals))

    def close(self) -> None:
        """Close the HTTP pool."""
        self._http.clear()


class CentralStore:
    """A central VictoriaMetrics that several sites forward to: which sites it holds, and a read-only view of each."""

    def __init__(self, url: str, *, token: str = "", timeout_s: float = 30.0, write_quality: bool = True) -> None:
        self.url = url.rstrip("/")
        self.reader = VictoriaReader(self.url, token=token, timeout_s=timeout_s)
        self.write_quality = write_quality

    def site_names(self) -> list[str]:
        """Every value of the ``site`` label the store holds (sorted); RemoteReadError when it does not answer."""
        return sorted(self.reader.label_values("site"))

    def site(self, name: str) -> SiteView:
        """The store as one site's historian: every read constrained to ``site=<name>``."""
        return SiteView(self.reader, name, self.write_quality)

    def close(self) -> None:
        """Close the HTTP pool."""
        self.reader.close()


class _ScopedReader:
    """A reader that adds ``site=<name>`` to every selector that does not name a site."""

    def __init__(self, reader: VictoriaReader, site: str) -> None:
        self.reader, self.site_name = reader, site

    def _scoped(self, selector: SeriesSelector) -> SeriesSelector:
        if "site" in selector.tags:
            return selector
        return SeriesSelector(selector.measurement, {**selector.tags, "site": self.site_name}, selector.field)

    def fetch(
        self, selector: SeriesSelector, start: TimeLike, end: TimeLike, window: Any = None, agg: Agg | None = None
    ) -> pd.DataFrame:
        """The wrapped reader's ``fetch`` within the site."""
        return self.reader.fetch(self._scoped(selector), start, end, window, agg)

    def fetch_latest(self, selector: SeriesSelector, lookback: timedelta = timedelta(days=30)) -> pd.DataFrame:
        """The wrapped reader's ``fetch_latest`` within the site."""
        return self.reader.fetch_latest(self._scoped(selector), lookback)


class SiteView(RemoteReads, Historian):
    """One site's series in a central store, read-only: the analytics read it as they read the site's own historian
    (the central server collects nothing and owns no local store, so nothing here writes)."""

    def __init__(self, reader: VictoriaReader, site: str, write_quality: bool = True) -> None:
        self.backend = "victoriametrics (central, read-only)"
        self.site_name = site
        self.reader = _ScopedReader(reader, site)
        self.write_quality = write_quality

    def write(self, batch: Batch) -> None:
        """Refused: the central server reads what the sites forward."""
        raise AidcError(f"the central store's view of site {self.site_name} is read-only")

    def close(self) -> None:
        """Nothing to release (the store's HTTP pool is closed by :class:`CentralStore`)."""
