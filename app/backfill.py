"""The demo's history at first start: the past simulated in process, at full speed, into an empty historian.

A new demo would otherwise show empty forecasts, reports and bills for days. When its historian holds nothing for
the site, ``aidc demo`` first simulates the facility from 00:00 site time on the 1st of last month (and at least
:data:`MIN_DAYS` days back; ``--history-days N`` instead sets the span) to the facility's now, at
:data:`STEP_S` resolution, and writes it through the job's own historian writer: every point of every device with
the collectors' series names, tags and quality. In it:

- the tenants of the site file lease their racks (their PDU counters are what the bills read);
- the real cooling supervisor (:class:`control.supervisor.Supervisor` with the live job's learning core) decides at
  every step on a :class:`aidc.clock.SteppedClock`, as :class:`app.evaluation.harness.SupervisedRun` steps it:
  advisory for the first :data:`ADVISORY_SHARE` of the span, then auto; its audit lines go to the site's audit log
  and its decisions to the ``controller`` series;
- a slow pump wear develops on one CDU over the last day (:mod:`simulators.degradation`), for the fault detector;
- a few devices lose communication for a while: their series stop, with one ``bad`` sample marking each gap, as the
  collectors' stale watchdog writes it.

This module steps the simulated facility, which only the composition root may import beside the stages.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from aidc.clock import SteppedClock, format_ns
from aidc.config import Site
from aidc.live import LiveState
from aidc.model import Batch, Quality
from historian import Historian, SeriesSelector

log = logging.getLogger(__name__)

NS = 1_000_000_000
DAY_NS = 86_400 * NS
STEP_S = 300.0  # the history's resolution: one sample of every series per 5 minutes
MIN_DAYS = 14  # the default history reaches at least this far back (the PUE forecast needs 7 days, faults 3)
CHUNK_STEPS = 24  # steps between two looks at the event loop (two simulated hours)
ADVISORY_SHARE = 0.4  # the supervisor advises for this share of the span, then runs in auto
PENDING_POINTS = 400_000  # queued points beyond which the backfill waits for the writer (memory stays bounded)
ACTOR = "aidc-demo-history"


@dataclass(frozen=True, slots=True)
class Outage:
    """A device's lost communication: no fresh value from ``start_ns`` until ``end_ns``."""

    device: str
    start_ns: int
    end_ns: int


