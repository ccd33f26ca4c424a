"""The Overview's PUE and facility-power forecast panel: the next 48 h with P10-P90 bands, next to the measured hours.

The forecast itself is kept by the live forecast service (:class:`analytics.forecast.service.ForecastService`, its
worker thread, its one refit policy); the page callback only draws its latest result.
"""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analytics.forecast.live import PueForecastState
from dashboards.components import empty_figure, footnote, style, time_axes, time_trace

BAND = {"facility_power_kw": "rgba(127,184,255,0.25)", "pue": "rgba(255,190,120,0.25)"}
LINE = {"facility_power_kw": "#7fb8ff", "pue": "#ffbe78"}


def pue_forecast_figure(st: PueForecastState, tz: str = "UTC") -> go.Figure:
    """Facility power (top) and PUE (bottom): measured, then the forecast's P50 inside its P10-P90 band."""
    if st.frame is None:
        return empty_figure(st.message)
    f = st.frame
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08)
    for row, (col, label) in enumerate((("facility_power_kw", "facility kW"), ("pue", "PUE")), start=1):
        x, unit = f.index, "kW" if col == "facility_power_kw" else ""
        time_trace(fig, x, f[f"{col}_p90"], name=f"{label} P90", unit=unit, tz=tz, line={"width": 0},
                   showlegend=False, hoverinfo="skip", row=row, col=1)  # fmt: skip
        time_trace(fig, x, f[f"{col}_p10"], name=f"{label} P10-P90", unit=unit, tz=tz, line={"width": 0},
                   fill="tonexty", fillcolor=BAND[col], row=row, col=1)  # fmt: skip
        time_trace(fig, x, f[f"{col}_p50"], name=f"{label} P50", unit=unit, tz=tz, line={"color": LINE[col]},
                   row=row, col=1)  # fmt: skip
        if st.history is not None and col in st.history:
            h = st.history[col]
            time_trace(fig, h.index, h.to_numpy(), name=f"{label} measured", unit=unit, tz=tz,
                       line={"color": "#c9d3df"}, row=row, col=1)  # fmt: skip
    fig = style(fig, height=480)
    fig.update_xaxes(title_text="", row=1, col=1)
    fig.update_yaxes(title_text="facility power (kW)", row=1, col=1)
    fig.update_yaxes(title_text="PUE (hourly energy ratio)", row=2, col=1)
    time_axes(fig, tz, bottom_row=2)
    footnote(fig, f"{st.message}; weather: {st.weather}", y=-0.2)
    return fig
