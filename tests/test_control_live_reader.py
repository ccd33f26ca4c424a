"""The supervisor's input reader (control/live_reader.py): which readings a snapshot gets, and their ages."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from aidc.model import Batch, Quality
from control.live_reader import LiveReader
from control.policy import site_limits
from control.snapshot import SnapshotBuilder
from tests.control_helpers import control_site

S = 1_000_000_000


def test_a_point_with_any_bad_element_reads_none_and_the_rest_read_with_their_ages(tmp_path: Path) -> None:
    """A GPU array with one bad element, a bad scalar and a never-seen point read None; every other point reads its
    value (arrays whole), and each device's age is that of its oldest reading used."""
    site = control_site(tmp_path)
    builder = SnapshotBuilder(site, site_limits(site))
    reader = LiveReader(site, builder)
    ids = np.array(reader.ids, dtype=object)
    values = np.arange(len(ids), dtype=np.float64) + 1.0
    quality = np.zeros(len(ids), dtype=np.uint8)
    rows = {(d, p): (a, b) for d, p, _arr, a, b in reader.rows}
    rack, gpu = next((d, p) for d, p, arr, _a, _b in reader.rows if arr)
    scalar = next((d, p) for d, p, arr, _a, _b in reader.rows if not arr and d != rack)
    unseen = next((d, p) for d, p, _arr, _a, _b in reader.rows if d not in (rack, scalar[0]))
    quality[rows[rack, gpu][0] + 3] = int(Quality.BAD)
    quality[rows[scalar][0]] = int(Quality.UNCERTAIN)
    seen = np.ones(len(ids), dtype=bool)
    seen[rows[unseen][0] : rows[unseen][1]] = False
    ts = np.full(len(ids), 100 * S, dtype=np.int64)
    ts[rows[rack, gpu][0] : rows[rack, gpu][1]] = 90 * S  # older, but not used (one element bad)
    reader.update(Batch(ids[seen], ts[seen], values[seen], quality[seen]))
    out, oldest, ages = reader.read_ages(None, 130 * S)
    for (dev, point), (a, b) in rows.items():
        got = out[dev][point]
        if (dev, point) in ((rack, gpu), scalar, unseen):
            assert got is None, (dev, point)
        elif b - a > 1 or isinstance(got, np.ndarray):
            assert isinstance(got, np.ndarray)
            assert got.tolist() == values[a:b].tolist()
        else:
            assert got == values[a]
    assert math.isclose(oldest, 30.0)
    assert ages[rack] == 30.0
    assert ages[scalar[0]] == 30.0
