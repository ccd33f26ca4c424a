"""Data quality (device health, stale or bad points, writer and spool state) and the Reports list."""

from __future__ import annotations

from typing import Any

import dash
from dash import Input, Output, dcc, html

from dashboards.components import LIVE_MS, card, table
from dashboards.data import DashboardData
from dashboards.pages.floor import _records

HEALTH_COLS = ["device", "kind", "endpoint", "up", "latency_ms", "errors_total", "last_good_s_ago", "bad_points"]


def layout(data: DashboardData) -> html.Div:
    """Pipeline cards, device table, bad points."""
    return html.Div(
        [
            dcc.Interval(id="dq-tick", interval=LIVE_MS * 2),
            html.Div(_cards(data), id="dq-cards", className="cards"),
            html.Div(
                [
                    html.H3("Devices (latency ms, seconds since the last good poll)"),
                    html.Div(_devices(data), id="dq-devices"),
                ],
                className="panel",
            ),
            html.Div([html.H3("Stale or bad points"), html.Div(_bad(data), id="dq-bad")], className="panel"),
        ]
    )


def _cards(data: DashboardData) -> list[html.Div]:
    s = data.pipeline_stats()
    health = data.device_health()
    up = int((health["up"] == "up").sum()) if not health.empty else 0
    cards = [
        card("Devices up", float(up), f"/ {len(health)}", digits=0, ident="dq-up"),
        card("Points stored", s.get("points_written"), digits=0, note="historian writer"),
        card("Write errors", s.get("write_errors"), digits=0, note="historian writer"),
        card("Writer queue", s.get("pending_batches"), "batches", digits=0),
        card("Collected points/s", s.get("points_per_s"), digits=0),
    ]
    if "spool_depth_points" in s:
        cards += [
            card("Spool depth", s.get("spool_depth_points"), "points", digits=0),
            card("Replay lag", s.get("replay_lag_s"), "s", digits=0),
            card("Dropped points", s.get("dropped_points_total"), digits=0, note="spool full"),
        ]
    else:
        cards.append(card("Spool", None, note="embedded historian: no spool needed"))
    return cards


def _bad(data: DashboardData) -> html.Div:
    count, rows = data.bad_points(100)
    if not count:
        return html.Div("Every point is good.", className="muted", id="dq-all-good")
    note = html.Div(f"{count} points not good" + (" (first 100 shown)" if count > 100 else ""), className="muted")
    return html.Div([note, table(rows, ["series", "quality", "reason", "since"], ident="bad-table")])


def _devices(data: DashboardData) -> Any:
    return table(_records(data.device_health()), HEALTH_COLS, ident="health-table", digits=0)


def reports_layout(data: DashboardData) -> html.Div:
    """Monthly reports found under ``<data_dir>/reports``, with download links."""
    files = data.reports()
    if not files:
        body: Any = html.Div(
            f"No reports yet. Monthly reports appear here once written under {data.data_dir / 'reports'}.",
            className="muted",
            id="no-reports",
        )
    else:
        body = html.Table(
            [
                html.Thead(html.Tr([html.Th("report"), html.Th("size (kB)"), html.Th("modified")])),
                html.Tbody(
                    [
                        html.Tr(
                            [
                                html.Td(html.A(f["name"], href=f"/reports/{f['name']}")),
                                html.Td(f"{f['size_kb']:g}"),
                                html.Td(f["modified"]),
                            ]
                        )
                        for f in files
                    ]
                ),
            ],
            className="simple",
            id="reports-table",
        )
    return html.Div([html.Div([html.H3("Monthly reports"), body], className="panel")])


def register(app: dash.Dash, data: DashboardData) -> None:
    """The page's callbacks."""

    @app.callback(
        Output("dq-cards", "children"),
        Output("dq-devices", "children"),
        Output("dq-bad", "children"),
        Input("dq-tick", "n_intervals"),
        prevent_initial_call=True,
    )
    def live(_: int | None) -> tuple[Any, Any, Any]:
        return _cards(data), _devices(data), _bad(data)
