"""The DuckDB historian's compact layout: hot rows compacted to sorted Parquet parts, retention tiers, and every
query answering exactly across the compacted and the hot part."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aidc.errors import ConfigError
from aidc.historian_config import historian_config_from_mapping
from aidc.model import Batch
from historian import SeriesSelector
from historian.duckdb_store import DuckDBHistorian
from historian.parts import Parts
from tests.vm_server import HOUR, NS, polls

T0 = 1_767_225_600 * NS  # 2026-01-01T00:00Z
ALL = SeriesSelector.parse("*")
DAY = 24 * HOUR


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))


def _answers(h: DuckDBHistorian, lo: int, hi: int) -> dict[str, pd.DataFrame]:
    """Raw rows, aggregates on 1-minute, 15-minute and hourly windows, the whole range, and latest values."""
    out = {"raw": h.query(ALL, lo, hi), "latest": h.latest(ALL)}
    for w in ("1m", "15m", "1h", "7m"):
        for agg in ("mean", "min", "max", "sum", "count", "last"):
            out[f"{w}-{agg}"] = h.query(ALL, lo, hi, w, agg)
    out["whole"] = h.query(ALL, lo + 7 * NS, hi - 3 * NS, None, "mean")
    arr = h.query_arrays(ALL, lo, hi)
    names = np.array(arr.names, dtype=object)
    out["arrays"] = pd.DataFrame(
        {"series": names[arr.codes], "ts": arr.ts_ns, "value": arr.values, "quality": arr.quality}
    )
    return out


def _check_against_memory(h: DuckDBHistorian, batches: list[Batch], lo: int, hi: int) -> None:
    """Every answer equals that of an in-memory store (which never compacts) given the same batches."""
    ref = DuckDBHistorian(":memory:", raw_retention_days=1e6)
    for b in batches:
        ref.write(b)
    ref.flush()
    got, want = _answers(h, lo, hi), _answers(ref, lo, hi)
    for key in want:
        _same(got[key], want[key])
    ref.close()


def test_query_across_parts_and_hot_rows_returns_what_was_written(tmp_path: Path) -> None:
    """Raw rows, every aggregate and latest values are the same whether rows sit in parts or in the hot table."""
    batches = polls(T0, 3, devices=3)
    h = DuckDBHistorian(tmp_path / "h.duckdb", raw_retention_days=1e6, hot_max_rows=1000)
    for b in batches[:20]:
        h.write(b)
    h.flush()
    assert h.compactions >= 1
    for b in batches[20:]:
        h.write(b)  # the last hour and a half stays hot (no rollup run since)
    assert h._con.execute("SELECT count(*) FROM points").fetchall()[0][0] > 0
    assert h.row_count() == sum(len(b) for b in batches)
    _check_against_memory(h, batches, T0 - HOUR, T0 + 4 * HOUR)
    h.close()
    reopened = DuckDBHistorian(tmp_path / "h.duckdb", raw_retention_days=1e6)
    _check_against_memory(reopened, batches, T0, T0 + 3 * HOUR)
    reopened.close()


def test_late_rows_into_a_compacted_range_are_counted_once(tmp_path: Path) -> None:
    """Rows arriving for minutes already compacted join their buckets exactly (no double count, none lost)."""
    batches = polls(T0, 2, devices=2, per_batch=12)
    late_idx = list(range(3, len(batches), 5))
    on_time = [b for i, b in enumerate(batches) if i not in late_idx]
    h = DuckDBHistorian(tmp_path / "h.duckdb", raw_retention_days=1e6, hot_max_rows=1000)
    for b in on_time:
        h.write(b)
    h.flush()
    h.compact()
    assert h.compactions >= 1
    for i in late_idx:  # every fifth minute of polls comes late, after its range was compacted
        h.write(batches[i])
    h.flush()
    h.compact()
    _check_against_memory(h, on_time + [batches[i] for i in late_idx], T0, T0 + 2 * HOUR)
    h.close()


def test_interrupted_compaction_loses_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A compaction that fails after its Parquet file is written keeps every row once; the orphan file goes at open."""
    batches = polls(T0, 2, devices=2)
    path = tmp_path / "h.duckdb"
    h = DuckDBHistorian(path, raw_retention_days=1e6, hot_max_rows=10**9)
    for b in batches:
        h.write(b)
    h.flush()
    real_write = Parts.write

    def write_then_crash(self: Parts, *args: object, **kw: object) -> object:
        real_write(self, *args, **kw)  # type: ignore[arg-type]
        raise OSError("power cut after the file, before the commit")

    monkeypatch.setattr(Parts, "write", write_then_crash)
    with pytest.raises(OSError, match="power cut"):
        h.compact()
    assert len(list(Parts(str(path)).dir.glob("*.parquet"))) == 1  # written, never listed
    monkeypatch.setattr(Parts, "write", real_write)
    assert h.row_count() == sum(len(b) for b in batches)  # the next call reopens the file; nothing went
    h.close()
    reopened = DuckDBHistorian(path, raw_retention_days=1e6)
    assert not list(Parts(str(path)).dir.glob("*.parquet"))  # the orphan was deleted at open
    _check_against_memory(reopened, batches, T0, T0 + 2 * HOUR)
    assert reopened.compact() > 0  # and a later compaction goes through
    _check_against_memory(reopened, batches, T0, T0 + 2 * HOUR)
    reopened.close()


