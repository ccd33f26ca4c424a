"""The historian writer: store-and-forward from the collectors to the historian, losing nothing.

Collector batches are queued on the event loop and written from one worker thread; a failing store keeps its
batches in a bounded memory backlog with capped exponential backoff, then in the checksummed disk spool
(:class:`historian.spool.Spool`), replayed in order when the store is back.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import Callable

import numpy as np
import pyarrow as pa

from aidc.clock import Clock
from aidc.model import Batch, SeriesKey
from historian.base import Historian
from historian.spool import Spool

log = logging.getLogger(__name__)


WRITER_MEMORY_POINTS = 2_000_000  # about 100 MB of batches held in memory while the store is down, then disk
WRITER_RETRY_S = (0.5, 30.0)  # capped exponential backoff between write attempts while the store fails


class HistorianWriter:
    """Queues collector batches and writes them to the historian from one worker thread; loses nothing.

    The collectors run on the event loop; historian writes (DuckDB inserts, HTTP posts, spool fsyncs) block,
    so they happen off the loop, coalesced into one write per ``flush_every_s``. A failed write is kept and
    retried with capped backoff, oldest first. While the store stays down the backlog is held in memory up to
    ``max_memory_points``, then moved to a disk spool (checksummed records, ``historian.spool.Spool``); when the
    spool reaches its size limit new batches are refused, counted in ``refused_points`` and logged. Nothing is
    discarded silently; everything the writer still holds at stop is spooled and replayed at the next start.
    """

    def __init__(
        self,
        historian: Historian,
        clock: Clock,
        *,
        flush_every_s: float = 1.0,
        spool: Spool | None = None,
        max_memory_points: int = WRITER_MEMORY_POINTS,
        dropped: Callable[[], int] | None = None,
    ) -> None:
        self.historian = historian
        self.clock = clock
        self.flush_every_s = flush_every_s
        self.spool = spool
        self.max_memory_points = max_memory_points
        self._dropped = dropped  # the collectors' evicted-point counter, published with the writer's figures
        self._pending: list[Batch] = []
        self._backlog: collections.deque[Batch] = collections.deque()  # failed writes, oldest first
        self._backlog_points = 0
        self._retry_at = 0.0  # time.monotonic() before which a failing store is not retried
        self._delay = WRITER_RETRY_S[0]
        self._lock = threading.Lock()
        self._failing = False
        self._refusing = False
        self.points_written = 0
        self.write_errors = 0
        self.spooled_points = 0
        self.refused_points = 0

    @property
    def pending_batches(self) -> int:
        """Batches queued by the collectors since the last drain (not yet handed to the worker thread)."""
        return len(self._pending)

    @property
    def backlog_points(self) -> int:
        """Points whose write failed and that wait in memory for the next attempt."""
        return self._backlog_points

    @property
    def failing(self) -> bool:
        """True while the last write to the store failed."""
        return self._failing

    def health(self) -> dict[str, float]:
        """The writer's figures (counters are totals since start), for the job's summary and /metrics."""
        return {
            "pending_batches": float(len(self._pending)),
            "backlog_points": float(self._backlog_points),
            "spool_depth_points": float(self.spool.depth_points if self.spool else 0),
            "spooled_points_total": float(self.spooled_points),
            "refused_points_total": float(self.refused_points),
            "write_errors_total": float(self.write_errors),
            "points_written_total": float(self.points_written),
            "collector_dropped_points_total": float(self._dropped() if self._dropped else 0),
            "failing": float(self._failing),
        }

    def __call__(self, batch: Batch) -> None:
        """Sink for the collectors: queue a batch (cheap, never blocks)."""
        self._pending.append(batch)

    async def run(self) -> None:
        """Write queued batches until cancelled; a final flush happens in :meth:`drain`."""
        while True:
            await asyncio.sleep(self.flush_every_s)
            await self.drain()

    def stats_batch(self, now_ns: int) -> Batch:
        """The writer's own figures as series ``aidc_writer <field>``, written with every batch."""
        figures = self.health()
        del figures["pending_batches"], figures["failing"]
        ids = np.array([SeriesKey.of("aidc_writer", k, {}).id for k in figures], dtype=object)
        n = len(ids)
        return Batch(ids, np.full(n, now_ns, np.int64), np.array(list(figures.values())), np.zeros(n, np.uint8))

    async def drain(self, *, final: bool = False) -> None:
        """Write everything queued so far (spooled and backlogged batches first); ``final``: spool what fails."""
        batch: Batch | None = None
        if self._pending:
            pending, self._pending = self._pending, []
            now = self.clock.now_ns()
            batch = Batch.concat([*pending, self.historian.stats_batch(now), self.stats_batch(now)])
        if batch is None and not self._backlog and not (self.spool and self.spool.depth_points):
            return
        await asyncio.to_thread(self._drain_sync, batch, final)

    def _drain_sync(self, batch: Batch | None, final: bool) -> None:
        """In a worker thread, one drain at a time (a drain cancelled on the loop may still be finishing here)."""
        with self._lock:
            if batch is not None:
                self._backlog.append(batch)
                self._backlog_points += len(batch)
            if not final and time.monotonic() < self._retry_at:
                self._spill()
                return
            ok = self._write_all()
            if ok:
                self._delay = WRITER_RETRY_S[0]
            else:
                self._retry_at = time.monotonic() + self._delay
                self._delay = min(self._delay * 2, WRITER_RETRY_S[1])
            self._spill(everything=final and not ok)

    def _write_all(self) -> bool:
        """In the worker thread: replay the disk spool, then the backlog, in order; False at the first failure."""
        if self.spool is not None:
            while (item := self.spool.peek()) is not None:
                rec, data = item
                batch = batch_from_bytes(data) if data else None
                if batch is not None and not self._write(batch):
                    return False
                self.spool.ack(rec)
        while self._backlog:
            batch = self._backlog[0]
            if not self._write(batch):
                return False
            self._backlog.popleft()
            self._backlog_points -= len(batch)
        return True

    def _write(self, batch: Batch) -> bool:
        try:
            self.historian.write(batch)
        except Exception as exc:  # a failing store must not stop collection; the batch is kept and retried
            self.write_errors += 1
            if not self._failing:
                log.error("historian write of %d points failed (%s); keeping them and retrying", len(batch), exc)
                self._failing = True
            else:
                log.debug("historian write still failing: %s", exc)
            return False
        if self._failing:
            log.warning("historian writes work again; backlog replayed")
            self._failing = False
        self.points_written += len(batch)
        return True

    def _spill(self, *, everything: bool = False) -> None:
        """Move the oldest backlog to the disk spool while memory holds more than its bound (or all of it)."""
        limit = 0 if everything else self.max_memory_points
        batches: list[Batch] = []
        while self._backlog and self._backlog_points > limit:
            b = self._backlog.popleft()
            self._backlog_points -= len(b)
            batches.append(b)
        if batches:
            self._to_disk(batches)

    def _to_disk(self, batches: list[Batch]) -> None:
        for batch in batches:
            if self.spool is not None and self.spool.append(batch_to_bytes(batch), len(batch)):
                self.spooled_points += len(batch)
                self._refusing = False
                continue
            self.refused_points += len(batch)
            if not self._refusing:
                where = f"spool {self.spool.dir} is full" if self.spool else "no disk spool is configured"
                log.error("historian down and %s: refusing %d points (counted in refused_points)", where, len(batch))
                self._refusing = True

    def close(self) -> None:
        """Close the disk spool (what it holds is replayed at the next start)."""
        if self.spool is not None:
            self.spool.close()


