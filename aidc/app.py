"""The main job: collectors feeding the historian and the live state, with a live summary.

``aidc run --config site.toml`` runs it against a real (or already running simulated) facility;
``aidc demo`` first starts the bundled simulated facility in its own process, as real devices are separate
from the manager, then runs the same job against it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from aidc.clock import Clock, ScaledClock
from aidc.config import Site
from aidc.live import LiveState
from aidc.model import Batch
from collectors.engine import Engine, Summary
from historian import Historian, open_historian

log = logging.getLogger(__name__)


class HistorianWriter:
    """Queues collector batches and writes them to the historian from one worker thread.

    The collectors run on the event loop; historian writes (DuckDB inserts, HTTP posts, spool fsyncs) block,
    so they happen off the loop, coalesced into one write per ``flush_every_s``. The queue is unbounded in
    count but each entry is one poll's batch; a slow store makes the queue grow rather than drop samples.
    """

    def __init__(self, historian: Historian, clock: Clock, *, flush_every_s: float = 1.0) -> None:
        self.historian = historian
        self.clock = clock
        self.flush_every_s = flush_every_s
        self._pending: list[Batch] = []
        self._wake = asyncio.Event()
        self.points_written = 0
        self.write_errors = 0

    def __call__(self, batch: Batch) -> None:
        """Sink for the collectors: queue a batch (cheap, never blocks)."""
        self._pending.append(batch)

    async def run(self) -> None:
        """Write queued batches until cancelled; a final flush happens in :meth:`drain`."""
        while True:
            await asyncio.sleep(self.flush_every_s)
            await self.drain()

    async def drain(self) -> None:
        """Write everything queued so far."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        batch = Batch.concat(pending)
        batch = Batch.concat([batch, self.historian.stats_batch(self.clock.now_ns())])
        try:
            await asyncio.to_thread(self.historian.write, batch)
        except Exception:  # a failing store must not stop collection; the remote path spools by itself
            self.write_errors += 1
            log.exception("historian write of %d points failed", len(batch))
            return
        self.points_written += len(batch)


@dataclass
class MainJob:
    """Collectors, historian writer, live state and summary for one site."""

    site: Site
    clock: Clock
    live: LiveState
    historian: Historian
    engine: Engine
    writer: HistorianWriter

    @classmethod
    def build(cls, site: Site, clock: Clock | None = None) -> MainJob:
        """Wire the parts from the site file."""
        if clock is None:
            path = site.data_dir / "clock.json"
            clock = ScaledClock.load(path) if path.is_file() else ScaledClock.starting_now()
        historian = open_historian(site.config.historian, site.data_dir)
        live = LiveState()
        writer = HistorianWriter(historian, clock)
        engine = Engine.from_site(site, sinks=[live.update, writer], clock=clock)
        return cls(site, clock, live, historian, engine, writer)

    async def run(
        self,
        *,
        duration_s: float | None = None,
        summary_every_s: float = 5.0,
        printer: Callable[[str], None] = print,
    ) -> None:
        """Run until cancelled or for ``duration_s`` wall seconds, printing a summary line periodically."""
        summary = Summary(self.engine, self.live)
        loop = asyncio.get_running_loop()
        end = None if duration_s is None else loop.time() + duration_s
        writer_task = asyncio.create_task(self.writer.run(), name="historian writer")
        report_task = asyncio.create_task(self.monthly_reports(), name="monthly PUE report")
        try:
            async with self.engine:
                while end is None or loop.time() < end:
                    left = summary_every_s if end is None else end - loop.time()
                    await asyncio.sleep(max(0.0, min(summary_every_s, left)))
                    printer(f"{summary.line()} | stored {self.writer.points_written} points")
        finally:
            report_task.cancel()
            writer_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await report_task
            with contextlib.suppress(asyncio.CancelledError):
                await writer_task
            await self.writer.drain()
            await asyncio.to_thread(self.historian.close)

    async def monthly_reports(self, every_s: float = 3600.0) -> None:
        """Write last month's PUE report on the first day of each month (site time, the job's clock)."""
        import pandas as pd

        from analytics.report.schedule import MonthlyReports

        reports = MonthlyReports(self.site)
        while True:
            now = pd.Timestamp(self.clock.now_ns(), unit="ns", tz="UTC")
            try:
                await asyncio.to_thread(reports.tick, self.historian, now)
            except Exception:  # a report must never stop collection; log it and try again at the next tick
                log.exception("monthly PUE report for site %s failed", self.site.name)
            await asyncio.sleep(every_s)
