"""A storage fault loses nothing and heals by itself: the DuckDB store reopens after a failed write, failed batches
reach the disk spool at the next drain, a batch committed before its error is not stored twice, and a stop with a
full disk ends in one clear line and a stated exit status."""

from __future__ import annotations

import errno
import logging
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pytest

from aidc.clock import SteppedClock
from aidc.model import Batch
from app.commands.run import stop_status
from app.job import MainJob
from historian.base import SeriesSelector
from historian.duckdb_store import DuckDBHistorian
from historian.spool import Spool
from historian.writer import HistorianWriter
from tests.sim_helpers import make_site

_REAL_CONNECT = duckdb.connect
_DISK_FULL = 'Could not write file "historian.duckdb": No space left on device'


class Faults:
    """Fault injection around DuckDB connections (a mock of a disk fault: a real one needs a full filesystem, see
    tests/test_chaos_bench.py). ``arm("before")`` fails the next commit without storing; ``arm("after")`` lets it
    store, then fails, as DuckDB does when the checkpoint after a commit fails. ``invalidate`` makes the connection
    refuse every later call ("database has been invalidated") until the file is opened again."""

    def __init__(self) -> None:
        self.when: str | None = None
        self.invalidate = False
        self.raised = 0
        self.connects = 0

    def arm(self, when: str, *, invalidate: bool) -> None:
        self.when, self.invalidate = when, invalidate

    def connect(self, *args: Any, **kw: Any) -> Any:
        self.connects += 1
        return _FaultyConnection(_REAL_CONNECT(*args, **kw), self)


class _FaultyConnection:
    def __init__(self, con: Any, faults: Faults) -> None:
        self._con, self._faults, self._in_tx, self._invalid = con, faults, False, False

    def _check(self) -> None:
        if self._invalid:
            raise duckdb.FatalException("FATAL Error: Failed: database has been invalidated because of a previous "
                                        "fatal error. The database must be restarted prior to being used again.")  # fmt: skip

    def _commit(self, do: Any) -> Any:
        """Run a committing call with the armed fault around it."""
        when, self._faults.when = self._faults.when, None
        if when == "before":
            self._fail()
        out = do()
        if when == "after":
            self._fail()
        return out

    def _fail(self) -> None:
        self._faults.raised += 1
        self._invalid = self._faults.invalidate
        raise duckdb.IOException(f"Failed to create checkpoint because of error: {_DISK_FULL}")

    def execute(self, sql: str, *args: Any, **kw: Any) -> Any:
        self._check()
        word = sql.strip().split(None, 1)[0].upper() if sql.strip() else ""
        if word == "BEGIN":
            self._in_tx = True
        elif word in ("COMMIT", "ROLLBACK"):
            self._in_tx = False
            if word == "COMMIT":
                return self._commit(lambda: self._con.execute(sql, *args, **kw))
        return self._con.execute(sql, *args, **kw)

    def from_arrow(self, table: Any) -> Any:
        self._check()
        rel = self._con.from_arrow(table)
        if self._in_tx:
            return rel
        conn = self

        class _Rel:  # an autocommitted insert (today's code path) commits by itself
            def insert_into(self, name: str) -> Any:
                return conn._commit(lambda: rel.insert_into(name))

        return _Rel()

    def close(self) -> None:
        self._con.close()

    def __getattr__(self, name: str) -> Any:
        self._check()
        return getattr(self._con, name)


def _batch(k: int, n: int = 10) -> Batch:
    return Batch(
        np.array([f"m,s={i:04d} v" for i in range(n)], dtype=object),
        np.full(n, (1_700_000_000 + k) * 1_000_000_000, dtype=np.int64),
        np.arange(n, dtype=np.float64) + k,
        np.zeros(n, dtype=np.uint8),
    )


def _rows(h: DuckDBHistorian) -> list[tuple[str, int, float]]:
    """The stored samples of the test series (the writer's own figures left out)."""
    df = h.query(SeriesSelector("m"), 0, 2**62)
    return sorted(zip(df["series"], df["ts"].astype("int64"), df["value"], strict=True))


def _writer(h: Any, tmp_path: Path) -> HistorianWriter:
    spool = Spool(tmp_path / "ws", max_bytes=1 << 30, segment_bytes=1 << 20, fsync=False)
    return HistorianWriter(h, SteppedClock(0), spool=spool)


async def _drain(w: HistorianWriter) -> None:
    """A drain with the retry due now (the test drives the drains itself, no backoff waits)."""
    w._retry_at = 0.0
    await w.drain()


@pytest.fixture
def faults(monkeypatch: pytest.MonkeyPatch) -> Faults:
    f = Faults()
    monkeypatch.setattr(duckdb, "connect", f.connect)
    return f


