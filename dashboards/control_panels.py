"""The Control page's text panels: the controller's status line, the latest decisions in words, the active
overrides (who set them, when, until when) and the saving totals; plain sentences and tables, never JSON."""

from __future__ import annotations

from typing import Any

import pandas as pd
from dash import html

from dashboards.control_data import totals
from dashboards.control_view import DecisionText, Names, as_dict
from dashboards.data import DashboardData
from dashboards.fmt import local_time, num


def status_panel(st: dict[str, Any] | None, tz: str) -> html.Div:
    """The controller's mode, state and counters in one line; the latest decision's time."""
    if st is None:
        return html.Div("No controller running.", className="muted")
    counts, last = as_dict(st.get("counts")), as_dict(st.get("last_decision"))

    def c(key: str) -> str:
        return num(counts.get(key), digits=0)

    line = (
        f"Mode {st.get('mode', '?')} · state {st.get('state', '?')} · {c('decisions')} decisions, {c('holds')} holds, "
        f"{c('writes')} writes ({c('write_errors')} failed), {c('thermal_actions')} thermal-guard actions, "
        f"{c('feed_forwards')} load-step feed-forwards, {c('refused')} refused by the hard-limit check"
    )
    when = f"Last decision {local_time(last.get('ts'), tz)}." if last else "No decision yet."
    return html.Div([html.Div(line), html.Div(when, className="muted")])


def decisions_panel(texts: list[DecisionText]) -> html.Div:
    """The latest decisions as sentences."""
    if not texts:
        return html.Div("No decision recorded yet.", className="muted")
    items = [
        html.Li(
            [html.Span(f"{d.when} · {d.mode} · {d.state}", className="muted"), html.Br(), " ".join(d.sentences())],
            style={"marginBottom": ".4em"},
        )
        for d in texts
    ]
    return html.Div(html.Ul(items, id="ct-decision-list", style={"paddingLeft": "1.2em"}))


def overrides_panel(data: DashboardData, act: bool, set_at: dict[str, float], names: Names) -> html.Div:
    """Active overrides: the point, the value held, who set it and when, the expiry and a Clear button (operators)."""
    sup = data.supervisor
    if sup is None:
        return html.Div("No overrides (no controller running).", className="muted")
    rows = sup.overrides()
    if not rows:
        return html.Div("No active overrides.", className="muted")
    tz = data.site.config.site.timezone
    now_ns = data.clock.now_ns()
    head = html.Tr([html.Th(h) for h in ("device · point", "held at", "set by", "set at", "expires", "left", "")])
    body = []
    for o in rows:
        until_ns = o.get("until_ns")
        until_ns = until_ns if isinstance(until_ns, int) else 0
        dev, point = str(o.get("device")), str(o.get("point"))
        pn = names.point(dev, point)
        key = f"{dev}|{point}"
        body.append(
            html.Tr(
                [
                    html.Td(f"{pn.text} ({dev} · {point})"),
                    html.Td(num(o.get("value"), pn.unit)),
                    html.Td(str(o.get("user", ""))),
                    html.Td(local_time(set_at.get(key), tz, seconds=False) if key in set_at else "—"),
                    html.Td(local_time(until_ns, tz, seconds=False)),
                    html.Td(num(max(0.0, (until_ns - now_ns) / 60e9), "min")),
                    html.Td(html.Button("Clear", id={"type": "ct-clear", "key": key}, disabled=not act)),
                ]
            )
        )
    return html.Div(html.Table([html.Thead(head), html.Tbody(body)], className="simple", id="ct-override-table"))


def saving_totals_panel(frame: pd.DataFrame) -> html.Div:
    """Predicted and realised energy saved over the decisions shown."""
    if frame.empty:
        return html.Div("No predicted saving yet.", className="muted")
    t = totals(frame)
    text = f"Predicted over {t.intervals} decided intervals: {num(t.predicted_kwh, 'kWh')}."
    if t.measured:
        text += (
            f" Realised over the {t.measured} auto-mode intervals measured: {num(t.realised_kwh, 'kWh')} "
            f"against {num(t.predicted_same_kwh, 'kWh')} predicted for the same intervals."
        )
    else:
        text += " No realised figure: no auto-mode interval has been measured yet (advisory decisions are not written)."
    return html.Div(text, id="ct-saving-text")
