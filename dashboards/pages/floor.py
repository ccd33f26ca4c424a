"""Hall floor map (one heatmap for every rack, fast at 1,000 racks) and the rack detail page."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import dash
import numpy as np
import pandas as pd
import plotly.graph_objects as go
from dash import Input, Output, State, dcc, html
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
from dashboards.data import FLOOR_METRICS, DashboardData
from dashboards.fmt import point_kinds, point_value
from dashboards.trend_range import TrendRange

# Colour scales read the same way on every metric: red is bad.
REVERSED = {"thermal_margin", "power_headroom", "data_quality"}
NEUTRAL = {"power", "coolant_dt"}


def layout(data: DashboardData) -> html.Div:
    """Metric choice and the map."""
    return html.Div(
        [
            dcc.Interval(id="fl-tick", interval=LIVE_MS),
            html.Div(
                [
                    html.Span("Colour racks by ", className="muted"),
                    dcc.RadioItems(
                        id="fl-metric",
                        value="power",
                        inline=True,
                        options=[{"label": f"{lbl} ({u})", "value": k} for k, (lbl, u) in FLOOR_METRICS.items()],
                        inputStyle={"marginRight": "0.3em", "marginLeft": "0.8em"},
                        labelStyle={"color": "#c9d3df"},
                    ),
                ],
                className="panel",
            ),
            html.Div(
                [
                    html.H3(f"Hall floor: {len(data.racks)} racks (click a rack for its detail)"),
                    chart("fl-map", figure=floor_figure(data, "power")),
                ],
                className="panel",
            ),
        ]
    )


def floor_figure(data: DashboardData, metric: str) -> go.Figure:
    """Racks as cells: x = row, y = position in the row (one heatmap per site, halls side by side)."""
    df = data.floor(metric)
    if df.empty:
        return empty_figure("no racks in this site")
    label, unit = FLOOR_METRICS[metric]
    df["col"] = df["hall"] + " " + df["row"]
    cols = list(dict.fromkeys(df["col"]))
    depth = int(df["position"].max()) + 1
    z = np.full((depth, len(cols)), np.nan)
    names = np.full((depth, len(cols)), "", dtype=object)
    ci = {c: i for i, c in enumerate(cols)}
    xi = df["col"].map(ci).to_numpy()
    yi = df["position"].to_numpy()
    z[yi, xi] = df["value"].to_numpy()
    names[yi, xi] = df["rack"].to_numpy()
    # Health metrics read red-is-bad; load metrics (power, ΔT) use a neutral sequential scale: high is not wrong.
    scale = "Viridis" if metric in NEUTRAL else "RdYlGn" if metric in REVERSED else "RdYlGn_r"
    zmin, zmax = _scale_range(data, metric)
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=cols,
            y=[f"{p + 1:02d}" for p in range(depth)],
            customdata=names,
            meta={"unit": unit},
            colorscale=scale,
            zmin=zmin,
            zmax=zmax,
            colorbar={"title": {"text": unit}},
            xgap=2,
            ygap=2,
            hovertemplate="%{customdata}<br>" + label + ": %{z:.1f} " + unit + "<extra></extra>",
        )
    )
    if len(df) <= 200:  # labels stay readable up to a few hundred cells; beyond that the hover says it
        text = np.where(np.isnan(z), "", np.vectorize(lambda v: f"{v:.0f}")(np.nan_to_num(z)))
        fig.data[0].update(text=text, texttemplate="%{text}", textfont={"size": 10})
    height = max(260, min(900, 60 + 34 * depth))
    style(fig, height=height, x_title="row", y_title="position in row")
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(type="category", tickangle=-45 if len(cols) > 20 else 0)
    fig.update_layout(title={"text": f"{label} ({unit})", "font": {"size": 13}})
    return fig


def _scale_range(data: DashboardData, metric: str) -> tuple[float, float]:
    """Fixed colour ranges, so a colour means the same on every refresh (not just 'highest of the moment')."""
    rated = max((r.rated_kw for r in data.racks.values()), default=100.0)
    limit = data.gpu_limit_c
    return {
        "power": (0.0, rated),
        "power_headroom": (0.0, rated),
        "hottest_gpu": (limit - 40.0, limit + 5.0),
        "thermal_margin": (0.0, 30.0),
        "coolant_dt": (0.0, 15.0),
        "data_quality": (50.0, 100.0),
    }.get(metric, (0.0, 100.0))


def rack_layout(data: DashboardData, rack: str) -> html.Div:
    """Detail of one rack: per-GPU bars, PDU and rack controller points, its CDU, trends."""
    if rack not in data.racks:
        return html.Div(f"No rack named {rack!r} in this site.", className="msg")
    r = data.racks[rack]
    return html.Div(
        [
            dcc.Interval(id="rk-tick", interval=LIVE_MS),
            dcc.Interval(id="rk-slow", interval=TREND_MS),
            dcc.Store(id="rk-name", data=rack),
            html.Div(
                [
                    dcc.Link("← floor map", href="/floor"),
                    html.H2(f"Rack {rack}", style={"margin": ".3em 0"}),
                    html.Div(
                        f"hall {r.hall} · row {r.row} · {r.gpus} GPUs · rated {r.rated_kw:g} kW · "
                        f"CDU {r.cdu or 'none'}",
                        className="muted",
                    ),
                ],
                className="panel",
            ),
            html.Div(
                [
                    html.H3("GPUs (live)"),
                    chart("rk-gpus", figure=_gpu_figure(data, rack)),
                ],
                className="panel",
            ),
            html.Div(
                [
                    html.Div(
                        [html.H3("Rack controller and PDU"), html.Div(_points(data, r.devices), id="rk-points")],
                        className="panel",
                    ),
                    html.Div(
                        [html.H3(f"CDU {r.cdu or ''}"), html.Div(_points(data, [r.cdu] if r.cdu else []), id="rk-cdu")],
                        className="panel",
                    ),
                ],
                className="grid2",
            ),
            html.Div(
                [
                    html.H3("Trends (alarms of this rack marked)"),
                    trend_controls("rk"),
                    chart("rk-trend"),
                ],
                className="panel",
            ),
        ]
    )


def _gpu_figure(data: DashboardData, rack: str) -> go.Figure:
    g = data.rack_gpus(rack)
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.06)
    for col, name, unit, row, color, fmt in (
        ("power_w", "power", "W", 1, "#7fb8ff", ",.0f"),
        ("temp_c", "temperature", "°C", 2, "#ff9f43", ".1f"),
        ("util_pct", "utilisation", "%", 3, "#6bd49b", ".0f"),
    ):
        fig.add_bar(
            x=g["gpu"],
            y=g[col],
            name=name,
            row=row,
            col=1,
            marker_color=color,
            meta={"unit": unit},
            hovertemplate=f"GPU %{{x}}: %{{y:{fmt}}} {unit}<extra>{name}</extra>",
        )
    fig.add_hline(
        y=data.gpu_limit_c,
        line_dash="dot",
        line_color="#ff5c5c",
        row=2,
        col=1,
        annotation_text=f"alarm limit {data.gpu_limit_c:g} °C",
        annotation_font_size=10,
    )
    style(fig, height=520, x_title="")
    fig.update_yaxes(title_text="power (W)", row=1, col=1)
    fig.update_yaxes(title_text="temp (°C)", row=2, col=1)
    fig.update_yaxes(title_text="util (%)", range=[0, 100], row=3, col=1)
    fig.update_xaxes(title_text="GPU index", row=3, col=1)
    fig.update_layout(showlegend=False)
    return fig


def point_rows(data: DashboardData, device: str) -> list[dict[str, Any]]:
    """A device's scalar points for a table: value in its display unit (W -> kW) or its state in words."""
    kinds = point_kinds(data.site.device(device).profile.points)
    rows = []
    for row in _records(data.device_points(device)):
        v, kind = row.get("value"), kinds.get(str(row["point"]), "")
        value = None if v is None else float(v)
        unit = str(row.get("unit") or "")
        text, unit = point_value(str(row["point"]), value, unit, is_flag=kind == "flag", is_count=kind == "count")
        rows.append({**row, "value": text, "unit": unit})
    return rows


