"""CSV export of any chart: the data a figure draws, one row per point (time UTC, time site, series, value, unit).

The export reads the figure the browser holds, so it is exactly what the operator sees, for every chart without a
query of its own. Time traces drawn by :func:`dashboards.components.time_trace` carry their UTC times in
``customdata`` and their unit in ``meta``; other charts (the GPU bars, the floor map) export their categories in
the series column and leave the time columns empty.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

COLUMNS = ["time_utc", "time_site", "series", "value", "unit"]
_UNIT_IN_TITLE = re.compile(r"\(([^()]*)\)\s*$")


def _array(v: Any) -> list[Any]:
    """A trace array as a list: plotly sends numpy arrays base64-encoded (``{"dtype", "bdata", "shape"}``)."""
    if v is None:
        return []
    if isinstance(v, Mapping) and "bdata" in v:
        arr = np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(str(v.get("dtype", "f8"))))
        shape = v.get("shape")
        if shape:
            dims = [int(x) for x in str(shape).split(",")] if isinstance(shape, str) else [int(x) for x in shape]
            arr = arr.reshape(dims)
        return list(arr.tolist())
    if isinstance(v, np.ndarray):
        return list(v.tolist())
    return list(v) if isinstance(v, Sequence | pd.Index | pd.Series) and not isinstance(v, str) else [v]


def _axis_unit(layout: Mapping[str, Any], axis: str) -> str:
    """The unit in an axis title's parentheses (``temperature (°C)`` -> ``°C``)."""
    key = "yaxis" if axis in ("y", "y1") else f"yaxis{axis[1:]}"
    title = (layout.get(key) or {}).get("title") or {}
    text = title.get("text", "") if isinstance(title, Mapping) else str(title)
    m = _UNIT_IN_TITLE.search(text or "")
    return m.group(1) if m else ""


def figure_rows(figure: Mapping[str, Any]) -> pd.DataFrame:
    """The points of a figure (a dict as Dash holds it) as rows: time_utc, time_site, series, value, unit."""
    layout = figure.get("layout") or {}
    parts = []
    for i, tr in enumerate(figure.get("data") or []):
        if not isinstance(tr, Mapping) or tr.get("type", "scatter") not in ("scatter", "scattergl", "bar", "heatmap"):
            continue
        meta: Mapping[str, Any] = tr["meta"] if isinstance(tr.get("meta"), Mapping) else {}
        unit = str(meta.get("unit", _axis_unit(layout, str(tr.get("yaxis", "y")))))
        name = str(tr.get("name") or f"trace {i}")
        if tr.get("type") == "heatmap":
            z = np.asarray(_array(tr.get("z")), dtype=float)
            labels = np.asarray(_array(tr.get("customdata")), dtype=object)
            if z.ndim != 2 or labels.shape != z.shape:
                continue
            keep = np.isfinite(z) & (labels != "")
            parts.append(pd.DataFrame({"series": labels[keep].astype(str), "value": z[keep], "unit": unit}))
            continue
        x, y = _array(tr.get("x")), _array(tr.get("y"))
        n = min(len(x), len(y))
        utc = _array(tr.get("customdata")) if meta.get("time") else []
        frame = pd.DataFrame({"value": pd.to_numeric(pd.Series(y[:n], dtype=object), errors="coerce"), "unit": unit})
        if len(utc) >= n and n:
            frame.insert(0, "series", name)
            frame.insert(0, "time_site", [str(t).replace("T", " ")[:19] for t in x[:n]])
            frame.insert(0, "time_utc", [str(t) for t in utc[:n]])
        else:  # a category axis (GPU index): the category names the row
            frame.insert(0, "series", [f"{name} {c}" for c in x[:n]])
        parts.append(frame)
    if not parts:
        return pd.DataFrame(columns=COLUMNS)
    return pd.concat(parts, ignore_index=True).reindex(columns=COLUMNS).fillna({"time_utc": "", "time_site": ""})


def figure_csv(figure: Mapping[str, Any], tz: str) -> str:
    """The figure's rows as CSV text, the site column headed with the zone (``time_site (America/New_York)``)."""
    rows = figure_rows(figure).rename(columns={"time_utc": "time_utc", "time_site": f"time_site ({tz})"})
    return str(rows.to_csv(index=False, float_format="%.10g"))
