"""Services the main job hosts beside its collectors: the REST API, and the supervisor as other threads reach it.

The API serves from the job's own parts (one historian handle, the live state, the one alarm engine, the historian
writer, the collectors' health and the real supervisor), so no second process ever opens the embedded store. While
it serves, the job's user can call it without a token of their own: see :mod:`api.local`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import pandas as pd

from aidc.errors import AidcError
from analytics.alarms.engine import AlarmEngine
from analytics.forecast.service import ForecastService
from api.app import create_app
from api.auth import ApiRole, TokenStore, new_token
from api.context import ApiContext
from api.local import LOCAL_NAME, LOCAL_ROLE, LocalCredential, remove_local_credential, write_local_credential
from api.server import ApiServer, listen
from app.job import MainJob
from control.interface import Mode, SupervisorControl

T = TypeVar("T")
CALL_TIMEOUT_S = 10.0  # how long a caller on another thread waits for the event loop to run its supervisor call


class OnLoopSupervisor:
    """The supervisor for callers on other threads (API workers, dashboard callbacks): every call runs on the job's
    event loop, between the supervisor's own steps, so an override never changes under a decision being made.

    Before :meth:`bind` (or after the loop stops) calls go straight through: no other step can run then.
    """

    def __init__(self, supervisor: SupervisorControl) -> None:
        self.supervisor = supervisor
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop | None) -> None:
        """Run calls on ``loop`` from now on (None: call directly again)."""
        self._loop = loop

    def _call(self, fn: Callable[[], T]) -> T:
        loop = self._loop
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        if loop is None or not loop.is_running() or here is loop:
            return fn()

        async def call() -> T:
            return fn()

        try:
            return asyncio.run_coroutine_threadsafe(call(), loop).result(CALL_TIMEOUT_S)
        except concurrent.futures.TimeoutError:
            raise AidcError(f"the supervisor did not answer within {CALL_TIMEOUT_S:g} s; try again") from None

    @property
    def mode(self) -> Mode:
        """off / advisory / auto."""
        return self.supervisor.mode  # one attribute read: atomic, no need to wait for the loop

    def set_mode(self, mode: str, user: str) -> None:
        """Switch mode (audited by the supervisor)."""
        self._call(lambda: self.supervisor.set_mode(mode, user))

    def set_override(self, device: str, point: str, value: float, until_ns: int, user: str) -> None:
        """Hold a setpoint until ``until_ns`` (audited by the supervisor)."""
        self._call(lambda: self.supervisor.set_override(device, point, value, until_ns, user))

    def clear_override(self, device: str, point: str, user: str) -> None:
        """Release an override (audited by the supervisor)."""
        self._call(lambda: self.supervisor.clear_override(device, point, user))

    def overrides(self) -> list[dict[str, object]]:
        """Active overrides."""
        return self._call(self.supervisor.overrides)

    def status(self) -> dict[str, object]:
        """Mode, state, last decision, model provenance and counters."""
        return self._call(self.supervisor.status)


def load_api_tokens(job: MainJob) -> TokenStore:
    """Tokens from ``AIDC_API_TOKENS`` and the site's ``[api] token_file``; ConfigError names a bad entry."""
    store = TokenStore.from_env()
    path = job.site.api_token_file
    if path is not None:
        store = store.merged(TokenStore.from_file(path))
    return store


class ThreadService:
    """A service with blocking ``start``/``stop`` calls (a worker thread of its own) as one of the job's services."""

    def __init__(self, name: str, start: Callable[[], object], stop: Callable[[], object]) -> None:
        self.name = name
        self._start, self._stop = start, stop

    async def start(self) -> None:
        """Start it off the event loop."""
        await asyncio.to_thread(self._start)

    async def stop(self) -> None:
        """Stop it off the event loop."""
        await asyncio.to_thread(self._stop)


class ApiService:
    """The REST API on a thread of the main job, and the local CLI credential while it serves."""

    name = "REST API"

    def __init__(
        self,
        job: MainJob,
        *,
        port: int | None = None,
        controller: SupervisorControl | None = None,
        alarm_engine: AlarmEngine | None = None,
        forecasts: ForecastService | None = None,
        predictive_alarms: Callable[[], Sequence[Mapping[str, Any]]] | None = None,
        printer: Callable[[str], None] = print,
    ) -> None:
        settings = job.site.config.api
        tokens = load_api_tokens(job)
        self.configured_tokens = len(tokens)
        # Bound now, so a taken port stops the job with one line before collectors or simulators start.
        self.sock = listen(settings.host, settings.port if port is None else port)
        self.job, self.printer = job, printer
        self.server: ApiServer | None = None
        clock = job.clock
        self.ctx = ApiContext(
            site=job.site,
            historian=job.historian,
            tokens=tokens,
            live=job.live,
            controller=controller,
            clock=lambda: pd.Timestamp(clock.now_ns(), unit="ns", tz="UTC"),
            alarm_engine=alarm_engine,
            forecasts=forecasts,
            predictive_alarms=predictive_alarms,
            writer=job.writer,
            collector_health=job.engine.health,
            readiness=job.readiness,
        )

    async def start(self) -> None:
        """Serve, then register and write the local credential (a fresh operator token for this run)."""
        token = new_token()
        self.ctx.tokens.add(token, LOCAL_NAME, ApiRole(LOCAL_ROLE))
        self.server = ApiServer(create_app(self.ctx), sock=self.sock)
        await asyncio.to_thread(self.server.start)
        path = write_local_credential(
            self.job.site.data_dir,
            LocalCredential(url=self.server.url, token=token, role=LOCAL_ROLE, name=LOCAL_NAME, pid=os.getpid()),
        )
        self.printer(f"REST API: {self.server.url} (docs at /docs, readiness at /health, Prometheus at /metrics)")
        if not self.configured_tokens:
            self.printer("  no API tokens configured (AIDC_API_TOKENS or [api] token_file): /api/v1 answers only the "
                         "local CLI credential")  # fmt: skip
        self.printer(f"  local CLI credential for this user: {path} (mode 0600, removed at stop)")

    async def stop(self) -> None:
        """Remove the local credential, then stop serving."""
        remove_local_credential(self.job.site.data_dir, os.getpid())
        if self.server is not None:
            await asyncio.to_thread(self.server.stop)
            self.server = None
        else:
            self.sock.close()