def _points(data: DashboardData, devices: tuple[str, ...] | list[str]) -> html.Div:
    parts = []
    for dev in devices:
        parts.append(
            html.Div(
                [
                    html.Div(dev, className="muted"),
                    table(point_rows(data, dev), ["point", "value", "unit", "quality"]),
                ]
            )
        )
    return html.Div(parts)


def _trend(data: DashboardData, rack: str, rng: TrendRange) -> go.Figure:
    r = data.racks[rack]
    tz = site_tz(data)
    ids = [s for s in (r.power, r.inlet, r.outlet) if s]
    df = data.series_trend(ids, rng) if ids else pd.DataFrame()
    hot = data.series_trend(list(r.gpu_temp), rng, agg="max") if r.gpu_temp else pd.DataFrame()
    if (df.empty or df["value"].isna().all()) and hot.empty:
        return empty_figure("no stored readings for this rack in this range yet")
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08)
    if not df.empty and r.power:
        p = df[df["series"] == r.power]
        time_trace(fig, p["ts"], p["value"] / 1000, name="rack power", unit="kW", tz=tz, row=1, col=1)
    for sid, name in ((r.inlet, "coolant inlet"), (r.outlet, "coolant outlet")):
        if sid and not df.empty:
            s = df[df["series"] == sid]
            time_trace(fig, s["ts"], s["value"], name=name, unit="°C", tz=tz, row=2, col=1)
    if not hot.empty:
        h = hot.groupby("ts")["value"].max()
        time_trace(fig, h.index, h.values, name="hottest GPU", unit="°C", tz=tz, row=2, col=1)
    style(fig, height=460, x_title="")
    fig.update_yaxes(title_text="power (kW)", row=1, col=1)
    fig.update_yaxes(title_text="temperature (°C)", row=2, col=1)
    fit_y(fig, "kW", row=1, col=1)
    fit_y(fig, "°C", row=2, col=1)
    time_axes(fig, tz, bottom_row=2, span=rng)
    marks = [
        (pd.Timestamp(a.raised_ns, unit="ns", tz="UTC"), a.rule)
        for a in [*data.alarms.active(), *data.alarms.history(200)]
        if a.subject in (rack, *r.devices) and rng.start.value <= a.raised_ns <= rng.end.value
    ]
    mark_times(fig, marks, color="#ff5c5c", tz=tz)
    return fig


