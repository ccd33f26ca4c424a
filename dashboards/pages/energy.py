"""Energy: measured PUE (energy counters, ISO/IEC 30134-2) per day and per month, with category and coverage.

The headline gives PUE today, this month and last month; the current day and month are interim and say so. A
period whose meters do not cover it fully shows its coverage, and a period with no complete IT category shows no
PUE but the reason. Computed by :func:`dashboards.energy_trend.pue_trend` in the background (cached), so the page
never waits on the historian.
"""

from __future__ import annotations

import logging
from typing import Any

import dash
import plotly.graph_objects as go
from dash import Input, Output, State, dcc, html

from dashboards.components import card, empty_figure, style
from dashboards.data import DashboardData
from dashboards.energy_trend import DayCache, PuePoint, PueTrend, pue_trend
from dashboards.fmt import energy_text, pct_text, pue_text

REFRESH_MS = 5000  # reads the cache only; the panels are redrawn when a new computation has landed
TTL_S = 300.0  # a day's PUE moves slowly; the historian read is the page's whole cost
log = logging.getLogger(__name__)
_CACHES: dict[str, DayCache] = {}  # final days per data directory: later computations read only the open days
COLOURS = {"complete": "#4da3ff", "interim": "#8fd6a4", "incomplete": "#ff9f43"}


def trend(data: DashboardData) -> PueTrend | str | None:
    """The latest computed trend; None until the first background computation has finished, the reason (text)
    when it failed."""

    def compute() -> PueTrend | str:
        try:
            return pue_trend(data.historian, data.site, data.now(), _CACHES.setdefault(str(data.data_dir), DayCache()))
        except Exception as exc:  # shown on the page (and logged), never a silent "computing" for ever
            log.exception("measured PUE trend failed")
            return f"measured PUE not computable: {str(exc)[:200]}"

    result: PueTrend | str | None = data.cached("energy_trend", TTL_S, compute)
    return result


def _headline(label: str, p: PuePoint | None, ident: str, why: str) -> html.Div:
    if p is None:
        return card(label, None, digits=3, ident=ident, note=why)
    parts = ["interim" if p.interim else "measured", p.category]
    if p.pue is not None and not p.complete:
        parts.append(f"coverage {pct_text(p.coverage, 1)}")
    if p.pue is None:  # the reason in short: the full note (every meter named) is in the table below
        parts = [p.note.split(":", 1)[0], f"coverage {pct_text(p.coverage, 0)}"] if p.note else [p.category]
    elif p.note.startswith("since"):
        parts.insert(0, p.note.split(";", 1)[0])
    return card(label, p.pue, digits=3, ident=ident, note="; ".join(parts))


def cards(t: PueTrend | None, why: str = "computing from the energy counters ...") -> list[html.Div]:
    """PUE today, this month and last month (``why`` explains their absence while there is no trend)."""
    return [
        _headline("PUE today", None if t is None else t.today, "en-today", why),
        _headline("PUE this month", None if t is None else t.this_month, "en-month", why),
        _headline("PUE last month", None if t is None else t.last_month, "en-last-month", why),
    ]


def _state(p: PuePoint) -> str:
    if p.interim:
        return "interim"
    return "complete" if p.complete else "incomplete"


def figure(points: list[PuePoint], what: str) -> go.Figure:
    """Bars of measured PUE per period, coloured complete / interim / incomplete coverage, with the energies."""
    have = [p for p in points if p.pue is not None]
    if not have:
        return empty_figure(f"no {what} with a measured PUE yet (the energy counters need a complete category)")
    fig = go.Figure()
    for state, colour in COLOURS.items():
        sel = [p for p in have if _state(p) == state]
        if not sel:
            continue
        fig.add_bar(
            x=[p.label for p in sel],
            y=[p.pue for p in sel],
            name={"complete": "measured", "interim": "interim (in progress)", "incomplete": "coverage < 100 %"}[state],
            marker_color=colour,
            text=[pue_text(p.pue) for p in sel],
            textposition="outside",
            customdata=[
                [energy_text(p.e_dc_kwh), energy_text(p.e_it_kwh), p.category, pct_text(p.coverage, 1)] for p in sel
            ],
            hovertemplate="%{x}: PUE %{y:.3f}<br>facility %{customdata[0]}, IT %{customdata[1]}<br>"
            "%{customdata[2]}, coverage %{customdata[3]}<extra></extra>",
        )
    lo = min(p.pue for p in have if p.pue is not None)
    hi = max(p.pue for p in have if p.pue is not None)
    pad = max(0.02, (hi - lo) * 0.3)  # a sensible minimum span: noise in the 3rd decimal must not look like swings
    fig.update_yaxes(range=[max(1.0, lo - pad), hi + pad])
    fig.update_xaxes(categoryorder="array", categoryarray=[p.label for p in points])
    style(fig, height=320, y_title="PUE (energy-based)", x_title="")
    fig.update_layout(legend={"orientation": "h", "y": -0.25, "x": 0}, margin={"b": 90})  # never over the bars
    return fig


