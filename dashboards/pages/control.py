"""Control: the supervisor's mode, each decision in words, setpoints against measured values per device, predicted
against realised saving, the model's provenance, operator overrides with expiry and the audit log.

Every change goes through a callback that checks the signed-in role on the server (the disabled buttons a viewer
sees are a courtesy, not the protection) and passes the user name to the supervisor, which audits it. Nothing on
the page is a JSON dump: numbers carry units and sensible decimals, times are in the site's zone.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any

import dash
import pandas as pd
import plotly.graph_objects as go
from dash import ALL, Input, Output, State, dcc, html
from dash.dash_table.DataTable import DataTable

from aidc.profiles import Point
from dashboards.components import LIVE_MS, TREND_MS, empty_figure, table
from dashboards.control_charts import savings_figure, timeline_figure
from dashboards.control_data import DecisionLog, controlled_devices, panels, savings_frame
from dashboards.control_panels import decisions_panel, overrides_panel, saving_totals_panel, status_panel
from dashboards.control_provenance import provenance_rows
from dashboards.control_view import DecisionText, Names, as_dict, describe_decisions
from dashboards.data import RANGES, WINDOW_FOR, DashboardData
from dashboards.fmt import local_time, to_utc
from dashboards.supervisor import MODES, audit_entries, read_jsonl_tail
from dashboards.table_query import page, query_rows
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


AUDIT_COLUMNS = [
    ("time", "time (site)"),
    ("actor", "actor"),
    ("action", "action"),
    ("target", "device · point"),
    ("change", "old → new"),
    ("result", "reason / result"),
]
AUDIT_PAGE = 15
AUDIT_ROWS = 2000  # newest lines read per audit file
RECENT_DECISIONS = 8
DARK = {"backgroundColor": "#1b222c", "color": "#c9d3df", "border": "1px solid #2c3643"}


def _tz(data: DashboardData) -> str:
    return data.site.config.site.timezone


def layout(data: DashboardData) -> html.Div:
    """Mode, decisions, timelines, savings, provenance, overrides and audit panels."""
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
    devices = [{"label": Names.of(data.site).device(d.name), "value": d.name} for d in controlled_devices(data.site)]
    return html.Div(
        [
            dcc.Interval(id="ct-tick", interval=LIVE_MS * 2),
            dcc.Interval(id="ct-slow", interval=TREND_MS),
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
                    html.Div(id="ct-status"),
                ],
                className="panel",
            ),
            html.Div([html.H3("Decisions in words (newest first)"), html.Div(id="ct-decisions")], className="panel"),
            html.Div(
                [
                    html.H3("Setpoint against measured value"),
                    html.Div(
                        [
                            dcc.Dropdown(
                                id="ct-device",
                                options=devices,
                                value=devices[0]["value"] if devices else None,
                                clearable=False,
                                style={"width": "16em", "color": "#10151c"},
                            ),
                            dcc.RadioItems(
                                id="ct-range",
                                options=[{"label": v, "value": k} for k, v in RANGES.items()],
                                value="6h",
                                inline=True,
                                inputStyle={"marginRight": "0.3em", "marginLeft": "0.8em"},
                                labelStyle={"color": "#c9d3df"},
                            ),
                        ],
                        style={"display": "flex", "gap": "1em", "alignItems": "center"},
                    ),
                    dcc.Graph(id="ct-timeline", config={"displaylogo": False}),
                ],
                className="panel",
            ),
            html.Div(
                [
                    html.H3("Predicted against realised saving"),
                    html.Div(id="ct-saving-totals"),
                    dcc.Graph(id="ct-savings", config={"displaylogo": False}),
                    html.Div(
                        "Realised saving per auto-mode decision: the model's fixed-setpoint baseline for the interval "
                        "(at the decision's load and weather) less the facility power measured until the next "
                        "decision. A load change inside an interval shows as noise; the monthly report refits over "
                        "the whole month and is the figure to sign.",
                        className="muted",
                    ),
                ],
                className="panel",
            ),
            html.Div([html.H3("Plant model provenance"), html.Div(id="ct-provenance")], className="panel"),
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
                            dcc.Input(
                                id="ct-value",
                                type="number",
                                placeholder="value",
                                disabled=locked,
                                style={"width": "8em"},
                            ),
                            dcc.Input(
                                id="ct-minutes",
                                type="number",
                                value=60,
                                min=1,
                                max=MAX_OVERRIDE_MIN,
                                disabled=locked,
                                style={"width": "7em"},
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
            html.Div(
                [
                    html.H3("Audit log (supervisor, setpoint writer, alarm acknowledgements)"),
                    html.Div(
                        "Type in the row under a heading to filter (e.g. operator, write, cdu-h1-01, > 2026-12-01); "
                        "click a heading to sort. Heartbeat writes are left out unless they failed.",
                        className="muted",
                    ),
                    DataTable(
                        id="audit-table",
                        columns=[{"name": label, "id": cid, "type": "text"} for cid, label in AUDIT_COLUMNS],
                        data=[],
                        filter_action="custom",
                        filter_query="",
                        filter_options={"case": "insensitive"},
                        sort_action="custom",
                        sort_mode="multi",
                        sort_by=[],
                        page_action="custom",
                        page_current=0,
                        page_size=AUDIT_PAGE,
                        page_count=1,
                        style_header={**DARK, "fontWeight": "bold"},
                        style_filter=DARK,
                        style_cell={
                            **DARK,
                            "textAlign": "left",
                            "whiteSpace": "normal",
                            "height": "auto",
                            "fontSize": "0.85em",
                            "maxWidth": "28em",
                        },
                        style_table={"overflowX": "auto"},
                    ),
                ],
                className="panel",
            ),
        ]
    )


def register(app: dash.Dash, data: DashboardData) -> None:
    """The page's callbacks."""

    names = Names.of(data.site)
    tz = _tz(data)

    files = [data.data_dir / "audit" / "control.jsonl", data.data_dir / "audit" / "writes.jsonl",
             data.data_dir / "alarms" / "alarms.jsonl"]  # fmt: skip
    audit_memo: dict[tuple[tuple[int, int], ...], list[dict[str, Any]]] = {}
    audit_lock = threading.Lock()

    def audit_rows() -> list[dict[str, Any]]:
        """The audit table's rows, read again only when one of its files changed."""
        with audit_lock:
            key = tuple(_signature(f) for f in files)
            if key not in audit_memo:
                acks = [e for e in read_jsonl_tail(files[2], 500) if e.get("event") == "ack"]
                rows = audit_entries(data.data_dir, acks, limit=AUDIT_ROWS, names=names, tz=tz)
                for r in rows:
                    r["time"] = local_time(r["t"], tz)
                audit_memo.clear()
                audit_memo[key] = rows
            return audit_memo[key]

    log = DecisionLog(data.data_dir)
    said: dict[tuple[int, object], list[DecisionText]] = {}

    def recent(st: dict[str, Any] | None) -> list[DecisionText]:
        """The latest decisions in words, worded again only when a decision was added (every few minutes)."""
        recs = log.records()
        key = (len(recs), recs[-1].get("ts") if recs else None)
        if key not in said:
            limits = as_dict(st.get("limits")) if st is not None else {}
            said.clear()
            said[key] = describe_decisions(recs, names, tz, limits, count=RECENT_DECISIONS)
        return said[key]

    @app.callback(
        Output("ct-status", "children"),
        Output("ct-decisions", "children"),
        Output("ct-overrides", "children"),
        Output("ct-provenance", "children"),
        Input("ct-tick", "n_intervals"),
    )
    def live(_: int | None) -> tuple[Any, Any, Any, Any]:
        st = data.controller()
        rows = audit_rows()
        set_at: dict[str, float] = {}
        for r in reversed(rows):  # oldest first, so the newest setting of each point wins
            if r.get("action") == "override set":
                set_at[str(r.get("target", "")).replace(" · ", "|")] = float(r["t"])
        prov = (
            html.Div("No controller running.", className="muted")
            if st is None
            else table(provenance_rows(st, tz), ["item", "value"], ident="ct-provenance-table")
        )
        return status_panel(st, tz), decisions_panel(recent(st)), overrides_panel(data, can_act(), set_at, names), prov

    @app.callback(
        Output("ct-timeline", "figure"),
        Output("ct-savings", "figure"),
        Output("ct-saving-totals", "children"),
        Input("ct-device", "value"),
        Input("ct-range", "value"),
        Input("ct-slow", "n_intervals"),
    )
    def charts(device: object, rng: object, _: int | None) -> tuple[go.Figure, go.Figure, Any]:
        rng_s = rng if isinstance(rng, str) and rng in RANGES else "6h"
        end = data.now()
        start = end - pd.Timedelta(rng_s)
        devs = {d.name: d for d in controlled_devices(data.site)}
        dev = devs.get(device) if isinstance(device, str) else None
        if dev is None:
            tl = empty_figure("choose a controlled device")
        else:
            tl = timeline_figure(data.historian, dev, panels(dev), start, end, WINDOW_FOR.get(rng_s, "1m"), tz)
        recs = [r for r in log.records() if (t := to_utc(r.get("ts"))) is not None and t >= start]
        power = data.power_trend(rng_s)
        facility = power["facility"] if "facility" in power else pd.Series(dtype="float64")
        frame = savings_frame(recs, facility)
        return tl, savings_figure(frame, tz), saving_totals_panel(frame)

    @app.callback(
        Output("audit-table", "data"),
        Output("audit-table", "page_count"),
        Input("ct-tick", "n_intervals"),
        Input("audit-table", "page_current"),
        Input("audit-table", "page_size"),
        Input("audit-table", "filter_query"),
        Input("audit-table", "sort_by"),
    )
    def audit(_: int | None, current: object, size: object, query: object, sort_by: object) -> tuple[Any, int]:
        rows = audit_rows()
        sort = [s for s in sort_by if isinstance(s, dict)] if isinstance(sort_by, list) else []
        picked = query_rows(rows, query if isinstance(query, str) else "", sort, {"time": "t"})
        n = size if isinstance(size, int) and 1 <= size <= 200 else AUDIT_PAGE
        shown, count = page(picked, current if isinstance(current, int) else 0, n)
        return [{cid: r.get(cid, "") for cid, _label in AUDIT_COLUMNS} for r in shown], count

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


def _signature(path: Path) -> tuple[int, int]:
    """Size and modification time of a file ((0, 0) if absent): whether it changed since it was last read."""
    try:
        st = path.stat()
    except OSError:
        return (0, 0)
    return (st.st_size, st.st_mtime_ns)
