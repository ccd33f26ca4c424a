"""Line protocol from columnar batches, built with Arrow string kernels rather than one object per sample.

A series id already is the line-protocol key ``measurement,tags field``, so a line is
``<id>=<value>[,<field>_quality=<q>i] <ts_ns>``. Quality is written only when it is not good (most samples
are good, and an absent ``<field>_quality`` reads back as good). A missing value (NaN or infinite: line
protocol has no way to write them) with a non-good quality becomes ``<id>_quality=<q>i <ts_ns>``; a missing
value with good quality is not written at all.

:class:`LineEncoder` keeps the constant part of each line, ``<id>=``, per series: collectors hand over the
same series in the same order poll after poll, so the per-row key column of the previous batch is reused
when the series column is unchanged (one pointer comparison per row), and otherwise only new series are
formatted. Per point only the value (an Arrow float-to-string cast) and the timestamp (one string when the
whole batch shares it, as a poll does) are formatted.

Given a ``site``, the encoder writes every series without a ``site`` tag (the job's own health series,
``aidc_writer`` and ``aidc_historian``) with ``site=<name>`` added (:func:`with_site`), so a central store fed by
several sites tells every one of their series apart; the tag is added once per series, in the key cache.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from aidc.model import Batch, SeriesKey
from historian.base import QUALITY_SUFFIX


@dataclass(frozen=True, slots=True)
class Payload:
    """Line-protocol bytes for a batch, with line offsets so it can be cut into chunks without copying."""

    data: bytes
    offsets: np.ndarray  # int64, len = lines + 1; line i is data[offsets[i]:offsets[i+1]]

    @property
    def lines(self) -> int:
        """Number of lines (points, counting a value and its quality as one line)."""
        return len(self.offsets) - 1

    def chunks(self, max_lines: int) -> list[tuple[bytes, int]]:
        """Consecutive pieces of at most ``max_lines`` lines each, as (bytes, line count)."""
        if self.lines <= max_lines:
            return [(self.data, self.lines)] if self.lines else []  # the common case: no copy
        out = []
        view = memoryview(self.data)
        for i in range(0, self.lines, max_lines):
            j = min(i + max_lines, self.lines)
            out.append((bytes(view[self.offsets[i] : self.offsets[j]]), j - i))
        return out


def with_site(series_id: str, site: str) -> str:
    """The series id as a site sends it to a central store: with ``site=<site>`` when it has no site tag."""
    if not site:
        return series_id
    key = SeriesKey.parse(series_id)
    if "site" in key.tag_dict:
        return series_id
    return SeriesKey.of(key.measurement, key.field, {**key.tag_dict, "site": site}).id


def _field_of(series_id: str) -> str:
    """The escaped field key: what follows the unescaped space of a series id."""
    # The id of a key with a one-letter measurement and no tags is "x <escaped field>".
    return SeriesKey("x", (), SeriesKey.parse(series_id).field).id[2:]


class LineEncoder:
    """Encodes batches as line protocol, caching each series' ``<id>=`` key prefix (thread-safe).

    ``max_series`` bounds the cache: past it, the cache starts afresh (series churn cannot grow it forever).
    ``site``: the site name added to series that have no site tag (see :func:`with_site`).
    """

    def __init__(self, write_quality: bool = True, max_series: int = 1_000_000, site: str = "") -> None:
        self.write_quality = write_quality
        self.max_series = max_series
        self.site = site
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self._codes: dict[str, int] = {}  # series id -> code
        self._ids: list[str] = []  # code -> series id as written (with the site tag added where it had none)
        self._prefix = pa.array([], pa.string())  # code -> "<id>="
        self._qprefix: pa.Array | None = None  # code -> "<id>_quality=", built on first non-good quality
        self._qmid: pa.Array | None = None  # code -> ",<field>_quality="
        self._last_series: np.ndarray | None = None  # the series column of the last batch ...
        self._last_codes: np.ndarray | None = None  # ... its codes ...
        self._last_keys: pa.Array | None = None  # ... and its per-row "<id>=" column

    def encode(self, batch: Batch) -> Payload:
        """Newline-terminated line protocol with ns timestamps for one batch."""
        with self._lock:
            return self._encode(batch)

    def _codes_of(self, series: np.ndarray) -> tuple[np.ndarray, pa.Array]:
        """Per-row cache codes and ``<id>=`` column of a series column."""
        last = self._last_series
        if last is not None and len(last) == len(series) and (series is last or np.array_equal(series, last)):
            assert self._last_codes is not None
            assert self._last_keys is not None
            return self._last_codes, self._last_keys
        local, uniques = pd.factorize(series)
        ids = uniques.tolist()
        if len(self._codes) + len(ids) > self.max_series:
            self._reset()
        if not self._codes:  # a fresh cache: the batch's own codes are the cache's
            self._codes = {str(i): n for n, i in enumerate(ids)}
            self._ids = [with_site(str(i), self.site) for i in ids]
            self._prefix = pc.binary_join_element_wise(pa.array(self._ids, pa.string()), "=", "")
            self._qprefix = self._qmid = None
            codes = local.astype(np.int32)
        else:
            new = [str(i) for i in ids if i not in self._codes]
            if new:
                self._codes.update(zip(new, range(len(self._ids), len(self._ids) + len(new)), strict=True))
                wire = [with_site(i, self.site) for i in new]
                self._ids.extend(wire)
                added = pc.binary_join_element_wise(pa.array(wire, pa.string()), "=", "")
                self._prefix = pa.concat_arrays([self._prefix, added])
                self._qprefix = self._qmid = None
            get = self._codes.__getitem__
            codes = np.fromiter(map(get, ids), dtype=np.int32, count=len(ids))[local]
        keys = self._prefix.take(pa.array(codes))
        self._last_series, self._last_codes, self._last_keys = series.copy(), codes, keys
        return codes, keys

    def _quality_prefixes(self) -> tuple[pa.Array, pa.Array]:
        if self._qprefix is None or self._qmid is None:
            self._qprefix = pa.array([i + QUALITY_SUFFIX + "=" for i in self._ids], pa.string())
            self._qmid = pa.array(["," + _field_of(i) + QUALITY_SUFFIX + "=" for i in self._ids], pa.string())
        return self._qprefix, self._qmid

    def _encode(self, batch: Batch) -> Payload:
        values = batch.values
        finite = np.isfinite(values)
        bad_q = (batch.quality != 0) if self.write_quality else None
        keep = finite if bad_q is None else finite | bad_q
        if not keep.all():
            idx = np.flatnonzero(keep)
            series, ts, values, quality = batch.series[idx], batch.ts_ns[idx], values[idx], batch.quality[idx]
            finite = finite[idx]
            bad_q = bad_q[idx] if bad_q is not None else None
        else:
            series, ts, quality = batch.series, batch.ts_ns, batch.quality
        if not len(series):
            return Payload(b"", np.zeros(1, dtype=np.int64))
        codes, keys = self._codes_of(series)
        vals = pc.cast(pa.array(values), pa.string())
        if ts[0] == ts[-1] and (ts == ts[0]).all():  # one poll: one timestamp
            ts_str: pa.Array | str = f" {int(ts[0])}\n"
        else:
            ts_str = pc.binary_join_element_wise(" ", pc.cast(pa.array(ts, type=pa.int64()), pa.string()), "\n", "")
        if bad_q is not None and bad_q.any():
            qprefix, qmid = self._quality_prefixes()
            take = pa.array(codes)
            prefix_q = qprefix.take(take)
            mid_q = qmid.take(take)
            q_str = pc.binary_join_element_wise(pc.cast(pa.array(quality), pa.string()), "i", "")
            empty = pa.scalar("", pa.string())
            fin = pa.array(finite)
            # value line: id=v[,f_quality=qi]; value missing: id_quality=qi
            head = pc.if_else(fin, keys, prefix_q)
            body = pc.if_else(fin, vals, q_str)
            tail = pc.if_else(pc.and_(fin, pa.array(bad_q)), pc.binary_join_element_wise(mid_q, q_str, ""), empty)
            lines = pc.binary_join_element_wise(head, body, tail, ts_str, "")
        else:
            lines = pc.binary_join_element_wise(keys, vals, ts_str, "")
        return _payload(lines)


def to_line_protocol(batch: Batch, write_quality: bool = True) -> Payload:
    """Encode one batch as newline-terminated line protocol with ns timestamps (no cache kept)."""
    return LineEncoder(write_quality).encode(batch)


def _payload(lines: pa.Array) -> Payload:
    """The concatenated bytes of a string array (its data buffer) and its offsets."""
    if isinstance(lines, pa.ChunkedArray):
        lines = lines.combine_chunks()
    buffers = lines.buffers()
    width = np.int64 if lines.type == pa.large_string() else np.int32
    offsets = np.frombuffer(buffers[1], dtype=width)[lines.offset : lines.offset + len(lines) + 1].astype(np.int64)
    data = buffers[2][offsets[0] : offsets[-1]].to_pybytes() if buffers[2] is not None else b""
    return Payload(data, offsets - offsets[0])
