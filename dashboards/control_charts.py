"""The Control page's figures: a controlled device's setpoints against the measured values, and the controller's
predicted against realised saving; times in the site's zone (UTC in the hover)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from aidc.config import DeviceRef
from dashboards.components import empty_figure, style
from dashboards.control_data import Panel, timeline
from dashboards.fmt import UNIT_DIGITS
from historian import Historian

COLORS = {"setpoint": "#ffd166", "aidc": "#ef476f", "measured": "#4cc9f0"}
NAMES = {"setpoint": "setpoint held by the device", "aidc": "aidc decision", "measured": "measured"}
MIN_SPAN = {"°C": 1.0, "kPa": 10.0}  # the y axis spans at least this, so sensor noise does not look like a swing


def _local(index: pd.DatetimeIndex, tz: str) -> pd.DatetimeIndex:
    """Wall time in the site's zone, without the offset (plotly draws wall time as given)."""
    return index.tz_convert(tz).tz_localize(None)


def timeline_figure(
    hist: Historian, dev: DeviceRef, panels: list[Panel], start: pd.Timestamp, end: pd.Timestamp, window: str, tz: str
) -> go.Figure:
    """One panel per controlled setpoint of ``dev``: the device's setpoint as a step line, the supervisor's decisions
    as markers and the measured value; a figure that says so where the historian holds none of them."""
    if not panels:
        return empty_figure(f"{dev.name} has no controlled setpoint")
    fig = make_subplots(
        rows=len(panels), cols=1, shared_xaxes=True, vertical_spacing=0.12, subplot_titles=[p.title for p in panels]
    )
    any_data = False
    for row, panel in enumerate(panels, start=1):
        traces = timeline(hist, dev, panel, start, end, window)
        d = UNIT_DIGITS.get(panel.unit, 1)
        lo, hi = float("inf"), float("-inf")
        for name in ("setpoint", "aidc", "measured"):
            s = traces.get(name)
            if s is None or s.empty:
                continue
            any_data = True
            lo, hi = min(lo, float(s.min())), max(hi, float(s.max()))
            utc = pd.DatetimeIndex(s.index).strftime("%H:%M:%S UTC")
            fig.add_scatter(
                x=_local(pd.DatetimeIndex(s.index), tz),
                y=s.to_numpy(),
                name=NAMES[name],
                legendgroup=name,
                showlegend=row == 1,
                mode="markers" if name == "aidc" else "lines",
                line={"shape": "hv", "color": COLORS[name]} if name == "setpoint" else {"color": COLORS[name]},
                marker={"color": COLORS[name], "size": 6},
                customdata=utc,
                hovertemplate=f"%{{y:.{d}f}} {panel.unit}<br>%{{x|%H:%M}} site time (%{{customdata}})"
                f"<extra>{NAMES[name]}</extra>",
                row=row,
                col=1,
            )
        fig.update_yaxes(title_text=panel.unit, row=row, col=1)
        span = MIN_SPAN.get(panel.unit, 0.0)
        if lo <= hi and hi - lo < span:
            mid = (lo + hi) / 2
            fig.update_yaxes(range=[mid - span / 2, mid + span / 2], row=row, col=1)
    if not any_data:
        return empty_figure(f"no setpoint or measured values of {dev.name} in the historian for this range")
    height = 240 * len(panels) + 60
    style(fig, height=height, x_title="")
    fig.update_xaxes(title_text=f"time ({tz})", row=len(panels), col=1)
    # The whole range asked for, so a fresh start's few windows do not zoom the axis to sub-second ticks.
    fig.update_xaxes(range=list(_local(pd.DatetimeIndex([start, end]), tz)))
    # Above the plots and their titles, 30 px up (a legend must never cover a plot or its title).
    top, bottom = 90, 45
    legend_y = 1.0 + 30.0 / (height - top - bottom)
    fig.update_layout(legend={"orientation": "h", "y": legend_y, "yanchor": "bottom", "x": 0.0}, margin={"t": top})
    fig.update_annotations(yshift=4)
    return fig


def savings_figure(frame: pd.DataFrame, tz: str) -> go.Figure:
    """Predicted saving per decision (all modes) and realised saving (auto decisions with a measured interval)."""
    if frame.empty:
        return empty_figure("no controller decision with a predicted saving yet (the model is fitted after "
                            "commissioning)", height=300)  # fmt: skip
    fig = go.Figure()
    t = _local(pd.DatetimeIndex(frame["t"]), tz)
    fig.add_scatter(x=t, y=frame["predicted_kw"], name="predicted saving", mode="lines+markers",
                    line={"color": "#ffd166"}, hovertemplate="%{y:.1f} kW predicted<extra></extra>")  # fmt: skip
    realised = frame["realised_kw"]
    if realised.notna().any():
        fig.add_scatter(x=t, y=realised, name="realised saving (baseline − measured)", mode="lines+markers",
                        line={"color": "#06d6a0"}, hovertemplate="%{y:.1f} kW realised<extra></extra>")  # fmt: skip
    style(fig, height=300, y_title="saving (kW)", x_title=f"time ({tz})")
    fig.update_layout(legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0.0}, margin={"t": 40})
    return fig
