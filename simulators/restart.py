"""The ``restart`` fault of a simulated device server: close, stay down for a while, listen again.

Every server (Modbus port, SNMP agent, HTTP listener, OPC-UA endpoint) plays the fault the same way, so the
schedule, the retry while the old socket lingers and the log lines live here once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

BIND_TRIES = 50  # listening again is retried this many times ...
BIND_RETRY_S = 0.1  # ... this far apart: the old socket may linger briefly after the close


class RestartFault:
    """One server's restart fault: ``schedule`` takes it down and brings it back; ``cancel`` on stop."""

    def __init__(self, name: str, close: Callable[[], Awaitable[None]], start: Callable[[], Awaitable[None]]) -> None:
        self.name = name  # e.g. "modbus 127.0.0.1:5020", in every log line
        self._close, self._start = close, start
        self._task: asyncio.Task[None] | None = None

    def schedule(self, after_s: float) -> asyncio.Task[None]:
        """Go away for ``after_s`` seconds, then listen again; the task of the restart under way (one already under
        way is left to finish)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(after_s), name=f"restart {self.name}")
        return self._task

    def cancel(self) -> None:
        """Abandon a restart under way (the server is being stopped for good)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self, after_s: float) -> None:
        await self._close()
        log.info("%s: down for %.1f s (restart fault)", self.name, after_s)
        await asyncio.sleep(after_s)
        for _ in range(BIND_TRIES):
            try:
                await self._start()
                return
            except OSError:
                await asyncio.sleep(BIND_RETRY_S)
        log.error("%s: could not listen again after a restart fault", self.name)
