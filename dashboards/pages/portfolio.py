"""Portfolio: every site of a central store in one table (PUE and how it was measured, facility power, active alarms,
power headroom) with a small facility-power trend per site.

The page reads a :class:`PortfolioSource` handed over by the composition root (the central server's ``aidc serve``
wires it to the same figures ``GET /api/v1/sites`` answers), so the dashboard imports no API code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import dash
import pandas as pd
import plotly.graph_objects as go
from dash import Input, Output, dcc, html

from dashboards import fmt as f
from dashboards.components import empty_figure, style

REFRESH_MS = 30_000  # every site's figures are a few store queries each: twice a minute is plenty
TREND_HOURS = 6.0
COLUMNS = ("site", "PUE", "PUE method", "facility power", "active alarms", "power headroom", "notes")


class PortfolioSource(Protocol):
    """What the page reads: one row per site (the ``/api/v1/sites`` rows) and each site's facility-power trend."""

    def rows(self) -> list[dict[str, Any]]:
        """One row per site with ``site``, ``pue``, ``pue_method``, ``facility_kw``, ``alarms_active``,
        ``headroom_kw`` and ``notes``."""
        ...

    def trend(self, site: str, hours: float) -> pd.DataFrame:
        """The site's facility power: columns ts (UTC) and kw."""
        ...


def _method(row: Mapping[str, Any]) -> str:
    method = row.get("pue_method")
    if method is None:
        return "—"
    cat = row.get("pue_category")
    kind = "energy (ISO/IEC 30134-2, last hour)" if method == "energy" else "instantaneous power"
    return f"{kind}, category {cat}" if cat else kind


def table_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """The table's text cells: units and decimals by :mod:`dashboards.fmt`, an em dash where a figure is unknown."""
    out = []
    for r in rows:
        alarms = r.get("alarms_active")
        out.append({
            "site": str(r.get("site", "")),
            "PUE": f.number(r.get("pue"), "", digits=3),
            "PUE method": _method(r),
            "facility power": f.quantity(r.get("facility_kw"), "kW"),
            "active alarms": "—" if alarms is None else f"{int(alarms):,}",
            "power headroom": f.quantity(r.get("headroom_kw"), "kW")
            + (f" ({r['headroom_limit']})" if r.get("headroom_kw") is not None and r.get("headroom_limit") else ""),
            "notes": "; ".join(r.get("notes") or []),
        })  # fmt: skip
    return out


def _table(rows: Sequence[Mapping[str, Any]]) -> html.Table:
    cells = table_rows(rows)
    head = html.Tr([html.Th(c) for c in COLUMNS])
    body = [html.Tr([html.Td(r[c]) for c in COLUMNS]) for r in cells]
    return html.Table([html.Thead(head), html.Tbody(body)], className="simple", id="portfolio-table")


def trend_figure(site: str, frame: pd.DataFrame) -> go.Figure:
    """A small facility-power chart of one site (a message where the store has no complete window yet)."""
    if frame.empty:
        return empty_figure(f"{site}: no complete facility-power window yet", height=160)
    fig = go.Figure(go.Scatter(x=frame["ts"], y=frame["kw"], mode="lines", name=site,
                               hovertemplate="%{x|%Y-%m-%d %H:%M} UTC<br>%{y:,.1f} kW<extra></extra>"))  # fmt: skip
    fig.update_layout(title={"text": f"{site}: facility power", "font": {"size": 13}}, showlegend=False)
    rng = f.axis_range(frame["kw"].tolist(), "kW")
    if rng is not None:
        fig.update_yaxes(range=list(rng))
    return style(fig, height=160, y_title="kW")


def _trends(source: PortfolioSource, sites: Sequence[str]) -> list[html.Div]:
    return [
        html.Div(
            dcc.Graph(figure=trend_figure(s, source.trend(s, TREND_HOURS)), config={"displayModeBar": False}),
            className="panel half",
            id=f"pf-trend-{i}",
        )
        for i, s in enumerate(sites)
    ]


def _body(source: PortfolioSource) -> tuple[Any, Any, str]:
    rows = source.rows()
    sites = [str(r["site"]) for r in rows]
    caption = f"{len(rows)} sites; figures refresh every {REFRESH_MS // 1000} s; trends: last {TREND_HOURS:g} h"
    return _table(rows), _trends(source, sites), caption


def layout(source: PortfolioSource) -> html.Div:
    """The table of sites and a trend per site."""
    table, trends, caption = _body(source)
    return html.Div(
        [
            dcc.Interval(id="pf-tick", interval=REFRESH_MS),
            html.Div(
                [
                    html.H3("Sites"),
                    html.Div(caption, className="muted", id="pf-caption"),
                    html.Div(table, id="pf-table"),
                ],
                className="panel",
            ),
            html.Div(trends, id="pf-trends", className="cards"),
        ]
    )


def register(app: dash.Dash, source: PortfolioSource) -> None:
    """The page's refresh callback."""

    @app.callback(
        Output("pf-table", "children"),
        Output("pf-trends", "children"),
        Output("pf-caption", "children"),
        Input("pf-tick", "n_intervals"),
        prevent_initial_call=True,
    )
    def refresh(_: int | None) -> tuple[Any, Any, str]:
        return _body(source)
