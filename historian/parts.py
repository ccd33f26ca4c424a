"""Compacted parts of the DuckDB historian: closed raw rows and 1-minute rollups as sorted, zstd Parquet files.

Rows arrive in time order (one poll of every series after another), which compresses poorly: neighbouring values
belong to different series. When the hot table holds enough rows, the rows below the 1-minute rollup watermark
are written to one Parquet file sorted by (series, time) — timestamps then delta-pack to almost nothing, series
ids are constant for long runs, and each series' values sit together for zstd — and deleted from the hot table,
in one DuckDB transaction that also records the file in the ``parts`` manifest table. Small parts of one UTC day
merge level by level (``MERGE_FANOUT`` parts of a level make one of the next) and into one file when the day has
closed, so a month is a few dozen files.

Zero loss: a file is written and fsynced *before* the transaction that deletes its rows from the hot table
commits; a file the manifest does not list (a compaction interrupted before its commit) is deleted at the next
open, its rows still in the hot table. A file the manifest stops listing (merged, or expired by retention) is
deleted only a while later, so a query that planned with it can finish.
"""

# SQL here is built from our own table names, file names we generated and integers only, never from user text:
# ruff: noqa: S608

from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import duckdb

log = logging.getLogger(__name__)

DAY_NS = 86_400 * 1_000_000_000
MERGE_FANOUT = 8  # parts of one level within a day merged into one of the next level
RETIRE_AFTER_S = 30.0  # a file dropped from the manifest is deleted this long after (a query may still read it)
# Sorted runs delta-pack in Parquet v2 (DELTA_BINARY_PACKED timestamps, BYTE_STREAM_SPLIT doubles); zstd does the rest.
# Dictionaries are off: measured larger than byte-stream-split + zstd on telemetry values.
# Level-0 parts (minutes old, merged soon) take zstd's fast level 3; merged parts, kept for the tier, level 16, where
# zstd's optimal parsing starts (measured on the bench's facility data: 0.69 bytes a point against 0.76 at level 9, for
# about 2.5x the CPU of writing the part; levels 17-19 gave nothing more).
ZSTD_LEVEL_0, ZSTD_LEVEL_MERGED = 3, 16
PARQUET_OPTIONS = (
    "FORMAT parquet, PARQUET_VERSION v2, COMPRESSION zstd, COMPRESSION_LEVEL {level}, DICTIONARY_SIZE_LIMIT 1"
)
# Raw values as decimal counts: a value that is a whole number of 10^-e (a register with scale 0.1 holds tenths, a
# meter whole watt-hours) is stored as that count ``m`` with the series' exponent ``e`` (constant for the series in a
# part, so it run-length encodes to nothing). A count is an integer-valued double: its low mantissa bytes are zero,
# which byte-stream-split + zstd store for nothing, where 230.1 as a double carries 52 bits of binary fraction.
# Two ways back, per series: ``m / 10^e`` (e < 10; the decimal literal, e.g. 230.1) or ``m * 10^-(e-10)`` (e >= 10;
# what a collector computes as raw * scale, e.g. 4023 * 0.01 = 40.230000000000004). A row is stored so only when that
# gives back the very same double (checked on the row as it is written); any other value (full precision, too large,
# infinite, -0.0) stays as the double in ``value``. Lossless either way.
POW10 = "[1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9]"  # exact doubles, for the count; lists count from 1
MAX_EXP = 9


def _count_back(m: str) -> str:
    """SQL for the double a count ``m`` stands for at the row's ``e`` (a CASE on constants: 2.5x faster to read
    than indexing a list)."""
    div = " ".join(f"WHEN {e} THEN {m} / 1e{e}" for e in range(1, MAX_EXP + 1))
    mul = " ".join(f"WHEN {10 + e} THEN {m} * 1e-{e}" for e in range(1, MAX_EXP + 1))
    return f"CASE e WHEN 0 THEN {m} WHEN 10 THEN {m} {div} {mul} END"