def register(app: dash.Dash, data: DashboardData) -> None:
    """Callbacks of the floor map and the rack page."""

    @app.callback(
        Output("fl-map", "figure"),
        Input("fl-tick", "n_intervals"),
        Input("fl-metric", "value"),
        prevent_initial_call=True,
    )  # the layout carries the first figure
    def live_map(_: int | None, metric: str) -> go.Figure:
        return floor_figure(data, metric or "power")

    @app.callback(Output("url", "pathname"), Input("fl-map", "clickData"), prevent_initial_call=True)
    def open_rack(click: dict[str, Any] | None) -> Any:
        try:
            rack = str(click["points"][0]["customdata"]) if click else ""
        except (KeyError, IndexError, TypeError):
            rack = ""
        if rack not in data.racks:
            return dash.no_update
        return f"/rack/{quote(rack)}"

    @app.callback(
        Output("rk-gpus", "figure"),
        Output("rk-points", "children"),
        Output("rk-cdu", "children"),
        Input("rk-tick", "n_intervals"),
        State("rk-name", "data"),
        prevent_initial_call=True,
    )
    def live_rack(_: int | None, rack: str) -> tuple[Any, Any, Any]:
        r = data.racks[rack]
        return _gpu_figure(data, rack), _points(data, r.devices), _points(data, [r.cdu] if r.cdu else [])

    @app.callback(
        Output("rk-trend", "figure"),
        Output("rk-caption", "children"),
        *trend_inputs("rk"),
        Input("rk-slow", "n_intervals"),
        State("rk-name", "data"),
    )
    def rack_trend(preset: str, dates: object, _: int | None, rack: str) -> tuple[Any, str]:
        tz = site_tz(data)
        rng = pick_range(preset, dates, now=data.now(), tz=tz)
        if isinstance(rng, str):
            return empty_figure(rng), rng
        if not isinstance(rack, str) or rack not in data.racks:
            raise ValueError(f"rack: no rack named {str(rack)[:40]!r}")
        return _trend(data, rack, rng), range_caption(rng, tz)

    register_trend_controls(app, "rk")
    for ident in ("fl-map", "rk-gpus", "rk-trend"):
        register_csv(app, ident, site_tz(data))


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): v for k, v in row.items()} for row in df.to_dict("records")]
