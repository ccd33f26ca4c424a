"""Alarm history: active and past alarms of the one alarm engine, filtered, with acknowledgement for operators.

The engine (:mod:`analytics.alarms.engine`) keeps the active alarms and the last cleared ones and appends every
raise, clear and acknowledgement to ``<data_dir>/alarms/alarms.jsonl`` (replayed at start), so who acknowledged
what and when survives a restart and shows in the Control page's audit log. Cleared alarms that were never
acknowledged can be acknowledged too (ISA-18.2's "returned to normal, unacknowledged"). This page only reads the
engine and calls :meth:`~analytics.alarms.engine.AlarmEngine.acknowledge`, after checking the operator role on the
server.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import dash
from dash import ALL, Input, Output, State, dcc, html

from analytics.alarms.engine import HISTORY_KEPT, SEVERITY_ORDER, Alarm, AlarmEngine
from dashboards.data import DashboardData
from dashboards.fmt import site_time
from dashboards.web import can_act, current_user

REFRESH_MS = 5000
MAX_ROWS = 200
PREDICTIVE = "predictive"
RANGES_S = {"1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400, "all": None}
STATES = ("active", "unacknowledged", "acknowledged", "cleared")


@dataclass(frozen=True, slots=True)
class AlarmFilter:
    """What the operator asked to see (an empty selection means all)."""

    severities: tuple[str, ...] = ()
    subjects: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()  # rule names, or "predictive" for every fault-prediction rule
    states: tuple[str, ...] = ()
    range_s: float | None = None  # alarms active at some time in the last range_s seconds; None: all kept

    @classmethod
    def of(cls, severities: object, subjects: object, kinds: object, states: object, rng: object) -> AlarmFilter:
        """From the page's controls (anything not a list of strings counts as no selection)."""
        return cls(
            _strings(severities),
            _strings(subjects),
            _strings(kinds),
            _strings(states),
            RANGES_S.get(str(rng), RANGES_S["24h"]),
        )


def _strings(v: object) -> tuple[str, ...]:
    return tuple(x for x in v if isinstance(x, str)) if isinstance(v, list) else ()


def _state_of(a: Alarm) -> set[str]:
    out = {"active" if a.active else "cleared"}
    out.add("acknowledged" if a.acked_by else "unacknowledged")
    return out


def kind_of(engine: AlarmEngine, a: Alarm) -> str:
    """``predictive`` for an alarm of an external (fault-prediction) rule, else the rule's name."""
    rule = engine.rules.get(a.rule)
    return PREDICTIVE if rule is not None and rule.external else a.rule


def select(engine: AlarmEngine, now_ns: int, f: AlarmFilter) -> list[Alarm]:
    """Alarms matching the filter: active first (most severe, newest), then cleared ones, newest first."""
    start = 0 if f.range_s is None else now_ns - int(f.range_s * 1e9)
    active = engine.active()
    cleared = [a for a in engine.history(HISTORY_KEPT) if a.cleared_ns is None or a.cleared_ns >= start]
    out = []
    for a in [*active, *cleared]:
        if f.severities and a.severity not in f.severities:
            continue
        if f.subjects and a.subject not in f.subjects:
            continue
        if f.kinds and a.rule not in f.kinds and kind_of(engine, a) not in f.kinds:
            continue
        if f.states and not (_state_of(a) & set(f.states)):
            continue
        out.append(a)
    return out


def summary(engine: AlarmEngine) -> str:
    """``3 active (1 critical, 2 major), 2 unacknowledged`` for the page's headline."""
    active = engine.active()
    by: dict[str, int] = {}
    for a in active:
        by[a.severity] = by.get(a.severity, 0) + 1
    parts = ", ".join(f"{n} {s}" for s, n in sorted(by.items(), key=lambda kv: SEVERITY_ORDER.get(kv[0], 9)))
    unacked = sum(1 for a in active if not a.acked_by)
    return f"{len(active)} active" + (f" ({parts})" if parts else "") + f", {unacked} unacknowledged"


def rows(engine: AlarmEngine, alarms: Sequence[Alarm], tz: str, *, ack: bool) -> html.Div:
    """The alarm table: severity, kind, subject, message, raised, cleared, acknowledgement (a button if due)."""
    if not alarms:
        return html.Div("No alarm matches these filters.", className="muted", id="al-none")
    body = []
    for a in alarms[:MAX_ROWS]:
        if a.acked_by:
            acked: Any = f"{a.acked_by}, {site_time(a.acked_ns, tz, '%m-%d %H:%M:%S')}"
        else:  # cleared ones too: an alarm back to normal unacknowledged still awaits acknowledgement
            acked = html.Button(
                "Acknowledge" if a.active else "Acknowledge (cleared)",
                id={"type": "al-ack", "alarm": a.id, "raised": a.raised_ns},
                disabled=not ack,
                title="" if ack else "operator sign-in needed",
            )
        body.append(
            html.Tr(
                [
                    html.Td(a.severity, className=f"sev-{a.severity}"),
                    html.Td(kind_of(engine, a)),
                    html.Td(a.subject),
                    html.Td(a.message, className="alarm-msg"),
                    html.Td(site_time(a.raised_ns, tz, "%m-%d %H:%M:%S")),
                    html.Td("active" if a.active else site_time(a.cleared_ns, tz, "%m-%d %H:%M:%S")),
                    html.Td(acked),
                ]
            )
        )
    head = html.Tr(
        [html.Th(h) for h in ("severity", "kind", "subject", "message", "raised", "cleared", "acknowledged")]
    )
    more = len(alarms) - MAX_ROWS
    note = html.Div(f"... and {more} more: narrow the filters", className="muted") if more > 0 else None
    return html.Div([html.Table([html.Thead(head), html.Tbody(body)], className="simple", id="al-table"), note])