def batch_to_bytes(batch: Batch) -> bytes:
    """A batch as one Arrow IPC stream (series, ts, value, quality, reason)."""
    cols = {
        "series": pa.array(batch.series.tolist(), pa.string()),
        "ts": pa.array(batch.ts_ns, pa.int64()),
        "value": pa.array(batch.values, pa.float64()),
        "quality": pa.array(batch.quality, pa.uint8()),
    }
    if batch.reasons:
        cols["reason"] = pa.array(batch.reasons, pa.string())
    table = pa.table(cols)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def batch_from_bytes(data: bytes) -> Batch | None:
    """The batch of :func:`batch_to_bytes`; None (logged) when the record cannot be decoded."""
    try:
        table = pa.ipc.open_stream(pa.py_buffer(data)).read_all()
        reasons = table.column("reason").to_pylist() if "reason" in table.column_names else []
        return Batch(
            np.array(table.column("series").to_pylist(), dtype=object),
            table.column("ts").to_numpy().astype(np.int64),
            table.column("value").to_numpy(zero_copy_only=False).astype(np.float64),
            table.column("quality").to_numpy().astype(np.uint8),
            [r or "" for r in reasons],
        )
    except (pa.ArrowException, KeyError, ValueError) as exc:
        log.error("writer spool: undecodable record skipped (%s)", exc)
        return None
