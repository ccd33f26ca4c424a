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
# Level-0 parts (minutes to hours old, merged soon) take the fast zstd level; merged parts, kept for the tier, a
# stronger one (measured: 3 % smaller, 1.7x the CPU).
PARQUET_OPTIONS = (
    "FORMAT parquet, PARQUET_VERSION v2, COMPRESSION zstd, COMPRESSION_LEVEL {level}, DICTIONARY_SIZE_LIMIT 1"
)
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

    def source(self, con: duckdb.DuckDBPyConnection, tbl: str, floor: int) -> str:
        """SQL for ``tbl``'s hot rows and its parts (those at or after ``floor``) as one relation."""
        col = PART_TABLES[tbl]
        files = [self.path(p.file) for p in self.listed(con, tbl) if p.hi > floor]
        if not files:
            return f"SELECT * FROM {tbl}"
        listed = ", ".join(f"'{f}'" for f in files)
        return f"SELECT * FROM {tbl} UNION ALL BY NAME SELECT * FROM read_parquet([{listed}]) WHERE {col} >= {floor}"

    def write(self, con: duckdb.DuckDBPyConnection, tbl: str, select: str, level: int) -> Part | None:
        """Write ``select`` (rows of ``tbl``) to a new sorted part, fsynced, and list it; None when it is empty."""
        col = PART_TABLES[tbl]
        lo, hi, rows = con.execute(f"SELECT min({col}), max({col}), count(*) FROM ({select})").fetchone()  # type: ignore[misc]
        if not rows:
            return None
        name = f"{tbl}-{lo}-{uuid.uuid4().hex[:12]}.parquet"
        path = self.path(name)
        try:
            options = PARQUET_OPTIONS.format(level=3 if level == 0 else 9)
            con.execute(f"COPY (SELECT * FROM ({select}) ORDER BY series_id, {col}) TO '{path}' ({options})")
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