def test_retention_tiers_expire_raw_then_minutes_and_keep_hours(tmp_path: Path) -> None:
    """Raw rows go after their tier (their minutes stay, now as a rollup part), then the minutes, hours stay."""
    batches = polls(T0, 2, devices=2)
    now = [T0 / NS]
    h = DuckDBHistorian(
        tmp_path / "h.duckdb",
        raw_retention_days=1,
        rollup_1m_retention_days=2,
        hot_max_rows=1000,
        clock=lambda: now[0],
    )
    for b in batches:
        h.write(b)
    h.flush()
    h.compact()
    minutes = h.query(ALL, T0, T0 + 2 * HOUR, "1m", "sum")
    hours = h.query(ALL, T0, T0 + 2 * HOUR, "1h", "mean")
    assert len(minutes)
    assert len(hours)

    def advance(to: int) -> None:
        now[0] = to / NS
        h.write(
            Batch(np.array(["tick v"], dtype=object), np.array([to], dtype=np.int64), np.ones(1), np.zeros(1, np.uint8))
        )
        h.flush()

    advance(T0 + 2 * HOUR + DAY)  # raw tier over: no raw rows, the same minutes and hours
    assert h.query(ALL, T0, T0 + 2 * HOUR).empty
    assert h._con.execute("SELECT count(*) FROM parts WHERE tbl = 'rollup_1m'").fetchall()[0][0] >= 1
    _same(h.query(ALL, T0, T0 + 2 * HOUR, "1m", "sum"), minutes)
    _same(h.query(ALL, T0, T0 + 2 * HOUR, "1h", "mean"), hours)
    advance(T0 + 3 * HOUR + 2 * DAY)  # 1-minute tier over: minutes gone, hours kept
    assert h.query(ALL, T0, T0 + 2 * HOUR, "1m", "sum").empty
    _same(h.query(ALL, T0, T0 + 2 * HOUR, "1h", "mean"), hours)
    assert not h._con.execute("SELECT count(*) FROM parts WHERE tbl <> 'points'").fetchall()[0][0]
    h.close()


def test_compacted_parts_take_under_two_bytes_a_point(tmp_path: Path) -> None:
    """Noisy telemetry on register resolution compacts to under 2 bytes a point (it takes about 6 in the hot table)."""
    rng = np.random.default_rng(3)
    ids = np.array([f"pdu,rack=r{i:03d} active_power_w" for i in range(200)], dtype=object)
    level = rng.uniform(3000, 9000, len(ids))
    h = DuckDBHistorian(tmp_path / "h.duckdb", raw_retention_days=1e6, hot_max_rows=10**9)
    n = 0
    for k in range(0, 2160, 60):  # 6 h at 10 s, a batch per 10 minutes
        t = T0 + np.arange(k, k + 60) * 10 * NS
        walk = level + np.cumsum(rng.normal(0, 15, (60, len(ids))), axis=0)
        level = walk[-1]
        h.write(Batch(np.tile(ids, 60), np.repeat(t, len(ids)), np.round(walk.ravel()), np.zeros(walk.size, np.uint8)))
        n += walk.size
    h.flush()
    moved = h.compact()
    assert moved == n - 6 * len(ids)  # all but the last minute, still open
    assert h._parts is not None
    assert h._parts.bytes() / moved < 2.0
    h.close()


def test_site_file_tiers_must_nest() -> None:
    """A 1-minute tier shorter than the raw one is refused with one line naming the key."""
    cfg = historian_config_from_mapping({"raw_retention_days": 7, "rollup_1m_retention_days": 60})
    assert (cfg.rollup_1m_retention_days, cfg.rollup_1h_retention_days) == (60, None)
    with pytest.raises(ConfigError, match=r"rollup_1m_retention_days = 3\.0 is shorter than raw_retention_days"):
        historian_config_from_mapping({"raw_retention_days": 7, "rollup_1m_retention_days": 3})


