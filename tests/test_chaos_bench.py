"""Storage faults on a real filesystem: a full tmpfs in a private mount namespace (bites as root), under the DuckDB
store with the writer, and under the running job through bench/chaos.py (a short run of the bench's scenarios)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from aidc.model import Batch

REPO = Path(__file__).resolve().parents[1]


def _need_namespace() -> None:
    """Skip (fail under CI=true) where a private mount namespace cannot be made: not root, or no unshare(1)."""
    probe = ["unshare", "-m", "true"]
    ok = os.geteuid() == 0 and shutil.which("unshare") is not None
    ok = ok and subprocess.run(probe, capture_output=True, check=False).returncode == 0
    if ok:
        return
    message = "needs root and unshare(1) (util-linux) for a private mount namespace"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def _batch(k: int, n: int = 2000) -> Batch:
    return Batch(
        np.array([f"m,s={i:05d} v" for i in range(n)], dtype=object),
        np.full(n, (1_700_000_000 + k) * 1_000_000_000, dtype=np.int64),
        np.random.default_rng(k).random(n),
        np.zeros(n, dtype=np.uint8),
    )


async def _child(work: Path) -> dict[str, object]:
    """In the namespace: the store on a small tmpfs that fills up until DuckDB's checkpoint fails, then frees up."""
    import duckdb

    from aidc.clock import SteppedClock
    from bench.chaos import fill, mount_tmpfs, unfill
    from historian.base import SeriesSelector
    from historian.duckdb_store import DuckDBHistorian
    from historian.spool import Spool
    from historian.writer import HistorianWriter

    store = work / "store"
    mount_tmpfs(store, 32)
    h = DuckDBHistorian(store / "h.duckdb")
    # Test only: a small checkpoint threshold, so a checkpoint runs (and fails) while the disk is nearly full.
    h._con.execute("SET checkpoint_threshold = '256KB'")
    spool = Spool(work / "spool", max_bytes=1 << 30, segment_bytes=1 << 20, fsync=True)
    w = HistorianWriter(h, SteppedClock(0), spool=spool)
    errors: list[str] = []
    k = 0
    for _ in range(3):
        w(_batch(k))
        k += 1
        await w.drain()
    filler = fill(store)
    (store / "filler").open("r+b").truncate(max(0, filler - 300_000))  # leave room for the WAL, not a checkpoint
    for _ in range(40):
        w(_batch(k))
        k += 1
        w._retry_at = 0.0
        before = w.write_errors
        try:
            h._con.execute("SELECT 1")
        except duckdb.Error as exc:
            errors.append(str(exc).splitlines()[0])
        await w.drain()
        if w.write_errors > before and any("invalidated" in e for e in errors):
            break
    fault_errors = w.write_errors
    unfill(store)
    for _ in range(3):
        w(_batch(k))
        k += 1
        w._retry_at = 0.0
        await w.drain()
    rows = h.query(SeriesSelector("m"), 0, 2**62)
    distinct = len(rows.drop_duplicates(["series", "ts"]))
    result: dict[str, object] = {
        "write_errors": fault_errors,
        "invalidated": any("invalidated" in e for e in errors),
        "recovered": not w.failing and spool.depth_points == 0,
        "rows": len(rows),
        "distinct": distinct,
        "expected": k * 2000,
        "reopens": getattr(h, "reopens", 0),  # (today's store has no such counter)
    }
    h.close()
    return result


@pytest.mark.timeout(300)
def test_a_real_failed_checkpoint_invalidates_duckdb_and_the_store_heals(tmp_path: Path) -> None:
    """DuckDB on a tmpfs that fills up (a private mount namespace: the fault bites as root): its checkpoint fails and
    invalidates the database; once space is freed the same store and writer write again, and every point is stored
    exactly once."""
    _need_namespace()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run(
        ["unshare", "-m", sys.executable, "-m", "tests.test_chaos_bench", str(tmp_path)],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=240, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["write_errors"] > 0, result
    assert result["recovered"], result
    assert result["rows"] == result["distinct"] == result["expected"], result
    assert result["invalidated"], f"the fault did not invalidate the database (nothing shown): {result}"
    assert result["reopens"] >= 1, result


@pytest.mark.timeout(420)
def test_chaos_bench_short_run(tmp_path: Path) -> None:
    """bench/chaos.py with short faults against its own simulator and `aidc run`: the fault bites, the job heals
    without a restart, a kill -9 in a fault loses at most one poll interval, nothing is stored twice, no traceback."""
    _need_namespace()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run(
        [sys.executable, str(REPO / "bench" / "chaos.py"), "--fault-s", "4", "--kill-after-s", "4",
         "--physics", "tests.fake_physics:FakePhysics", "--limit-s", "380"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=400, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["storage_fault_write_errors"] > 0, result
    assert result["storage_fault_recovered"] is True, result
    assert 0 < result["points_per_poll_interval"], result
    assert result["kill9_points_lost"] <= result["points_per_poll_interval"], result
    assert result["duplicates_after_restart"] == 0, result
    assert result["tracebacks_in_job_log"] == 0, result
    assert result["full_disk_stop_tracebacks"] == 0, result


if __name__ == "__main__":  # the child of the first test, inside its mount namespace
    work = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp())
    try:
        print(json.dumps(asyncio.run(_child(work))), flush=True)
    finally:
        subprocess.run(["umount", str(work / "store")], check=False, capture_output=True)
