"""The embedded historian: one DuckDB file, no server.

Layout: ``series`` (integer id per series id string), ``points`` (series_id, ts ns, value, quality),
``latest`` (one row per series: kept in memory on write, saved with the rollups) and ``rollup_1m`` /
``rollup_1h`` holding count, sum, min, max, last and worst quality per bucket, so every aggregation
composes from them exactly. Timestamps are BIGINT ns since the epoch (UTC): bucketing is integer
arithmetic and nothing is truncated to µs.

Compact layout (see :mod:`historian.parts`): ``points`` is the hot table. Once ``hot_max_rows`` rows below the
1-minute watermark are in it, they move to a Parquet part sorted by (series, time) and their hot 1-minute rollup rows
are dropped: readers aggregate those minutes from the part (``points_parts``), so a bucket may have several partial
rows (hot table, rollup parts, raw parts) and every reader combines them. When raw retention expires a part, its
1-minute rollups become a rollup part (``rollup_1m_parts``), kept for the 1-minute tier; ``rollup_1h`` stays in the
table, kept for the hourly tier. Late rows always go to the hot table, so no part is ever rewritten to change it.

Inserts go through Arrow (an Arrow relation inserted into the table); executemany is three orders of
magnitude slower. One writer (the connection, under a lock) and any number of reader threads, each with
its own cursor. Every write is one committed transaction, so DuckDB's WAL makes it survive a crash.

A storage fault heals by itself: after a failed write (a full or read-only disk; DuckDB invalidates the whole
database when a checkpoint fails) every connection is closed and the file opened again at the next write, which
fails until the fault clears. A batch whose commit went through before the error (the checkpoint runs after the
commit) is not stored twice: ``write_once`` records the writer's batch sequence number in the batch's own
transaction and skips that batch when it comes again. No per-row unique index is needed for that.
"""

# SQL here is built from our own table names and integers only, never from user text:
# ruff: noqa: S608

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from functools import lru_cache
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from aidc.errors import ConfigError
from aidc.model import Batch, SeriesKey
from historian.base import (
    NS,
    Agg,
    Historian,
    RawArrays,
    SeriesSelector,
    TimeLike,
    check_agg,
    empty_result,
    make_result,
    parse_window,
    to_ns,
)
from historian.ids import IdentityIds
from historian.parts import MANIFEST_SCHEMA, PART_TABLES, Part, Parts, merge_candidates

log = logging.getLogger(__name__)

MINUTE_NS = 60 * NS
HOUR_NS = 3600 * NS
# (table, resolution), coarsest first: the query planner takes the first that divides the window.
_NEVER = np.iinfo(np.int64).min
# The dtype make_result gives the series column (pandas' default string dtype), so both ways of building a result agree.
_STR = make_result(["x"], [0], [0.0])["series"].dtype
ROLLUPS: tuple[tuple[str, int], ...] = (("rollup_1h", HOUR_NS), ("rollup_1m", MINUTE_NS))
# Blocks of a new file: DuckDB's default 256 KiB leaves most of a block empty under each small table and segment
# (meta, latest, series, the manifest, the hot rows' tail), which was a quarter of a day's facility data on disk.
FILE_BLOCK_SIZE = 16 * 1024
_SEQ_KEY = "writer_seq"  # meta row: sequence number of the last writer batch committed (see write_once)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS series (id INTEGER PRIMARY KEY, key VARCHAR NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS points (series_id INTEGER NOT NULL, ts BIGINT NOT NULL, value DOUBLE,
    quality UTINYINT NOT NULL);
