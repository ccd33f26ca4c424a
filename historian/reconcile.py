"""Did every point a site stored locally reach the central store? A point-by-point reconciliation.

A site's point is (series, timestamp, value, quality) in its embedded store; centrally the same point carries the
site tag (:func:`historian.lineproto.with_site`) and a millisecond timestamp (VictoriaMetrics keeps ms), and its
value is kept to VictoriaMetrics' decimal precision (about 15 significant digits), so values are compared to a
relative 1e-9. Reads go measurement by measurement: a VictoriaMetrics name ``<measurement>_<field>`` splits
unambiguously only when the measurement is named.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from aidc.model import SeriesKey
from historian.base import Historian, SeriesSelector, TimeLike, to_ns
from historian.lineproto import with_site

MS = 1_000_000
VALUE_RTOL = 1e-9


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """How a site's local points compare with the central store's."""

    site: str
    local_points: int
    missing: int  # local points (series, ms) the centre lacks
    different: int  # points the centre holds with another value or quality
    extra: int  # central points of the site that its local store does not hold
    examples: tuple[str, ...] = ()

    @property
    def lost(self) -> int:
        """Local points not found intact centrally."""
        return self.missing + self.different


def _keyed(frame: pd.DataFrame, site: str) -> pd.DataFrame:
    """Rows keyed by (series as the centre names it, ms) with value and quality."""
    ids = frame["series"].to_numpy(dtype=object)
    names = {s: with_site(s, site) for s in pd.unique(ids)}
    return pd.DataFrame(
        {
            "series": [names[s] for s in ids],
            "ms": pd.DatetimeIndex(frame["ts"]).as_unit("ns").asi8 // MS,
            "value": frame["value"].to_numpy(dtype=np.float64),
            "quality": frame["quality"].to_numpy(dtype=np.int64),
        }
    )


def reconcile(local: Historian, central: Historian, site: str, start: TimeLike, end: TimeLike) -> Reconciliation:
    """Compare every raw point of ``local`` in ``[start, end)`` with ``central`` (a view of the site's series)."""
    every = local.query(SeriesSelector.parse("*"), start, end)
    measurements = sorted({SeriesKey.parse(s).measurement for s in pd.unique(every["series"])})
    # A local point at ns t is stored centrally at ms floor(t): read the centre from the millisecond ``start`` is in.
    lo = to_ns(start) // MS * MS
    theirs = [central.query(SeriesSelector(m, {}, None), lo, end) for m in measurements]
    mine = _keyed(every, site)
    got = _keyed(pd.concat(theirs, ignore_index=True), site) if theirs else mine.iloc[:0]
    both = mine.merge(got, on=["series", "ms"], how="outer", suffixes=("", "_c"), indicator=True)
    missing = both[both["_merge"] == "left_only"]
    extra = both[both["_merge"] == "right_only"]
    matched = both[both["_merge"] == "both"]
    a, b = matched["value"].to_numpy(np.float64), matched["value_c"].to_numpy(np.float64)
    same = np.isclose(a, b, rtol=VALUE_RTOL, atol=0.0, equal_nan=True) & (
        matched["quality"].to_numpy() == matched["quality_c"].to_numpy()
    )
    different = matched[~same]
    examples = [f"missing {r.series} @ {r.ms} ms" for r in missing.head(3).itertuples()]
    examples += [f"differs {r.series} @ {r.ms} ms: {r.value} vs {r.value_c}" for r in different.head(3).itertuples()]
    examples += [f"extra {r.series} @ {r.ms} ms" for r in extra.head(3).itertuples()]
    return Reconciliation(site, len(mine), len(missing), len(different), len(extra), tuple(examples))
