"""Historian reliability: spool records survive a corrupt neighbour, fan-out sides fail independently,
late data older than raw retention never shrinks the rollups."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aidc.model import Batch
from historian import SeriesSelector
from historian.fanout import FanoutHistorian
from historian.spool import Spool


def _spool(path: Path) -> Spool:
    return Spool(path, max_bytes=1 << 30, segment_bytes=1 << 30, fsync=False)


def _replay(sp: Spool) -> list[bytes]:
    out = []
    while (item := sp.peek()) is not None:
        out.append(item[1])
        sp.ack(item[0])
    return out


@pytest.mark.parametrize("where", ["payload", "magic", "length"])
def test_a_corrupt_record_is_skipped_and_counted_the_rest_replayed(tmp_path: Path, where: str) -> None:
    """One corrupt record in the middle of a segment (payload byte, header magic or length) is skipped and
    counted; every valid record before and after it is replayed, in order."""
    sp = _spool(tmp_path / "s")
    payloads = [f"chunk {i} ".encode() * (5 + i) for i in range(6)]
    for p in payloads:
        assert sp.append(p, 1)
    rec2 = list(sp._pending)[2]
    seg = sp._path(rec2.segment)
    sp.close()
    data = bytearray(seg.read_bytes())
    if where == "payload":
        data[rec2.offset + 24 + 3] ^= 0xFF
    elif where == "magic":
        data[rec2.offset] = ord("X")
    else:
        data[rec2.offset + 4 : rec2.offset + 8] = (10_000).to_bytes(4, "little")
    seg.write_bytes(bytes(data))
    again = _spool(tmp_path / "s")
    assert again.corrupt_records == 1
    assert _replay(again) == payloads[:2] + payloads[3:]


def test_torn_tail_is_still_cut(tmp_path: Path) -> None:
    """A half-written last record (a crash mid-append) is cut off and not counted as corrupt."""
    sp = _spool(tmp_path / "s")
    for i in range(3):
        sp.append(b"x" * (10 + i), 1)
    seg = sp._path(sp._seg)
    sp.close()
    seg.write_bytes(seg.read_bytes()[:-5])
    again = _spool(tmp_path / "s")
    assert again.corrupt_records == 0
    assert _replay(again) == [b"x" * 10, b"x" * 11]


class _Store:
    """A store stand-in that can be made to fail."""

    def __init__(self, name: str) -> None:
        self.backend = name
        self.down = False
        self.got: list[int] = []

    def write(self, batch: Batch) -> None:
        if self.down:
            raise OSError(f"{self.backend} down")
        self.got.append(int(batch.ts_ns[0]))

    def stats_batch(self, now_ns: int) -> Batch:
        return Batch.empty()

    def flush(self) -> None:
        return None

    def close(self) -> None:
        return None


def _b(k: int) -> Batch:
    return Batch(np.array(["m v"], dtype=object), np.array([k], np.int64), np.array([1.0]), np.zeros(1, np.uint8))


@pytest.mark.parametrize("failing", ["local", "remote"])
def test_one_failing_side_never_skips_the_other(failing: str) -> None:
    """A failing local write does not skip the remote write (and vice versa); the failed side catches up in
    order when it recovers and the working side got every batch once."""
    local, remote = _Store("duckdb"), _Store("victoriametrics")
    fan = FanoutHistorian(local, remote)  # type: ignore[arg-type]
    bad, good = (local, remote) if failing == "local" else (remote, local)
    fan.write(_b(1))
    bad.down = True
    fan.write(_b(2))
    fan.write(_b(3))
    assert good.got == [1, 2, 3]
    assert bad.got == [1]
    bad.down = False
    fan.write(_b(4))
    assert bad.got == [1, 2, 3, 4]
    assert good.got == [1, 2, 3, 4]


def test_both_sides_failing_raises_and_holds_nothing_twice() -> None:
    """When both sides fail the error reaches the caller (which keeps the batch) and neither side keeps a copy."""
    local, remote = _Store("duckdb"), _Store("victoriametrics")
    fan = FanoutHistorian(local, remote)  # type: ignore[arg-type]
    local.down = remote.down = True
    with pytest.raises(OSError, match="down"):
        fan.write(_b(1))
    local.down = remote.down = False
    fan.write(_b(1))
    assert local.got == [1]
    assert remote.got == [1]


def test_late_sample_older_than_raw_retention_never_shrinks_rollups(tmp_path: Path) -> None:
    """10 days of per-minute data for 10 series, 1-day raw retention, then one late sample 5 days old: the hourly
    rollup keeps every closed hour (2,390 rows) and its counts, and the late sample is merged into its buckets."""
    from historian.duckdb_store import DuckDBHistorian

    t0 = 1_700_000_000 // 86400 * 86400 * 1_000_000_000
    minute = 60 * 1_000_000_000
    n_series, minutes = 10, 10 * 1440
    end_s = (t0 + minutes * minute) / 1e9
    h = DuckDBHistorian(tmp_path / "h.duckdb", raw_retention_days=1, rollup_every_s=1e9, clock=lambda: end_s)
    ids = np.array([f"m,s={i} v" for i in range(n_series)], dtype=object)
    for day in range(10):
        ts = t0 + (day * 1440 + np.arange(1440)) * minute
        h.write(Batch(np.repeat(ids, 1440), np.tile(ts, n_series), np.ones(1440 * n_series),
                      np.zeros(1440 * n_series, np.uint8)))  # fmt: skip
        h.flush()
    hourly = tuple(h._con.execute("SELECT count(*), sum(n) FROM rollup_1h").fetchall()[0])
    assert hourly == ((10 * 24 - 1) * n_series, (minutes - 60) * n_series)  # the newest hour is still open
    late_ts = t0 + 5 * 1440 * minute + 30 * 1_000_000_000  # inside an existing minute, five days back
    h.write(Batch(ids[:1], np.array([late_ts], np.int64), np.array([7.0]), np.zeros(1, np.uint8)))
    h.flush()
    after = tuple(h._con.execute("SELECT count(*), sum(n) FROM rollup_1h").fetchall()[0])
    assert after == (hourly[0], hourly[1] + 1), "history must never shrink"
    day5 = h.query(SeriesSelector.parse("m,s=0 v"), t0 + 5 * 1440 * minute, t0 + 5 * 1440 * minute + 3600 * 10**9, "1h", "max")
    assert day5["value"].tolist() == [7.0]
    assert h.late_merged_points == 1
    h.close()
