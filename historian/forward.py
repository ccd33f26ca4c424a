"""A remote historian with store and forward: direct writes while the remote is healthy, the disk spool
while it is not, and a forwarder thread that replays the spool in order with capped exponential backoff.

Order is kept by one rule: a chunk goes straight to the remote only when the spool is empty; otherwise it
joins the spool behind the older chunks. Only the writer appends, so once it sees an empty spool nothing
can overtake it. ``write`` returns once every chunk was delivered (HTTP 2xx) or durably spooled.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from typing import Any, Protocol

import numpy as np
import pandas as pd

from aidc.model import Batch, SeriesKey
from historian.base import (
    QUALITY_SUFFIX,
    Agg,
    Historian,
    SeriesSelector,
    TimeLike,
    empty_result,
    make_result,
    ts_ns_of,
)
from historian.influx import InfluxSender, RejectedWriteError, TransientWriteError
from historian.lineproto import LineEncoder
from historian.spool import Spool

log = logging.getLogger(__name__)


class RemoteReader(Protocol):
    """What a remote backend's read side offers (Flux for InfluxDB, PromQL for VictoriaMetrics)."""

    def fetch(
        self, selector: SeriesSelector, start: TimeLike, end: TimeLike, window: Any = None, agg: Agg | None = None
    ) -> pd.DataFrame:
        """Raw or windowed values of the selected series."""

    def fetch_latest(self, selector: SeriesSelector, lookback: timedelta = ...) -> pd.DataFrame:
        """The last value of each selected series."""


class RemoteReads:
    """The read side of a remote store: values through its reader, quality merged from ``<field>_quality``."""

    reader: RemoteReader
    write_quality: bool

    def query(
        self,
        selector: SeriesSelector,
        start: TimeLike,
        end: TimeLike,
        window: str | timedelta | int | None = None,
        agg: Agg | None = None,
    ) -> pd.DataFrame:
        """Values from the remote, with quality merged from the ``<field>_quality`` series (worst per window)."""
        values = _drop_quality_fields(self.reader.fetch(selector, start, end, window, agg), selector)
        if not self.write_quality:
            return values
        qagg: Agg | None = None if (window is None and agg is None) else "max"
        qsel = selector.with_field((selector.field or "*") + QUALITY_SUFFIX)
        quality = self.reader.fetch(qsel, start, end, window, qagg)
        return _merge_quality(values, quality, fill_count=agg == "count")

    def latest(self, selector: SeriesSelector) -> pd.DataFrame:
        """The last value of each matching series in the last 30 days (quality from the same instant)."""
        values = _drop_quality_fields(self.reader.fetch_latest(selector), selector)
        if not self.write_quality or values.empty:
            return values
        qsel = selector.with_field((selector.field or "*") + QUALITY_SUFFIX)
        quality = self.reader.fetch_latest(qsel)
        merged = _merge_quality(values, quality, fill_count=False)
        # The newest of the last value and the last non-good quality is the series' last sample.
        merged = merged[merged["series"].isin(set(values["series"]))]
        return merged.groupby("series", sort=True).tail(1).reset_index(drop=True)