@dataclass(frozen=True, slots=True)
class HistoryPlan:
    """What the backfill simulates: the span, when the supervisor goes auto, the slow fault and the outages."""

    start_ns: int
    end_ns: int
    auto_from_ns: int
    fault_cdu: str
    fault_start_ns: int
    outages: tuple[Outage, ...] = ()
    step_s: float = STEP_S

    @property
    def steps(self) -> int:
        """How many steps the span takes."""
        return max(0, (self.end_ns - self.start_ns) // int(self.step_s * NS))


def history_start(site: Site, now_ns: int, days: int | None) -> int:
    """Where the history begins: ``days`` before now (on the 5-minute grid), or by default 00:00 site time on the
    1st of last month, or :data:`MIN_DAYS` back when that is earlier."""
    step = int(STEP_S * NS)
    if days is not None:
        return (now_ns - days * DAY_NS) // step * step
    local = pd.Timestamp(now_ns, unit="ns", tz="UTC").tz_convert(site.config.site.timezone)
    first = (local.normalize().replace(day=1) - pd.DateOffset(months=1)).normalize()
    start = int(pd.Timestamp(first).tz_convert("UTC").value)
    return min(start, (now_ns - MIN_DAYS * DAY_NS) // step * step)


def plan_history(site: Site, now_ns: int, days: int | None = None) -> HistoryPlan | None:
    """The history to simulate up to ``now_ns``; None when ``days`` is 0 (no history) or the site has no CDU."""
    if days is not None and days <= 0:
        return None
    cdus = [c.name for h in site.config.halls for c in h.cdus]
    if not cdus:
        return None
    step = int(STEP_S * NS)
    end = now_ns // step * step
    start = history_start(site, now_ns, days)
    span = end - start
    # The slow fault grows over the last 20 hours: the fault detector learns its baseline on the week that ends a
    # day before now, so the fault is scored, never learned.
    fault_start = max(start, end - 20 * 3600 * NS)
    return HistoryPlan(start, end, start + int(span * ADVISORY_SHARE), cdus[0], fault_start,
                       _outages(site, start, span))  # fmt: skip


def _outages(site: Site, start: int, span: int) -> tuple[Outage, ...]:
    """A rack PDU, a rack controller and a meter each lose communication once, for 45 min to 2 h."""
    racks = [r for _, r in site.racks()]
    pdu = racks[len(racks) // 2].pdu if racks else None
    controller = racks[-1].controller if racks else None
    picks: list[tuple[str | None, float, float]] = [
        (pdu.name if pdu is not None else None, 0.23, 0.75),
        (controller.name if controller is not None else None, 0.57, 2.0),
        (next((m.name for m in site.config.meters if m.purpose == "cooling"), None), 0.81, 1.0),
    ]
    step = int(STEP_S * NS)
    out = []
    for device, at, hours in picks:
        if device is not None:
            t0 = (start + int(span * at)) // step * step
            out.append(Outage(device, t0, t0 + int(hours * 3600 * NS)))
    return tuple(out)


def has_history(historian: Historian, site: Site) -> bool:
    """True when the historian holds any device sample of the site (its latest value of any measurement)."""
    for measurement in sorted({d.profile.measurement for d in site.devices}):
        if len(historian.latest(SeriesSelector(measurement, {"site": site.name}, None))):
            return True
    return False


@dataclass
class Progress:
    """How far the backfill is, for ``/health`` and the terminal (written by the backfill, read by others)."""

    # planned, simulating, report (the rollups flushed), fitting (forecasts and fault detector, beside last month's
    # report), done, failed
    phase: str = "planned"
    start_ns: int = 0
    end_ns: int = 0
    sim_ns: int = 0
    started_mono: float = field(default_factory=time.monotonic)

    @property
    def fraction(self) -> float:
        """Share of the span simulated so far, 0..1."""
        if self.phase in ("report", "fitting", "done"):
            return 1.0
        span = self.end_ns - self.start_ns
        return 0.0 if span <= 0 else min(1.0, max(0.0, (self.sim_ns - self.start_ns) / span))

    def as_dict(self) -> dict[str, Any]:
        """The JSON ``/health`` shows while the backfill runs."""
        return {"phase": self.phase, "fraction": round(self.fraction, 4),
                "simulated_time": format_ns(self.sim_ns) if self.sim_ns else None,
                "from": format_ns(self.start_ns), "to": format_ns(self.end_ns),
                "elapsed_s": round(time.monotonic() - self.started_mono, 1)}  # fmt: skip


class HistoryRun:
    """The simulated facility, its telemetry and the supervisor for one backfill (see the module's text)."""

    def __init__(self, site: Site, plan: HistoryPlan, *, core: Any = None) -> None:
        from collectors.writer import Actor
        from control.field import FieldWriter
        from control.supervisor import Supervisor
        from simulators.degradation import Degradation, SlowFault
        from simulators.facility import Facility
        from simulators.facility_batch import FacilityBatch

        self.site, self.plan = site, plan
        self.fac = fac = Facility(site, start_ns=plan.start_ns, sensor_noise=True)
        fac.degradation = Degradation.for_facility(
            fac, site, [SlowFault("pump_wear", plan.fault_cdu, plan.fault_start_ns, ramp_days=2.0, severity=0.5)]
        )
        self.clock = SteppedClock(fac.t_ns)
        self.live = LiveState()
        # A write reads back the point it wrote: the device's writable points are enough (the same numbers).
        writer = FieldWriter(site, fac.write_point, fac.device_held, self.clock.now_ns)
        self.telemetry = FacilityBatch(fac)  # every device's points, column by column (ExactTelemetry's numbers)
        # series array's id -> (that array, indices the supervisor reads, their series array)
        self._needed: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._kept: tuple[np.ndarray, tuple[Outage, ...], np.ndarray, np.ndarray] | None = None
        self.publish: Callable[[Batch], None] = _discard
        self.supervisor = Supervisor(site, self.live, writer, self.clock, core=core, actor=Actor(ACTOR, "operator"),
                                     publish=lambda b: self.publish(b))  # fmt: skip
        self._series: np.ndarray | None = None
        self._masks: dict[str, np.ndarray] = {}

    def _mask(self, series: np.ndarray, device: str) -> np.ndarray:
        """Which series belong to ``device`` (by its tag in the series id; cached while the layout stays)."""
        if self._series is not series:
            self._series, self._masks = series, {}
        mask = self._masks.get(device)
        if mask is None:
            tag = f",device={device}"
            mask = self._masks[device] = np.fromiter(
                ((tag + "," in s or tag + " " in s) for s in series), dtype=bool, count=len(series)
            )
        return mask

    def batch(self, t_ns: int) -> Batch:
        """Every series now, less the devices whose communication is lost (one ``bad`` sample at each gap's start)."""
        b = self.telemetry.batch(t_ns)
        down = tuple(o for o in self.plan.outages if o.start_ns <= t_ns < o.end_ns)
        if not down:
            return b
        # The kept rows and their series array are reused while the same devices are down: the sinks (live state,
        # input reader) map a series array they have seen before without a lookup per series.
        if self._kept is None or self._kept[0] is not b.series or self._kept[1] != down:
            keep = np.ones(len(b), dtype=bool)
            for o in down:
                keep &= ~self._mask(b.series, o.device)
            self._kept = (b.series, down, keep, b.series[keep])
        _, _, keep, series = self._kept
        kept = Batch(series, b.ts_ns[keep], b.values[keep], b.quality[keep])
        parts = []
        for o in down:
            if t_ns == o.start_ns:  # what the stale watchdog writes once a device stops answering
                mine = self._mask(b.series, o.device)
                n = int(mine.sum())
                why = f"stale: no fresh value for {STEP_S:g}s (simulated communication loss)"
                parts.append(Batch(b.series[mine], b.ts_ns[mine], np.full(n, np.nan),
                                   np.full(n, int(Quality.BAD), dtype=np.uint8), [why] * n))  # fmt: skip
        return Batch.concat([kept, *parts]) if parts else kept

    def needed(self, batch: Batch) -> Batch:
        """The part of a batch the supervisor reads (its live state and input reader need no GPU-by-GPU power)."""
        hit = self._needed.get(id(batch.series))
        if hit is None or hit[0] is not batch.series:
            wanted = self.supervisor.builder.needed()
            mine = np.flatnonzero(np.fromiter((_wanted(s, wanted) for s in batch.series), dtype=bool,
                                              count=len(batch)))  # fmt: skip
            if len(self._needed) > 8:  # a few layouts (all devices up, each outage) cover the whole history
                self._needed.clear()
            hit = self._needed[id(batch.series)] = (batch.series, mine, batch.series[mine])
        _, i, series = hit
        return Batch(series, batch.ts_ns[i], batch.values[i], batch.quality[i],
                     [batch.reasons[j] for j in i] if batch.reasons else [])  # fmt: skip

    async def run(
        self,
        sink: Callable[[Batch], None],
        wait_writer: Callable[[int], Awaitable[None]],
        progress: Progress,
        target_ns: Callable[[], int] | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        """Simulate the span, handing each step's batch to ``sink`` (the historian writer); ``wait_writer(n)``
        is awaited between chunks with the points queued so far, so the writer keeps up. ``target_ns`` (the live
        clock) lets the history chase a facility clock that moved on while it ran; ``stop`` ends it between
        chunks (the job was interrupted)."""
        plan, fac, sup = self.plan, self.fac, self.supervisor
        self.publish = sink
        step_ns = int(plan.step_s * NS)
        progress.phase, progress.start_ns, progress.end_ns = "simulating", plan.start_ns, plan.end_ns
        sup.set_mode("advisory", ACTOR)
        auto = False
        end = plan.end_ns
        queued = 0
        while True:
            if target_ns is not None:  # chase the live clock: stop within one step of it
                end = max(end, target_ns() // step_ns * step_ns)
                progress.end_ns = end
            if fac.t_ns >= end:
                break
            if stop is not None and stop.is_set():
                raise asyncio.CancelledError("history backfill stopped")
            for _ in range(CHUNK_STEPS):
                if fac.t_ns >= end:
                    break
                t = fac.t_ns
                if not auto and t >= plan.auto_from_ns:
                    sup.set_mode("auto", ACTOR)
                    auto = True
                b = self.batch(t)
                sink(b)
                queued += len(b)
                mine = self.needed(b)
                self.live.update(mine)
                sup.sink(mine)
                await sup.decide_once()
                # No heartbeat: the simulated devices' watchdogs arm at the first one, and a history stepped 5
                # minutes at a time would trip their 60 s timeouts (the live supervisor beats as always).
                fac.step(plan.step_s)
                self.clock.t_ns = fac.t_ns
            progress.sim_ns = fac.t_ns
            await wait_writer(queued)
            queued = 0
        await wait_writer(-1)  # everything written before the job goes live


class InlineExecutor(concurrent.futures.ThreadPoolExecutor):
    """Runs what is submitted at once, in the caller's thread: the default executor of the backfill's own event
    loop, where the supervisor's ``asyncio.to_thread(core.decide)`` (off the loop, so live collectors keep polling)
    would cost two thread hand-offs per simulated step and no collector waits (the same work, in the same order).
    A thread pool by type only (``set_default_executor`` wants one); it never starts a thread."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        """Call ``fn`` now; its result (or exception) in a completed future."""
        done: concurrent.futures.Future[Any] = concurrent.futures.Future()
        try:
            done.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # handed to the awaiting coroutine, as a worker thread's would be
            done.set_exception(exc)
        return done


def run_in_own_loop(
    run: HistoryRun,
    sink: Callable[[Batch], None],
    wait_writer: Callable[[int], Awaitable[None]],
    progress: Progress,
    target_ns: Callable[[], int] | None,
    stop: threading.Event,
) -> None:
    """:meth:`HistoryRun.run` on an event loop of its own in this (worker) thread, with :class:`InlineExecutor` as
    its default executor; ``wait_writer`` is the caller's (awaited on the caller's loop through
    ``run_coroutine_threadsafe`` by the caller's wrapper)."""
    loop = asyncio.new_event_loop()
    loop.set_default_executor(InlineExecutor())
    try:
        loop.run_until_complete(run.run(sink, wait_writer, progress, target_ns, stop))
    finally:
        loop.close()


def _wanted(series_id: str, wanted: dict[str, set[str]]) -> bool:
    """Whether a series is one of the points the supervisor reads (``device`` tag and field)."""
    head, _, fld = series_id.rpartition(" ")
    for tag in head.split(","):
        if tag.startswith("device="):
            return fld in wanted.get(tag[7:], ())
    return False


def _discard(batch: Batch) -> None:
    """No publisher yet."""
