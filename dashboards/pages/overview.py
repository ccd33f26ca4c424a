"""Overview: is anything hot or failing, what is PUE doing, what is the controller doing."""

from __future__ import annotations

import hashlib
from typing import Any

import dash
import pandas as pd
import plotly.graph_objects as go
from dash import ALL, Input, Output, State, dcc, html

from analytics.forecast.service import ForecastService
from dashboards.components import (
    LIVE_MS,
    TREND_MS,
    card,
    chart,
    empty_figure,
    fit_y,
    fmt,
    pick_range,
    range_caption,
    register_csv,
    register_trend_controls,
    site_tz,
    style,
    time_axes,
    time_trace,
    trend_controls,
    trend_inputs,
)
from dashboards.data import DashboardData
from dashboards.forecast import load_forecast_figure
from dashboards.pue_forecast import pue_forecast_figure
from dashboards.trend_range import TrendRange
from dashboards.web import can_act, current_user


def layout(data: DashboardData) -> html.Div:
    """The page's skeleton; the callbacks fill it."""
    return html.Div(
        [
            dcc.Interval(id="ov-tick", interval=LIVE_MS),
            dcc.Interval(id="ov-slow", interval=TREND_MS),
            html.Div(_cards(data), id="ov-cards", className="cards"),
            html.Div(
                [
                    html.Div(
                        [
                            html.H3("Active alarms"),
                            html.Div(id="ov-ack-msg", className="msg"),
                            *_alarm_panel(data),
                        ],
                        className="panel",
                    ),
                    html.Div(
                        [html.H3("Controller"), html.Div(_controller(data), id="ov-controller")], className="panel"
                    ),
                ],
                className="grid2",
            ),
            html.Div(
                [
                    html.H3("Facility, IT and cooling power"),
                    trend_controls("ov"),
                    chart("ov-power"),
                ],
                className="panel",
            ),
            html.Div(
                [
                    html.H3("IT-load forecast (P10-P90 band)"),
                    chart("ov-forecast"),
                ],
                className="panel",
            ),
            html.Div(
                [
                    html.H3("Facility power and PUE forecast, next 48 h (P10-P90 bands)"),
                    chart("ov-pue-forecast"),
                ],
                className="panel",
            ),
        ]
    )


def _pue_note(cat: int | None, why: str) -> str:
    """The metering category used and why a higher one (or any PUE) is not: the meters without fresh values."""
    if cat:
        return f"facility ÷ IT power, IT at category {cat}" + (f"; {why}" if why else "")
    return f"no PUE: {why}" if why else "waiting for power readings"


def _cards(data: DashboardData) -> list[html.Div]:
    o = data.overview()
    e = data.energy_pue()
    cat = o.get("pue_category")
    today, month = e.get("today", {}), e.get("month", {})

    def pue_note(d: dict[str, Any]) -> str:
        return str(d.get("note", "computing from the energy counters ..."))

    return [
        card(
            "PUE (instantaneous, power-based)",
            o["pue"],
            digits=3,
            ident="ov-pue",
            note=_pue_note(cat, o.get("pue_note") or ""),
        ),
        card("IT power", o["it_kw"], "kW", digits=0, ident="ov-it"),
        card("Cooling power", o["cooling_kw"], "kW", digits=0, ident="ov-cooling"),
        card("Facility power", o["facility_kw"], "kW", digits=0, ident="ov-facility"),
        card("Outdoor dry bulb", o["drybulb_c"], "°C", ident="ov-drybulb"),
        card("Outdoor wet bulb", o["wetbulb_c"], "°C", ident="ov-wetbulb"),
        card("PUE today", today.get("pue"), digits=3, note=pue_note(today)),
        card("PUE this month", month.get("pue"), digits=3, note=pue_note(month)),
    ]


SHOWN_ALARMS = 50  # rows of the active-alarm table; the rest are counted


def _alarm_panel(data: DashboardData) -> list[Any]:
    """The alarm table as first painted, and the digest of what it shows (for :func:`alarm_update`)."""
    rows, shown = alarm_update(data, ack=can_act(), shown=None)
    return [html.Div(rows, id="ov-alarms"), dcc.Store(id="ov-alarms-shown", data=shown)]


def alarm_digest(data: DashboardData, *, ack: bool) -> str:
    """A short digest of what the alarm table shows (rows, acknowledgements, the count, the buttons' state)."""
    alarms = data.alarms.active()
    rows = [(a.id, a.severity, a.raised_ns, a.message, a.acked_by) for a in alarms[:SHOWN_ALARMS]]
    return hashlib.blake2b(repr((ack, len(alarms), rows)).encode(), digest_size=8).hexdigest()


def alarm_update(data: DashboardData, *, ack: bool, shown: object) -> tuple[Any, str]:
    """The alarm table and its digest, or ``no_update`` when the page already shows that digest.

    The live refresh runs every second; re-sending and re-rendering 50 unchanged rows (buttons with pattern ids)
    kept the browser busy most of each second on a large site, delaying every paint and click.
    """
    digest = alarm_digest(data, ack=ack)
    if digest == shown:
        return dash.no_update, digest
    return alarm_rows(data, ack=ack), digest