def _options(values: Iterable[str]) -> list[dict[str, str]]:
    return [{"label": v, "value": v} for v in sorted(set(values))]


def layout(data: DashboardData) -> html.Div:
    """Filters, the headline counts and the table (filled by the callback)."""
    engine = data.alarms
    kept = [*engine.active(), *engine.history(HISTORY_KEPT)]
    kinds = [PREDICTIVE, *(r.name for r in engine.rules.values())]

    def multi(ident: str, label: str, options: list[dict[str, str]]) -> html.Div:
        return html.Div(
            [html.Label(label), dcc.Dropdown(options, [], id=ident, multi=True, placeholder="all")],
            style={"minWidth": "12em", "flex": "1"},
        )

    tz = data.site.config.site.timezone
    return html.Div(
        [
            dcc.Interval(id="al-tick", interval=REFRESH_MS),
            html.Div(summary(engine), id="al-summary", className="panel"),
            html.Div(
                [
                    multi("al-severity", "severity", _options(SEVERITY_ORDER)),
                    multi("al-subject", "device / rack", _options(a.subject for a in kept)),
                    multi("al-kind", "kind", _options(kinds)),
                    multi("al-state", "state", [{"label": s, "value": s} for s in STATES]),
                    html.Div(
                        [
                            html.Label("active within"),
                            dcc.RadioItems(
                                [{"label": k, "value": k} for k in RANGES_S],
                                "24h",
                                id="al-range",
                                inline=True,
                                inputStyle={"marginLeft": ".6em"},
                            ),
                        ]
                    ),
                ],
                className="panel",
                style={"display": "flex", "gap": "1em", "flexWrap": "wrap"},
            ),
            html.Div(id="al-ack-msg", className="msg"),
            html.Div(
                [
                    html.H3(f"Alarms (times in {tz}; the last {HISTORY_KEPT:,} cleared alarms are kept)"),
                    html.Div(id="al-rows"),
                ],
                className="panel",
            ),
        ]
    )


def acknowledge(engine: AlarmEngine, alarm_id: object, raised_ns: object, now_ns: int) -> str:
    """Acknowledge for the signed-in operator (role checked here, on the server); the message to show."""
    who = current_user()
    if who is None or not can_act():
        return "Acknowledging needs an operator sign-in."
    # A forged id: only the page's own buttons name an alarm and when it was raised.
    if not isinstance(alarm_id, str) or not isinstance(raised_ns, int) or isinstance(raised_ns, bool):
        return "No such alarm."
    try:
        alarm = engine.acknowledge(alarm_id, who[0], now_ns, raised_ns=raised_ns)
    except Exception as exc:  # an alarm that cleared meanwhile is reported, not raised
        return str(exc)
    return f"{alarm.id} acknowledged by {alarm.acked_by}"


def register(app: dash.Dash, data: DashboardData) -> None:
    """The page's callbacks."""
    tz = data.site.config.site.timezone

    @app.callback(
        Output("al-rows", "children"),
        Output("al-summary", "children"),
        Input("al-tick", "n_intervals"),
        Input("al-severity", "value"),
        Input("al-subject", "value"),
        Input("al-kind", "value"),
        Input("al-state", "value"),
        Input("al-range", "value"),
        Input("al-ack-msg", "children"),  # redraw at once after an acknowledgement
    )
    def table(
        _: object, sev: object, subj: object, kind: object, state: object, rng: object, _msg: object
    ) -> tuple[Any, str]:
        f = AlarmFilter.of(sev, subj, kind, state, rng)
        found = select(data.alarms, data.clock.now_ns(), f)
        return rows(data.alarms, found, tz, ack=can_act()), summary(data.alarms)

    @app.callback(
        Output("al-ack-msg", "children"),
        Input({"type": "al-ack", "alarm": ALL, "raised": ALL}, "n_clicks"),
        State({"type": "al-ack", "alarm": ALL, "raised": ALL}, "id"),
        prevent_initial_call=True,
    )
    def ack(clicks: object, _ids: object) -> Any:
        trig = dash.ctx.triggered_id
        if not isinstance(trig, dict) or not isinstance(clicks, list) or not any(clicks):
            return dash.no_update
        return acknowledge(data.alarms, trig.get("alarm"), trig.get("raised"), data.clock.now_ns())