CREATE TABLE IF NOT EXISTS latest (series_id INTEGER NOT NULL, ts BIGINT NOT NULL, value DOUBLE,
    quality UTINYINT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (name VARCHAR PRIMARY KEY, value BIGINT NOT NULL);
"""
_ROLLUP_COLUMNS = (
    "series_id INTEGER, b BIGINT, n BIGINT, s DOUBLE, mn DOUBLE, mx DOUBLE, lts BIGINT, lst DOUBLE, q UTINYINT"
)

# Partial aggregates of raw rows per bucket ``origin + k*w``; every later stage combines these columns.
_RAW_PARTIALS = """
SELECT series_id, {origin} + (ts - {origin}) // {w} * {w} AS b, count(value) AS n, sum(value) AS s,
    min(value) AS mn, max(value) AS mx, max(ts) FILTER (WHERE value IS NOT NULL) AS lts,
    arg_max(value, ts) FILTER (WHERE value IS NOT NULL) AS lst, max(quality) AS q
FROM {src} WHERE ts >= {lo} AND ts < {hi} {sel} GROUP BY ALL
"""
_COMBINE = """
SELECT series_id, {origin} + (b - {origin}) // {w} * {w} AS b, sum(n)::BIGINT AS n, sum(s) AS s,
    min(mn) AS mn, max(mx) AS mx, max(lts) AS lts, arg_max(lst, lts) AS lst, max(q) AS q
FROM ({parts}) GROUP BY ALL
"""
_DELETE_KEYS = "DELETE FROM {table} USING {keys} k WHERE {table}.series_id = k.series_id AND {table}.b = k.b"
_VALUE_EXPR = {
    "mean": "CASE WHEN n > 0 THEN s / n END",
    "min": "mn",
    "max": "mx",
    "last": "lst",
    "sum": "CASE WHEN n > 0 THEN s END",
    "count": "n::DOUBLE",
}


@lru_cache(maxsize=200_000)
def _parse_key(key: str) -> SeriesKey:
    return SeriesKey.parse(key)


class DuckDBHistorian(Historian):
    """Historian in one DuckDB file (or ``:memory:``)."""

    backend = "duckdb"

    def __init__(
        self,
        path: Path | str,
        *,
        raw_retention_days: float = 30.0,
        rollup_every_s: float = 60.0,
        clock: Callable[[], float] = time.time,
        rollup_1m_retention_days: float | None = None,
        rollup_1h_retention_days: float | None = None,
        hot_max_rows: int = 250_000,
        resolution: Mapping[str, float] | None = None,
    ) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = str(path)
        self._lock = threading.RLock()
        self._local = threading.local()
        self._retention_ns = int(raw_retention_days * 86400 * NS)
        # Retention tiers: None keeps that rollup for ever. The 1-minute tier never ends before the raw one.
        self._retention_1m_ns = None if rollup_1m_retention_days is None else int(rollup_1m_retention_days * 86400 * NS)
        if self._retention_1m_ns is not None:
            self._retention_1m_ns = max(self._retention_1m_ns, self._retention_ns)
        self._retention_1h_ns = None if rollup_1h_retention_days is None else int(rollup_1h_retention_days * 86400 * NS)
        self._hot_max_rows = hot_max_rows
        # Series whose device resolution is declared: their values are stored as the nearest multiple of the step.
        self._resolution = [(_selector(sel), float(step)) for sel, step in (resolution or {}).items()]
        # Closed rows go to sorted Parquet parts beside the file (see historian.parts); not for an in-memory database.
        self._parts = None if str(path) == ":memory:" else Parts(str(path))
        self._retiring: list[Part] = []  # parts unlisted by the open transaction, retired once it commits
        self.compactions = 0
        self._rollup_every_s = rollup_every_s
        self._clock = clock
        self.late_merged_points = 0
        self.reopens = 0  # times the file was closed and opened again after a failed write (see _heal)
        self._broken: BaseException | None = None  # the failure that left the connection unusable, until _heal
        self._fault: BaseException | None = None  # the first failure of an outage, until a write commits again
        self._gen = 0  # bumped at every reopen, so reader threads drop cursors of the closed connection
        self._cursors: list[duckdb.DuckDBPyConnection] = []
        self._last_rollup = clock()
        self._sel_cache: dict[str, tuple[int, dict[int, str]]] = {}
        self._con = _connect(self.path)
        self._load_state()
        log.info("historian: DuckDB %s (%d series)", self.path, len(self._ids))

    def _load_state(self) -> None:
        """Create missing tables and read what the store keeps in memory (ids, watermarks, latest values)."""
        self._con.execute(_SCHEMA)
        self._con.execute(MANIFEST_SCHEMA)
        # Part files never change (a rewrite gets a new name), so their footers can be cached across queries.
        self._con.execute("SET GLOBAL parquet_metadata_cache = true")
        for table, _res in ROLLUPS:
            self._con.execute(f"CREATE TABLE IF NOT EXISTS {table} ({_ROLLUP_COLUMNS})")
        self._ids: dict[str, int] = dict(self._con.execute("SELECT key, id FROM series").fetchall())
        # Ids by string object, for the write path; emptied with every read of the ids (a reopen may drop some).
        self._by_object = IdentityIds(limit=max(1 << 18, 4 * len(self._ids)))
        meta = dict(self._con.execute("SELECT name, value FROM meta").fetchall())
        self._watermark = {table: int(meta.get(f"wm_{table}", 0)) for table, _ in ROLLUPS}
        self._dirty_min: int | None = None
        self._raw_floor = int(meta.get("raw_floor", 0))  # raw rows before this were deleted by retention
        self._raw_cutoff = int(meta.get("raw_cutoff", 0))  # ... exactly those before this (the floor is minute-aligned)
        self._floor_1m = int(meta.get("floor_1m", 0))  # 1-minute rollups before this (an hour) were deleted
        self._retiring = []
        if self._parts is not None:
            self._parts.sweep(self._con, at_open=True)  # files of a compaction that never committed
        # Views over the hot tables and their parts, with the files' absolute paths as they are now.
        try:
            self._con.execute("BEGIN")
            self._rebuild_views()
            self._con.execute("COMMIT")
        except duckdb.Error as exc:  # e.g. a full disk: the views committed with the manifest still read right
            with contextlib.suppress(duckdb.Error):
                self._con.execute("ROLLBACK")
            views = self._con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()
            have = {r[0] for r in views}
            if not {"points_parts", "rollup_1m_parts", "points_all"} <= have:
                raise
            log.warning("historian: %s: part views not refreshed at open (%s); the committed ones are read",
                        self.path, exc)
        self._max_ts: int | None = self._con.execute("SELECT max(ts) FROM points_all").fetchone()[0]  # type: ignore[index]
        # Sequence number of the last writer batch committed (write_once), stored in the batch's own transaction.
        self._last_seq: int | None = meta.get(_SEQ_KEY)
        self._lt_ts = np.full(len(self._ids) + 1, _NEVER, dtype=np.int64)
        self._lt_val = np.full(len(self._ids) + 1, np.nan)
        self._lt_q = np.zeros(len(self._ids) + 1, dtype=np.uint8)
        self._step = np.full(len(self._ids) + 1, np.nan)
        self._set_steps(self._ids.items())
        self._load_latest(int(meta.get("wm_latest", 0)))

    # ---------------------------------------------------------------- healing

    def _rebuild_views(self) -> None:
        """Views over the parts the manifest lists (in the caller's transaction): ``points_parts`` (every raw row in
        raw parts), ``points_all`` (hot raw rows and the parts' rows from the raw cutoff on) and ``rollup_1m_parts``
        (1-minute rollups of raw parts that retention expired, from the 1-minute floor on)."""
        con = self._con
        listed = self._parts.listed(con) if self._parts is not None else []
        for tbl, floor in (("points", None), ("rollup_1m", self._floor_1m)):
            files = [self._parts.path(p.file) for p in listed if p.tbl == tbl] if self._parts is not None else []
            if files and self._parts is not None:
                src = self._parts.scan(tbl, files)
                src += f" WHERE {PART_TABLES[tbl]} >= {floor}" if floor else ""
            else:
                src = f"SELECT * FROM {tbl} LIMIT 0"
            con.execute(f"CREATE OR REPLACE VIEW {tbl}_parts AS {src}")
        con.execute(
            "CREATE OR REPLACE VIEW points_all AS SELECT * FROM points UNION ALL "
            f"SELECT * FROM points_parts WHERE ts >= {self._raw_cutoff}"
        )

    def _committed(self) -> None:
        """The transaction that unlisted parts committed: their files may go once readers are done with them."""
        if self._parts is not None and self._retiring:
            self._parts.retire(self._retiring)
        self._retiring = []

    def _broke(self, exc: BaseException) -> None:
        """Note that a write failed: the connection is not trusted again (DuckDB invalidates the whole database after
        a failed checkpoint, "database has been invalidated"), and the next write reopens the file first."""
        if self._fault is None:  # once per outage: the writer retries every few seconds while it lasts
            log.error("historian: write to %s failed (%s); the file is reopened at the next write", self.path, exc)
            self._fault = exc
        self._broken = exc
        self._retiring = []  # the transaction that unlisted them rolled back: they are still listed
        with contextlib.suppress(duckdb.Error):
            self._con.execute("ROLLBACK")

    def _heal(self) -> None:
        """After a failed write: close every connection to the file and open it again (raises while it still fails).

        Reopening replays DuckDB's WAL, so what was committed is there, and the in-memory state (series ids,
        watermarks, latest values) is read back from the file, so nothing from the failed transaction lingers.
        """
        if self._broken is None:
            return
        if self.path != ":memory:":  # an in-memory database has no file to reopen; its rollback is enough
            self._gen += 1
            for cur in self._cursors:
                with contextlib.suppress(duckdb.Error):
                    cur.close()
            self._cursors.clear()
            with contextlib.suppress(duckdb.Error):
                self._con.close()
            self._con = _connect(self.path)
        self._load_state()
        self.reopens += 1
        log.debug("historian: %s reopened after a failed write (%s)", self.path, self._broken)
        self._broken = None

    def _healed(self) -> None:
        """A write committed: the outage, if there was one, is over (said once)."""
        if self._fault is not None:
            log.warning("historian: writes to %s work again (reopened %d times so far)", self.path, self.reopens)
            self._fault = None

    # ---------------------------------------------------------------- writing

    def write(self, batch: Batch) -> None:
        """Insert a batch (one transaction), update latest values, and roll up when due."""
        self._write(batch, None)

    def write_once(self, batch: Batch, seq: int) -> bool:
        """:meth:`write`, recording ``seq`` in the same transaction; a batch whose ``seq`` is the last one committed
        is skipped (False): its earlier write committed, then failed (e.g. at the checkpoint), and the writer
        handed it over again. The writer replays in order, so that batch is always the last one committed."""
        return self._write(batch, seq)

    def _write(self, batch: Batch, seq: int | None) -> bool:
        if not len(batch):
            return True
        with self._lock:
            self._heal()
            if seq is not None and seq == self._last_seq:
                log.warning("historian: batch %d (%d points) was already committed; not stored twice", seq, len(batch))
                return False
            con = self._con
            con.execute("BEGIN")
            try:
                sid = self._batch_ids(batch.series)
                batch = self._quantise(batch, sid)
                table = pa.table(
                    {
                        "series_id": pa.array(sid, type=pa.int32()),
                        "ts": pa.array(batch.ts_ns, type=pa.int64()),
                        "value": pa.array(batch.values, type=pa.float64(), from_pandas=True),
                        "quality": pa.array(batch.quality, type=pa.uint8()),
                    }
                )
                merged = 0
                if self._raw_floor and int(batch.ts_ns.min()) < self._raw_floor:
                    # Older than the raw rows still kept: rebuilding those buckets from raw would shrink them, so
                    # these samples are merged into the rollups instead (and never stored raw, retention says no).
                    old = pa.compute.less(table.column("ts"), pa.scalar(self._raw_floor, pa.int64()))
                    merged = self._merge_old(table.filter(old))
                    table = table.filter(pa.compute.invert(old))
                if table.num_rows:
                    con.from_arrow(table).insert_into("points")
                if seq is not None:
                    con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [_SEQ_KEY, seq])
                # One transaction: the rows, their rollup merge and the batch's sequence number commit together,
                # durable in the WAL when write() returns.
                con.execute("COMMIT")
            except BaseException as exc:
                self._broke(exc)
                raise
            self._committed()
            self._healed()
            self._last_seq = seq if seq is not None else self._last_seq
            if merged:
                self.late_merged_points += merged
                log.info("historian: %d samples older than raw retention merged into the rollups", merged)
            self._update_latest(sid, batch)
            if not table.num_rows:
                return True
            tcol = table.column("ts")
            lo, hi = int(pa.compute.min(tcol).as_py()), int(pa.compute.max(tcol).as_py())
            self._max_ts = hi if self._max_ts is None else max(self._max_ts, hi)
            late = lo < self._watermark["rollup_1m"]
            if late:
                self._dirty_min = lo if self._dirty_min is None else min(self._dirty_min, lo)
            if late or self._clock() - self._last_rollup >= self._rollup_every_s:
                try:
                    self.maintain()
                except Exception:  # the batch is committed; the rollups are rebuilt from the watermark later
                    log.debug("historian: rollup after a committed write failed", exc_info=True)
            return True

    def _merge_old(self, rows: pa.Table) -> int:
        """Fold samples older than the raw floor into ``rollup_1m`` (and re-combine their closed hours), inside the
        caller's transaction; returns how many were merged."""
        con = self._con
        first = int(pa.compute.min(rows.column("ts")).as_py())
        # Merged with the hot rollup rows of the same buckets; rows of the same buckets in parts stay as they are,
        # every reader combines all partial rows of a bucket.
        late = _RAW_PARTIALS.replace("{src}", "late_rows")
        con.register("late_rows", rows)
        try:
            if first < self._floor_1m:  # older than the 1-minute tier: straight into the hourly rollup
                hourly = late.format(origin=0, w=HOUR_NS, lo=-(2**62), hi=self._floor_1m, sel="")
                con.execute(f"CREATE OR REPLACE TEMP TABLE late_h AS {hourly}")
                both = (
                    "SELECT r.* FROM rollup_1h r JOIN late_h k ON r.series_id = k.series_id AND r.b = k.b "
                    "UNION ALL SELECT * FROM late_h"
                )
                merged_h = _COMBINE.format(origin=0, w=HOUR_NS, parts=both)
                con.execute(f"CREATE OR REPLACE TEMP TABLE merged_h AS {merged_h}")
                con.execute(_DELETE_KEYS.format(table="rollup_1h", keys="late_h"))
                con.execute("INSERT INTO rollup_1h SELECT * FROM merged_h; DROP TABLE late_h; DROP TABLE merged_h")
            lo_1m = self._floor_1m if self._floor_1m else -(2**62)
            partials = late.format(origin=0, w=MINUTE_NS, lo=lo_1m, hi=self._raw_floor, sel="")
            con.execute(f"CREATE OR REPLACE TEMP TABLE late_1m AS {partials}")
            both = (
                "SELECT r.* FROM rollup_1m r JOIN late_1m k ON r.series_id = k.series_id AND r.b = k.b "
                "UNION ALL SELECT * FROM late_1m"
            )
            merged = _COMBINE.format(origin=0, w=MINUTE_NS, parts=both)
            con.execute(f"CREATE OR REPLACE TEMP TABLE merged_1m AS {merged}")
            con.execute(_DELETE_KEYS.format(table="rollup_1m", keys="late_1m"))
            con.execute("INSERT INTO rollup_1m SELECT * FROM merged_1m")
            wm_1h = self._watermark["rollup_1h"]
            con.execute(
                "CREATE OR REPLACE TEMP TABLE late_1h AS SELECT DISTINCT series_id, b // ? * ? AS b FROM late_1m "
                "WHERE b // ? * ? < ?", [HOUR_NS, HOUR_NS, HOUR_NS, HOUR_NS, wm_1h],
            )  # fmt: skip
            lo_h = first // HOUR_NS * HOUR_NS
            hours = (
                f"SELECT r.* FROM ({self._minutes(lo_h, wm_1h, '')}) r JOIN late_1h k ON r.series_id = k.series_id "
                f"AND r.b // {HOUR_NS} * {HOUR_NS} = k.b"
            )
            con.execute(_DELETE_KEYS.format(table="rollup_1h", keys="late_1h"))
            con.execute(f"INSERT INTO rollup_1h {_COMBINE.format(origin=0, w=HOUR_NS, parts=hours)}")
            con.execute("DROP TABLE late_1m; DROP TABLE merged_1m; DROP TABLE late_1h")
        finally:
            con.unregister("late_rows")
        return rows.num_rows

    def _batch_ids(self, series: np.ndarray) -> np.ndarray:
        """The integer id of every point's series: by string object identity (:mod:`historian.ids`), strings not seen
        before through the id dictionary once per distinct string (registering new series)."""
        series = np.asarray(series, dtype=object)
        sid, ptrs = self._by_object.get(series)
        miss = np.flatnonzero(sid == 0)
        if len(miss):
            objects = series[miss]
            codes, uniques = pd.factorize(objects)
            ids = self._series_ids(np.asarray(uniques, dtype=object))[codes]
            sid[miss] = ids
            self._by_object.add(objects, ptrs[miss], ids)
        return sid

    def _set_steps(self, items: Iterable[tuple[str, int]]) -> None:
        """Note the declared resolution (``resolution``) of each (series key, id); the first matching selector wins."""
        if not self._resolution:
            return
        if len(self._step) < len(self._ids) + 1:
            self._step = np.concatenate([self._step, np.full(len(self._ids) + 1 - len(self._step), np.nan)])
        for key, sid in items:
            parsed = _parse_key(key)
            self._step[sid] = next((step for sel, step in self._resolution if sel.matches_key(parsed)), np.nan)

    def _quantise(self, batch: Batch, sid: np.ndarray) -> Batch:
        """The batch with values of series of declared resolution rounded to it (count x step: stored as the count)."""
        if not self._resolution:
            return batch
        step = self._step[sid]
        on = ~np.isnan(step)
        if not on.any():
            return batch
        values = batch.values.copy()
        values[on] = np.round(values[on] / step[on]) * step[on]
        return Batch(batch.series, batch.ts_ns, values, batch.quality, batch.reasons)

    def _series_ids(self, uniques: np.ndarray) -> np.ndarray:
        """Integer ids for the batch's distinct series ids, registering new ones in one insert."""
        get = self._ids.get
        out = np.fromiter((get(s, 0) for s in uniques), dtype=np.int32, count=len(uniques))
        new = np.flatnonzero(out == 0)
        if len(new):
            keys = [str(uniques[i]) for i in new]
            first = len(self._ids) + 1
            ids = np.arange(first, first + len(keys), dtype=np.int32)
            self._con.register("_new", pa.table({"id": ids, "key": pa.array(keys, type=pa.string())}))
            try:
                self._con.execute("INSERT INTO series SELECT * FROM _new")
            finally:
                self._con.unregister("_new")
            self._ids.update(zip(keys, ids.tolist(), strict=True))
            self._set_steps(zip(keys, ids.tolist(), strict=True))
            out[new] = ids
        return out

    def _grow_latest(self) -> None:
        n = len(self._ids) + 1
        if len(self._lt_ts) < n:
            extra = n - len(self._lt_ts)
            self._lt_ts = np.concatenate([self._lt_ts, np.full(extra, _NEVER, dtype=np.int64)])
            self._lt_val = np.concatenate([self._lt_val, np.full(extra, np.nan)])
            self._lt_q = np.concatenate([self._lt_q, np.zeros(extra, dtype=np.uint8)])

    def _update_latest(self, sid: np.ndarray, batch: Batch) -> None:
        """Keep the newest sample per series in memory (a DuckDB upsert per write would cost 7 ms)."""
        self._grow_latest()
        if np.bincount(sid, minlength=len(self._lt_ts)).max() <= 1:
            last = np.arange(len(sid))  # one sample per series (one poll): no sort needed
        else:
            order = np.lexsort((batch.ts_ns, sid))
            ss = sid[order]
            last = order[np.r_[ss[1:] != ss[:-1], True]]
        u = sid[last]
        newer = batch.ts_ns[last] >= self._lt_ts[u]
        u, last = u[newer], last[newer]
        self._lt_ts[u] = batch.ts_ns[last]
        self._lt_val[u] = batch.values[last]
        self._lt_q[u] = batch.quality[last]

    def _load_latest(self, saved_wm: int) -> None:
        """Latest values at open: the saved table, then raw rows newer than it was (with an hour's slack)."""
        # arg_max_null: a last sample without a value is the latest (arg_max would skip to an older value).
        rows = self._con.execute("SELECT series_id, ts, value, quality FROM latest").fetchall()
        tail = self._con.execute(
            "SELECT series_id, max(ts), arg_max_null(value, ts), arg_max(quality, ts) FROM points_all WHERE ts >= ? "
            "GROUP BY series_id",
            [saved_wm - HOUR_NS],
        ).fetchall()
        for sid, ts, val, q in [*rows, *tail]:
            if ts >= self._lt_ts[sid]:
                self._lt_ts[sid], self._lt_q[sid] = ts, q
                self._lt_val[sid] = np.nan if val is None else val

    def _save_latest(self) -> None:
        have = np.flatnonzero(self._lt_ts != _NEVER)
        tbl = pa.table(
            {
                "series_id": pa.array(have, type=pa.int32()),
                "ts": pa.array(self._lt_ts[have]),
                "value": pa.array(self._lt_val[have], from_pandas=True),
                "quality": pa.array(self._lt_q[have]),
            }
        )
        self._con.execute("DELETE FROM latest")
        self._con.from_arrow(tbl).insert_into("latest")
        self._con.execute("INSERT OR REPLACE INTO meta VALUES ('wm_latest', ?)", [self._max_ts or 0])

    def flush(self) -> None:
        """Roll up every closed bucket now (the writer also does it every ``rollup_every_s``)."""
        self.maintain()

    def maintain(self) -> None:
        """Recompute rollup buckets that closed or received late data, then apply raw retention."""
        with self._lock:
            self._heal()
            self._last_rollup = self._clock()
            if self._max_ts is None:
                return
            con = self._con
            con.execute("BEGIN")
            try:
                lo_1m = self._roll("rollup_1m", MINUTE_NS, "points")
                self._roll("rollup_1h", HOUR_NS, "rollup_1m", lo_1m)
                # Retention counts back from the newest data as well as from now, whichever keeps more: data on a
                # simulated clock (or replayed history) is not deleted just because the wall clock is ahead of it.
                ref = min(int(self._clock() * NS), self._max_ts)
                self._expire(ref)
                self._save_latest()
                con.execute("COMMIT")
            except BaseException as exc:
                self._broke(exc)
                raise
            self._committed()
            self._dirty_min = None
            self._compact()
            if self._parts is not None:
                self._parts.sweep(con)

    def _expire(self, ref: int) -> None:
        """Apply the retention tiers counted back from ``ref`` (in the caller's transaction)."""
        con = self._con
        cutoff = ref - self._retention_ns
        con.execute("DELETE FROM points WHERE ts < ?", [cutoff])
        changed = self._expire_raw_parts(cutoff)
        # Buckets from here on are wholly covered by raw rows; older ones live only in the rollups.
        floor = -(-cutoff // MINUTE_NS) * MINUTE_NS
        if floor > self._raw_floor:
            self._raw_floor, self._raw_cutoff = floor, cutoff
            con.execute("INSERT OR REPLACE INTO meta VALUES ('raw_floor', ?), ('raw_cutoff', ?)", [floor, cutoff])
            changed = changed or self._parts is not None
        if self._retention_1m_ns is not None:
            # Hour-aligned, so an hour is either rebuilt from all its minutes or merged into as a whole.
            floor_1m = (ref - self._retention_1m_ns) // HOUR_NS * HOUR_NS
            if floor_1m > self._floor_1m:
                con.execute("DELETE FROM rollup_1m WHERE b < ?", [floor_1m])
                self._drop_parts("rollup_1m", floor_1m)
                self._floor_1m = floor_1m
                con.execute("INSERT OR REPLACE INTO meta VALUES ('floor_1m', ?)", [floor_1m])
                changed = True
        if self._retention_1h_ns is not None:
            con.execute("DELETE FROM rollup_1h WHERE b < ?", [ref - self._retention_1h_ns])
        if changed:
            self._rebuild_views()

    def _expire_raw_parts(self, cutoff: int) -> bool:
        """Replace raw parts wholly before ``cutoff`` by one part of their 1-minute rollups (the minutes they served
        when read until now); True when there were any."""
        if self._parts is None:
            return False
        gone = [p for p in self._parts.listed(self._con, "points") if p.hi <= cutoff]
        if not gone:
            return False
        src = f"({self._parts.scan('points', [self._parts.path(p.file) for p in gone])})"
        self._parts.write(
            self._con,
            "rollup_1m",
            _RAW_PARTIALS.format(src=src, origin=0, w=MINUTE_NS, lo=-(2**62), hi=2**62, sel=""),
            level=0,
        )
        self._parts.unlist(self._con, gone)
        self._retiring += gone
        self._merge_parts("rollup_1m", cutoff)
        return True

    def _merge_parts(self, tbl: str, closed_before: int) -> None:
        """Merge small parts of ``tbl`` (see :func:`historian.parts.merge_candidates`), in the caller's transaction."""
        assert self._parts is not None
        for group in merge_candidates(self._parts.listed(self._con, tbl), closed_before):
            level = max(p.level for p in group) + 1
            self._parts.write(self._con, tbl, self._parts.scan(tbl, [self._parts.path(p.file) for p in group]), level)
            self._parts.unlist(self._con, group)
            self._retiring += group

    def _drop_parts(self, tbl: str, before: int) -> bool:
        """Unlist the parts of ``tbl`` wholly before ``before`` (retention); True when there were any."""
        if self._parts is None:
            return False
        gone = [p for p in self._parts.listed(self._con, tbl) if p.hi <= before]
        self._parts.unlist(self._con, gone)
        self._retiring += gone
        return bool(gone)

    def compact(self) -> int:
        """Write the hot rows below the 1-minute watermark to sorted Parquet parts now, whatever their number
        (the writer does it by itself once ``hot_max_rows`` are hot); returns the rows moved."""
        with self._lock:
            self._heal()
            return self._compact(force=True)

    def _compact(self, force: bool = False) -> int:
        """Move closed hot rows to a new part and merge small parts (one transaction; see historian.parts)."""
        if self._parts is None:
            return 0
        con = self._con
        # Every raw row below the 1-minute watermark is rolled up. Rows before the raw floor stay hot until
        # retention deletes them (their minute's rollup row stays hot with them).
        lo, hi = self._raw_floor, self._watermark["rollup_1m"]
        where = f"ts >= {lo} AND ts < {hi}"
        hot = con.execute(f"SELECT count(*) FROM points WHERE {where}").fetchone()[0]  # type: ignore[index]
        if not hot or (hot < self._hot_max_rows and not force):
            return 0
        con.execute("BEGIN")
        try:
            self._parts.write(con, "points", f"SELECT * FROM points WHERE {where}", level=0)
            con.execute(f"DELETE FROM points WHERE {where}")
            # Those rows' minutes are aggregated from the part when read (1-minute rollups of rows at poll rate
            # cost about as much as the rows themselves); the part's rollups are written when retention expires it.
            con.execute(f"DELETE FROM rollup_1m WHERE b >= {lo} AND b < {hi}")
            self._merge_parts("points", hi)
            self._rebuild_views()
            con.execute("COMMIT")
        except BaseException as exc:
            self._broke(exc)
            raise
        self._committed()
        self.compactions += 1
        # Free the compacted rows' blocks now, for the next hot rows to reuse, and empty the WAL; a checkpoint that
        # fails (another thread's transaction open, a full disk) is retried by DuckDB's own WAL threshold.
        try:
            con.execute("CHECKPOINT")
        except duckdb.Error as exc:
            log.debug("historian: checkpoint after compaction skipped (%s)", exc)
        log.debug("historian: %d hot rows before %d compacted", hot, hi)
        return int(hot)

    def _roll(self, table: str, res: int, source: str, dirty: int | None = None) -> int | None:
        """Rebuild ``table`` buckets from the old watermark (or the dirty point) up to the new one."""
        old = self._watermark[table]
        cap = self._watermark["rollup_1m"] if source == "rollup_1m" else self._max_ts or 0
        new = cap // res * res
        starts = [old] if old else []
        if dirty is not None:
            starts.append(dirty)
        if source == "points":
            if self._dirty_min is not None:
                starts.append(self._dirty_min)
            if not old:
                first = self._con.execute("SELECT min(ts) FROM points").fetchone()[0]  # type: ignore[index]
                starts.append(int(first if first is not None else new))
        elif not old:
            starts.append(0)
        lo = min(starts) // res * res
        if source == "points":
            lo = max(lo, self._raw_floor)  # never rebuild a bucket whose raw rows retention already deleted
        else:
            lo = max(lo, self._floor_1m)  # nor an hour whose minutes the 1-minute tier already deleted
        if lo >= new:
            return None
        self._con.execute(f"DELETE FROM {table} WHERE b >= ? AND b < ?", [lo, new])
        if source == "points":
            # From hot rows only: buckets of rows in raw parts are aggregated from the parts when read.
            sql = _RAW_PARTIALS.format(src="points", origin=0, w=res, lo=lo, hi=new, sel="")
        else:
            parts = self._minutes(lo, new, "")
            sql = _COMBINE.format(origin=0, w=res, parts=parts)
        self._con.execute(f"INSERT INTO {table} {sql}")
        self._con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [f"wm_{table}", new])
        self._watermark[table] = new
        return lo

    # ---------------------------------------------------------------- reading

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        """This thread's cursor on the current connection (a new one after the file was reopened)."""
        cur: duckdb.DuckDBPyConnection | None = getattr(self._local, "cursor", None)
        if cur is None or self._local.gen != self._gen:
            with self._lock:
                self._heal()
                cur = self._con.cursor()
                self._cursors.append(cur)
                self._local.cursor, self._local.gen = cur, self._gen
        return cur

    def _select(self, cur: duckdb.DuckDBPyConnection, selector: SeriesSelector) -> dict[int, str]:
        """Series ids matching the selector; cached until a new series is registered."""
        n = cur.execute("SELECT count(*) FROM series").fetchall()[0][0]
        cache_key = str(selector)
        hit = self._sel_cache.get(cache_key)
        if hit is not None and hit[0] == n:
            return hit[1]
        rows = cur.execute("SELECT id, key FROM series WHERE key LIKE ? ESCAPE '!'", [_like_prefix(selector)])
        found = {sid: key for sid, key in rows.fetchall() if selector.matches_key(_parse_key(key))}
        if len(self._sel_cache) > 1000:
            self._sel_cache.clear()
        self._sel_cache[cache_key] = (n, found)
        return found

    def query(
        self,
        selector: SeriesSelector,
        start: TimeLike,
        end: TimeLike,
        window: str | timedelta | int | None = None,
        agg: Agg | None = None,
    ) -> pd.DataFrame:
        """Raw rows, or aggregates per window built from rollups where the window allows (see base)."""
        lo, hi = to_ns(start), to_ns(end)
        cur = self._cursor()
        keys = self._select(cur, selector)
        if not keys or hi <= lo:
            return empty_result()
        # Ids are our integers; a literal list lets DuckDB prune with zonemaps, a join table scales to many.
        if len(keys) <= 2000:
            sel = f"AND series_id IN ({', '.join(str(int(i)) for i in keys)})"
        else:
            sel = "AND series_id IN (SELECT id FROM _sel)"
        cur.register("_sel", pa.table({"id": pa.array(list(keys), type=pa.int32())}))
        try:
            if window is None and agg is None:
                tbl = cur.sql(
                    f"SELECT series_id, ts, value, quality FROM points_all WHERE ts >= $1 AND ts < $2 {sel}",
                    params=[lo, hi],
                ).to_arrow_table()
                return self._frame(tbl, keys, "value")
            agg = agg or "mean"
            check_agg(agg)
            if window is None:
                origin, w = lo, hi - lo
            else:
                w = parse_window(window)
                origin = lo // w * w
            sql = self._agg_sql(origin, w, lo, hi, sel)
            tbl = cur.sql(f"SELECT series_id, b AS ts, {_VALUE_EXPR[agg]} AS value, q AS quality FROM ({sql})")
            return self._frame(tbl.to_arrow_table(), keys, "value")
        finally:
            cur.unregister("_sel")

    def query_arrays(self, selector: SeriesSelector, start: TimeLike, end: TimeLike) -> RawArrays:
        """Raw rows as arrays: integer series codes from a lookup table, no string column, no datetimes."""
        lo, hi = to_ns(start), to_ns(end)
        cur = self._cursor()
        keys = self._select(cur, selector)
        if not keys or hi <= lo:
            return RawArrays.from_frame(empty_result())
        cur.register("_sel", pa.table({"id": pa.array(list(keys), type=pa.int32())}))
        try:
            tbl = cur.sql(
                "SELECT series_id, ts, value, quality FROM points_all WHERE ts >= $1 AND ts < $2 "
                "AND series_id IN (SELECT id FROM _sel)",
                params=[lo, hi],
            ).to_arrow_table()
        finally:
            cur.unregister("_sel")
        ids = tbl.column("series_id").to_numpy(zero_copy_only=False)
        present = np.unique(ids) if len(ids) < 4 * len(keys) else np.flatnonzero(np.bincount(ids))
        names = sorted(keys[int(i)] for i in present)
        # Codes as narrow integers, so the sort below is cheap.
        lut = np.zeros(max(keys) + 1, dtype=np.int16 if len(names) < 2**15 else np.int32)
        lut[[self._ids[n] for n in names]] = np.arange(len(names))
        codes = lut[ids]
        ts = np.asarray(tbl.column("ts").to_numpy(zero_copy_only=False), dtype=np.int64)
        # By series, then time, ties in stored order: query()'s order (on narrow codes this is a fraction of a second).
        order = np.lexsort((ts, codes))
        codes, ts = codes[order], ts[order]
        vals = tbl.column("value").to_numpy(zero_copy_only=False).astype(np.float64)[order]
        qual = np.asarray(tbl.column("quality").fill_null(0).to_numpy(zero_copy_only=False), dtype=np.uint8)[order]
        return RawArrays(names, codes.astype(np.intp), ts, vals, qual)

    def _agg_sql(self, origin: int, w: int, lo: int, hi: int, sel: str) -> str:
        """Raw partials for the edges, rollup rows for the aligned middle, combined per window."""
        for table, res in ROLLUPS:
            if w % res or origin % res:
                continue
            a = -(-lo // res) * res
            b = min(hi // res * res, self._watermark[table])
            if b - a < res:
                continue
            parts = [
                self._minutes(a, b, sel)
                if table == "rollup_1m"
                else f"SELECT * FROM {table} WHERE b >= {a} AND b < {b} {sel}",
                _RAW_PARTIALS.format(src="points_all", origin=origin, w=w, lo=lo, hi=a, sel=sel),
                _RAW_PARTIALS.format(src="points_all", origin=origin, w=w, lo=b, hi=hi, sel=sel),
            ]
            return _COMBINE.format(origin=origin, w=w, parts=" UNION ALL ".join(parts))
        return _RAW_PARTIALS.format(src="points_all", origin=origin, w=w, lo=lo, hi=hi, sel=sel)

    @staticmethod
    def _minutes(lo: int, hi: int, sel: str) -> str:
        """1-minute rollup rows of buckets in [lo, hi): the hot table's, expired raw parts' rollups, and the
        minutes of raw parts aggregated as they are read (a bucket may have several rows; readers combine them)."""
        raw = _RAW_PARTIALS.format(src="points_parts", origin=0, w=MINUTE_NS, lo=lo, hi=hi, sel=sel)
        return " UNION ALL ".join(
            [
                f"SELECT * FROM rollup_1m WHERE b >= {lo} AND b < {hi} {sel}",
                f"SELECT * FROM rollup_1m_parts WHERE b >= {lo} AND b < {hi} {sel}",
                raw,
            ]
        )

    def latest(self, selector: SeriesSelector) -> pd.DataFrame:
        """The last sample of each matching series (from memory; the file is updated with the rollups)."""
        keys = self._select(self._cursor(), selector)
        with self._lock:
            ids = np.array([i for i in keys if i < len(self._lt_ts) and self._lt_ts[i] != _NEVER], dtype=np.int64)
            ts, val, q = self._lt_ts[ids], self._lt_val[ids], self._lt_q[ids]
        if not len(ids):
            return empty_result()
        return make_result([keys[int(i)] for i in ids], ts, val, q)

    @staticmethod
    def _frame(tbl: pa.Table, keys: dict[int, str], value_col: str) -> pd.DataFrame:
        if tbl.num_rows == 0:
            return empty_result()
        ids = tbl.column("series_id").to_numpy()
        uniq, inv = np.unique(ids, return_inverse=True)
        names = np.array([keys[int(i)] for i in uniq], dtype=object)
        vals = tbl.column(value_col).to_numpy(zero_copy_only=False).astype(np.float64)
        qual = np.asarray(tbl.column("quality").fill_null(0).to_numpy(zero_copy_only=False), dtype=np.uint8)
        ts = np.asarray(tbl.column("ts").to_numpy(zero_copy_only=False), dtype=np.int64)
        # make_result's frame (sorted by series, then time, stably), built without a per-row Python string:
        # for a month of 2,000 meters (20M rows) the string column and the multi-key sort were most of a query.
        rank = np.empty(len(names), dtype=np.int64)
        rank[np.argsort(names.astype(str), kind="stable")] = np.arange(len(names))
        order = np.lexsort((ts, rank[inv]))
        series = pa.array(names.tolist(), type=pa.large_string()).take(pa.array(inv[order]))
        return pd.DataFrame(
            {
                "ts": pd.to_datetime(ts[order], unit="ns", utc=True),
                "series": pd.Series(pd.array(series, dtype=_STR)),
                "value": vals[order],
                "quality": qual[order],
            }
        )

    def row_count(self) -> int:
        """Raw rows stored (for tests and the bench)."""
        return int(self._cursor().execute("SELECT count(*) FROM points_all").fetchone()[0])  # type: ignore[index]

    def release_retired(self) -> None:
        """Delete part files already dropped from the manifest now, not after the grace for readers (call it only
        with no query running, e.g. from a benchmark before it measures the disk)."""
        if self._parts is not None:
            with self._lock:
                self._parts.sweep(self._con, at_open=True)

    def disk_bytes(self) -> int:
        """Bytes on disk: the DuckDB file, its WAL and every part file (0 for an in-memory database)."""
        if self._parts is None:
            return 0
        files = [Path(self.path), Path(self.path + ".wal")]
        return sum(f.stat().st_size for f in files if f.exists()) + self._parts.bytes()

    def close(self) -> None:
        """Roll up what is closed and close the file."""
        with self._lock:
            try:
                if self._broken is None:  # a broken connection holds nothing uncommitted; the WAL has the rest
                    self.maintain()
                    if self._parts is not None:  # our readers go with us: merged parts need not wait for them
                        self._parts.sweep(self._con, at_open=True)
            finally:
                for cur in self._cursors:
                    with contextlib.suppress(duckdb.Error):
                        cur.close()
                self._con.close()


def _selector(text: str) -> SeriesSelector:
    """A ``[historian] resolution`` selector, or one :class:`ConfigError` line naming it."""
    try:
        return SeriesSelector.parse(text)
    except (ConfigError, ValueError) as exc:
        raise ConfigError(f"historian.resolution: {exc}") from None


def _connect(path: str) -> duckdb.DuckDBPyConnection:
    """Open (or create) the file; a new file gets ``FILE_BLOCK_SIZE`` blocks (an existing one keeps its own)."""
    if path == ":memory:":
        return duckdb.connect(path)
    return duckdb.connect(path, config={"default_block_size": str(FILE_BLOCK_SIZE)})


def _like_prefix(selector: SeriesSelector) -> str:
    """A LIKE pattern on the literal measurement prefix, so DuckDB narrows the series list cheaply."""
    prefix = selector.measurement.split("*", 1)[0].split("?", 1)[0]
    prefix = prefix.replace(",", "\\,").replace(" ", "\\ ")  # as escaped in series ids
    escaped = prefix.replace("!", "!!").replace("%", "!%").replace("_", "!_")
    return escaped + "%"
