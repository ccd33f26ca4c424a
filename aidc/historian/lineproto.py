"""Line protocol from columnar batches, built with Arrow string kernels rather than one object per sample.

A series id already is the line-protocol key ``measurement,tags field``, so a line is
``<id>=<value>[,<field>_quality=<q>i] <ts_ns>``. Quality is written only when it is not good (most samples
are good, and an absent ``<field>_quality`` reads back as good). A missing value (NaN or infinite: line
protocol has no way to write them) with a non-good quality becomes ``<id>_quality=<q>i <ts_ns>``; a missing
value with good quality is not written at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from aidc.historian.base import QUALITY_SUFFIX
from aidc.model import Batch, SeriesKey


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
        out = []
        view = memoryview(self.data)
        for i in range(0, self.lines, max_lines):
            j = min(i + max_lines, self.lines)
            out.append((bytes(view[self.offsets[i] : self.offsets[j]]), j - i))
        return out


def _field_of(series_id: str) -> str:
    """The escaped field key: what follows the unescaped space of a series id."""
    # The id of a key with a one-letter measurement and no tags is "x <escaped field>".
    return SeriesKey("x", (), SeriesKey.parse(series_id).field).id[2:]


def to_line_protocol(batch: Batch, write_quality: bool = True) -> Payload:
    """Encode a batch as newline-terminated line protocol with ns timestamps."""
    values = batch.values
    finite = np.isfinite(values)
    bad_q = (batch.quality != 0) if write_quality else np.zeros(len(batch), dtype=bool)
    keep = finite | bad_q
    if not keep.all():
        idx = np.flatnonzero(keep)
        series, ts, values, quality = batch.series[idx], batch.ts_ns[idx], values[idx], batch.quality[idx]
        finite, bad_q = finite[idx], bad_q[idx]
    else:
        series, ts, quality = batch.series, batch.ts_ns, batch.quality
    if not len(series):
        return Payload(b"", np.zeros(1, dtype=np.int64))
    codes, uniques = pd.factorize(series)
    ids = [str(u) for u in uniques]
    take = pa.array(codes.astype(np.int32))
    prefix_val = pc.take(pa.array([i + "=" for i in ids]), take)
    vals = pc.cast(pa.array(values), pa.string())
    ts_str = pc.cast(pa.array(ts, type=pa.int64()), pa.string())
    if bad_q.any():
        prefix_q = pc.take(pa.array([i + QUALITY_SUFFIX + "=" for i in ids]), take)
        mid_q = pc.take(pa.array(["," + _field_of(i) + QUALITY_SUFFIX + "=" for i in ids]), take)
        q_str = pc.binary_join_element_wise(pc.cast(pa.array(quality), pa.string()), "i", "")
        empty = pa.scalar("", pa.string())
        fin = pa.array(finite)
        bq = pa.array(bad_q)
        # value line: id=v[,f_quality=qi]; value missing: id_quality=qi
        head = pc.if_else(fin, prefix_val, prefix_q)
        body = pc.if_else(fin, vals, q_str)
        tail = pc.if_else(pc.and_(fin, bq), pc.binary_join_element_wise(mid_q, q_str, ""), empty)
        lines = pc.binary_join_element_wise(head, body, tail, " ", ts_str, "\n", "")
    else:
        lines = pc.binary_join_element_wise(prefix_val, vals, " ", ts_str, "\n", "")
    return _payload(lines)


def _payload(lines: pa.Array) -> Payload:
    """The concatenated bytes of a string array (its data buffer) and its offsets."""
    arr = lines.cast(pa.large_string()) if lines.type != pa.large_string() else lines
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    buffers = arr.buffers()
    offsets = np.frombuffer(buffers[1], dtype=np.int64)[arr.offset : arr.offset + len(arr) + 1]
    data = buffers[2].to_pybytes()[offsets[0] : offsets[-1]] if buffers[2] is not None else b""
    return Payload(data, (offsets - offsets[0]).astype(np.int64))
