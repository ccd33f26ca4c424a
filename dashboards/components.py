"""Small building blocks shared by the pages: value cards, tables, figure styling, number formatting."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from dash import dcc, html

from dashboards.data import RANGES

LIVE_MS = 1000  # live values refresh every second (the issue asks for at most 2 s)
TREND_MS = 15000  # historian trends refresh every 15 s or when the range changes


def fmt(value: float | None, digits: int = 1) -> str:
    """A number for display; an em dash where unknown."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:,.{digits}f}"


def card(
    label: str, value: float | None, unit: str = "", *, digits: int = 1, note: str = "", ident: str | None = None
) -> html.Div:
    """A headline figure with its label, unit and an optional note (how it was measured)."""
    attrs: dict[str, Any] = {"id": ident} if ident else {}
    return html.Div(
        [
            html.Div(label, className="label"),
            html.Div(
                [html.Span(fmt(value, digits), className="num"), html.Span(unit, className="unit")],
                className="value",
                **attrs,
            ),
            html.Div(note, className="note") if note else None,
        ],
        className="card",
    )


def table(
    rows: Sequence[dict[str, Any]], columns: Iterable[str], *, ident: str | None = None, digits: int = 1
) -> html.Table:
    """A plain HTML table (cheap to re-render every second)."""
    cols = list(columns)

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return fmt(v, digits)
        return "—" if v is None else str(v)

    head = html.Tr([html.Th(pretty(c)) for c in cols])
    body = [html.Tr([html.Td(cell(r.get(c))) for c in cols]) for r in rows]
    attrs: dict[str, Any] = {"id": ident} if ident else {}
    return html.Table([html.Thead(head), html.Tbody(body)], className="simple", **attrs)


def style(fig: go.Figure, *, height: int = 320, y_title: str = "", x_title: str = "time (UTC)") -> go.Figure:
    """Dark styling, axis titles with units, compact margins."""
    fig.update_layout(
        template="plotly_dark",
        paper_bgcolor="#1b222c",
        plot_bgcolor="#1b222c",
        height=height,
        margin={"l": 60, "r": 20, "t": 30, "b": 45},
        legend={"orientation": "h", "y": 1.12},
        uirevision="keep",  # keep zoom and legend choices across refreshes
    )
    fig.update_xaxes(title_text=x_title)
    fig.update_yaxes(title_text=y_title)
    lines = [t for t in fig.data if t.type == "scatter" and t.x is not None and t.fill is None]
    if lines and max(len(t.x) for t in lines) < 30:  # a fresh start has a few windows: show them as points too
        for t in lines:
            if t.mode == "lines":
                t.mode = "lines+markers"
    return fig


UNITS = {
    "_c": "°C",
    "_k": "K",
    "_lpm": "L/min",
    "_kpa": "kPa",
    "_pct": "%",
    "_w": "W",
    "_kw": "kW",
    "_ms": "ms",
    "_s": "s",
    "_v": "V",
    "_a": "A",
    "_wh": "Wh",
    "_kwh": "kWh",
}


def pretty(name: str) -> str:
    """Column header from a field name: ``tcs_supply_temp_c`` -> ``tcs supply temp (°C)``."""
    for suffix, unit in UNITS.items():
        if name.endswith(suffix):
            return f"{name[: -len(suffix)].replace('_', ' ')} ({unit})"
    return name.replace("_", " ")


def footnote(fig: go.Figure, text: str, *, y: float) -> None:
    """A small grey note under the plot, left-aligned (``y`` in paper units, below 0)."""
    fig.add_annotation(
        text=text,
        showarrow=False,
        x=0,
        y=y,
        xref="paper",
        yref="paper",
        xanchor="left",
        font={"size": 10, "color": "#8c99a8"},
    )


def empty_figure(message: str, *, height: int = 320) -> go.Figure:
    """A figure that says why it has no data instead of drawing empty axes."""
    fig = go.Figure()
    fig.add_annotation(
        text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper", font={"color": "#8c99a8", "size": 14}
    )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return style(fig, height=height, x_title="")


def range_picker(ident: str, value: str = "1h") -> dcc.RadioItems:
    """Time-range choice for the trend panels."""
    return dcc.RadioItems(
        id=ident,
        options=[{"label": v, "value": k} for k, v in RANGES.items()],
        value=value,
        inline=True,
        inputStyle={"marginRight": "0.3em", "marginLeft": "0.8em"},
        labelStyle={"color": "#c9d3df"},
    )


def mark_times(fig: go.Figure, times: Iterable[tuple[pd.Timestamp, str]], color: str = "#ff9f43") -> None:
    """Vertical markers with a short label (alarms, setpoint changes) on the panel they concern."""
    for ts, label in times:
        fig.add_vline(x=ts.floor("us").to_pydatetime(), line_width=1, line_dash="dot", line_color=color)
        fig.add_annotation(
            x=ts.floor("us").to_pydatetime(),
            y=1.0,
            yref="paper",
            text=label,
            showarrow=False,
            font={"size": 10, "color": color},
            xanchor="left",
            yanchor="top",
            textangle=-90,
        )
