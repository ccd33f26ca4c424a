"""Control: the supervisor's mode, operator overrides with expiry, the model's provenance and the audit log.

Every change goes through a callback that checks the signed-in role on the server (the disabled buttons a viewer
sees are a courtesy, not the protection) and passes the user name to the supervisor, which audits it.
"""

from __future__ import annotations

import json
import math
from typing import Any

import dash
import pandas as pd
from dash import ALL, Input, Output, State, dcc, html

from aidc.profiles import Point
from dashboards.components import LIVE_MS, table
from dashboards.data import DashboardData
from dashboards.supervisor import MODES
from dashboards.web import can_act, current_user

MAX_OVERRIDE_MIN = 24 * 60


def _writable(data: DashboardData) -> list[dict[str, str]]:
    out = []
    for dev in data.site.devices:
        for p in dev.profile.points:
            if p.writable and dev.role_of(p.name) is not None and "heartbeat" not in p.name:
                out.append(
                    {
                        "label": f"{dev.name} · {p.name} ({_limits(p.min, p.max)} {p.unit})",
                        "value": f"{dev.name}|{p.name}",
                    }
                )
    return out


def _limits(lo: float | None, hi: float | None) -> str:
    return f"{'-inf' if lo is None else f'{lo:g}'}-{'inf' if hi is None else f'{hi:g}'}"


def layout(data: DashboardData) -> html.Div:
    """Mode, overrides, status and audit panels."""
    act = can_act()
    sup = data.supervisor
    locked = not act or sup is None
    why = (
        "no controller is running"
        if sup is None
        else ""
        if act
        else "viewers can see but not change the mode; sign in as an operator"
    )
    return html.Div(
        [
            dcc.Interval(id="ct-tick", interval=LIVE_MS * 2),
            html.Div(
                [
                    html.H3("Supervisor mode"),
                    html.Div(
                        "No controller is running: the collectors and historian run without one, and no setpoint is "
                        "written by aidc."
                        if sup is None
                        else "",
                        id="ct-none",
                        className="msg",
                    ),
                    dcc.RadioItems(
                        id="ct-mode",
                        options=[{"label": m, "value": m, "disabled": locked} for m in MODES],
                        value=None if sup is None else sup.mode,
                        inline=True,
                        inputStyle={"marginRight": "0.3em", "marginLeft": "0.8em"},
                        labelStyle={"color": "#c9d3df"},
                    ),
                    html.Button("Apply mode", id="ct-apply", disabled=locked, title=why),
                    html.Div(why, className="muted", id="ct-why"),
                    html.Div(id="ct-msg", className="msg"),
                ],
                className="panel",
            ),
            html.Div(
                [
                    html.H3("Operator overrides (hold a setpoint until the expiry)"),
                    html.Div(
                        [
                            dcc.Dropdown(
                                id="ct-point",
                                options=_writable(data),
                                placeholder="device · point",
                                style={"width": "32em", "color": "#10151c"},
                                disabled=locked,
                            ),
                            dcc.Input(id="ct-value", type="number", placeholder="value", disabled=locked),
                            dcc.Input(
                                id="ct-minutes", type="number", value=60, min=1, max=MAX_OVERRIDE_MIN, disabled=locked
                            ),
                            html.Span(" minutes ", className="muted"),
                            html.Button("Set override", id="ct-override", disabled=locked, title=why),
                        ],
                        style={"display": "flex", "gap": ".5em", "alignItems": "center"},
                    ),
                    html.Div(id="ct-overrides"),
                ],
                className="panel",
            ),
            html.Div([html.H3("Controller status and model provenance"), html.Pre(id="ct-status")], className="panel"),
            html.Div(
                [html.H3("Audit log (supervisor, setpoint writer, alarm acknowledgements)"), html.Div(id="ct-audit")],
                className="panel",
            ),
        ]
    )


def _overrides(data: DashboardData, act: bool) -> html.Div:
    sup = data.supervisor
    if sup is None:
        return html.Div("No overrides (no controller running).", className="muted")
    rows = sup.overrides()
    if not rows:
        return html.Div("No active overrides.", className="muted")
    body = []
    for o in rows:
        until_ns = o.get("until_ns")
        until_ns = until_ns if isinstance(until_ns, int) else 0
        until = pd.Timestamp(until_ns, unit="ns", tz="UTC").strftime("%Y-%m-%d %H:%M UTC")
        key = f"{o.get('device')}|{o.get('point')}"
        body.append(
            html.Tr(
                [
                    html.Td(str(o.get("device"))),
                    html.Td(str(o.get("point"))),
                    html.Td(str(o.get("value"))),
                    html.Td(f"until {until}"),
                    html.Td(str(o.get("user", ""))),
                    html.Td(html.Button("Clear", id={"type": "ct-clear", "key": key}, disabled=not act)),
                ]
            )
        )
    return html.Div(html.Table(html.Tbody(body), className="simple"))