def _short(text: str, limit: int = 140) -> str:
    """A note cut to one line's worth (the whole note shows on hover)."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def table(points: list[PuePoint]) -> html.Table:
    """Every period: PUE, energies, category, coverage and notes, newest first."""
    head = html.Tr(
        [html.Th(h) for h in ("period", "PUE", "facility energy", "IT energy", "category", "coverage", "note")]
    )
    body = [
        html.Tr(
            [
                html.Td(p.label + (" (interim)" if p.interim else "")),
                html.Td(pue_text(p.pue)),
                html.Td(energy_text(p.e_dc_kwh)),
                html.Td(energy_text(p.e_it_kwh)),
                html.Td(p.category),
                html.Td(pct_text(p.coverage, 1)),
                html.Td(_short(p.note), className="muted", title=p.note),
            ]
        )
        for p in reversed(points)
    ]
    return html.Table([html.Thead(head), html.Tbody(body)], className="simple", id="en-table")


def stamp(t: PueTrend | str | None) -> str:
    """Which computation the page shows (the end of its last day is the time it was computed)."""
    if isinstance(t, PueTrend):
        return t.days[-1].end.isoformat() if t.days else "empty"
    return "none" if t is None else t


def _panels(t: PueTrend | str | None) -> tuple[Any, Any, Any, Any]:
    if not isinstance(t, PueTrend):
        why = "computing the measured PUE from the energy counters ..." if t is None else t
        return cards(None, why), empty_figure(why), empty_figure(why), html.Div(why, className="muted")
    return cards(t), figure(t.days, "days"), figure(t.months, "months"), table(t.days)


def layout(data: DashboardData) -> html.Div:
    """Headline figures, the daily and monthly trends and the daily table."""
    t = trend(data)
    c, days, months, tbl = _panels(t)
    tz = data.site.config.site.timezone
    return html.Div(
        [
            dcc.Interval(id="en-tick", interval=REFRESH_MS),
            dcc.Store(id="en-stamp", data=stamp(t)),
            html.Div(c, id="en-cards", className="cards"),
            html.Div(
                [
                    html.H3(f"Measured PUE by day ({tz} calendar days; ISO/IEC 30134-2, from energy counters)"),
                    dcc.Graph(id="en-days", figure=days, config={"displaylogo": False}),
                ],
                className="panel",
            ),
            html.Div(
                [
                    html.H3("Measured PUE by month"),
                    dcc.Graph(id="en-months", figure=months, config={"displaylogo": False}),
                ],
                className="panel",
            ),
            html.Div([html.H3("Days"), html.Div(tbl, id="en-days-table")], className="panel"),
        ]
    )


def register(app: dash.Dash, data: DashboardData) -> None:
    """The page's callback: redraw from the cache every minute."""

    @app.callback(
        Output("en-cards", "children"),
        Output("en-days", "figure"),
        Output("en-months", "figure"),
        Output("en-days-table", "children"),
        Output("en-stamp", "data"),
        Input("en-tick", "n_intervals"),
        State("en-stamp", "data"),
        prevent_initial_call=True,  # the layout carries the first values
    )
    def refresh(_: int | None, shown: object) -> tuple[Any, ...]:
        t = trend(data)
        now = stamp(t)
        if now == shown:
            return (dash.no_update,) * 5
        return (*_panels(t), now)
