"""A bounded disk spool of line-protocol chunks: append-only segment files and an atomically replaced ack.

Record layout: a 24-byte header (magic ``AIDS``, payload length, CRC-32 of the payload, point count, append
time in ns) then the payload. The ``ack`` file names the segment and byte offset up to which records were
delivered; it is replaced by write-to-temp, fsync, rename, fsync of the directory, so after ``kill -9`` it
points at a record boundary that was really delivered. Records after it are replayed in order.

Durability (``fsync = "always"``, the default): an append returns only after the segment file is fsynced,
so a point handed to the historian survives ``kill -9`` and power loss. With ``"never"`` the OS decides
(survives ``kill -9``, not power loss). At open, a torn record at the tail (a crash mid-append) is cut off;
the caller never saw that append succeed, so nothing it was promised is lost. A corrupt record elsewhere (a bad
sector, a stray write) is skipped and counted in ``corrupt_records``; the scan resynchronises on the next
record whose checksum verifies, so every valid record after it is still replayed.

Metadata is checked before anything is deleted. A ``*.seg`` entry this spool did not write (a name that is not a
16-digit number, a directory) and an ack that cannot be trusted (unreadable, not two integers, negative, naming a
segment beyond the last or missing between others, an offset past the segment's end or off a record boundary) are
each reported in one log line and set aside as ``<name>.bad-<UTC time>``; without a trusted ack every spooled record
is replayed, which the idempotent writes below make safe. Only a trusted ack ever deletes a segment.

Replay is at-least-once: a crash after a chunk is delivered but before the ack is replaced sends that chunk
again. InfluxDB overwrites a point with the same series and timestamp, and VictoriaMetrics does the same
with ``-dedup.minScrapeInterval=1ms``, so each point is stored exactly once.

Bounded: when unreplayed bytes would exceed ``max_bytes`` the new chunk is refused and its points are
counted as dropped. The oldest data is kept first, unlike Telegraf's buffer, which drops the oldest.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import struct
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

_HEADER = struct.Struct("<4sIIIq")
_MAGIC = b"AIDS"
_ACK = "ack"


@dataclass(frozen=True, slots=True)
class Record:
    """Where one spooled chunk lives, and what it holds."""

    segment: int
    offset: int
    length: int  # payload bytes
    points: int
    appended_ns: int

    @property
    def end(self) -> int:
        """Offset just past this record."""
        return self.offset + _HEADER.size + self.length


@dataclass(slots=True)
class _Scan:
    """What one read of a segment found: its valid records, corrupt stretches and where valid data ends."""

    size: int
    records: list[Record] = field(default_factory=list)
    corrupt: list[tuple[int, int]] = field(default_factory=list)  # (byte offset, bytes skipped)
    end_valid: int = 0

    @property
    def boundaries(self) -> set[int]:
        """Offsets an ack may name: the start, each valid record's start and end."""
        return {0, self.end_valid} | {r.offset for r in self.records} | {r.end for r in self.records}


def _is_segment_name(name: str) -> bool:
    """Whether ``name`` is one this spool writes (``f"{n:016d}.seg"``)."""
    stem = name.removesuffix(".seg")
    return stem.isascii() and stem.isdigit() and name == f"{int(stem):016d}.seg"