class RemoteHistorian(RemoteReads, Historian):
    """InfluxDB or VictoriaMetrics behind a spool; quality rides along as ``<field>_quality``."""

    def __init__(
        self,
        backend: str,
        sender: InfluxSender,
        reader: RemoteReader,
        spool: Spool,
        *,
        batch_points: int = 20_000,
        write_quality: bool = True,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        site: str = "",
    ) -> None:
        self.backend = backend
        self.sender = sender
        self.reader = reader
        self.spool = spool
        self.batch_points = batch_points
        self.write_quality = write_quality
        # Caches each series' line-protocol key; series without a site tag get ``site`` (a central store's need).
        self._encoder = LineEncoder(write_quality, site=site)
        self.sent_points = 0
        self.rejected_points = 0
        self._backoff = (backoff_initial_s, backoff_max_s)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._drained = threading.Condition()
        self._down_logged = False
        self._thread = threading.Thread(target=self._forward_loop, name=f"historian-{backend}-forward", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ writing

    def write(self, batch: Batch) -> None:
        """Deliver or durably spool every point of the batch, in order."""
        payload = self._encoder.encode(batch)
        for data, lines in payload.chunks(self.batch_points):
            if self.spool.depth_points == 0 and self._send(data, lines):
                continue
            if self.spool.append(data, lines):
                self._wake.set()
            else:
                log.error(
                    "historian %s: spool %s full (%d bytes), dropped %d new points (oldest kept)",
                    self.backend, self.spool.dir, self.spool.max_bytes, lines,
                )  # fmt: skip

    def _send(self, data: bytes, lines: int) -> bool:
        """True when delivered (or refused for good); False when the chunk must be spooled."""
        try:
            self.sender.send(data)
        except TransientWriteError as exc:
            self._log_down(exc)
            return False
        except RejectedWriteError as exc:
            self.rejected_points += lines
            log.error("historian %s: remote refused %d points, dropped: %s", self.backend, lines, exc)
            return True
        self.sent_points += lines
        return True

    def _log_down(self, exc: Exception) -> None:
        # Once at WARNING per outage, then DEBUG until the remote is back (house logging rule).
        if not self._down_logged:
            log.warning("historian %s: remote unreachable (%s); spooling to %s", self.backend, exc, self.spool.dir)
            self._down_logged = True
        else:
            log.debug("historian %s: still unreachable: %s", self.backend, exc)

    def _forward_loop(self) -> None:
        delay = self._backoff[0]
        while not self._stop.is_set():
            item = self.spool.peek()
            if item is None:
                with self._drained:
                    self._drained.notify_all()
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            rec, data = item
            try:
                self.sender.send(data)
            except TransientWriteError as exc:
                self._log_down(exc)
                self._stop.wait(delay)
                delay = min(delay * 2, self._backoff[1])
                continue
            except RejectedWriteError as exc:
                self.rejected_points += rec.points
                log.error("historian %s: remote refused %d spooled points, dropped: %s", self.backend, rec.points, exc)
            else:
                self.sent_points += rec.points
            self.spool.ack(rec)
            if self._down_logged and self.spool.depth_points == 0:
                log.warning("historian %s: remote back, spool replayed", self.backend)
                self._down_logged = False
            delay = self._backoff[0]

    def wait_drained(self, timeout_s: float) -> bool:
        """Block until the spool is empty (True) or ``timeout_s`` passes (False)."""
        deadline = time.monotonic() + timeout_s
        with self._drained:
            while self.spool.depth_points:
                self._wake.set()
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._drained.wait(min(left, 1.0))
        return True

    def stats_batch(self, now_ns: int) -> Batch:
        """Spool depth, replay lag and counters as ``aidc_historian`` series."""
        figures = {
            "spool_depth_points": self.spool.depth_points,
            "spool_depth_bytes": self.spool.depth_bytes,
            "replay_lag_s": self.spool.oldest_age_s(now_ns),
            "dropped_points_total": self.spool.dropped_points,
            "corrupt_records_total": self.spool.corrupt_records,
            "rejected_points_total": self.rejected_points,
            "sent_points_total": self.sent_points,
        }
        return stats_to_batch(self.backend, figures, now_ns)

    def close(self) -> None:
        """Stop the forwarder (the spool keeps what was not replayed) and close connections."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=30)
        self.spool.close()
        self.sender.close()
        close = getattr(self.reader, "close", None)
        if close is not None:
            close()


def _drop_quality_fields(frame: pd.DataFrame, selector: SeriesSelector) -> pd.DataFrame:
    """Hide ``*_quality`` companions unless the selector asked for such a field by name."""
    if frame.empty or (selector.field or "").endswith(QUALITY_SUFFIX):
        return frame
    keep = ~frame["series"].str.endswith(QUALITY_SUFFIX)
    return frame[keep].reset_index(drop=True)


def _merge_quality(values: pd.DataFrame, quality: pd.DataFrame, fill_count: bool) -> pd.DataFrame:
    """Outer-join values with qualities; a missing quality is good, a quality without a value is a missing value."""
    if quality.empty:
        return values
    q = quality[["series", "ts", "value"]].rename(columns={"value": "q"})
    q["series"] = q["series"].str.slice(0, -len(QUALITY_SUFFIX))
    merged = values.drop(columns=["quality"]).merge(q, on=["series", "ts"], how="outer")
    qual = merged["q"].fillna(0).to_numpy(dtype=np.float64).astype(np.uint8)
    vals = merged["value"].to_numpy(dtype=np.float64)
    if fill_count:
        vals = np.where(np.isnan(vals), 0.0, vals)
    ts = ts_ns_of(merged["ts"])
    if not len(ts):
        return empty_result()
    return make_result(merged["series"].to_numpy(dtype=object), ts, vals, qual)


def stats_to_batch(backend: str, figures: dict[str, float], now_ns: int) -> Batch:
    """One sample per figure, series ``aidc_historian,backend=<backend> <figure>``."""
    ids = [SeriesKey.of("aidc_historian", name, {"backend": backend}).id for name in figures]
    n = len(ids)
    return Batch(
        np.array(ids, dtype=object),
        np.full(n, now_ns, dtype=np.int64),
        np.array(list(figures.values()), dtype=np.float64),
        np.zeros(n, dtype=np.uint8),
    )