DECODE = f"CASE WHEN m IS NULL THEN value ELSE {_count_back('m')} END"
# The smallest exponent at which a row's value is a whole count, each way back (NULL when none up to MAX_EXP is).
_EXPS = range(MAX_EXP + 1)
_DIV_EXP = "CASE " + " ".join(f"WHEN round(value * 1e{e}) / 1e{e} = value THEN {e}" for e in _EXPS) + " END"
_MUL_EXP = "CASE " + " ".join(f"WHEN round(value * 1e{e}) * 1e-{e} = value THEN {e}" for e in _EXPS) + " END"


def encode_raw(select: str) -> str:
    """SQL turning raw rows (series_id, ts, value, quality) into a part's columns: series_id, ts, quality, e, m, value
    (see ``DECODE``); the caller adds the ORDER BY."""
    finite = "isfinite(value) AND abs(value) < 1e15"  # so that a count fits a double's 53 bits exactly
    return f"""
WITH r AS (SELECT series_id, ts, value, quality, CASE WHEN {finite} THEN {_DIV_EXP} END AS ed,
    CASE WHEN {finite} THEN {_MUL_EXP} END AS em FROM ({select})),
s AS (SELECT *, CASE WHEN count(em) OVER w > count(ed) OVER w THEN 10 + max(em) OVER w ELSE max(ed) OVER w END AS e
    FROM r WINDOW w AS (PARTITION BY series_id)),
c AS (SELECT *, CASE WHEN e IS NOT NULL AND {finite} AND abs(value) * {POW10}[e % 10 + 1] < 1e15
    THEN round(value * {POW10}[e % 10 + 1]) END AS m0 FROM s),
d AS (SELECT *, {_count_back("m0")} AS back FROM c),
o AS (SELECT *, coalesce(back = value AND (value <> 0 OR NOT signbit(value)), false) AS ok FROM d)
SELECT series_id, ts, quality, e::UTINYINT AS e, CASE WHEN ok THEN m0 END AS m, CASE WHEN NOT ok THEN value END AS value
FROM o"""


# (table, time column) of the tables that compact into parts.
PART_TABLES: dict[str, str] = {"points": "ts", "rollup_1m": "b"}

MANIFEST_SCHEMA = """
CREATE TABLE IF NOT EXISTS parts (tbl VARCHAR NOT NULL, lo BIGINT NOT NULL, hi BIGINT NOT NULL, rows BIGINT NOT NULL,
    level INTEGER NOT NULL, file VARCHAR NOT NULL)
"""


@dataclass(frozen=True)
class Part:
    """One Parquet file: rows of ``tbl`` with time in [lo, hi)."""

    tbl: str
    lo: int
    hi: int
    rows: int
    level: int
    file: str


