"""Cooling: every CDU and the plant live, setpoint against actual over time, the controller's decisions."""

from __future__ import annotations

from typing import Any

import dash
import pandas as pd
import plotly.graph_objects as go
from dash import Input, Output, dcc, html
from plotly.subplots import make_subplots

from dashboards.components import LIVE_MS, TREND_MS, empty_figure, mark_times, range_picker, style, table
from dashboards.data import DashboardData
from dashboards.supervisor import read_jsonl_tail

FREE_COOLING = {0: "off (chiller only)", 1: "partial", 2: "full free cooling"}
CDU_COLS = [
    "device",
    "tcs_supply_temp_c",
    "tcs_supply_temp_setpoint_c",
    "tcs_return_temp_c",
    "fws_supply_temp_c",
    "fws_return_temp_c",
    "flow_lpm",
    "dp_kpa",
    "dp_setpoint_kpa",
    "pump_speed_pct",
    "valve_pct",
    "pump_power_w",
]
PLANT_COLS = [
    "device",
    "fws_supply_temp_c",
    "fws_supply_temp_setpoint_c",
    "fws_return_temp_c",
    "fws_flow_lpm",
    "chiller_power_w",
    "chiller_cop",
    "heat_rejection_fan_power_w",
    "pump_power_w",
    "cooling_power_w",
    "outdoor_drybulb_c",
    "outdoor_wetbulb_c",
    "free_cooling",
]


def layout(data: DashboardData) -> html.Div:
    """CDU and plant tables, setpoint trends, controller decisions."""
    return html.Div(
        [
            dcc.Interval(id="co-tick", interval=LIVE_MS),
            dcc.Interval(id="co-slow", interval=TREND_MS),
            html.Div(
                [
                    html.H3("CDUs (live; temperatures °C, flow L/min, pressure kPa, pump and valve %, power W)"),
                    html.Div(_live(data)[0], id="co-cdus"),
                ],
                className="panel",
            ),
            html.Div([html.H3("Plant (live)"), html.Div(_live(data)[1], id="co-plant")], className="panel"),
            html.Div(
                [
                    html.H3("Supply temperatures against setpoints (setpoint changes marked)"),
                    range_picker("co-range"),
                    dcc.Graph(id="co-trend", config={"displaylogo": False}),
                ],
                className="panel",
            ),
            html.Div(
                [
                    html.H3("Controller decisions: predicted and realised savings"),
                    dcc.Graph(id="co-decisions", config={"displaylogo": False}),
                ],
                className="panel",
            ),
        ]
    )


def _cdu_rows(data: DashboardData) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rows = data.cooling_table()
    plant = data.plant()
    cdus = [r for r in rows if plant is None or r["device"] != plant.name]
    plants = [r for r in rows if plant is not None and r["device"] == plant.name]
    for r in plants:
        state = r.get("free_cooling_state")
        r["free_cooling"] = "—" if state is None else FREE_COOLING.get(int(state), f"state {state:g}")
    return cdus, plants


def _live(data: DashboardData) -> tuple[Any, Any]:
    cdus, plants = _cdu_rows(data)
    return table(cdus, CDU_COLS, ident="cdu-table"), table(plants, PLANT_COLS, ident="plant-table")


def _trend(data: DashboardData, rng: str) -> go.Figure:
    ids: list[tuple[str, str, str]] = []  # (series, label, kind)
    from aidc.model import SeriesKey  # local: only this panel needs series ids

    for dev in data.cdus():
        for point, kind in (("tcs_supply_temp_c", "actual"), ("tcs_supply_temp_setpoint_c", "setpoint")):
            ids.append((SeriesKey.of(dev.profile.measurement, point, dev.tags).id, f"{dev.name} {kind}", "cdu"))
    plant = data.plant()
    if plant is not None:
        for point, kind in (("fws_supply_temp_c", "actual"), ("fws_supply_temp_setpoint_c", "setpoint")):
            ids.append((SeriesKey.of(plant.profile.measurement, point, plant.tags).id, f"{plant.name} {kind}", "plant"))
    df = data.series_trend([s for s, _, _ in ids], rng)
    if df.empty or df["value"].isna().all():
        return empty_figure("no stored cooling readings in this range yet")
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.1,
        subplot_titles=("CDU TCS supply (°C)", "plant FWS supply (°C)"),
    )
    for sid, label, kind in ids:
        s = df[df["series"] == sid]
        if s.empty:
            continue
        dash_style = "dot" if label.endswith("setpoint") else "solid"
        fig.add_scatter(
            x=s["ts"],
            y=s["value"],
            name=label,
            mode="lines",
            line={"dash": dash_style},
            row=1 if kind == "cdu" else 2,
            col=1,
        )
    style(fig, height=520, x_title="")
    fig.update_yaxes(title_text="temperature (°C)", row=1, col=1)
    fig.update_yaxes(title_text="temperature (°C)", row=2, col=1)
    fig.update_xaxes(title_text="time (UTC)", row=2, col=1)
    start = data.now() - pd.Timedelta(rng)
    writes = data.setpoint_writes(start)
    mark_times(
        fig,
        [
            (
                pd.Timestamp(int(w["ts_ns"]), unit="ns", tz="UTC"),
                f"{w.get('device', '')} {w.get('point', '')} → {w.get('value', '')}",
            )
            for w in writes
        ],
        color="#ffd166",
    )
    return fig


def _decisions(data: DashboardData) -> go.Figure:
    rows = [
        e
        for e in read_jsonl_tail(data.data_dir / "audit" / "control.jsonl", 2000)
        if "predicted_saving_kw" in e or "realised_saving_kw" in e
    ]
    if not rows:
        msg = "no controller is running" if data.supervisor is None else "no controller decisions recorded yet"
        return empty_figure(msg, height=260)
    df = pd.DataFrame(rows)
    ts_col = "ts_ns" if "ts_ns" in df else "ts"
    df["t"] = pd.to_datetime(df[ts_col], unit="ns", utc=True) if ts_col == "ts_ns" else pd.to_datetime(df[ts_col])
    fig = go.Figure()
    for col, name in (("predicted_saving_kw", "predicted saving"), ("realised_saving_kw", "realised saving")):
        if col in df:
            fig.add_scatter(x=df["t"], y=pd.to_numeric(df[col], errors="coerce"), name=name, mode="lines+markers")
    return style(fig, height=300, y_title="saving (kW)")


def register(app: dash.Dash, data: DashboardData) -> None:
    """The page's callbacks."""

    @app.callback(
        Output("co-cdus", "children"),
        Output("co-plant", "children"),
        Input("co-tick", "n_intervals"),
        prevent_initial_call=True,
    )
    def live(_: int | None) -> tuple[Any, Any]:
        return _live(data)

    @app.callback(
        Output("co-trend", "figure"),
        Output("co-decisions", "figure"),
        Input("co-range", "value"),
        Input("co-slow", "n_intervals"),
    )
    def trends(rng: str, _: int | None) -> tuple[go.Figure, go.Figure]:
        return _trend(data, rng or "1h"), _decisions(data)