def alarm_rows(data: DashboardData, *, ack: bool) -> html.Div:
    """Active alarms as a table with acknowledge buttons for operators."""
    alarms = data.alarms.active()
    tz = site_tz(data)
    if not alarms:
        return html.Div("No active alarms.", className="muted", id="no-alarms")
    rows = []
    for a in alarms[:SHOWN_ALARMS]:
        at = pd.Timestamp(a.raised_ns, unit="ns", tz="UTC")
        raised = html.Span(at.tz_convert(tz).strftime("%d %b %H:%M:%S %Z"), title=f"{at:%Y-%m-%d %H:%M:%S} UTC")
        acked = (
            f"acknowledged by {a.acked_by}"
            if a.acked_by
            else html.Button(
                "Acknowledge",
                id={"type": "ack", "alarm": a.id},
                disabled=not ack,
                title="" if ack else "operator sign-in needed",
            )
        )
        rows.append(
            html.Tr(
                [
                    html.Td(a.severity, className=f"sev-{a.severity}"),
                    html.Td(raised),
                    html.Td(a.message, className="alarm-msg"),
                    html.Td(acked),
                ]
            )
        )
    more = (
        html.Div(f"... and {len(alarms) - SHOWN_ALARMS} more", className="muted")
        if len(alarms) > SHOWN_ALARMS
        else None
    )
    return html.Div([html.Table([html.Tbody(rows)], className="simple", id="alarm-table"), more])


def _controller(data: DashboardData) -> html.Div:
    st = data.controller()
    if st is None:
        return html.Div(
            [
                html.Div("No controller is running.", id="ov-no-controller"),
                html.Div("Energy saved by the controller: not estimated (no controller).", className="muted"),
            ]
        )
    saved = st.get("saved_kwh")
    how = st.get("saving_method", "predicted against the baseline setpoints by the plant model")
    last = st.get("last_decision") or {}
    return html.Div(
        [
            html.Div(f"mode {st.get('mode', '?')} · {st.get('state', '')}"),
            html.Div(f"energy saved so far: {fmt(saved, 0)} kWh ({how})"),
            html.Div(
                f"last decision: predicted saving {fmt(last.get('predicted_saving_kw'))} kW; "
                f"binding: {', '.join(last.get('binding_constraints', []) or ['none'])}",
                className="muted",
            ),
        ]
    )


def power_figure(df: pd.DataFrame, tz: str, rng: TrendRange | None = None) -> go.Figure:
    """Facility, IT and cooling power (kW) over site time, from :meth:`DashboardData.power_trend`."""
    if df.empty:
        return empty_figure("no stored power readings in this range yet")
    fig = go.Figure()
    for col, name in (("facility", "facility"), ("it", "IT"), ("cooling", "cooling")):
        if col in df:
            mode = "lines" if len(df) > 30 else "lines+markers"
            time_trace(fig, df.index, df[col], name=name, unit="kW", tz=tz, mode=mode)
    style(fig, y_title="power (kW)")
    fit_y(fig, "kW")
    time_axes(fig, tz, span=rng)
    return fig


def register(app: dash.Dash, data: DashboardData, forecasts: ForecastService) -> None:
    """The page's callbacks."""

    @app.callback(
        Output("ov-cards", "children"),
        Output("ov-alarms", "children"),
        Output("ov-alarms-shown", "data"),
        Output("ov-controller", "children"),
        Input("ov-tick", "n_intervals"),
        State("ov-alarms-shown", "data"),
        prevent_initial_call=True,  # the layout carries the first values
    )
    def live(_: int | None, shown: object) -> tuple[Any, Any, str, Any]:
        rows, digest = alarm_update(data, ack=can_act(), shown=shown)
        return _cards(data), rows, digest, _controller(data)

    tz = site_tz(data)

    @app.callback(
        Output("ov-power", "figure"),
        Output("ov-caption", "children"),
        *trend_inputs("ov"),
        Input("ov-slow", "n_intervals"),
    )
    def power(preset: str, dates: object, _: int | None) -> tuple[go.Figure, str]:
        rng = pick_range(preset, dates, now=data.now(), tz=tz)
        if isinstance(rng, str):
            return empty_figure(rng), rng
        return power_figure(data.power_trend(rng), tz, rng), range_caption(rng, tz)

    # Both forecast panels only draw the live forecast service's latest state (the API serves the same object).
    @app.callback(Output("ov-forecast", "figure"), Input("ov-slow", "n_intervals"))
    def forecast_fig(_: int | None) -> go.Figure:
        return load_forecast_figure(forecasts.latest().load, tz)

    @app.callback(Output("ov-pue-forecast", "figure"), Input("ov-slow", "n_intervals"))
    def pue_forecast_fig(_: int | None) -> go.Figure:
        return pue_forecast_figure(forecasts.latest().pue, tz)

    register_trend_controls(app, "ov")
    for ident in ("ov-power", "ov-forecast", "ov-pue-forecast"):
        register_csv(app, ident, tz)

    @app.callback(
        Output("ov-ack-msg", "children"),
        Input({"type": "ack", "alarm": ALL}, "n_clicks"),
        State({"type": "ack", "alarm": ALL}, "id"),
        prevent_initial_call=True,
    )
    def acknowledge(clicks: object, _ids: object) -> Any:
        trig = dash.ctx.triggered_id
        if not isinstance(trig, dict) or not isinstance(clicks, list) or not any(clicks):
            return dash.no_update
        who = current_user()
        if who is None or not can_act():
            return "Acknowledging needs an operator sign-in."
        alarm_id = trig.get("alarm")
        if not isinstance(alarm_id, str):  # a forged id: only the page's own buttons name an alarm
            return "No such alarm."
        try:
            alarm = data.alarms.acknowledge(alarm_id, who[0], data.clock.now_ns())
        except Exception as exc:  # an alarm that cleared meanwhile is reported, not raised
            return str(exc)
        return f"{alarm.id} acknowledged by {who[0]}"