class Parts:
    """The part files of one historian file, in the folder ``<file>.parts`` beside it."""

    def __init__(self, db_path: str) -> None:
        self.dir = Path(db_path + ".parts")
        self.dir.mkdir(parents=True, exist_ok=True)
        self._retired: list[tuple[float, str]] = []  # (monotonic time dropped from the manifest, file name)

    def listed(self, con: duckdb.DuckDBPyConnection, tbl: str | None = None) -> list[Part]:
        """The parts the manifest lists (in the caller's transaction), oldest first."""
        where = f"WHERE tbl = '{tbl}'" if tbl else ""
        rows = con.execute(f"SELECT tbl, lo, hi, rows, level, file FROM parts {where} ORDER BY lo, file").fetchall()
        return [Part(*r) for r in rows]

    def path(self, name: str) -> str:
        """Absolute path of a part file (SQL-quoted by the caller's f-string; our names hold no quote)."""
        return str((self.dir / name).resolve())

    def scan(self, tbl: str, files: list[str]) -> str:
        """SQL reading part files of ``tbl`` (absolute paths) as that table's columns, raw values decoded."""
        listed = ", ".join(f"'{f}'" for f in files)
        src = f"read_parquet([{listed}], union_by_name = true)"
        if tbl != "points":
            return f"SELECT * FROM {src}"
        # Parts written before the decimal layout have only ``value``: union_by_name reads their m as NULL.
        return f"SELECT series_id, ts, {DECODE} AS value, quality FROM {src}"

    def write(self, con: duckdb.DuckDBPyConnection, tbl: str, select: str, level: int) -> Part | None:
        """Write ``select`` (rows of ``tbl``) to a new sorted part, fsynced, and list it; None when it is empty."""
        col = PART_TABLES[tbl]
        lo, hi, rows = con.execute(f"SELECT min({col}), max({col}), count(*) FROM ({select})").fetchone()  # type: ignore[misc]
        if not rows:
            return None
        name = f"{tbl}-{lo}-{uuid.uuid4().hex[:12]}.parquet"
        path = self.path(name)
        try:
            options = PARQUET_OPTIONS.format(level=ZSTD_LEVEL_0 if level == 0 else ZSTD_LEVEL_MERGED)
            rows_sql = encode_raw(select) if tbl == "points" else f"SELECT * FROM ({select})"
            con.execute(f"COPY ({rows_sql} ORDER BY series_id, {col}) TO '{path}' ({options})")
            _fsync(path)
            _fsync(str(self.dir))
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise
        part = Part(tbl, int(lo), int(hi) + 1, int(rows), level, name)
        con.execute("INSERT INTO parts VALUES (?, ?, ?, ?, ?, ?)", [tbl, part.lo, part.hi, rows, level, name])
        return part

    def unlist(self, con: duckdb.DuckDBPyConnection, parts: list[Part]) -> None:
        """Drop parts from the manifest (in the caller's transaction); :meth:`retire` deletes their files later."""
        for p in parts:
            con.execute("DELETE FROM parts WHERE file = ?", [p.file])

    def retire(self, parts: list[Part]) -> None:
        """After the commit that unlisted them: delete these files once readers are done (see :meth:`sweep`)."""
        now = time.monotonic()
        self._retired.extend((now, p.file) for p in parts)

    def sweep(self, con: duckdb.DuckDBPyConnection, *, at_open: bool = False) -> None:
        """Delete retired files old enough, and at open every file the manifest does not list (an interrupted write)."""
        now = time.monotonic()
        due = [f for t, f in self._retired if at_open or now - t >= RETIRE_AFTER_S]
        self._retired = [(t, f) for t, f in self._retired if not (at_open or now - t >= RETIRE_AFTER_S)]
        if at_open:
            listed = {p.file for p in self.listed(con)}
            due += [f.name for f in self.dir.glob("*.parquet") if f.name not in listed]
        for name in due:
            with contextlib.suppress(FileNotFoundError):
                (self.dir / name).unlink()
                log.debug("historian: part %s deleted", name)

    def bytes(self) -> int:
        """Bytes of every file in the parts folder (listed or not yet deleted)."""
        return sum(f.stat().st_size for f in self.dir.iterdir() if f.is_file())


def merge_candidates(parts: list[Part], closed_before: int) -> list[list[Part]]:
    """Groups of parts to merge: ``MERGE_FANOUT`` of one level within one UTC day, or every part of a closed day."""
    by_day: dict[int, list[Part]] = {}
    for p in parts:
        day = p.lo // DAY_NS
        if (p.hi - 1) // DAY_NS == day:  # a part of late rows spanning days stays as it is
            by_day.setdefault(day, []).append(p)
    groups = []
    for day, ps in by_day.items():
        if (day + 1) * DAY_NS <= closed_before and len(ps) > 1:
            groups.append(ps)
            continue
        for level in sorted({p.level for p in ps}):
            same = [p for p in ps if p.level == level]
            if len(same) >= MERGE_FANOUT:
                groups.append(same)
                break
    return groups


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
