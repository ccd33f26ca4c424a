"""The history backfill (:mod:`app.backfill`) inside the main job: planned at start when the historian is empty,
run after the REST API starts and before the collectors do, shown on the terminal as a progress bar and on
``/health`` (503 with its phase, fraction and simulated time), and followed at once by last month's report, written
beside the first fits.

The forecasts and the fault detector are the job's services: they start right after the backfill, and each fits
on the history at its first pass (the forecast service's first update, on the last :data:`FIRST_FIT_HISTORY` of it,
and the fault predictor's first step).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import pandas as pd

from aidc.errors import ConfigError
from app.backfill import (
    PENDING_POINTS,
    HistoryPlan,
    HistoryRun,
    Progress,
    has_history,
    plan_history,
    run_in_own_loop,
)
from app.job import MainJob

log = logging.getLogger(__name__)

BAR_WIDTH = 30
MARKER = "history.json"  # what the backfill simulated, and whether it finished
DAYS_ENV = "AIDC_HISTORY_DAYS"  # the default of ``aidc demo --history-days`` (the test suite sets 0: no backfill)
# The forecasts' first fit after the backfill learns from the last 14 days (a 28-day fit took minutes at demo size);
# their first refit, after a day of new telemetry, learns from the policy's whole window. 14 days is the least that
# still calibrates the PUE forecast's band (7 days of training before its 6-day validation window).
FIRST_FIT_HISTORY = pd.Timedelta("14D")
QUIET_LOGGERS = ("control", "simulators", "collectors.writer")  # the simulated past's guard actions stay in its audit


def history_days(given: int | None, env: Mapping[str, str] | None = None) -> int | None:
    """``--history-days`` when given, else ``AIDC_HISTORY_DAYS`` when set, else None (the default span)."""
    if given is not None:
        if given < 0:
            raise ConfigError(f"--history-days {given}: give 0 (no history) or more days")
        return given
    raw = (os.environ if env is None else env).get(DAYS_ENV, "").strip()
    if not raw:
        return None
    try:
        days = int(raw)
    except ValueError:
        raise ConfigError(f"{DAYS_ENV}={raw!r}: expected a whole number of days (0: no history)") from None
    if days < 0:
        raise ConfigError(f"{DAYS_ENV}={raw!r}: give 0 (no history) or more days")
    return days


def start_history(
    job: MainJob,
    days: int | None,
    *,
    core: Any = None,
    fits: Sequence[Callable[[], object]] = (),
    printer: Callable[[str], None] = print,
) -> Progress | None:
    """Plan the backfill when the job's historian holds nothing for the site and register it to run before the
    collectors start; its progress, or None (with one line saying why) when there is nothing to simulate.

    ``fits`` run (each in a worker thread, side by side and beside last month's report) once the history is written
    and before ``/health`` turns 200: the forecasts' and the fault detector's first pass, so they answer as soon as
    the job is up."""
    site = job.site
    if has_history(job.historian, site):
        marker = _read_marker(site.data_dir)
        if marker is not None and not marker.get("complete"):
            printer(f"history: the backfill of {marker.get('from')} to {marker.get('to')} was interrupted; this "
                    f"historian keeps what it wrote (remove {site.data_dir} to simulate it again)")  # fmt: skip
        else:
            printer(f"history: reusing what {site.data_dir} holds (no backfill)")
        return None
    plan = plan_history(site, job.clock.now_ns(), days)
    if plan is None:
        printer(f"no history in {site.data_dir}: a new, empty historian" +
                (" (--history-days 0)" if days == 0 else " (the site has no CDU to simulate)"))  # fmt: skip
        return None
    progress = Progress(start_ns=plan.start_ns, end_ns=plan.end_ns, sim_ns=plan.start_ns)
    job.ready_checks["history backfill"] = lambda: progress.phase in ("done", "failed")
    job.startup_detail = lambda: None if progress.phase in ("done", "failed") else {"backfill": progress.as_dict()}
    tz = site.config.site.timezone
    printer(f"no history in {site.data_dir}: simulating {plan.steps * plan.step_s / 86400:.1f} days from "
            f"{_local(plan.start_ns, tz)} at {plan.step_s / 60:g}-minute steps before going live "
            "(the supervisor advising, then in auto; a slow pump wear on "
            f"{plan.fault_cdu}; {len(plan.outages)} communication losses)")  # fmt: skip

    async def run() -> None:
        await backfill(job, plan, progress, core=core, fits=fits, printer=printer)

    job.before_collect.append(run)
    return progress


async def backfill(
    job: MainJob,
    plan: HistoryPlan,
    progress: Progress,
    *,
    core: Any = None,
    fits: Sequence[Callable[[], object]] = (),
    printer: Callable[[str], None] = print,
) -> None:
    """Simulate the plan into the job's historian writer, flush, write last month's report; never raises (a failed
    backfill is one error line and the job goes live without the rest of the history)."""
    bar = ProgressBar(progress, job.site.config.site.timezone)
    queued = [0]

    async def wait_writer(points: int) -> None:
        # The writer's own task drains every flush interval (in a thread, beside the next chunk's simulation);
        # past PENDING_POINTS queued the backfill waits for it, and at the end everything is written.
        queued[0] += max(points, 0)
        if points < 0 or queued[0] > PENDING_POINTS:
            await job.writer.drain()
            queued[0] = 0
        else:
            await asyncio.sleep(0)

    _write_marker(job.site.data_dir, progress, complete=False)
    bar.start()
    try:
        with _quiet():
            run = await asyncio.to_thread(HistoryRun, job.site, plan, core=core)
            # The simulation runs on a loop of its own in a worker thread (no thread hand-off per step, see
            # InlineExecutor); the writer and its waits stay on the job's loop.
            loop, stop = asyncio.get_running_loop(), threading.Event()

            async def wait_on_job_loop(points: int) -> None:
                waiting = asyncio.wrap_future(asyncio.run_coroutine_threadsafe(wait_writer(points), loop))
                while not (await asyncio.wait({waiting}, timeout=0.5))[0]:
                    if stop.is_set():  # the job's loop is going away: never wait on it forever
                        waiting.cancel()
                        raise asyncio.CancelledError("history backfill stopped")
                waiting.result()

            try:
                await asyncio.to_thread(run_in_own_loop, run, job.writer, wait_on_job_loop, progress,
                                        job.clock.now_ns, stop)  # fmt: skip
            finally:
                stop.set()  # interrupted: the simulation ends at its next chunk
        progress.phase = "report"
        await asyncio.to_thread(job.historian.flush)  # the rollups the report and the forecasts read
        bar.stop()
        printer(f"history: {job.writer.points_written:,} points written in {progress.as_dict()['elapsed_s']:g} s")
        _write_marker(job.site.data_dir, progress, complete=True)
        # Last month's report and the first fits read the same stored history and write nothing another reads:
        # they run side by side, each in a thread (mostly in DuckDB, numpy and scikit-learn, which release the GIL).
        report = asyncio.create_task(asyncio.to_thread(_report, job, plan, printer))
        progress.phase = "fitting"
        try:
            await asyncio.gather(*(_first_fit(fit) for fit in fits))
        finally:
            await report
        printer(f"history: forecasts and fault detector fitted; going live after {progress.as_dict()['elapsed_s']:g} s")
    except asyncio.CancelledError:
        progress.phase = "failed"
        raise
    except Exception as exc:  # the demo goes live without the rest of its history rather than not at all
        log.exception("history backfill failed")
        printer(f"history backfill failed ({type(exc).__name__}: {exc}); going live with what was written")
        progress.phase = "failed"
        return
    finally:
        bar.stop()
    progress.phase = "done"


async def _first_fit(fit: Callable[[], object]) -> None:
    """One first fit in a worker thread; a failure is logged (advisory parts: their services try again later)."""
    try:
        await asyncio.to_thread(fit)
    except Exception:
        log.exception("first fit after the history failed")


def _write_marker(data_dir: Path, progress: Progress, *, complete: bool) -> None:
    """``<data_dir>/history.json``: the span simulated and whether it was finished (a later start says if not)."""
    doc = {**progress.as_dict(), "complete": complete}
    (data_dir / MARKER).write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")


def _read_marker(data_dir: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads((data_dir / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _report(job: MainJob, plan: HistoryPlan, printer: Callable[[str], None]) -> None:
    """Last month's PDF and HTML report, now, when the history covers it (the job's monthly tick then finds it on
    disk); a shorter history (``--history-days``) says so in one line."""
    from analytics.report.schedule import MonthlyReports, last_month

    now = pd.Timestamp(job.clock.now_ns(), unit="ns", tz="UTC")
    month = last_month(job.site, now)
    if month.start.value < plan.start_ns:
        printer(f"history: starts after {month.label} began; no report of {month.label}")
        return
    printer(f"history: writing the report of {month.label} ...")
    files = MonthlyReports(job.site).tick(job.historian, now)
    if files is not None:
        printer(f"history: report of {month.label} in {files.pdf or files.html}")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The simulated past's warnings (heartbeat reverts, guard actions) are in its audit, not on the console."""
    loggers = [logging.getLogger(name) for name in QUIET_LOGGERS]
    old = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, old, strict=True):
            lg.setLevel(level)


