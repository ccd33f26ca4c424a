"""The power guard as a part of the main job: ticks beside the cooling supervisor, writing through the setpoint writer.

Started by ``aidc run`` / ``aidc demo`` (:func:`start_power_guard`, one hook line in ``app/commands/run.py``) when a
rack of the site is ``cappable`` and ``[power_guard] mode`` is not ``off``; it stops in the job's stop hooks, while
the devices are still connected. Its limits stay where they are at stop (a rack's limit is never above its PDU
feed's guarded rating, so what it leaves is safe without it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aidc.errors import ConfigError
from app.job import MainJob
from collectors.writer import SetpointWriter
from control.power_guard import PowerGuard

log = logging.getLogger(__name__)


def start_power_guard(job: MainJob) -> PowerGuard | None:
    """Build the site's power guard and hook it into the job; None (with one line saying why) when it has nothing to
    do or the site's racks cannot be guarded as configured."""
    try:
        guard = PowerGuard(job.site, job.live, SetpointWriter(job.engine, job.site.data_dir / "audit"), job.clock)
    except ConfigError as exc:
        print(f"power guard not started: {exc}", flush=True)
        return None
    if not guard.active:
        return None
    stop = asyncio.Event()
    running: list[asyncio.Task[None]] = []

    async def start() -> None:
        running.append(asyncio.create_task(guard.run(stop), name="power guard"))

    async def finish() -> None:
        stop.set()
        for task in running:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    job.on_start.append(start)
    job.on_stop.insert(0, finish)
    job.ready_checks["power guard"] = lambda: bool(running) and not running[0].done()
    racks = ", ".join(guard.racks[i] for i in guard.points)
    print(f"power guard: mode {guard.cfg.mode}, cappable racks {racks}", flush=True)
    return guard