def _set_aside(path: Path) -> Path:
    """Rename ``path`` to ``<name>.bad-<UTC time>`` beside it (a free name), so nothing is deleted."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{path.name}.bad-{stamp}")
    n = 1
    while target.exists() or target.is_symlink():
        target = path.with_name(f"{path.name}.bad-{stamp}-{n}")
        n += 1
    path.rename(target)
    return target


def _short(doc: object) -> str:
    """A JSON value as it reads in a log line, cut to 80 characters."""
    text = json.dumps(doc)
    return text if len(text) <= 80 else text[:77] + "..."


class Spool:
    """Append from the writer thread, peek and ack from the forwarder thread."""

    def __init__(self, directory: Path, *, max_bytes: int, segment_bytes: int, fsync: bool = True) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self.dropped_points = 0
        self.corrupt_records = 0  # records skipped at open because their checksum did not verify
        self._lock = threading.Lock()
        self._pending: collections.deque[Record] = collections.deque()
        self._bytes = 0
        self._points = 0
        self._recover()

    # ------------------------------------------------------------ state at open

    def _segments(self) -> list[int]:
        """Numbers of this spool's segment files, oldest first (names that are not ours are left alone)."""
        return sorted(int(p.stem) for p in self.dir.glob("*.seg") if _is_segment_name(p.name))

    def _path(self, seg: int) -> Path:
        return self.dir / f"{seg:016d}.seg"

    def _recover(self) -> None:
        """Check the metadata, drop delivered segments, index the rest and cut a torn tail.

        Metadata that cannot be trusted (a stray ``*.seg``, an ack that is unreadable, names a segment beyond the
        last or an offset off a record boundary) is logged in one line and set aside as ``<name>.bad-<time>``, never
        deleted; without a trusted ack everything is replayed, which is safe because replayed writes are idempotent.
        """
        self._set_aside_strays()
        segs = self._segments()
        ack = self._read_ack(segs)
        scans: dict[int, _Scan] = {}
        if ack is not None and ack[0] in segs:
            scans[ack[0]] = scan = self._read_segment(ack[0])
            if ack[1] not in scan.boundaries:
                where = "beyond the end of" if ack[1] > scan.size else "not at a record boundary of"
                self._distrust(f"offset {ack[1]} is {where} segment {ack[0]} ({scan.size} bytes)")
                ack = None
        for seg in segs:
            if ack is not None and seg < ack[0]:
                self._path(seg).unlink()  # delivered: the trusted ack is past it
                continue
            scan = scans.get(seg) or self._read_segment(seg)
            self._apply(seg, scan, ack[1] if ack is not None and seg == ack[0] else 0)
        segs = self._segments()
        self._seg = segs[-1] if segs else (ack[0] + 1 if ack is not None else 1)
        self._file = open(self._path(self._seg), "ab")
        self._size = self._file.tell()
        if self._points:
            log.warning("spool %s: %d points in %d chunks to replay", self.dir, self._points, len(self._pending))

    def _set_aside_strays(self) -> None:
        """Rename ``*.seg`` entries this spool did not write (a foreign name, a directory) out of the way."""
        for path in sorted(self.dir.glob("*.seg")):
            if not _is_segment_name(path.name):
                why = "its name is not a 16-digit segment number"
            elif not path.is_file():
                why = "it is not a regular file"
            else:
                continue
            log.error(
                "spool %s: %s is not a spool segment (%s); set aside as %s, nothing deleted",
                self.dir, path.name, why, _set_aside(path).name,
            )  # fmt: skip
        tmp = self.dir / (_ACK + ".tmp")
        if (tmp.exists() or tmp.is_symlink()) and not tmp.is_file():  # an ack could never be written through it
            log.error("spool %s: %s is not a regular file; set aside as %s", self.dir, tmp.name, _set_aside(tmp).name)

    def _read_ack(self, segs: list[int]) -> tuple[int, int] | None:
        """The (segment, offset) delivered so far, or None (replay everything) when absent or not to be trusted."""
        path = self.dir / _ACK
        if not path.exists() and not path.is_symlink():
            return None
        ack, why = self._check_ack(path, segs)
        if why is not None:
            self._distrust(why)
        return ack

    @staticmethod
    def _check_ack(path: Path, segs: list[int]) -> tuple[tuple[int, int] | None, str | None]:
        """The ack's (segment, offset), or None and why it cannot be trusted."""
        try:
            doc = json.loads(path.read_bytes())
        except (OSError, ValueError) as exc:  # a directory, a dangling link, bad UTF-8 or bad JSON
            return None, f"unreadable ({exc.strerror if isinstance(exc, OSError) else exc})"
        seg = doc.get("segment") if isinstance(doc, dict) else None
        off = doc.get("offset") if isinstance(doc, dict) else None
        # type() and not isinstance(): JSON true is a bool, an int subclass, and 1.5 must not be read as 1.
        if type(seg) is not int or type(off) is not int:
            return None, f"{_short(doc)} is not {{'segment': <int>, 'offset': <int>}}"
        if seg < 0 or off < 0:
            return None, f"negative {'segment' if seg < 0 else 'offset'} in {_short(doc)}"
        if segs and seg > segs[-1]:
            return None, f"segment {seg} is beyond the last segment {segs[-1]}"
        if seg not in segs and segs and segs[0] < seg:
            return None, f"segment {seg} is missing while the older segment {segs[0]} is not"
        return (seg, off), None

    def _distrust(self, why: str) -> None:
        """Log the bad ack in one line and set it aside; the caller then replays everything."""
        path = self.dir / _ACK
        try:
            aside = _set_aside(path).name
        except OSError as exc:
            aside = f"(cannot be renamed: {exc.strerror})"
        log.error(
            "spool %s: ack file %s: %s; set aside as %s, replaying every spooled point (writes are idempotent)",
            self.dir, path, why, aside,
        )  # fmt: skip

    def _read_segment(self, seg: int) -> _Scan:
        """The valid records of a whole segment and the corrupt stretches between them (nothing changed on disk).

        A record whose checksum (or header) does not verify is skipped, and the scan resynchronises on the next
        header that verifies, so one bad record in the middle never hides the valid records after it.
        """
        data = self._path(seg).read_bytes()
        scan = _Scan(size=len(data))
        pos = 0
        while pos + _HEADER.size <= len(data):
            if self._valid_at(data, pos):
                _, length, _, points, appended = _HEADER.unpack_from(data, pos)
                scan.records.append(Record(seg, pos, length, points, appended))
                pos += _HEADER.size + length
                scan.end_valid = pos
                continue
            nxt = self._resync(data, pos + 1)
            if nxt is None:
                break
            scan.corrupt.append((pos, nxt - pos))
            pos = nxt
        return scan

    def _apply(self, seg: int, scan: _Scan, start: int) -> None:
        """Index the records of a scanned segment from ``start``, count corrupt ones there, cut a torn tail.

        Bytes after the last valid record are a torn append (a crash mid-write) and are cut off.
        """
        path = self._path(seg)
        for rec in scan.records:
            if rec.offset >= start:
                self._index(rec)
        for pos, nbytes in scan.corrupt:
            if pos >= start:
                self.corrupt_records += 1
                log.error(
                    "spool %s: corrupt record at byte %d skipped (%d bytes); the records after it are replayed",
                    path, pos, nbytes,
                )  # fmt: skip
        if scan.end_valid < scan.size:
            log.warning("spool %s: cutting a torn record at byte %d (a crash during an append)", path, scan.end_valid)
            with open(path, "r+b") as f:
                f.truncate(scan.end_valid)
                os.fsync(f.fileno())

    @staticmethod
    def _valid_at(data: bytes, pos: int) -> bool:
        """Whether a whole record with a matching magic and checksum starts at ``pos``."""
        if pos + _HEADER.size > len(data):
            return False
        magic, length, crc, _, _ = _HEADER.unpack_from(data, pos)
        body_end = pos + _HEADER.size + length
        return magic == _MAGIC and body_end <= len(data) and zlib.crc32(data[pos + _HEADER.size : body_end]) == crc

    def _resync(self, data: bytes, pos: int) -> int | None:
        """Offset of the next verifiable record at or after ``pos``, or None."""
        while (pos := data.find(_MAGIC, pos)) != -1:
            if self._valid_at(data, pos):
                return pos
            pos += 1
        return None

    def _index(self, rec: Record) -> None:
        self._pending.append(rec)
        self._bytes += _HEADER.size + rec.length
        self._points += rec.points

    # ------------------------------------------------------------ writer side

    def append(self, payload: bytes, points: int) -> bool:
        """Durably add a chunk; False (and the points counted as dropped) when the spool is full."""
        size = _HEADER.size + len(payload)
        with self._lock:
            if self._bytes + size > self.max_bytes:
                self.dropped_points += points
                return False
        if self._size >= self.segment_bytes:
            self._rotate()
        rec = Record(self._seg, self._size, len(payload), points, time.time_ns())
        header = _HEADER.pack(_MAGIC, len(payload), zlib.crc32(payload), points, rec.appended_ns)
        # Straight to the descriptor (O_APPEND), never through a buffer that could keep half a record: after a failed
        # write (e.g. a full disk) the partial record is cut, so the next append starts at a record boundary.
        fd = self._file.fileno()
        try:
            view = memoryview(header + payload)
            while view:
                view = view[os.write(fd, view) :]
            if self.fsync:
                os.fsync(fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, self._size)
            raise
        self._size += size
        with self._lock:
            self._index(rec)
        return True

    def _rotate(self) -> None:
        self._file.close()
        self._seg += 1
        self._file = open(self._path(self._seg), "ab")
        self._size = 0
        if self.fsync:
            _fsync_dir(self.dir)

    # ------------------------------------------------------------ forwarder side

    def peek(self) -> tuple[Record, bytes] | None:
        """The oldest undelivered chunk, or None when the spool is empty."""
        with self._lock:
            if not self._pending:
                return None
            rec = self._pending[0]
        with open(self._path(rec.segment), "rb") as f:
            f.seek(rec.offset + _HEADER.size)
            return rec, f.read(rec.length)

    def ack(self, rec: Record) -> None:
        """Mark ``rec`` delivered: replace the ack file atomically, then delete fully delivered segments."""
        with self._lock:
            if not self._pending or self._pending[0] != rec:
                raise RuntimeError(f"spool {self.dir}: ack out of order at segment {rec.segment} offset {rec.offset}")
            self._pending.popleft()
            self._bytes -= _HEADER.size + rec.length
            self._points -= rec.points
        tmp = self.dir / (_ACK + ".tmp")
        with open(tmp, "w") as f:
            json.dump({"segment": rec.segment, "offset": rec.end}, f)
            f.flush()
            if self.fsync:
                os.fsync(f.fileno())
        os.replace(tmp, self.dir / _ACK)
        if self.fsync:
            _fsync_dir(self.dir)
        for seg in self._segments():
            if seg >= min(rec.segment, self._seg):
                break
            self._path(seg).unlink(missing_ok=True)

    # ------------------------------------------------------------ figures

    @property
    def depth_points(self) -> int:
        """Points waiting to be replayed."""
        return self._points

    @property
    def depth_bytes(self) -> int:
        """Bytes waiting to be replayed (what ``max_bytes`` bounds)."""
        return self._bytes

    def oldest_age_s(self, now_ns: int | None = None) -> float:
        """Seconds since the oldest waiting chunk was spooled (the replay lag); 0 when empty."""
        with self._lock:
            if not self._pending:
                return 0.0
            first = self._pending[0].appended_ns
        return max(0.0, ((now_ns or time.time_ns()) - first) / 1e9)

    def close(self) -> None:
        """Close the segment being appended to."""
        self._file.close()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
