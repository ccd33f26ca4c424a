"""Local + remote: the embedded DuckDB store stays the hot store for reads, everything is also sent remote."""

from __future__ import annotations

import collections
import logging
from datetime import timedelta

import pandas as pd

from aidc.model import Batch
from historian.base import Agg, Historian, SeriesSelector, TimeLike
from historian.forward import stats_to_batch

log = logging.getLogger(__name__)


class _Side:
    """One store of the fan-out with the batches it failed to take, retried before anything newer."""

    def __init__(self, name: str, store: Historian, max_points: int) -> None:
        self.name, self.store, self.max_points = name, store, max_points
        self.backlog: collections.deque[Batch] = collections.deque()
        self.points = 0
        self.dropped = 0
        self.failing = False

    def write(self, batch: Batch) -> Exception | None:
        """Write the backlog then ``batch``; on failure keep what was not written and return the error."""
        self.backlog.append(batch)
        self.points += len(batch)
        while self.backlog:
            head = self.backlog[0]
            try:
                self.store.write(head)
            except Exception as exc:  # this side is down: keep its batches, the other side goes on
                if not self.failing:
                    self.failing = True
                    log.error("historian %s store failed (%s); keeping its batches and retrying", self.name, exc)
                self._bound()
                return exc
            self.backlog.popleft()
            self.points -= len(head)
        if self.failing:
            self.failing = False
            log.warning("historian %s store accepts writes again; its backlog was replayed", self.name)
        return None

    def forget(self, batch: Batch) -> None:
        """Take back ``batch`` (the newest) when the caller keeps it instead."""
        if self.backlog and self.backlog[-1] is batch:
            self.backlog.pop()
            self.points -= len(batch)

    def _bound(self) -> None:
        while self.points > self.max_points and len(self.backlog) > 1:
            old = self.backlog.popleft()
            self.points -= len(old)
            self.dropped += len(old)
            log.error("historian %s store down too long: dropped %d oldest points (%d in all)",
                      self.name, len(old), self.dropped)  # fmt: skip


class FanoutHistorian(Historian):
    """Writes to both stores (local first, so a remote outage never delays the hot store); reads locally."""

    def __init__(self, local: Historian, remote: Historian, *, max_backlog_points: int = 2_000_000) -> None:
        self.local = local
        self.remote = remote
        self.backend = f"{local.backend}+{remote.backend}"
        self._sides = (_Side("local", local, max_backlog_points), _Side("remote", remote, max_backlog_points))

    @property
    def dropped_points(self) -> int:
        """Points a side dropped because its backlog passed the bound while it was failing."""
        return sum(s.dropped for s in self._sides)

    def write(self, batch: Batch) -> None:
        """Store locally and deliver or spool remotely; a failure of one side never skips the other.

        Each side keeps the batches it failed to take and retries them, oldest first, before the next batch, so
        the side that works is written exactly once and the failing one catches up when it recovers. When both
        sides fail the error is raised (the caller keeps the batch); when one side's backlog passes
        ``max_backlog_points`` its oldest batches are dropped, counted in ``dropped_points`` and logged.
        """
        errors = [e for side in self._sides if (e := side.write(batch)) is not None]
        if len(errors) == len(self._sides):
            for side in self._sides:  # the caller keeps the batch and retries it: do not hold it twice
                side.forget(batch)
            raise errors[0]

    def query(
        self,
        selector: SeriesSelector,
        start: TimeLike,
        end: TimeLike,
        window: str | timedelta | int | None = None,
        agg: Agg | None = None,
    ) -> pd.DataFrame:
        """From the local hot store."""
        return self.local.query(selector, start, end, window, agg)

    def latest(self, selector: SeriesSelector) -> pd.DataFrame:
        """From the local hot store."""
        return self.local.latest(selector)

    def stats_batch(self, now_ns: int) -> Batch:
        """The remote's spool figures, plus each side's backlog and drops."""
        figures: dict[str, float] = {}
        for side in self._sides:
            figures[f"{side.name}_backlog_points"] = side.points
            figures[f"{side.name}_dropped_points_total"] = side.dropped
        return Batch.concat([self.remote.stats_batch(now_ns), stats_to_batch(self.backend, figures, now_ns)])

    def flush(self) -> None:
        """Flush both."""
        self.local.flush()
        self.remote.flush()

    def close(self) -> None:
        """Close both, the remote first so its last spool state is on disk before the file is closed."""
        try:
            self.remote.close()
        finally:
            self.local.close()
