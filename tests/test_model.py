"""The shared data model: series ids, batches and their Arrow form."""

from __future__ import annotations

import math

import numpy as np
import pytest

from aidc.model import Batch, Quality, Sample, SeriesKey


@pytest.mark.parametrize(
    ("measurement", "tags", "field", "expected"),
    [
        ("pdu", {"site": "dc1", "device": "pdu-1"}, "active_power_w", "pdu,device=pdu-1,site=dc1 active_power_w"),
        ("m", {}, "f", "m f"),
        ("m x", {"a,b": "c=d e"}, "f g", r"m\ x,a\,b=c\=d\ e f\ g"),
        ("m", {"empty": "", "b": "2", "a": "1"}, "f", "m,a=1,b=2 f"),
    ],
)
def test_series_id_is_sorted_escaped_line_protocol(
    measurement: str, tags: dict[str, str], field: str, expected: str
) -> None:
    """Series ids are line-protocol keys with sorted, escaped tags and no empty tag values."""
    key = SeriesKey.of(measurement, field, tags)
    assert key.id == expected
    assert SeriesKey.parse(key.id) == key


@pytest.mark.parametrize("bad", ["", "nofield", "m,tag f", "m f g"])
def test_malformed_series_id_names_itself(bad: str) -> None:
    """Parsing a malformed series id raises ValueError quoting the id."""
    with pytest.raises(ValueError, match="series id"):
        SeriesKey.parse(bad)


def test_batch_round_trips_through_arrow_with_missing_values() -> None:
    """A batch survives Arrow conversion; missing values stay missing with their quality and reason."""
    samples = [
        Sample("m f", 1, 1.5),
        Sample("m g", 2, None, Quality.BAD, "nan"),
        Sample("m h", 3, -2.0, Quality.UNCERTAIN, "out_of_range"),
    ]
    batch = Batch.from_samples(samples)
    table = batch.to_arrow()
    assert table.column("value").null_count == 1
    back = Batch.from_arrow(table)
    assert back.samples() == samples


def test_batch_rejects_ragged_columns() -> None:
    """Columns of different lengths are refused with the lengths in the message."""
    with pytest.raises(ValueError, match="differ in length"):
        Batch(np.array(["a"], dtype=object), np.zeros(2, np.int64), np.zeros(1), np.zeros(1, np.uint8))


def test_concat_keeps_reasons_only_when_present() -> None:
    """Concatenating good-only batches costs no reason column; mixing keeps per-sample reasons aligned."""
    good = Batch.from_samples([Sample("a f", 1, 1.0)])
    assert Batch.concat([good, good]).reasons == []
    bad = Batch.from_samples([Sample("b f", 2, None, Quality.BAD, "timeout")])
    both = Batch.concat([good, bad])
    assert both.reasons == ["", "timeout"]
    assert math.isnan(both.values[1])
    assert len(Batch.concat([])) == 0


def test_quality_orders_worst_last() -> None:
    """max() of qualities is the worst one and labels are lower-case names."""
    assert max(Quality.GOOD, Quality.BAD, Quality.UNCERTAIN) is Quality.BAD
    assert Quality.UNCERTAIN.label == "uncertain"
