"""The main job: collectors feeding the historian and the live state, with a live summary.

``aidc run --config site.toml`` runs it against a real (or already running simulated) facility;
``aidc demo`` first starts the bundled simulated facility in its own process, as real devices are separate
from the manager, then runs the same job against it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from aidc.clock import Clock, ScaledClock
from aidc.config import Site
from aidc.errors import AidcError
from aidc.live import LiveState
from aidc.model import Batch, SeriesKey
from collectors.engine import Engine, Summary
from historian import Historian, open_historian
from historian.spool import Spool

log = logging.getLogger(__name__)


class JobError(AidcError):
    """The main job cannot go on (a part kept failing after restarts); the message says which and why."""


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
        figures = {
            "backlog_points": float(self._backlog_points),
            "spool_depth_points": float(self.spool.depth_points if self.spool else 0),
            "spooled_points_total": float(self.spooled_points),
            "refused_points_total": float(self.refused_points),
            "write_errors_total": float(self.write_errors),
            "points_written_total": float(self.points_written),
            "collector_dropped_points_total": float(self._dropped() if self._dropped else 0),
        }
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


MAX_RESTARTS = 3  # a part that dies more often than this in RESTART_WINDOW_S stops the job with an error
RESTART_WINDOW_S = 600.0


@dataclass
class MainJob:
    """Collectors, historian writer, live state and summary for one site."""

    site: Site
    clock: Clock
    live: LiveState
    historian: Historian
    engine: Engine
    writer: HistorianWriter
    # Run at stop while the devices are still connected, e.g. ``SetpointWriter.revert_all`` of a controller, so
    # setpoints go back to their safe defaults on Ctrl-C and SIGTERM alike.
    on_stop: list[Callable[[], Awaitable[object]]] = field(default_factory=list)
    # Run once the collectors have started (e.g. the cooling supervisor's task); on_stop runs before they close.
    on_start: list[Callable[[], Awaitable[object]]] = field(default_factory=list)
    _writer_task: asyncio.Task[None] | None = field(default=None, init=False, repr=False)
    _report_call: asyncio.Future[object] | None = field(default=None, init=False, repr=False)

    @classmethod
    def build(cls, site: Site, clock: Clock | None = None) -> MainJob:
        """Wire the parts from the site file."""
        if clock is None:
            path = site.data_dir / "clock.json"
            clock = ScaledClock.load(path) if path.is_file() else ScaledClock.starting_now()
        cfg = site.config.historian
        historian = open_historian(cfg, site.data_dir)
        live = LiveState()
        spool = Spool(
            site.data_dir / "writer-spool",
            max_bytes=cfg.spool.max_bytes,
            segment_bytes=cfg.spool.segment_bytes,
            fsync=cfg.spool.fsync == "always",
        )
        writer = HistorianWriter(historian, clock, spool=spool)
        engine = Engine.from_site(site, sinks=[live.update, writer], clock=clock)
        writer._dropped = lambda: engine.output.dropped
        return cls(site, clock, live, historian, engine, writer)

    async def run(
        self,
        *,
        duration_s: float | None = None,
        summary_every_s: float = 5.0,
        printer: Callable[[str], None] = print,
    ) -> None:
        """Run until cancelled or for ``duration_s`` wall seconds, printing a summary line periodically.

        The job watches its two long-lived tasks, the collector engine and the historian writer: one that dies is
        logged and restarted, and one that dies more than ``MAX_RESTARTS`` times in ``RESTART_WINDOW_S`` stops the
        job with :class:`JobError` (the CLI prints it and exits non-zero) instead of a summary that stalls.
        On the way out (end, Ctrl-C, SIGTERM or error) the writer flushes everything it holds to the store, or to
        its disk spool when the store is down.
        """
        summary = Summary(self.engine, self.live)
        loop = asyncio.get_running_loop()
        end = None if duration_s is None else loop.time() + duration_s
        deaths: dict[str, list[float]] = {"collector engine": [], "historian writer": []}
        writer_task = asyncio.create_task(self.writer.run(), name="historian writer")
        self._writer_task = writer_task
        report_task = asyncio.create_task(self.monthly_reports(), name="monthly PUE report")
        try:
            async with self.engine:
                try:
                    for hook in self.on_start:
                        await hook()
                    await self._loop(summary, end, summary_every_s, printer, deaths, writer_task)
                finally:
                    await self._stop_hooks()
        finally:
            report_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await report_task
            if self._report_call is not None:  # a report still reading in its thread: the store closes after it
                await asyncio.wait([self._report_call])
            task = self._writer_task
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await self.writer.drain(final=True)
            self.writer.close()
            await asyncio.to_thread(self.historian.close)

    async def _stop_hooks(self) -> None:
        for hook in self.on_stop:
            try:
                await hook()
            except Exception:  # one failing hook must not skip the others or the flush
                log.exception("stop hook %s failed", getattr(hook, "__qualname__", hook))

    async def monthly_reports(self, every_s: float = 3600.0) -> None:
        """Write last month's PUE report on the first day of each month (site time, the job's clock)."""
        import pandas as pd

        from analytics.report.schedule import MonthlyReports

        reports = MonthlyReports(self.site)
        loop = asyncio.get_running_loop()
        while True:
            now = pd.Timestamp(self.clock.now_ns(), unit="ns", tz="UTC")
            # A cancelled await does not stop the thread: run() waits for this future before closing the store.
            self._report_call = loop.run_in_executor(None, reports.tick, self.historian, now)
            try:
                await asyncio.shield(self._report_call)
            except asyncio.CancelledError:
                raise
            except Exception:  # a report must never stop collection; log it and try again at the next tick
                log.exception("monthly PUE report for site %s failed", self.site.name)
            self._report_call = None
            await asyncio.sleep(every_s)

    async def _loop(
        self,
        summary: Summary,
        end: float | None,
        summary_every_s: float,
        printer: Callable[[str], None],
        deaths: dict[str, list[float]],
        writer_task: asyncio.Task[None],
    ) -> None:
        loop = asyncio.get_running_loop()
        next_line = loop.time() + summary_every_s
        while end is None or loop.time() < end:
            engine_task = self.engine.start()
            limit = next_line if end is None else min(next_line, end)
            await asyncio.wait(
                [engine_task, writer_task], timeout=max(0.0, limit - loop.time()),
                return_when=asyncio.FIRST_COMPLETED,
            )  # fmt: skip
            for name, task in (("collector engine", engine_task), ("historian writer", writer_task)):
                if task.done():
                    self._died(name, task, deaths[name], loop.time())
                    if name == "historian writer":
                        writer_task = self._writer_task = asyncio.create_task(self.writer.run(), name=name)
            if loop.time() >= next_line:
                next_line += summary_every_s
                printer(f"{summary.line()} | stored {self.writer.points_written} points" + self._extra())

    def _extra(self) -> str:
        """Summary additions that only appear when something is being held back or lost."""
        parts = []
        held = self.writer._backlog_points + (self.writer.spool.depth_points if self.writer.spool else 0)
        if held:
            parts.append(f"{held} points waiting for the historian")
        if self.writer.refused_points:
            parts.append(f"refused {self.writer.refused_points} points (spool full)")
        return "".join(f" | {p}" for p in parts)

    @staticmethod
    def _died(name: str, task: asyncio.Task[None], times: list[float], now: float) -> None:
        """A long-lived task ended: note it, or give up with JobError when it keeps dying."""
        exc = None if task.cancelled() else task.exception()
        why = "it returned" if exc is None and not task.cancelled() else repr(exc) if exc else "cancelled"
        times[:] = [t for t in times if now - t < RESTART_WINDOW_S] + [now]
        if len(times) > MAX_RESTARTS:
            raise JobError(
                f"{name} stopped {len(times)} times in {RESTART_WINDOW_S:.0f} s (last: {why}); the job stops"
            ) from exc
        log.error("%s stopped (%s); restarting it (%d of %d)", name, why, len(times), MAX_RESTARTS,
                  exc_info=exc)  # fmt: skip
