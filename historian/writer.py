"""The historian writer: store-and-forward from the collectors to the historian, losing nothing.

Collector batches are queued on the event loop and written from one worker thread. While the store fails, every
batch that could not be written goes to the checksummed disk spool (:class:`historian.spool.Spool`) at the very
next drain, so a ``kill -9`` at any moment loses at most one flush interval; the spool is replayed in order with
capped exponential backoff until the store is back. Each batch carries a sequence number, kept with it in the
spool, so a batch the store committed just before its write failed is not stored twice when it comes again
(:meth:`historian.base.Historian.write_once`).
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


WRITER_MEMORY_POINTS = 2_000_000  # about 100 MB held in memory only while the disk spool cannot be written
WRITER_RETRY_S = (0.5, 30.0)  # capped exponential backoff between write attempts while the store fails
_SEQ_META = b"aidc_writer_seq"  # Arrow schema metadata of a spooled batch: its writer sequence number


class HistorianWriter:
    """Queues collector batches and writes them to the historian from one worker thread; loses nothing.

    The collectors run on the event loop; historian writes (DuckDB inserts, HTTP posts, spool fsyncs) block,
    so they happen off the loop, coalesced into one write per ``flush_every_s``. While the store fails, what could
    not be written is appended to the disk spool at once (not held in memory), and the spool is replayed in order,
    oldest first, with capped backoff. Only when the spool itself cannot be written (its disk failing) are batches
    held in memory, up to ``max_memory_points``; past that, and when the spool is full, new batches are refused,
    counted in ``refused_points`` and logged. Nothing is discarded silently; what the writer still holds at stop is
    spooled and replayed at the next start, and what it could not save is counted in :attr:`unsaved_points`.
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
        self._backlog: collections.deque[tuple[int, Batch]] = collections.deque()  # (seq, batch), oldest first
        self._backlog_points = 0
        # Batch sequence numbers start at the wall clock in ns: unique across restarts (a run writes far fewer
        # batches than ns pass between starts), which is all the store's "already committed" check needs.
        self._seq = time.time_ns()
        self._retry_at = 0.0  # time.monotonic() before which a failing store is not retried
        self._delay = WRITER_RETRY_S[0]
        self._lock = threading.Lock()
        self._failing = False
        self._refusing = False
        self._spool_error: OSError | None = None  # the last failed spool append or ack, until one works again
        self.points_written = 0
        self.write_errors = 0
        self.spool_errors = 0
        self.spooled_points = 0
        self.refused_points = 0
        self.duplicate_points = 0  # points of replayed batches the store already held (skipped, not stored twice)

    @property
    def pending_batches(self) -> int:
        """Batches queued by the collectors since the last drain (not yet handed to the worker thread)."""
        return len(self._pending)

    @property
    def backlog_points(self) -> int:
        """Points whose write failed and that wait in memory (only while the disk spool cannot be written)."""
        return self._backlog_points

    @property
    def unsaved_points(self) -> int:
        """Points neither stored nor spooled: after the final drain, what this stop loses."""
        return self._backlog_points + sum(len(b) for b in self._pending)

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
                self._seq += 1
                self._backlog.append((self._seq, batch))
                self._backlog_points += len(batch)
            if self._failing:
                # The store is failing: to the disk spool first (not after a long stay in memory, nor after a retry
                # that may take long), then replayed from there when a retry is due.
                self._spill()
            if not final and time.monotonic() < self._retry_at:
                return
            ok = self._write_all()
            if ok:
                self._delay = WRITER_RETRY_S[0]
                return
            self._retry_at = time.monotonic() + self._delay
            self._delay = min(self._delay * 2, WRITER_RETRY_S[1])
            self._spill()

    def _write_all(self) -> bool:
        """In the worker thread: replay the disk spool, then the backlog, in order; False at the first failure."""
        if self.spool is not None:
            while True:
                try:
                    item = self.spool.peek()
                except OSError as exc:
                    self._spool_failed("read", exc)
                    return False
                if item is None:
                    break
                rec, data = item
                decoded = batch_from_bytes(data) if data else None
                if decoded is not None and not self._write(*decoded):
                    return False
                try:
                    self.spool.ack(rec)
                except OSError as exc:  # stored but not acknowledged: replayed again, and skipped then by its seq
                    self._spool_failed("acknowledge", exc)
                    return False
        while self._backlog:
            seq, batch = self._backlog[0]
            if not self._write(batch, seq):
                return False
            self._backlog.popleft()
            self._backlog_points -= len(batch)
        return True

    def _write(self, batch: Batch, seq: int | None) -> bool:
        """Hand one batch to the store; False (counted, logged once per outage) when that fails."""
        try:
            if seq is None:  # a record spooled before batches carried a sequence number
                self.historian.write(batch)
                stored = True
            else:
                stored = self.historian.write_once(batch, seq)
        except Exception as exc:  # a failing store must not stop collection; the batch is kept and retried
            self.write_errors += 1
            if not self._failing:
                log.error("historian write of %d points failed (%s); spooling and retrying", len(batch), exc)
                self._failing = True
            else:
                log.debug("historian write still failing: %s", exc)
            return False
        if self._failing:
            log.warning("historian writes work again; replaying what was spooled")
            self._failing = False
        if stored:
            self.points_written += len(batch)
        else:
            self.duplicate_points += len(batch)
        return True

    def _spill(self) -> None:
        """Move the whole backlog to the disk spool, oldest first, so a kill -9 loses at most one flush interval.

        What the spool cannot take because its disk fails stays in memory (up to ``max_memory_points``, the oldest
        refused beyond); what it refuses because it is full is refused. Both are counted and logged once.
        """
        while self._backlog and self.spool is not None:
            seq, batch = self._backlog[0]
            try:
                ok = self.spool.append(batch_to_bytes(batch, seq), len(batch))
            except OSError as exc:
                self._spool_failed("append to", exc)
                break
            self._spool_error = None
            self._backlog.popleft()
            self._backlog_points -= len(batch)
            if ok:
                self.spooled_points += len(batch)
                self._refusing = False
            else:
                self._refuse(batch, f"spool {self.spool.dir} is full")
        while self._backlog and self._backlog_points > self.max_memory_points:
            _, batch = self._backlog.popleft()
            self._backlog_points -= len(batch)
            where = "no disk spool is configured" if self.spool is None else "the spool cannot be written"
            self._refuse(batch, f"{where} and {self.max_memory_points} points are held in memory")

    def _refuse(self, batch: Batch, why: str) -> None:
        self.refused_points += len(batch)
        if not self._refusing:
            log.error("historian down and %s: refusing %d points (counted in refused_points)", why, len(batch))
            self._refusing = True

    def _spool_failed(self, what: str, exc: OSError) -> None:
        """Count a failed spool operation; log it once until the spool works again."""
        self.spool_errors += 1
        if self._spool_error is None:
            where = self.spool.dir if self.spool is not None else "?"
            log.error("writer spool %s: cannot %s it (%s); holding points in memory meanwhile", where, what, exc)
        self._spool_error = exc

    def close(self) -> None:
        """Close the disk spool (what it holds is replayed at the next start)."""
        if self.spool is not None:
            self.spool.close()


