"""Where collected batches go: a fan-out to sinks (historian writer, live state, anything taking a Batch).

A sink is any callable taking a :class:`~aidc.model.Batch`; it may return an awaitable. A sink that fails keeps
its batches in a bounded in-memory backlog, replayed in order before new batches once it accepts again, so a
brief historian hiccup loses nothing (the historian's own disk spool covers long outages). The failure is
logged once at ERROR and once at INFO when the sink recovers. When the backlog is full the oldest batches are
evicted: every evicted point is counted (``dropped``, ``stats()``), logged, and shown by the summary line.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aidc.model import Batch

log = logging.getLogger(__name__)

Sink = Callable[[Batch], Any]
MAX_BACKLOG_BATCHES = 50_000


class _SinkState:
    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.name = getattr(sink, "__qualname__", None) or type(sink).__name__
        self.backlog: collections.deque[Batch] = collections.deque()
        self.failing = False
        self.dropped = 0  # points evicted from the backlog (lost for this sink)
        self.dropped_batches = 0
        self.drop_logged = False


class Output:
    """Fan-out of batches to sinks, with per-sink backlog and retry; counts samples for the live summary."""

    def __init__(self, sinks: Sequence[Sink] = (), *, max_backlog: int = MAX_BACKLOG_BATCHES) -> None:
        self._sinks = [_SinkState(s) for s in sinks]
        self._max_backlog = max_backlog
        self._tasks: set[asyncio.Task[None]] = set()
        self.samples = 0
        self.batches = 0

    def add(self, sink: Sink) -> None:
        """Add a sink."""
        self._sinks.append(_SinkState(sink))

    def publish(self, batch: Batch) -> None:
        """Hand a batch to every sink (in order; backlogged batches first)."""
        self.samples += len(batch)
        self.batches += 1
        for st in self._sinks:
            if st.backlog:
                st.backlog.append(batch)
                self._drain(st)
            else:
                self._deliver(st, batch)

    def _deliver(self, st: _SinkState, batch: Batch) -> bool:
        try:
            result = st.sink(batch)
        except Exception as exc:  # a sink's failure must not stop collection; its data is kept
            self._failed(st, batch, exc)
            return False
        if result is not None and inspect.isawaitable(result):  # most sinks return None: skip the ABC checks
            task = asyncio.ensure_future(self._await(st, batch, result))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif st.failing:
            st.failing = st.drop_logged = False
            log.info("sink %s accepts batches again", st.name)
        return True

    async def _await(self, st: _SinkState, batch: Batch, result: Awaitable[Any]) -> None:
        try:
            await result
        except Exception as exc:  # as above: keep the batch for a retry
            self._failed(st, batch, exc)

    def _failed(self, st: _SinkState, batch: Batch, exc: Exception) -> None:
        if not st.failing:
            st.failing = True
            log.error("sink %s failed (%s); keeping batches until it recovers", st.name, exc)
        st.backlog.appendleft(batch)  # the failed batch goes first: it is older than anything backlogged after it
        evicted = 0
        while len(st.backlog) > self._max_backlog:
            evicted += len(st.backlog.popleft())
        if evicted:
            # Never silent: counted per sink (``dropped``, the summary, ``stats()``, the writer's stats series) and
            # logged once per outage at ERROR, then DEBUG with the running total.
            st.dropped += evicted
            st.dropped_batches += 1
            if not st.drop_logged:
                st.drop_logged = True
                log.error(
                    "sink %s: backlog full (%d batches); dropping the oldest points (%d so far)",
                    st.name, self._max_backlog, st.dropped,
                )  # fmt: skip
            else:
                log.debug("sink %s: %d points dropped so far", st.name, st.dropped)

    def _drain(self, st: _SinkState) -> None:
        while st.backlog:
            batch = st.backlog.popleft()
            if not self._deliver(st, batch):
                return

    @property
    def dropped(self) -> int:
        """Points evicted from any sink's backlog since start (each was lost for that sink)."""
        return sum(st.dropped for st in self._sinks)

    def stats(self) -> dict[str, int]:
        """Counters for ``/metrics``-style export: samples, batches, backlog and dropped points (also per sink)."""
        out = {
            "samples_total": self.samples,
            "batches_total": self.batches,
            "backlog_batches": self.backlog(),
            "dropped_points_total": self.dropped,
        }
        for st in self._sinks:
            out[f"dropped_points_total{{sink={st.name}}}"] = st.dropped
        return out

    def backlog(self) -> int:
        """Batches waiting for a failing sink."""
        return sum(len(s.backlog) for s in self._sinks)

    async def flush(self) -> None:
        """Wait for asynchronous sinks and retry backlogs once."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for st in self._sinks:
            self._drain(st)
