"""Power chain: utility → UPS → rows → PDUs → racks, with load, rating and headroom at each level (live).

A sankey shows where the utility's power goes (UPS to the rows, UPS losses, cooling and the rest of the facility);
a bar chart shows each row's and the most loaded racks' share of their rating; the table lists the chain as a
tree. The element closest to its rating is named at the top and highlighted in the table and the chart.
"""

from __future__ import annotations

from typing import Any

import dash
import plotly.graph_objects as go
from dash import Input, Output, dcc, html

from dashboards.components import empty_figure, style
from dashboards.data import DashboardData
from dashboards.fmt import pct_text, power_text
from dashboards.power_chain import Node, chain, most_loaded

REFRESH_MS = 5000
FULL_TABLE_RACKS = 100  # above this many racks the table lists the most loaded PDUs and racks only
TOP = 40
HOT = 0.9  # utilisation from which an element is shown in the warning colour


def _headline(nodes: list[Node]) -> html.Div:
    top = most_loaded(nodes)
    ups = next((n for n in nodes if n.level == "UPS"), None)
    util = next((n for n in nodes if n.level == "utility"), None)
    parts = [
        f"utility {power_text(util.load_kw if util else None)}",
        f"UPS {power_text(ups.load_kw if ups else None)} of {power_text(ups.capacity_kw if ups else None)} "
        f"(headroom {power_text(ups.headroom_kw if ups else None)})",
    ]
    hot = (
        html.Span(
            f"Most loaded: {top.level} {top.name} at {pct_text(top.utilisation)} of {power_text(top.capacity_kw)} "
            f"(headroom {power_text(top.headroom_kw)})",
            className="sev-major" if (top.utilisation or 0) >= HOT else "",
            id="pw-most",
        )
        if top
        else html.Span("No element has both a load reading and a rating yet.", id="pw-most")
    )
    return html.Div([html.Div(" · ".join(parts)), hot])


def sankey(nodes: list[Node]) -> go.Figure:
    """Utility → UPS → rows, with UPS losses and the rest of the facility (cooling, other) as their own flows."""
    util = next((n for n in nodes if n.level == "utility"), None)
    ups = next((n for n in nodes if n.level == "UPS"), None)
    rows = [n for n in nodes if n.level == "row" and n.load_kw is not None]
    if ups is None or ups.load_kw is None or not rows:
        return empty_figure("waiting for UPS and PDU power readings")
    labels = ["utility", f"UPS {ups.name}", *[f"row {r.name}" for r in rows]]
    links: list[tuple[int, int, float]] = []
    if util is not None and util.load_kw is not None:
        links.append((0, 1, ups.load_kw))
        if util.load_kw > ups.load_kw:
            labels.append("cooling, UPS losses and other")
            links.append((0, len(labels) - 1, util.load_kw - ups.load_kw))
    links += [(1, 2 + i, r.load_kw or 0.0) for i, r in enumerate(rows)]
    pdu_total = sum(r.load_kw or 0.0 for r in rows)
    if ups.load_kw > pdu_total:
        labels.append("distribution losses, unmetered")
        links.append((1, len(labels) - 1, ups.load_kw - pdu_total))
    src, dst, val = (list(x) for x in zip(*links, strict=True))
    fig = go.Figure(
        go.Sankey(
            node={"label": labels, "pad": 12, "color": "#4da3ff"},
            link={"source": src, "target": dst, "value": val, "hovertemplate": "%{value:,.1f} kW<extra></extra>"},
            valueformat=",.1f",
            valuesuffix=" kW",
        )
    )
    return style(fig, height=360, x_title="")


