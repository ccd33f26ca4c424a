"""The Overview's IT-load forecast panel, drawn from the live forecast service's latest state (never fitted here).

The forecasts themselves are kept by :class:`analytics.forecast.service.ForecastService`, one object the main job
hands to both the dashboard and the REST API (so both show the same figures); a dashboard started on its own builds
one with :func:`service_for`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from analytics.forecast.live_load import LoadForecastState
from analytics.forecast.service import ForecastService
from dashboards.components import empty_figure, footnote, style, time_axes, time_trace
from dashboards.data import DashboardData


def service_for(data: DashboardData, weather_file: Path | None = None) -> ForecastService:
    """The live forecast service over the dashboard's historian on the facility's clock (not started)."""
    return ForecastService.for_historian(data.historian, data.site, data.now, weather_file=weather_file)


def load_forecast_figure(st: LoadForecastState, tz: str = "UTC") -> go.Figure:
    """The measured IT load of the last day, then the forecast's P50 inside its P10-P90 band; or the reason for none."""
    if st.frame is None:
        return empty_figure(st.message)
    f = st.frame
    fig = go.Figure()
    kw: dict[str, Any] = {"unit": "kW", "tz": tz}
    time_trace(fig, f["ts"], f["p90"], name="P90", line={"width": 0}, showlegend=False, **kw)
    time_trace(
        fig,
        f["ts"],
        f["p10"],
        name="P10-P90",
        line={"width": 0},
        fill="tonexty",
        fillcolor="rgba(127,184,255,0.25)",
        **kw,
    )
    time_trace(fig, f["ts"], f["p50"], name="P50", mode="lines+markers", **kw)
    if st.history is not None:
        time_trace(fig, st.history.index, st.history.values, name="measured", line={"color": "#c9d3df"}, **kw)
    footnote(fig, st.message)
    style(fig, y_title="IT load (kW)")
    time_axes(fig, tz)
    return fig
