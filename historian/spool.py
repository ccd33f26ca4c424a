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
from dataclasses import dataclass
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
        return sorted(int(p.stem) for p in self.dir.glob("*.seg"))

    def _path(self, seg: int) -> Path:
        return self.dir / f"{seg:016d}.seg"

    def _recover(self) -> None:
        """Read the ack, drop delivered segments, index the rest and cut a torn tail."""
        ack_seg, ack_off = 0, 0
        ack_path = self.dir / _ACK
        if ack_path.exists():
            try:
                ack = json.loads(ack_path.read_text())
                ack_seg, ack_off = int(ack["segment"]), int(ack["offset"])
            except (ValueError, KeyError, TypeError):
                log.error("spool %s: unreadable ack file, replaying everything (writes are idempotent)", self.dir)
        for seg in self._segments():
            if seg < ack_seg:
                self._path(seg).unlink()
                continue
            self._scan(seg, ack_off if seg == ack_seg else 0)
        segs = self._segments()
        self._seg = segs[-1] if segs else ack_seg + 1
        self._file = open(self._path(self._seg), "ab")
        self._size = self._file.tell()
        if self._points:
            log.warning("spool %s: %d points in %d chunks to replay", self.dir, self._points, len(self._pending))

    def _scan(self, seg: int, start: int) -> None:
        """Index the valid records of a segment from ``start``; skip corrupt ones, cut a torn tail.

        A record whose checksum (or header) does not verify is skipped and counted, and the scan resynchronises on
        the next header that verifies, so one bad record in the middle never hides the valid records after it.
        Bytes after the last valid record are a torn append (a crash mid-write) and are cut off.
        """
        path = self._path(seg)
        data = path.read_bytes()
        pos = start
        end_valid = start
        while pos + _HEADER.size <= len(data):
            if self._valid_at(data, pos):
                length = _HEADER.unpack_from(data, pos)[1]
                _, _, _, points, appended = _HEADER.unpack_from(data, pos)
                self._index(Record(seg, pos, length, points, appended))
                pos += _HEADER.size + length
                end_valid = pos
                continue
            nxt = self._resync(data, pos + 1)
            if nxt is None:
                break
            self.corrupt_records += 1
            log.error(
                "spool %s: corrupt record at byte %d skipped (%d bytes); the records after it are replayed",
                path, pos, nxt - pos,
            )  # fmt: skip
            pos = nxt
        if end_valid < len(data):
            log.warning("spool %s: cutting a torn record at byte %d (a crash during an append)", path, end_valid)
            with open(path, "r+b") as f:
                f.truncate(end_valid)
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
