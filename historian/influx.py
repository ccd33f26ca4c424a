"""InfluxDB 2.x / Cloud: the influxdb-client write path (shared with VictoriaMetrics) and Flux reads.

Writes hand pre-built line-protocol bytes to ``WriteApi.write`` in SYNCHRONOUS mode (no ``Point`` objects:
they cost 3.7x), optionally gzipped. Failures are classified: a transport error, 5xx or 429 is transient
(the chunk is spooled and retried with backoff); a 4xx other than 401/403/429 means the data itself was
refused and retrying cannot help (the chunk is dropped, counted and logged). The token is read from the
environment by the config and never logged.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
import urllib3
from influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException

from aidc.model import SeriesKey
from historian.base import (
    QUALITY_SUFFIX,
    Agg,
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

log = logging.getLogger(__name__)


class TransientWriteError(Exception):
    """The remote could not take the chunk now (down, overloaded, unauthorised): keep it and retry."""


class RejectedWriteError(Exception):
    """The remote refused the chunk's content: retrying the same bytes cannot succeed."""


class InfluxSender:
    """Sends line-protocol chunks through influxdb-client's synchronous write API."""

    def __init__(
        self, url: str, *, token: str, org: str, bucket: str, gzip: bool = True, timeout_s: float = 10.0
    ) -> None:
        self.url = url
        self.org = org or "aidc"
        self.bucket = bucket
        self._client = InfluxDBClient(
            url=url, token=token, org=self.org, enable_gzip=gzip, timeout=int(timeout_s * 1000)
        )
        self._write = self._client.write_api(write_options=SYNCHRONOUS)

    @property
    def client(self) -> InfluxDBClient:
        """The underlying client (the Flux reader shares it)."""
        return self._client

    def send(self, data: bytes) -> None:
        """POST one chunk; raises TransientWriteError or RejectedWriteError."""
        try:
            self._write.write(bucket=self.bucket, org=self.org, record=data)  # ns precision
        except ApiException as exc:
            status = int(exc.status or 0)
            if 400 <= status < 500 and status not in (401, 403, 404, 408, 429):
                raise RejectedWriteError(f"{self.url}: HTTP {status} {str(exc.body or '')[:200]}") from None
            raise TransientWriteError(f"{self.url}: HTTP {status}") from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise TransientWriteError(f"{self.url}: {type(exc).__name__}") from None

    def ping(self) -> bool:
        """True when the server answers ``/ping``."""
        try:
            return bool(self._client.ping())
        except (urllib3.exceptions.HTTPError, OSError):
            return False

    def close(self) -> None:
        """Close the HTTP pool."""
        self._write.close()
        self._client.close()


# ----------------------------------------------------------------------------- Flux reads

_FLUX_FN = {"mean": "mean", "min": "min", "max": "max", "last": "last", "sum": "sum", "count": "count"}
_META = {"result", "table", "_start", "_stop", "_time", "_value", "_measurement", "_field"}


def _flux_str(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _flux_match(column: str, pattern: str) -> str:
    """An exact comparison, or an anchored regex for a glob."""
    if not is_glob(pattern):
        return f"r[{_flux_str(column)}] == {_flux_str(pattern)}"
    rx = glob_to_regex(pattern).replace("/", "\\/")
    return f"r[{_flux_str(column)}] =~ /^{rx}$/"


def _rfc3339(ns: int) -> str:
    return pd.Timestamp(ns, unit="ns", tz="UTC").strftime("%Y-%m-%dT%H:%M:%S.%fZ").replace(".000000Z", "Z")


def flux_query(bucket: str, selector: SeriesSelector, lo: int, hi: int, window_ns: int | None, agg: str | None) -> str:
    """The Flux text for a selector over ``[lo, hi)``, raw or aggregated per window (window start as time)."""
    preds = [_flux_match("_measurement", selector.measurement)]
    preds += [_flux_match(k, v) for k, v in sorted(selector.tags.items())]
    if selector.field is not None:
        preds.append(_flux_match("_field", selector.field))
    lines = [
        f"from(bucket: {_flux_str(bucket)})",
        f"  |> range(start: {_rfc3339(lo)}, stop: {_rfc3339(hi)})",
        f"  |> filter(fn: (r) => {' and '.join(preds)})",
    ]
    if agg is not None:
        every = f"{window_ns}ns" if window_ns else f"{hi - lo}ns"
        lines.append(
            f'  |> aggregateWindow(every: {every}, fn: {_FLUX_FN[agg]}, createEmpty: false, timeSrc: "_start")'
        )
    return "\n".join(lines)


class FluxReader:
    """Reads from InfluxDB 2.x / Cloud with Flux through influxdb-client's query API."""

    def __init__(self, client: InfluxDBClient, bucket: str, org: str) -> None:
        self._query = client.query_api()
        self.bucket = bucket
        self.org = org

    def fetch(
        self, selector: SeriesSelector, start: TimeLike, end: TimeLike, window: Any = None, agg: Agg | None = None
    ) -> pd.DataFrame:
        """Raw or windowed values (quality columns are the caller's to merge)."""
        lo, hi = to_ns(start), to_ns(end)
        w = parse_window(window) if window is not None else None
        if agg is None and w is not None:
            agg = "mean"
        if agg is not None:
            check_agg(agg)
        return self._run(flux_query(self.bucket, selector, lo, hi, w, agg))

    def fetch_latest(self, selector: SeriesSelector, lookback: timedelta = timedelta(days=30)) -> pd.DataFrame:
        """The last value of each matching series within ``lookback``."""
        now = pd.Timestamp.now(tz="UTC").value
        text = flux_query(self.bucket, selector, now - int(lookback.total_seconds() * 1e9), now + 1, None, None)
        return self._run(text + "\n  |> last()")

    def _run(self, text: str) -> pd.DataFrame:
        series: list[str] = []
        ts: list[int] = []
        vals: list[float] = []
        for table in self._query.query(text, org=self.org):
            for rec in table.records:
                values = rec.values
                tags = {k: str(v) for k, v in values.items() if k not in _META and v is not None}
                sid = SeriesKey.of(str(values["_measurement"]), str(values["_field"]), tags).id
                series.append(sid)
                ts.append(pd.Timestamp(values["_time"]).value)
                vals.append(float(values["_value"]) if values["_value"] is not None else np.nan)
        if not series:
            return empty_result()
        return make_result(series, ts, vals)


def is_quality_field(field: str) -> bool:
    """True for the ``<field>_quality`` companions remote backends store."""
    return field.endswith(QUALITY_SUFFIX)