def bars(nodes: list[Node]) -> go.Figure:
    """Share of rating per row and for the most loaded racks (the most loaded element in the warning colour)."""
    rated = [n for n in nodes if n.utilisation is not None and n.level in ("UPS", "row", "rack")]
    if not rated:
        return empty_figure("waiting for power readings")
    racks = sorted((n for n in rated if n.level == "rack"), key=lambda n: n.utilisation or 0.0, reverse=True)[:20]
    shown = [n for n in rated if n.level != "rack"] + racks
    top = most_loaded(nodes)
    colours = ["#ff5c5c" if n is top else ("#ff9f43" if (n.utilisation or 0) >= HOT else "#4da3ff") for n in shown]
    fig = go.Figure(
        go.Bar(
            x=[f"{n.level} {n.name}" for n in shown],
            y=[100 * (n.utilisation or 0.0) for n in shown],
            marker_color=colours,
            customdata=[[power_text(n.load_kw), power_text(n.capacity_kw), power_text(n.headroom_kw)] for n in shown],
            hovertemplate="%{x}: %{y:.0f} %<br>load %{customdata[0]} of %{customdata[1]}<br>"
            "headroom %{customdata[2]}<extra></extra>",
        )
    )
    fig.add_hline(y=100, line_dash="dot", line_color="#ff5c5c")
    fig.update_yaxes(range=[0, max(110.0, 5 + max(100 * (n.utilisation or 0) for n in shown))])
    return style(fig, height=340, y_title="load (% of rating)", x_title="")


def tree(nodes: list[Node], total_racks: int) -> html.Div:
    """The chain as an indented table; on a big site the PDUs and racks are limited to the most loaded."""
    top = most_loaded(nodes)
    shown = nodes
    note = None
    if total_racks > FULL_TABLE_RACKS:
        leaves = sorted(
            (n for n in nodes if n.level in ("PDU", "rack")), key=lambda n: n.utilisation or 0.0, reverse=True
        )[:TOP]
        keep = {id(n) for n in leaves}
        shown = [n for n in nodes if n.level not in ("PDU", "rack") or id(n) in keep]
        note = html.Div(f"{total_racks} racks: the {TOP} most loaded PDUs and racks are listed.", className="muted")
    head = html.Tr([html.Th(h) for h in ("element", "level", "load", "rating", "headroom", "load / rating", "")])
    body = []
    for n in shown:
        depth = LEVEL_DEPTH.get(n.level, 0)
        cls = "sev-critical" if n is top else ("sev-major" if (n.utilisation or 0) >= HOT else "")
        body.append(
            html.Tr(
                [
                    html.Td(n.name, style={"paddingLeft": f"{0.5 + 1.2 * depth}em"}),
                    html.Td(n.level, className="muted"),
                    html.Td(power_text(n.load_kw)),
                    html.Td(power_text(n.capacity_kw)),
                    html.Td(power_text(n.headroom_kw)),
                    html.Td(pct_text(n.utilisation)),
                    html.Td(("most loaded · " if n is top else "") + n.note, className="muted"),
                ],
                className=cls,
            )
        )
    return html.Div([html.Table([html.Thead(head), html.Tbody(body)], className="simple", id="pw-table"), note])


LEVEL_DEPTH = {"utility": 0, "UPS": 1, "row": 2, "PDU": 3, "rack": 4}


def _panels(data: DashboardData) -> tuple[Any, Any, Any, Any]:
    nodes = chain(data)
    return _headline(nodes), sankey(nodes), bars(nodes), tree(nodes, len(data.racks))


def layout(data: DashboardData) -> html.Div:
    """Headline, sankey, bars and the tree (refreshed every few seconds)."""
    head, flow, share, table = _panels(data)
    return html.Div(
        [
            dcc.Interval(id="pw-tick", interval=REFRESH_MS),
            html.Div(head, id="pw-head", className="panel"),
            html.Div(
                [
                    html.Div(
                        [
                            html.H3("Power flow (kW)"),
                            dcc.Graph(id="pw-sankey", figure=flow, config={"displaylogo": False}),
                        ],
                        className="panel",
                    ),
                    html.Div(
                        [
                            html.H3("Load against rating"),
                            dcc.Graph(id="pw-bars", figure=share, config={"displaylogo": False}),
                        ],
                        className="panel",
                    ),
                ],
                className="grid2",
            ),
            html.Div([html.H3("Power chain"), html.Div(table, id="pw-tree")], className="panel"),
        ]
    )


def register(app: dash.Dash, data: DashboardData) -> None:
    """The page's live refresh."""

    @app.callback(
        Output("pw-head", "children"),
        Output("pw-sankey", "figure"),
        Output("pw-bars", "figure"),
        Output("pw-tree", "children"),
        Input("pw-tick", "n_intervals"),
        prevent_initial_call=True,  # the layout carries the first values
    )
    def refresh(_: int | None) -> tuple[Any, Any, Any, Any]:
        return _panels(data)
