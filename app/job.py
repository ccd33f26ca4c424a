"""The main job: collectors feeding the historian and the live state, with a live summary.

``aidc run --config site.toml`` runs it against a real (or already running simulated) facility;
``aidc demo`` first starts the bundled simulated facility in its own process, as real devices are separate
from the manager, then runs the same job against it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from aidc.clock import Clock, site_clock
from aidc.config import Site
from aidc.errors import AidcError
from aidc.live import LiveState
from analytics.energy.metering import PowerMeters, live_pue
from api.context import Readiness
from collectors.engine import Engine, Summary
from historian import Historian, open_historian
from historian.spool import Spool
from historian.writer import HistorianWriter

log = logging.getLogger(__name__)


class JobError(AidcError):
    """The main job cannot go on (a part kept failing after restarts); the message says which and why."""


class Service(Protocol):
    """A background service the job starts once its collectors run and stops (in reverse order) before they close,
    e.g. the REST API, fault prediction, the live forecast."""

    name: str

    async def start(self) -> None:
        """Start (return once it serves or runs)."""
        ...

    async def stop(self) -> None:
        """Stop and release what it holds; called even when a later service failed to start."""
        ...


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
    # Parts /health waits for beside the collectors and the writer, by name (e.g. the cooling supervisor's task).
    ready_checks: dict[str, Callable[[], bool]] = field(default_factory=dict)
    # Run once the historian writer runs and before the collectors start (the demo's REST API, then its history
    # backfill, which writes through the writer); on_stop runs after them even when one of them is interrupted.
    before_collect: list[Callable[[], Awaitable[object]]] = field(default_factory=list)
    # What /health shows beside the parts while the job starts (e.g. the history backfill's progress).
    startup_detail: Callable[[], dict[str, object] | None] | None = None
    _writer_task: asyncio.Task[None] | None = field(default=None, init=False, repr=False)
    _writer_since: float = field(default=0.0, init=False, repr=False)  # time.monotonic() the writer task started
    _report_call: asyncio.Future[object] | None = field(default=None, init=False, repr=False)
    # Points the writer could save nowhere (store and spool both failing) when the job stopped; the exit status is 1.
    lost_at_stop: int = field(default=0, init=False)

    @classmethod
    def build(cls, site: Site, clock: Clock | None = None) -> MainJob:
        """Wire the parts from the site file."""
        if clock is None:
            clock = site_clock(site.data_dir)
        cfg = site.config.historian
        historian = open_historian(cfg, site.data_dir, site=site.name)  # site: the central store's tag
        live = LiveState()
        spool = Spool(
            site.data_dir / "writer-spool",
            max_bytes=cfg.spool.max_bytes,
            segment_bytes=cfg.spool.segment_bytes,
            fsync=cfg.spool.fsync == "always",
        )
        # Flushed at least twice per poll interval (in wall seconds), so while the store fails everything but the last
        # half interval is in the disk spool: a kill -9 then loses at most one poll interval.
        speed = getattr(clock, "speed", 1.0)
        poll_s = min((d.config.poll_interval_s / speed for d in site.devices), default=2.0)
        # The collectors' evicted-point counter, read late: the engine is built just below, with the writer as a sink.
        writer = HistorianWriter(historian, clock, flush_every_s=min(1.0, poll_s / 2), spool=spool,
                                 dropped=lambda: engine.output.dropped)  # fmt: skip
        engine = Engine.from_site(site, sinks=[live.update, writer], clock=clock)
        return cls(site, clock, live, historian, engine, writer)

    def add_service(self, service: Service) -> None:
        """Start ``service`` after the parts added before it; stop it before them."""
        self.on_start.append(service.start)
        self.on_stop.insert(0, service.stop)

    def readiness(self) -> Readiness:
        """What is live of the collectors (every device connected or tried once), the historian writer (running for
        one flush interval, its store not failing) and each ready check, and what is still pending."""
        pending = [f"collector {name}" for name, h in self.engine.health().items() if not (h.polls or h.errors)]
        task = self._writer_task
        if task is None or task.done() or time.monotonic() - self._writer_since < self.writer.flush_every_s:
            pending.append("historian writer")
        elif self.writer.failing:
            pending.append("historian writer (store failing)")
        pending += [name for name, check in self.ready_checks.items() if not check()]
        total = len(self.engine.devices) + 1 + len(self.ready_checks)
        detail = self.startup_detail() if self.startup_detail is not None else None
        return Readiness(total - len(pending), total, tuple(pending), detail)

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
        summary = self.summary()
        loop = asyncio.get_running_loop()
        end = None if duration_s is None else loop.time() + duration_s
        deaths: dict[str, list[float]] = {"collector engine": [], "historian writer": []}
        writer_task = asyncio.create_task(self.writer.run(), name="historian writer")
        self._writer_task, self._writer_since = writer_task, time.monotonic()
        report_task: asyncio.Task[None] | None = None
        collecting = False
        try:
            for hook in self.before_collect:
                await hook()
            # Its first tick comes after the hooks, so a backfilled history's last month is reported at once.
            report_task = asyncio.create_task(self.monthly_reports(), name="monthly PUE report")
            async with self.engine:
                collecting = True
                try:
                    for hook in self.on_start:
                        await hook()
                    await self._loop(summary, end, summary_every_s, printer, deaths, writer_task)
                finally:
                    await self._stop_hooks()
        finally:
            if not collecting:  # interrupted before the collectors started: stop what before_collect started
                await self._stop_hooks()
            if report_task is not None:
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
            await self._close_storage()

    async def _close_storage(self) -> None:
        """Flush the writer (to the store, else its spool) and close both; a storage fault here (a full disk) is one
        clear log line, never a traceback. Points that could be saved nowhere are counted in ``lost_at_stop``."""
        await self.writer.drain(final=True)
        self.lost_at_stop = self.writer.unsaved_points
        try:
            self.writer.close()
        except OSError as exc:
            log.error("historian writer: closing its spool failed at stop (%s)", exc)
        spool = self.writer.spool
        if spool is not None and spool.depth_points and self.writer.failing:
            log.warning("historian writer: the historian failed at stop; %d points wait in the spool %s and are "
                        "written at the next start", spool.depth_points, spool.dir)  # fmt: skip
        if self.lost_at_stop:
            log.error(
                "historian writer: %d points could be written neither to the historian nor to the spool %s at "
                "stop: they are lost (exit status 1)", self.lost_at_stop, spool and spool.dir,
            )  # fmt: skip
        try:
            await asyncio.to_thread(self.historian.close)
        except Exception as exc:  # e.g. DuckDB's final checkpoint on a full disk; what it committed is in its WAL
            log.error("historian: not closed cleanly at stop (%s); committed data is read back at the next start",
                      str(exc).splitlines()[0] if str(exc) else repr(exc))  # fmt: skip

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

    def summary(self) -> Summary:
        """The live summary line, with IT and facility power by the one IT-metering rule (never a part sum)."""
        meters = PowerMeters.of(self.site)

        def power() -> tuple[float | None, float | None, int | None]:
            p = live_pue(meters, self.live)
            return p.it_w, p.facility_w, p.category

        return Summary(self.engine, self.live, power=power)

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
                        self._writer_since = time.monotonic()
            if loop.time() >= next_line:
                next_line += summary_every_s
                printer(f"{summary.line()} | stored {self.writer.points_written} points" + self._extra())

    def _extra(self) -> str:
        """Summary additions that only appear when something is being held back or lost."""
        parts = []
        held = self.writer.backlog_points + (self.writer.spool.depth_points if self.writer.spool else 0)
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