def _local(t_ns: int, tz: str) -> str:
    return f"{pd.Timestamp(t_ns, unit='ns', tz='UTC').tz_convert(tz):%Y-%m-%d %H:%M %Z}"


class ProgressBar:
    """The backfill's progress on stderr: one line redrawn in place on a terminal, a line per tenth otherwise."""

    def __init__(self, progress: Progress, tz: str, stream: TextIO | None = None, every_s: float = 0.5) -> None:
        self.progress, self.tz, self.every_s = progress, tz, every_s
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._tenth = -1

    def line(self) -> str:
        """``history [#####.....]  42% 2026-11-14 05:00 EST  35 s``."""
        p = self.progress
        done = round(p.fraction * BAR_WIDTH)
        return (f"history [{'#' * done}{'.' * (BAR_WIDTH - done)}] {100 * p.fraction:3.0f}% "
                f"{_local(p.sim_ns or p.start_ns, self.tz)}  {p.as_dict()['elapsed_s']:.0f} s")  # fmt: skip

    def draw(self) -> None:
        """Redraw (terminal) or print at each new tenth (log file, pipe)."""
        if self.tty:
            self.stream.write("\r" + self.line())
        else:
            tenth = int(self.progress.fraction * 10)
            if tenth == self._tenth:
                return
            self._tenth = tenth
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    def start(self) -> None:
        """Draw every ``every_s`` from a thread of its own until :meth:`stop`."""
        if self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.wait(self.every_s):
                self.draw()

        self._thread = threading.Thread(target=loop, name="history progress", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Draw the last state and end the line."""
        if self._thread is None or self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(timeout=2.0)
        self.draw()
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