async def test_store_reopens_after_an_invalidating_failure_and_catches_up(tmp_path: Path, faults: Faults) -> None:
    """After a failed checkpoint invalidates the connection, the store reopens its file at the next write and the
    writer replays what failed: every batch stored once, no restart."""
    h = DuckDBHistorian(tmp_path / "h.duckdb")
    w = _writer(h, tmp_path)
    w(_batch(0))
    await _drain(w)
    faults.arm("before", invalidate=True)
    w(_batch(1))
    await _drain(w)
    assert w.write_errors == 1
    assert w.failing
    for k in (2, 3):
        w(_batch(k))
        await _drain(w)
    assert not w.failing
    want = sorted((str(s), int(t), float(v)) for k in range(4) for s, t, v in
                  zip(_batch(k).series, _batch(k).ts_ns, _batch(k).values, strict=True))  # fmt: skip
    assert _rows(h) == want
    assert faults.connects == 2, "the file was opened again once"
    h.close()


async def test_a_batch_committed_before_its_checkpoint_failed_is_stored_once(tmp_path: Path, faults: Faults) -> None:
    """1,000 points whose commit went through before the write failed: spooled, replayed, and stored once; also when
    the job restarts between the failure and the replay."""
    n = 1000
    for restart in (False, True):
        d = tmp_path / f"restart-{restart}"
        h = DuckDBHistorian(d / "h.duckdb")
        w = _writer(h, d)
        faults.arm("after", invalidate=False)
        w(_batch(0, n))
        await _drain(w)
        assert w.write_errors == 1
        skipped = 0
        if restart:
            await w.drain(final=True)  # what a stop does: everything held goes to the store, else the spool
            skipped = w.duplicate_points
            w.close()
            h.close()
            h = DuckDBHistorian(d / "h.duckdb")
            w = _writer(h, d)
        await _drain(w)
        assert w.spool is not None
        assert w.spool.depth_points == 0
        assert len(_rows(h)) == n
        assert skipped + w.duplicate_points >= n, "the replayed batch was recognised as stored"
        h.close()


class _DownStore:
    """A historian stand-in whose writes fail (the disk under it is full)."""

    def write(self, batch: Batch) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    def write_once(self, batch: Batch, seq: int) -> bool:
        self.write(batch)
        return True

    def stats_batch(self, now_ns: int) -> Batch:
        return Batch.empty()


async def test_failed_batches_reach_the_disk_spool_at_the_next_drain(tmp_path: Path) -> None:
    """While the store fails nothing waits in memory: every batch is in the durable spool once its drain returns, so a
    kill -9 loses at most what arrived since the last drain."""
    w = _writer(_DownStore(), tmp_path)
    for k in range(5):
        w(_batch(k))
        await w.drain()  # after the first failure the next retry is not due: the batches must not wait in memory
        assert w.backlog_points == 0
        assert w.spool is not None
        assert w.spool.depth_points >= 10 * (k + 1)
    assert w.write_errors == 1


async def test_a_failing_spool_keeps_points_in_memory_and_spools_them_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A spool append that fails (its disk full too; mocked by a raising append) keeps the points in memory, logged
    once, never raising out of the writer; once the spool works they are spooled in order."""
    w = _writer(_DownStore(), tmp_path)
    assert w.spool is not None
    real_append = w.spool.append

    def full(payload: bytes, points: int) -> bool:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(w.spool, "append", full)
    with caplog.at_level(logging.ERROR, logger="historian.writer"):
        for k in range(3):
            w(_batch(k))
            await _drain(w)
    held = w.backlog_points
    assert held >= 30
    assert w.unsaved_points == held
    assert len([r for r in caplog.records if "cannot append to it" in r.getMessage()]) == 1
    monkeypatch.setattr(w.spool, "append", real_append)
    w(_batch(3))
    await _drain(w)
    assert w.backlog_points == 0
    assert w.spool.depth_points >= held + 10


async def test_stop_with_a_full_disk_is_one_line_and_exit_status_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Stopping while the store and the spool's disk are full (mocked: writes, spool appends and the store's final
    checkpoint raise): no exception out of the job, one line saying how many points are lost and one saying the
    store did not close cleanly; the exit status is 1. Without losses it would be 0."""
    job = MainJob.build(make_site(tmp_path, racks=1))
    assert job.writer.spool is not None
    real_close = job.historian.close

    def full(*args: Any) -> Any:
        raise OSError(errno.ENOSPC, "No space left on device")

    def close() -> None:
        real_close()
        raise duckdb.IOException(f"Failed to create checkpoint because of error: {_DISK_FULL}")

    monkeypatch.setattr(job.historian, "write", full)
    monkeypatch.setattr(job.historian, "write_once", full, raising=False)
    monkeypatch.setattr(job.writer.spool, "append", full)
    monkeypatch.setattr(job.historian, "close", close)
    job.writer(_batch(0))  # what the collectors handed over (no simulator runs here)
    with caplog.at_level(logging.ERROR):
        await job.run(duration_s=1.5, summary_every_s=0.5, printer=lambda _: None)
    assert job.lost_at_stop > 0
    lines = [r.getMessage() for r in caplog.records]
    assert len([m for m in lines if "they are lost" in m]) == 1
    assert len([m for m in lines if "not closed cleanly" in m]) == 1
    assert not [r for r in caplog.records if r.exc_info], "no traceback in the log"
    assert stop_status(job) == 1