def register(app: dash.Dash, data: DashboardData) -> None:
    """The page's callbacks."""

    @app.callback(
        Output("ct-status", "children"),
        Output("ct-overrides", "children"),
        Output("ct-audit", "children"),
        Input("ct-tick", "n_intervals"),
    )
    def live(_: int | None) -> tuple[Any, Any, Any]:
        st = data.controller()
        status = "no controller running" if st is None else json.dumps(st, indent=1, default=str)[:6000]
        rows = data.audit()
        for r in rows:
            r["time"] = pd.Timestamp(r["t"], unit="s", tz="UTC").strftime("%Y-%m-%d %H:%M:%S")
        audit = (
            table(rows[:100], ["time", "source", "user", "action", "detail"], ident="audit-table")
            if rows
            else html.Div("No audit entries yet.", className="muted", id="audit-empty")
        )
        return status, _overrides(data, can_act()), audit

    @app.callback(
        Output("ct-msg", "children"),
        Input("ct-apply", "n_clicks"),
        State("ct-mode", "value"),
        prevent_initial_call=True,
    )
    def apply_mode(n: int | None, mode: object) -> Any:
        if not n:
            return dash.no_update
        who = current_user()
        if who is None or not can_act():
            return "Changing the mode needs an operator sign-in."
        if data.supervisor is None:
            return "No controller is running."
        if not isinstance(mode, str) or mode not in MODES:
            return f"Choose one of {', '.join(MODES)}."
        try:
            data.supervisor.set_mode(mode, who[0])
        except Exception as exc:  # the supervisor refuses with a reason; show it
            return f"Refused: {exc}"
        return f"Mode set to {mode} by {who[0]}."

    @app.callback(
        Output("ct-msg", "children", allow_duplicate=True),
        Input("ct-override", "n_clicks"),
        State("ct-point", "value"),
        State("ct-value", "value"),
        State("ct-minutes", "value"),
        prevent_initial_call=True,
    )
    def set_override(n: int | None, key: object, value: object, minutes: object) -> Any:
        if not n:
            return dash.no_update
        who = current_user()
        if who is None or not can_act() or data.supervisor is None:
            return "Overrides need an operator sign-in and a running controller."
        # The values come from the browser and may be forged: check every type before using it.
        target = _writable_point(data, key)
        if target is None or not _is_number(value):
            return "Choose a point and a value."
        if not _is_number(minutes) or not 1 <= float(minutes) <= MAX_OVERRIDE_MIN:  # type: ignore[arg-type]
            return f"The expiry must be 1 to {MAX_OVERRIDE_MIN} minutes."
        device, p = target
        v, mins = float(value), float(minutes)  # type: ignore[arg-type]
        if (p.min is not None and v < p.min) or (p.max is not None and v > p.max):
            return f"{device} {p.name}: {v:g} is outside {_limits(p.min, p.max)} {p.unit}."
        until = data.clock.now_ns() + int(mins * 60e9)
        try:
            data.supervisor.set_override(device, p.name, v, until, who[0])
        except Exception as exc:  # the supervisor refuses with a reason; show it
            return f"Refused: {exc}"
        return f"Override {device} {p.name} = {v:g} {p.unit} for {mins:g} min by {who[0]}."

    @app.callback(
        Output("ct-msg", "children", allow_duplicate=True),
        Input({"type": "ct-clear", "key": ALL}, "n_clicks"),
        prevent_initial_call=True,
    )
    def clear_override(clicks: object) -> Any:
        trig = dash.ctx.triggered_id
        if not isinstance(trig, dict) or not isinstance(clicks, list) or not any(clicks):
            return dash.no_update
        who = current_user()
        if who is None or not can_act() or data.supervisor is None:
            return "Clearing an override needs an operator sign-in."
        key = trig.get("key")
        if not isinstance(key, str) or "|" not in key:
            return "No such override."
        device, point = key.split("|", 1)
        data.supervisor.clear_override(device, point, who[0])
        return f"Override {device} {point} cleared by {who[0]}."


def _is_number(v: object) -> bool:
    """A finite JSON number (not a bool, a string or NaN)."""
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _writable_point(data: DashboardData, key: object) -> tuple[str, Point] | None:
    """The (device, point) of a ``device|point`` key offered on the page, or None for anything else."""
    if not isinstance(key, str) or key not in {o["value"] for o in _writable(data)}:
        return None
    device, point = key.split("|", 1)
    p = next(p for p in data.site.device(device).profile.points if p.name == point)
    return device, p
