"""Cooling: every CDU and the plant live, setpoint against actual over time, the controller's decisions."""

from __future__ import annotations

from typing import Any

import dash
import pandas as pd
import plotly.graph_objects as go
from dash import Input, Output, dcc, html
from plotly.subplots import make_subplots

from dashboards.components import (
    LIVE_MS,
    TREND_MS,
    chart,
    empty_figure,
    fit_y,
    mark_times,
    pick_range,
    range_caption,
    register_csv,
    register_trend_controls,
    site_tz,
    style,
    table,
    time_axes,
    time_trace,
    trend_controls,
    trend_inputs,
)
from dashboards.data import DashboardData
from dashboards.fmt import FREE_COOLING_STATES as FREE_COOLING
from dashboards.free_cooling import explain
from dashboards.supervisor import read_jsonl_tail
from dashboards.trend_range import TrendRange

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
    "heat_load_kw",
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
                    html.H3("CDUs (live)"),
                    html.Div(_live(data)[0], id="co-cdus"),
                ],
                className="panel",
            ),
            html.Div([html.H3("Plant (live)"), html.Div(_live(data)[1], id="co-plant")], className="panel"),
            html.Div(
                [
                    html.H3("Supply temperatures against setpoints (setpoint changes marked)"),
                    trend_controls("co"),
                    chart("co-trend"),
                ],
                className="panel",
            ),
            html.Div(
                [
                    html.H3("Controller decisions: predicted and realised savings"),
                    chart("co-decisions"),
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
    heat = [r["heat_load_kw"] for r in cdus if isinstance(r.get("heat_load_kw"), float)]
    plant = data.plant()
    kind = data.site.config.plant.type if plant is not None else ""
    why = [
        html.Div(
            [html.Strong(f"{r['device']}: {e.mode}"), html.Span(f" — {e.reason}")],
            className="free-cooling",
            id="co-free-cooling",
        )
        for r in plants
        for e in [explain(r, liquid_kw=sum(heat) if heat else None, plant_type=kind)]
    ]
    return table(cdus, CDU_COLS, ident="cdu-table"), html.Div([table(plants, PLANT_COLS, ident="plant-table"), *why])


def _trend(data: DashboardData, rng: TrendRange) -> go.Figure:
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
    tz = site_tz(data)
    for sid, label, kind in ids:
        s = df[df["series"] == sid]
        if s.empty:
            continue
        dash_style = "dot" if label.endswith("setpoint") else "solid"
        time_trace(
            fig,
            s["ts"],
            s["value"],
            name=label,
            unit="°C",
            tz=tz,
            line={"dash": dash_style},
            row=1 if kind == "cdu" else 2,
            col=1,
        )
    style(fig, height=520, x_title="")
    fig.update_yaxes(title_text="temperature (°C)", row=1, col=1)
    fig.update_yaxes(title_text="temperature (°C)", row=2, col=1)
    fit_y(fig, "°C", row=1, col=1)
    fit_y(fig, "°C", row=2, col=1)
    time_axes(fig, tz, bottom_row=2, span=rng)
    writes = [w for w in data.setpoint_writes(rng.start) if w["ts_ns"] <= rng.end.value]
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
        tz=tz,
    )
    return fig


def _decisions(data: DashboardData, rng: TrendRange | None = None) -> go.Figure:
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
    df["t"] = (
        pd.to_datetime(df[ts_col], unit="ns", utc=True)
        if ts_col == "ts_ns"
        else pd.to_datetime(df[ts_col], utc=True, format="ISO8601")
    )
    if rng is not None:
        df = df[(df["t"] >= rng.start) & (df["t"] <= rng.end)]
        if df.empty:
            return empty_figure("no controller decisions in this range", height=260)
    tz = site_tz(data)
    fig = go.Figure()
    for col, name in (("predicted_saving_kw", "predicted saving"), ("realised_saving_kw", "realised saving")):
        if col in df:
            y = pd.to_numeric(df[col], errors="coerce")
            time_trace(fig, df["t"], y, name=name, unit="kW", tz=tz, mode="lines+markers")
    style(fig, height=300, y_title="saving (kW)")
    fit_y(fig, "kW")
    time_axes(fig, tz, span=rng)
    return fig


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
        Output("co-caption", "children"),
        *trend_inputs("co"),
        Input("co-slow", "n_intervals"),
    )
    def trends(preset: str, dates: object, _: int | None) -> tuple[go.Figure, go.Figure, str]:
        rng = pick_range(preset, dates, now=data.now(), tz=site_tz(data))
        if isinstance(rng, str):
            return empty_figure(rng), empty_figure(rng, height=260), rng
        return _trend(data, rng), _decisions(data, rng), range_caption(rng, site_tz(data))

    register_trend_controls(app, "co")
    register_csv(app, "co-trend", site_tz(data))
    register_csv(app, "co-decisions", site_tz(data))
