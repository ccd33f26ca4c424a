"""Heavy questions (PUE over many periods, series ranges, fault scans, reports) in a small pool of their own.

Sync routes share one thread pool (40 threads) with everything else, so 45 long PUE questions used to occupy every
thread and ``/health`` and ``/metrics`` hung. Here a heavy question runs on at most :data:`WORKERS` threads of its
own limiter; at most :data:`QUEUED` more wait for one; past that the API answers 503 with ``Retry-After`` at once.
While it runs, its :class:`~analytics.limits.Budget` is stopped when the client disconnects or the time budget
passes, and the work (which checks the budget between periods) ends within one period.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import anyio
import anyio.to_thread
from fastapi import Request

from analytics.limits import Budget, Stopped
from api.errors import ApiError

T = TypeVar("T")
WORKERS = 2  # heavy questions computing at once (the host's other work and the light routes keep the rest)
QUEUED = 8  # more that may wait for a worker; beyond: 503
RETRY_AFTER_S = 10
POLL_S = 0.25  # how often a waiting question looks for its client having gone


class HeavyPool:
    """Admission (at most ``workers + queued`` at once), its own worker threads, disconnect and deadline stops."""

    def __init__(self, workers: int = WORKERS, queued: int = QUEUED) -> None:
        self.workers, self.queued = workers, queued
        self._limiter: anyio.CapacityLimiter | None = None  # made on the server's event loop, at first use
        self.admitted = 0  # touched on the event loop only: no lock needed

    @property
    def limiter(self) -> anyio.CapacityLimiter:
        """The worker threads' limiter."""
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.workers)
        return self._limiter

    async def run(self, request: Request, work: Callable[[Budget], T], seconds: float | None = None) -> T:
        """``work(budget)`` on a heavy worker; 503 when the pool is full, and when ``seconds`` ran out (or the client
        left) first."""
        if self.admitted >= self.workers + self.queued:
            raise ApiError(
                503,
                f"busy: {self.admitted} heavy questions are running or waiting (at most {self.workers} run at once "
                f"and {self.queued} wait); try again in {RETRY_AFTER_S} s",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        self.admitted += 1
        budget = Budget(seconds)
        try:
            return await self._run(request, work, budget)
        except Stopped as exc:
            raise ApiError(503, str(exc)) from None
        finally:
            budget.stop("the question ended")  # a worker still computing for a gone client stops at its next check
            self.admitted -= 1

    async def _run(self, request: Request, work: Callable[[Budget], T], budget: Budget) -> T:
        box: list[T] = []
        error: Exception | None = None
        async with anyio.create_task_group() as tg:
            with anyio.CancelScope() as waiting:
                tg.start_soon(_watch, request, budget, waiting)
                try:
                    # Cancelled by the watcher only while it waits for a worker (a running thread is never
                    # abandoned: the budget stops it between periods, and it ends within one).
                    box.append(await anyio.to_thread.run_sync(_checked, work, budget, limiter=self.limiter))
                except Exception as exc:  # raised after the watcher is stopped, outside the task group
                    error = exc
            tg.cancel_scope.cancel()
        if error is not None:
            raise error
        if not box:  # the wait for a worker was cancelled: the deadline passed or the client left meanwhile
            budget.check("still waiting for a worker")
            raise Stopped("stopped while waiting for a worker")
        return box[0]


def _checked(work: Callable[[Budget], T], budget: Budget) -> T:
    budget.check("not started")  # waited for a worker past its deadline, or its client left meanwhile
    return work(budget)


async def _watch(request: Request, budget: Budget, waiting: anyio.CancelScope) -> None:
    """Stop the budget when the client disconnects, and cancel the wait for a worker once the budget is stopped."""
    while not budget.stopped:
        if await request.is_disconnected():
            budget.stop("the client disconnected")
            break
        await anyio.sleep(POLL_S)
    waiting.cancel()