def test_part_values_round_trip_bit_for_bit(tmp_path: Path) -> None:
    """Values stored as decimal counts in a part read back as the very same doubles, and any other value (full
    precision, -0.0, infinities, huge and tiny magnitudes, integers past 2**53, missing) is kept as it came."""
    odd = [0.1 + 0.2, -0.0, np.inf, -np.inf, 1e300, 5e-324, 2.0**60 + 4096, np.nan, 1 / 3, -7.25, 123456.789]
    rng = np.random.default_rng(5)
    ids = np.array(["m,k=dec v", "m,k=odd v", "m,k=mix v"], dtype=object)
    batches, vals = [], []
    for k in range(120):
        dec = round(float(rng.normal(230, 2)), 1)
        row = np.array([dec, odd[k % len(odd)], dec if k % 3 else float(rng.normal())])
        vals.append(row)
        batches.append(Batch(ids, np.full(3, T0 + k * 10 * NS, np.int64), row, np.zeros(3, np.uint8)))
    h = DuckDBHistorian(tmp_path / "h.duckdb", raw_retention_days=1e6, hot_max_rows=10**9)
    for b in batches[:60]:
        h.write(b)
    h.flush()
    h.compact()
    for b in batches[60:]:
        h.write(b)
    h.write(Batch(ids[:1], np.array([T0 + HOUR], np.int64), np.ones(1), np.zeros(1, np.uint8)))  # closes the minutes
    h.flush()
    h.compact()  # a second part, merged with the first at the next compaction of the day or when the day closes
    h._con.execute("BEGIN")
    h._merge_parts("points", T0 + 2 * DAY)
    h._rebuild_views()
    h._con.execute("COMMIT")
    assert h._con.execute("SELECT count(*) FROM parts WHERE tbl = 'points'").fetchall()[0][0] == 1
    assert h._con.execute("SELECT count(*) FROM points").fetchall()[0][0] == 1  # only the closing sample is hot
    got = h.query(ALL, T0, T0 + HOUR - 1)
    h.close()
    order = {"m,k=dec v": 0, "m,k=mix v": 2, "m,k=odd v": 1}  # the frame is sorted by series name, then time
    want = np.concatenate([np.array(vals)[:, order[s]] for s in sorted(order)])
    assert len(got) == len(want)
    same_bits = got["value"].to_numpy().view(np.int64) == want.view(np.int64)
    assert (same_bits | (np.isnan(want) & np.isnan(got["value"].to_numpy()))).all()


def test_register_resolution_values_compact_to_about_a_byte(tmp_path: Path) -> None:
    """Values a collector decoded as count x scale (0.01 A, 0.1 V) compact to under a byte a point, as their counts
    would; stored as plain doubles their binary fractions took about 2 bytes."""
    rng = np.random.default_rng(4)
    ids = np.array([f"pdu,rack=r{i:03d} current_a" for i in range(100)] + [f"pdu,rack=r{i:03d} voltage_v"
                   for i in range(100)], dtype=object)  # fmt: skip
    scale = np.r_[np.full(100, 0.01), np.full(100, 0.1)]
    counts = np.r_[rng.uniform(1000, 4000, 100), rng.uniform(2250, 2350, 100)]
    h = DuckDBHistorian(tmp_path / "h.duckdb", raw_retention_days=1e6, hot_max_rows=10**9)
    for k in range(0, 1080, 60):  # 3 h at 10 s, a batch per 10 minutes
        t = T0 + np.arange(k, k + 60) * 10 * NS
        walk = counts + np.cumsum(rng.normal(0, 3, (60, len(ids))), axis=0)
        counts = walk[-1]
        vals = (np.round(walk) * scale).ravel()  # what the register decoder computes: raw * scale
        h.write(Batch(np.tile(ids, 60), np.repeat(t, len(ids)), vals, np.zeros(vals.size, np.uint8)))
    h.flush()
    moved = h.compact()
    assert h._parts is not None
    assert h._parts.bytes() / moved < 1.0
    h.close()


def test_declared_resolution_stores_the_count(tmp_path: Path) -> None:
    """Series with a declared resolution are stored at it (and compact like register values); others as they came."""
    rng = np.random.default_rng(6)
    ids = np.array([f"gpu_rack,gpu={i} gpu_power_w" for i in range(50)] + ["pdu,k=1 active_power_w"], dtype=object)
    res = {"gpu_rack,*,gpu_power_w": 0.001}
    h = DuckDBHistorian(tmp_path / "h.duckdb", raw_retention_days=1e6, hot_max_rows=10**9, resolution=res)
    sent = []
    for k in range(360):  # an hour at 10 s of full-precision doubles, as a simulator publishes them
        vals = 550 + rng.normal(0, 20, len(ids))
        sent.append(vals)
        h.write(Batch(ids, np.full(len(ids), T0 + k * 10 * NS, np.int64), vals, np.zeros(len(ids), np.uint8)))
    h.flush()
    moved = h.compact()
    assert h._parts is not None
    assert h._parts.bytes() / moved < 3.0  # about 5.5 as full-precision doubles
    got = h.query(ALL, T0, T0 + HOUR)
    want = np.array(sent)
    gpu0 = got[got["series"] == ids[0]]["value"].to_numpy()
    assert gpu0.tolist() == (np.round(want[:, 0] / 0.001) * 0.001).tolist()
    pdu = got[got["series"] == ids[-1]]["value"].to_numpy()
    assert pdu.tolist() == want[:, -1].tolist()  # no resolution declared: every bit kept
    assert h.latest(SeriesSelector.parse("gpu_rack,gpu=0,*"))["value"].tolist() == [gpu0[-1]]
    h.close()
    with pytest.raises(ConfigError, match=r"historian\.resolution"):
        DuckDBHistorian(tmp_path / "h.duckdb", resolution={"gpu_rack,bad,x": 0.001})
    with pytest.raises(ConfigError, match=r"historian\.resolution.*positive"):
        historian_config_from_mapping({"resolution": {"gpu_rack,*,gpu_power_w": 0}})