def batch_to_bytes(batch: Batch, seq: int | None = None) -> bytes:
    """A batch as one Arrow IPC stream (series, ts, value, quality, reason), with its writer sequence number."""
    cols = {
        "series": pa.array(batch.series.tolist(), pa.string()),
        "ts": pa.array(batch.ts_ns, pa.int64()),
        "value": pa.array(batch.values, pa.float64()),
        "quality": pa.array(batch.quality, pa.uint8()),
    }
    if batch.reasons:
        cols["reason"] = pa.array(batch.reasons, pa.string())
    table = pa.table(cols, metadata=None if seq is None else {_SEQ_META: str(seq).encode()})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def batch_from_bytes(data: bytes) -> tuple[Batch, int | None] | None:
    """The batch of :func:`batch_to_bytes` and its sequence number (None in older records); None (logged) when the
    record cannot be decoded."""
    try:
        table = pa.ipc.open_stream(pa.py_buffer(data)).read_all()
        reasons = table.column("reason").to_pylist() if "reason" in table.column_names else []
        meta = table.schema.metadata or {}
        seq = int(meta[_SEQ_META]) if _SEQ_META in meta else None
        batch = Batch(
            np.array(table.column("series").to_pylist(), dtype=object),
            table.column("ts").to_numpy().astype(np.int64),
            table.column("value").to_numpy(zero_copy_only=False).astype(np.float64),
            table.column("quality").to_numpy().astype(np.uint8),
            [r or "" for r in reasons],
        )
    except (pa.ArrowException, KeyError, ValueError) as exc:
        log.error("writer spool: undecodable record skipped (%s)", exc)
        return None
    return batch, seq
