"""The main job loses nothing: write retries, memory then disk spool, counted refusal, task supervision."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aidc.clock import SteppedClock
from aidc.model import Batch
from app.job import JobError, MainJob
from collectors.output import Output
from historian.spool import Spool
from historian.writer import HistorianWriter


class FlakyStore:
    """A historian stand-in that fails while ``down`` is set and records what it stored."""

    backend = "flaky"

    def __init__(self) -> None:
        self.down = False
        self.stored: list[Batch] = []

    def write(self, batch: Batch) -> None:
        if self.down:
            raise OSError("disk I/O error")
        self.stored.append(batch)

    def write_once(self, batch: Batch, seq: int) -> bool:
        self.write(batch)
        return True

    def stats_batch(self, now_ns: int) -> Batch:
        return Batch.empty()

    def close(self) -> None:
        return None


def _batch(k: int, n: int = 10) -> Batch:
    return Batch(
        np.array([f"m,s={i} v" for i in range(n)], dtype=object),
        np.full(n, k * 1_000_000_000, dtype=np.int64),
        np.arange(n, dtype=np.float64) + k,
        np.zeros(n, dtype=np.uint8),
    )


def _data_points(store: FlakyStore) -> list[tuple[str, int, float]]:
    """Every stored sample of the test series (the writer's own stats series left out), in storage order."""
    out = []
    for b in store.stored:
        for s, t, v in zip(b.series, b.ts_ns, b.values, strict=True):
            if str(s).startswith("m,"):
                out.append((str(s), int(t), float(v)))
    return out


def _writer(store: FlakyStore, tmp_path: Path, **kw: Any) -> HistorianWriter:
    spool = Spool(tmp_path / "ws", max_bytes=kw.pop("max_bytes", 1 << 30), segment_bytes=1 << 20, fsync=False)
    w = HistorianWriter(store, SteppedClock(0), spool=spool, **kw)  # type: ignore[arg-type]
    w._delay = 0.0  # retry at every drain: the test drives drains itself
    return w


async def test_failed_writes_are_retried_in_order_and_nothing_is_lost(tmp_path: Path) -> None:
    """While the store fails the batches are kept (memory, then the disk spool past the bound); once it is back
    every sample is stored exactly once, in collection order, with its value."""
    store = FlakyStore()
    w = _writer(store, tmp_path, max_memory_points=50)
    store.down = True
    for k in range(20):
        w(_batch(k))
        await w.drain()
        w._retry_at = 0.0
    assert w.write_errors > 0
    assert w.spooled_points > 0, "past the memory bound the backlog goes to disk"
    assert w._backlog_points <= 50 + 20
    store.down = False
    await w.drain()
    got = _data_points(store)
    want = [(s, t, v) for k in range(20) for s, t, v in zip(_batch(k).series, _batch(k).ts_ns, _batch(k).values,
                                                              strict=True)]  # fmt: skip
    assert got == [(str(s), int(t), float(v)) for s, t, v in want]
    assert w.refused_points == 0


async def test_full_disk_spool_refuses_counts_and_logs_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """With the store down and a tiny spool, batches past its limit are refused, counted, and logged once."""
    store = FlakyStore()
    store.down = True
    w = _writer(store, tmp_path, max_memory_points=0, max_bytes=3000)
    with caplog.at_level(logging.ERROR, logger="app.job"):
        for k in range(30):
            w(_batch(k))
            await w.drain()
    assert w.refused_points > 0
    assert w.spooled_points + w.refused_points + w._backlog_points >= 300
    assert len([r for r in caplog.records if "refusing" in r.getMessage()]) == 1
    stats = w.stats_batch(0)
    figures = dict(zip(stats.series, stats.values, strict=True))
    assert figures["aidc_writer refused_points_total"] == w.refused_points


async def test_final_drain_spools_and_the_next_start_replays(tmp_path: Path) -> None:
    """At stop with the store down everything held goes to the disk spool; a new writer replays it."""
    store = FlakyStore()
    store.down = True
    w = _writer(store, tmp_path)
    for k in range(5):
        w(_batch(k))
    await w.drain(final=True)
    w.close()
    assert w.spool is not None
    assert w.spool.depth_points >= 50
    store.down = False
    w2 = _writer(store, tmp_path)
    await w2.drain()
    assert len(_data_points(store)) == 50


async def test_output_evictions_are_counted_logged_and_published(caplog: pytest.LogCaptureFixture) -> None:
    """A sink that keeps failing past the backlog bound: evicted points are counted, logged once, in stats()."""

    def broken(batch: Batch) -> None:
        raise OSError("down")

    out = Output([broken], max_backlog=3)
    with caplog.at_level(logging.ERROR, logger="collectors.output"):
        for k in range(10):
            out.publish(_batch(k))
    assert out.dropped == 70  # 10 batches of 10 points, 3 kept
    assert out.stats()["dropped_points_total"] == 70
    assert len([r for r in caplog.records if "dropping the oldest" in r.getMessage()]) == 1
    from aidc.live import LiveState
    from collectors.engine import Engine, Summary

    engine = Engine([])
    engine.output = out
    assert "dropped 70 points" in Summary(engine, LiveState()).line()
    w = HistorianWriter(FlakyStore(), SteppedClock(0), dropped=lambda: out.dropped)  # type: ignore[arg-type]
    stats = w.stats_batch(0)
    assert dict(zip(stats.series, stats.values, strict=True))["aidc_writer collector_dropped_points_total"] == 70


class _Dying:
    """Engine/writer stand-ins whose run() raises at once."""

    def __init__(self) -> None:
        self.starts = 0

    async def run(self) -> None:
        self.starts += 1
        raise RuntimeError("boom")


async def test_a_writer_that_keeps_dying_stops_the_job_with_an_error(tmp_path: Path) -> None:
    """The job restarts a dead writer task, and after MAX_RESTARTS stops with JobError instead of stalling."""
    from tests.sim_helpers import make_site

    site = make_site(tmp_path, racks=1)
    job = MainJob.build(site)
    dying = _Dying()
    job.writer.run = dying.run  # type: ignore[method-assign]
    with pytest.raises(JobError, match="historian writer stopped 4 times"):
        await asyncio.wait_for(job.run(duration_s=30, summary_every_s=10, printer=lambda _: None), 20)
    assert dying.starts == 4


async def test_a_dead_engine_is_restarted(tmp_path: Path) -> None:
    """An engine task that dies is restarted (and the job keeps running until its duration)."""
    from tests.sim_helpers import make_site

    site = make_site(tmp_path, racks=1)
    job = MainJob.build(site)
    real = job.engine.run
    calls = {"n": 0}

    async def once_broken() -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("engine bug")
        await real()

    job.engine.run = once_broken  # type: ignore[method-assign]
    await job.run(duration_s=1.0, summary_every_s=0.5, printer=lambda _: None)
    assert calls["n"] == 2
