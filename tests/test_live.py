"""The live state the controller and dashboard read: latest value per series, from any thread."""

from __future__ import annotations

import numpy as np

from aidc import live as live_module
from aidc.live import LiveState
from aidc.model import Batch, Quality, Sample


def _batch(series: list[str], ts: int, values: list[float | None], quality: Quality = Quality.GOOD) -> Batch:
    return Batch.from_samples([Sample(s, ts, v, quality, "" if quality is Quality.GOOD else "why") for s, v in
                               zip(series, values, strict=True)])  # fmt: skip


def test_latest_value_wins_and_older_samples_are_ignored() -> None:
    """A newer sample replaces the stored one; a late, older sample does not; reasons follow their sample."""
    live = LiveState()
    live.update(_batch(["pdu,device=a active_power_w"], 2, [10.0]))
    live.update(_batch(["pdu,device=a active_power_w"], 1, [99.0]))
    got = live.get("pdu,device=a active_power_w")
    assert got is not None
    assert (got.ts_ns, got.value, got.quality) == (2, 10.0, Quality.GOOD)
    live.update(_batch(["pdu,device=a active_power_w"], 3, [None], Quality.BAD))
    got = live.get("pdu,device=a active_power_w")
    assert got is not None
    assert got.value is None
    assert (got.quality, got.reason) == (Quality.BAD, "why")
    assert live.get("pdu,device=b active_power_w") is None


def test_select_by_measurement_field_and_tags() -> None:
    """select() filters by measurement, field and tags."""
    live = LiveState()
    live.update(_batch(["pdu,device=a,hall=h1 active_power_w", "pdu,device=b,hall=h2 active_power_w",
                        "cdu,device=c,hall=h1 flow_lpm"], 5, [1.0, 2.0, 3.0]))  # fmt: skip
    frame = live.select(measurement="pdu", field="active_power_w", hall="h1")
    assert len(frame) == 1
    assert float(frame["value"].iloc[0]) == 1.0


def test_index_cache_stays_bounded_for_per_batch_arrays() -> None:
    """Batches that each bring a new series array do not grow the lookup cache without bound."""
    live = LiveState()
    for i in range(live_module._CACHE_MAX + 500):
        series = np.array([f"m,device=d{i % 7} f"], dtype=object)
        live.update(Batch(series, np.array([i], np.int64), np.array([float(i)]), np.zeros(1, np.uint8)))
    assert len(live._cache) <= live_module._CACHE_MAX
    assert len(live) == 7
    got = live.get("m,device=d0 f")
    assert got is not None
    assert got.value == float((live_module._CACHE_MAX + 500 - 1) // 7 * 7)
