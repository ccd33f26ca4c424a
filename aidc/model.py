"""The data model every package shares: series keys, quality, samples and columnar batches.

A series is ``measurement`` + tags + ``field``, exactly like InfluxDB line protocol (DESIGN.md §3). Its
canonical string id is the line-protocol key with tags sorted: ``pdu,device=pdu-r01-01,hall=h1,site=dc1 active_power_w``
(measurement and tags, a space, the field). That string is what batches carry, what the historian stores
and what the live state is keyed by, so every package agrees on identity without sharing objects.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pyarrow as pa


class Quality(enum.IntEnum):
    """Sample quality, ordered so that ``max()`` of several qualities is the worst."""

    GOOD = 0
    UNCERTAIN = 1
    BAD = 2

    @property
    def label(self) -> str:
        """Lower-case name as stored and shown (``good``, ``uncertain``, ``bad``)."""
        return self.name.lower()


# Characters that line protocol requires escaping in measurement names, tag keys/values and field keys.
_ESCAPE_KEY = str.maketrans({",": r"\,", " ": r"\ ", "=": r"\="})
_ESCAPE_MEAS = str.maketrans({",": r"\,", " ": r"\ "})


@dataclass(frozen=True, slots=True)
class SeriesKey:
    """Identity of one time series: measurement, sorted tags and field."""

    measurement: str
    tags: tuple[tuple[str, str], ...]
    field: str

    @classmethod
    def of(cls, measurement: str, field: str, tags: Mapping[str, str] | None = None) -> SeriesKey:
        """Build a key, sorting tags and dropping empty tag values (line protocol forbids them)."""
        items = tuple(sorted((k, str(v)) for k, v in (tags or {}).items() if v not in (None, "")))
        return cls(measurement, items, field)

    @property
    def id(self) -> str:
        """Canonical string id: ``measurement,k=v,... field`` with line-protocol escaping."""
        head = self.measurement.translate(_ESCAPE_MEAS)
        for k, v in self.tags:
            head += f",{k.translate(_ESCAPE_KEY)}={v.translate(_ESCAPE_KEY)}"
        return f"{head} {self.field.translate(_ESCAPE_KEY)}"

    @property
    def tag_dict(self) -> dict[str, str]:
        """Tags as a plain dict."""
        return dict(self.tags)

    @classmethod
    def parse(cls, series_id: str) -> SeriesKey:
        """Inverse of :attr:`id`; raises ValueError naming the id if it is malformed."""
        parts = _split_unescaped(series_id, " ")
        if len(parts) != 2 or not parts[0] or not parts[1]:
            raise ValueError(f"series id {series_id!r}: expected 'measurement,tags field'")
        head = _split_unescaped(parts[0], ",")
        tags: list[tuple[str, str]] = []
        for item in head[1:]:
            kv = _split_unescaped(item, "=")
            if len(kv) != 2:
                raise ValueError(f"series id {series_id!r}: bad tag {item!r}")
            tags.append((_unescape(kv[0]), _unescape(kv[1])))
        return cls(_unescape(head[0]), tuple(sorted(tags)), _unescape(parts[1]))

    def __str__(self) -> str:
        return self.id


def _split_unescaped(text: str, sep: str) -> list[str]:
    out: list[str] = []
    cur: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            cur.append(text[i : i + 2])
            i += 2
            continue
        if ch == sep:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    out.append("".join(cur))
    return out


def _unescape(text: str) -> str:
    return text.replace(r"\,", ",").replace(r"\ ", " ").replace(r"\=", "=")


@dataclass(frozen=True, slots=True)
class Sample:
    """One observation: series, UTC timestamp in ns, value (None when missing), quality and reason."""

    series: str
    ts_ns: int
    value: float | None
    quality: Quality = Quality.GOOD
    reason: str = ""


BATCH_SCHEMA = pa.schema(
    [
        pa.field("series", pa.string(), nullable=False),
        pa.field("ts", pa.timestamp("ns", tz="UTC"), nullable=False),
        pa.field("value", pa.float64(), nullable=True),
        pa.field("quality", pa.uint8(), nullable=False),
        pa.field("reason", pa.string(), nullable=True),
    ]
)


@dataclass(slots=True)
class Batch:
    """Columnar samples as collectors hand them to the historian and the live state.

    ``values`` holds NaN where a value is missing; the quality column says why. ``reasons`` is either
    empty (all samples good, the common case, costing nothing) or one string per sample.
    """

    series: npt.NDArray[np.object_]
    ts_ns: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]
    quality: npt.NDArray[np.uint8]
    reasons: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.series)
        if not (len(self.ts_ns) == len(self.values) == len(self.quality) == n):
            raise ValueError(
                f"batch columns differ in length: series={n} ts={len(self.ts_ns)} "
                f"values={len(self.values)} quality={len(self.quality)}"
            )
        if self.reasons and len(self.reasons) != n:
            raise ValueError(f"batch reasons has {len(self.reasons)} entries for {n} samples")

    def __len__(self) -> int:
        return len(self.series)

    @classmethod
    def trusted(
        cls,
        series: npt.NDArray[np.object_],
        ts_ns: npt.NDArray[np.int64],
        values: npt.NDArray[np.float64],
        quality: npt.NDArray[np.uint8],
    ) -> Batch:
        """A batch whose columns the caller built of one length (a collector's hot path): the checks are skipped."""
        batch = object.__new__(cls)
        batch.series, batch.ts_ns, batch.values, batch.quality, batch.reasons = series, ts_ns, values, quality, []
        return batch

    @classmethod
    def empty(cls) -> Batch:
        """A batch with no samples."""
        return cls(
            np.empty(0, dtype=object),
            np.empty(0, dtype=np.int64),
            np.empty(0, dtype=np.float64),
            np.empty(0, dtype=np.uint8),
        )

    @classmethod
    def from_samples(cls, samples: Sequence[Sample]) -> Batch:
        """Build a batch from row-wise samples (convenient in tests, not on hot paths)."""
        n = len(samples)
        series = np.empty(n, dtype=object)
        ts = np.empty(n, dtype=np.int64)
        vals = np.empty(n, dtype=np.float64)
        qual = np.empty(n, dtype=np.uint8)
        reasons: list[str] = []
        for i, s in enumerate(samples):
            series[i] = s.series
            ts[i] = s.ts_ns
            vals[i] = np.nan if s.value is None else s.value
            qual[i] = int(s.quality)
            reasons.append(s.reason)
        if not any(reasons):
            reasons = []
        return cls(series, ts, vals, qual, reasons)

    @classmethod
    def concat(cls, batches: Iterable[Batch]) -> Batch:
        """Concatenate batches, keeping reasons only if any batch has them."""
        items = [b for b in batches if len(b)]
        if not items:
            return cls.empty()
        reasons: list[str] = []
        if any(b.reasons for b in items):
            for b in items:
                reasons.extend(b.reasons or [""] * len(b))
        return cls(
            np.concatenate([b.series for b in items]),
            np.concatenate([b.ts_ns for b in items]),
            np.concatenate([b.values for b in items]),
            np.concatenate([b.quality for b in items]),
            reasons,
        )

    def samples(self) -> list[Sample]:
        """Row-wise view (for tests and printing)."""
        out = []
        for i in range(len(self)):
            v = float(self.values[i])
            out.append(
                Sample(
                    str(self.series[i]),
                    int(self.ts_ns[i]),
                    None if np.isnan(v) else v,
                    Quality(int(self.quality[i])),
                    self.reasons[i] if self.reasons else "",
                )
            )
        return out

    def to_arrow(self) -> pa.Table:
        """Arrow table with :data:`BATCH_SCHEMA` (NaN values become nulls)."""
        vals = pa.array(self.values, type=pa.float64(), from_pandas=True)
        reasons = pa.array(self.reasons if self.reasons else [None] * len(self), type=pa.string())
        return pa.Table.from_arrays(
            [
                pa.array(self.series, type=pa.string()),
                pa.array(self.ts_ns, type=pa.int64()).cast(pa.timestamp("ns", tz="UTC")),
                vals,
                pa.array(self.quality, type=pa.uint8()),
                reasons,
            ],
            schema=BATCH_SCHEMA,
        )

    @classmethod
    def from_arrow(cls, table: pa.Table) -> Batch:
        """Inverse of :meth:`to_arrow`."""
        series = np.array(table.column("series").to_pylist(), dtype=object)
        ts = table.column("ts").cast(pa.int64()).to_numpy(zero_copy_only=False).astype(np.int64)
        vals = table.column("value").to_numpy(zero_copy_only=False).astype(np.float64)
        qual = table.column("quality").to_numpy(zero_copy_only=False).astype(np.uint8)
        reasons = [r or "" for r in table.column("reason").to_pylist()]
        if not any(reasons):
            reasons = []
        return cls(series, ts, vals, qual, reasons)
