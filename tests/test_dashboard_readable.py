"""Readable pages (issue 23, items 4 and 5): site time, engineering units, states, axis spans, legends, the
free-cooling state in words, custom date ranges and CSV export of a chart's data."""

from __future__ import annotations

import csv
import io
import json
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import flask
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
import pytest
from dash import dcc

from aidc.clock import SteppedClock
from aidc.config import site_from_dict
from aidc.historian_config import HistorianConfig
from aidc.live import LiveState
from aidc.model import Batch, SeriesKey
from aidc.sitegen import SiteTemplate, render_site
from analytics.alarms.engine import AlarmEngine
from dashboards import fmt
from dashboards.components import style, time_axes, time_trace
from dashboards.data import DashboardData
from dashboards.export import figure_csv
from dashboards.free_cooling import explain
from dashboards.pages import cooling, floor, overview
from dashboards.trend_range import MAX_SPAN, MAX_WINDOWS, TrendRange, resolve
from historian import open_historian

TZ = "America/New_York"
NOW = pd.Timestamp("2026-12-07 15:00", tz="UTC")  # 10:00 EST


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (121437.52, "W", "121.4 kW"),  # rack and PDU power in kW, not W with decimals
        (4800.0, "W", "4.8 kW"),
        (31.2349, "°C", "31.2 °C"),
        (792.04, "L/min", "792 L/min"),
        (118.26, "kPa", "118.3 kPa"),
        (66.4, "%", "66 %"),
        (3.42, "%", "3.4 %"),
        (None, "°C", "—"),
        (-0.01, "°C", "0.0 °C"),
    ],
)
def test_quantities_read_in_engineering_units(value: float | None, unit: str, text: str) -> None:
    """A value is shown in the unit operators use, with that unit's decimals."""
    assert fmt.quantity(value, unit) == text


@pytest.mark.parametrize(
    ("name", "value", "is_flag", "shown"),
    [
        ("leak_detected", 0.0, True, ("dry", "")),
        ("leak_detected", 1.0, True, ("leak", "")),
        ("alarm_pump_fault", 1.0, True, ("alarm", "")),
        ("alarm_high_temp", 0.0, True, ("ok", "")),
        ("fallback_active", 0.0, True, ("remote", "")),
        ("some_relay", 1.0, True, ("on", "")),
        ("free_cooling_state", 1.0, False, ("partial free cooling", "")),
        ("alarm_word", 0.0, False, ("ok", "")),
        ("alarm_word", 6.0, False, ("leak, pump fault", "")),
        ("active_power_w", 12345.6, False, ("12.3", "kW")),
    ],
)
def test_states_read_as_words_not_numbers(name: str, value: float, is_flag: bool, shown: tuple[str, str]) -> None:
    """Flags and state points read as words (never ``0.00``); power points convert to kW."""
    assert fmt.point_value(name, value, "W" if name.endswith("_w") else "", is_flag=is_flag) == shown


def test_table_headers_and_cells_follow_the_displayed_unit() -> None:
    """A ``_w`` column is headed and written in kW; the free-cooling column reads its state."""
    assert fmt.column_header("pump_power_w") == "pump power (kW)"
    assert fmt.cell("pump_power_w", 4800.0) == "4.8"
    assert fmt.cell("flow_lpm", 792.0) == "792"
    assert fmt.cell("free_cooling_state", 2.0) == "full free cooling"


def test_site_times_convert_round_and_keep_utc_for_hover() -> None:
    """UTC instants become site wall-clock time (EST in winter, EDT in summer), rounded to the second."""
    ts = pd.to_datetime(["2026-12-07 01:46:59.9995", "2026-07-01 12:00:00.0"], utc=True)
    local = fmt.site_times(ts, TZ)
    assert [str(t) for t in local] == ["2026-12-06 20:47:00", "2026-07-01 08:00:00"]
    assert fmt.utc_labels(ts) == ["2026-12-07 01:47:00", "2026-07-01 12:00:00"]


@pytest.mark.parametrize(
    ("values", "unit", "min_span"),
    [
        ([29.96, 30.04, 30.0], "°C", 2.0),  # sensor noise on a held setpoint: not a swing
        ([120.0, 121.0], "kW", 0.05 * 121.0),
        ([790.0, 794.0], "L/min", 0.05 * 794.0),
        ([20.0, 60.0], "°C", 40.0),  # a real change keeps its own span
    ],
)
def test_axis_range_has_a_minimum_span_per_unit(values: list[float], unit: str, min_span: float) -> None:
    """The y range covers the data and is at least the unit's minimum span wide."""
    rng = fmt.axis_range(values, unit)
    assert rng is not None
    lo, hi = rng
    assert hi - lo >= min_span
    assert lo <= min(values)
    assert hi >= max(values)
    assert fmt.axis_range([float("nan")], unit) is None


def test_custom_range_is_site_days_bounded_and_windowed() -> None:
    """A custom range runs from site midnight to site midnight (or now), is cut to MAX_SPAN, and stays under
    MAX_WINDOWS windows per series; a preset ends now."""
    r = resolve("custom", "2026-12-01", "2026-12-02", now=NOW, tz=TZ)
    assert r.start == pd.Timestamp("2026-12-01 05:00", tz="UTC")  # 00:00 EST
    assert r.end == pd.Timestamp("2026-12-03 05:00", tz="UTC")
    assert (r.end - r.start) / pd.Timedelta(r.window) <= MAX_WINDOWS
    long = resolve("custom", "2025-01-01", "2026-12-31", now=NOW, tz=TZ)
    assert long.end == NOW  # never past the facility's clock
    assert long.end - long.start == MAX_SPAN
    assert "cut" in long.note
    assert (long.end - long.start) / pd.Timedelta(long.window) <= MAX_WINDOWS
    swapped = resolve("custom", "2026-12-02", "2026-12-01", now=NOW, tz=TZ)
    assert swapped.start == r.start
    preset = resolve("6h", None, None, now=NOW, tz=TZ)
    assert (preset.start, preset.end, preset.window) == (NOW - pd.Timedelta("6h"), NOW, "5m")


@pytest.mark.parametrize(
    ("preset", "start", "end", "message"),
    [
        ({"forged": True}, None, None, "range:"),
        ("custom", "yesterday", "2026-12-01", "start date"),
        ("custom", "2026-12-01", ["x"], "end date"),
        ("custom", "2027-01-01", "2027-01-02", "after the facility's clock"),
    ],
)
def test_bad_range_values_are_one_line(preset: Any, start: Any, end: Any, message: str) -> None:
    """A value no control sends is refused with one line naming it (the callback guard answers 400)."""
    with pytest.raises(ValueError, match=message) as err:
        resolve(preset, start, end, now=NOW, tz=TZ)
    assert "\n" not in str(err.value)


def test_chart_csv_has_utc_site_time_series_value_unit() -> None:
    """A chart's export lists each point with its UTC and site time, series, value and unit."""
    fig = go.Figure()
    ts = pd.to_datetime(["2026-12-07 14:00", "2026-12-07 14:01"], utc=True)
    time_trace(fig, ts, np.array([121.5, 122.25]), name="rack power", unit="kW", tz=TZ)
    style(fig, y_title="power (kW)")
    time_axes(fig, TZ)
    browser_copy = json.loads(pio.to_json(fig))  # what dcc.Graph hands back (numpy arrays base64-encoded)
    rows = list(csv.DictReader(io.StringIO(figure_csv(browser_copy, TZ))))
    assert rows == [
        {"time_utc": "2026-12-07 14:00:00", f"time_site ({TZ})": "2026-12-07 09:00:00", "series": "rack power",
         "value": "121.5", "unit": "kW"},
        {"time_utc": "2026-12-07 14:01:00", f"time_site ({TZ})": "2026-12-07 09:01:00", "series": "rack power",
         "value": "122.25", "unit": "kW"},
    ]  # fmt: skip


def test_legend_sits_below_the_plot_and_grows_the_margin() -> None:
    """A many-series legend is a horizontal strip under the plot (container coordinates) with room reserved."""
    fig = go.Figure()
    for i in range(12):
        fig.add_scatter(x=[0, 1], y=[i, i], name=f"series {i}")
    style(fig, height=320)
    legend = fig.layout.legend
    assert (legend.orientation, legend.yref, legend.yanchor, legend.y) == ("h", "container", "bottom", 0.0)
    assert fig.layout.margin.b >= 45 + 3 * 22  # three lines of five entries below the axis title
    assert fig.layout.height == 320 + 3 * 22


@pytest.mark.parametrize(
    ("row", "words"),
    [
        ({"free_cooling_state": 2, "chiller_power_w": 15000.0, "chiller_cop": 5.0, "heat_load_w": 1.0e6},
         ["full free cooling", "chiller trims the air side", "75 kW of heat", "15.0 kW electric", "92 %"]),
        ({"free_cooling_state": 2, "chiller_power_w": 0.0, "chiller_cop": 0.0, "heat_load_w": 1.0e6},
         ["full free cooling", "carries all 1,000 kW", "chiller is off"]),
        ({"free_cooling_state": 1, "chiller_power_w": 44000.0, "chiller_cop": 5.0, "heat_load_w": 1.0e6,
          "outdoor_drybulb_c": 24.0, "fws_supply_temp_setpoint_c": 24.0},
         ["partial free cooling", "covers 78 %", "trims 220 kW", "24.0 °C outdoors"]),
        ({"free_cooling_state": 0, "chiller_power_w": 200000.0, "chiller_cop": 5.0, "heat_load_w": 1.0e6},
         ["mechanical", "chiller carries 1,000 kW"]),
        ({}, ["no plant readings"]),
    ],
)  # fmt: skip
def test_free_cooling_state_is_explained(row: dict[str, float], words: list[str]) -> None:
    """The plant's mode comes with its reason: what the free cooler covers and what the chiller trims."""
    e = explain(row, plant_type="chiller_drycooler")
    text = f"{e.mode}: {e.reason}"
    for w in words:
        assert w in text, text


# ------------------------------------------------------------------------------------------- pages


@pytest.fixture
def data(tmp_path: Path) -> Iterator[DashboardData]:
    """A two-rack site in America/New_York, its clock at NOW, with one CDU's supply noisy around 30 °C for 3 days."""
    doc = tomllib.loads(render_site(SiteTemplate(racks=2, data_dir=str(tmp_path))))
    doc["site"]["timezone"] = TZ
    site = site_from_dict(doc)
    with open_historian(HistorianConfig(), tmp_path) as hist:
        d = DashboardData(site, LiveState(), hist, SteppedClock(NOW.value), AlarmEngine.from_site(site))
        dev = d.cdus()[0]
        sid = SeriesKey.of(dev.profile.measurement, "tcs_supply_temp_c", dev.tags).id
        ts = np.arange((NOW - pd.Timedelta("3D")).value, NOW.value, 60 * 10**9, dtype=np.int64)
        vals = 30.0 + 0.04 * np.sin(np.arange(len(ts)))
        hist.write(Batch(np.array([sid] * len(ts), dtype=object), ts, vals, np.zeros(len(ts), np.uint8)))
        hist.flush()
        yield d


def test_trend_queries_stay_inside_the_chosen_site_day(data: DashboardData) -> None:
    """A custom range of one site day returns windows of that day only, in windows the range chose."""
    rng = resolve("custom", "2026-12-05", "2026-12-05", now=NOW, tz=TZ)
    dev = data.cdus()[0]
    sid = SeriesKey.of(dev.profile.measurement, "tcs_supply_temp_c", dev.tags).id
    df = data.series_trend([sid], rng)
    assert not df.empty
    assert df["ts"].min() >= pd.Timestamp("2026-12-05 05:00", tz="UTC")
    assert df["ts"].max() < pd.Timestamp("2026-12-06 05:00", tz="UTC")
    assert len(df) <= MAX_WINDOWS


def test_cooling_trend_reads_site_time_with_a_two_kelvin_axis(data: DashboardData) -> None:
    """The cooling trend's x is site time over the chosen range (UTC on hover), its y axis at least 2 K although the
    data move 0.08 K."""
    rng = resolve("6h", None, None, now=NOW, tz=TZ)
    fig = cooling._trend(data, rng)
    lo, hi = fig.layout.yaxis.range
    assert hi - lo >= 2.0
    first = fig.data[0]
    assert str(pd.Timestamp(first.x[-1])) <= "2026-12-07 10:00:00"  # EST wall clock, not 15:00 UTC
    assert first.customdata[-1].startswith("2026-12-07 14:")
    assert "UTC" in first.hovertemplate
    assert TZ in fig.layout.xaxis2.title.text
    assert all(":%S." not in s.value for s in fig.layout.xaxis.tickformatstops)
    lo, hi = (pd.Timestamp(x) for x in fig.layout.xaxis.range)  # the whole chosen range, in site time
    assert (str(lo), str(hi)) == ("2026-12-07 04:00:00", "2026-12-07 10:00:00")


def _ids(component: Any) -> Iterator[Any]:
    """Every component of a layout tree."""
    yield component
    children = getattr(component, "children", None)
    for c in children if isinstance(children, list | tuple) else [children] if children is not None else []:
        if c is not None and not isinstance(c, str | int | float):
            yield from _ids(c)


@pytest.mark.parametrize("page", ["overview", "cooling", "rack"])
def test_every_chart_has_a_csv_download_and_every_trend_a_date_range(page: str, data: DashboardData) -> None:
    """Each graph on the page comes with a "Download CSV" button and a dcc.Download; each trend a custom range."""
    with flask.Flask(__name__).test_request_context():  # the overview asks who is signed in: nobody
        layout = {
            "overview": lambda: overview.layout(data),
            "cooling": lambda: cooling.layout(data),
            "rack": lambda: floor.rack_layout(data, next(iter(data.racks))),
        }[page]()
    parts = list(_ids(layout))
    graphs = [getattr(c, "id", None) for c in parts if isinstance(c, dcc.Graph)]
    ids = {getattr(c, "id", None) for c in parts}
    assert graphs
    for g in graphs:
        assert {f"{g}-csv", f"{g}-download"} <= ids, g
    stores = {getattr(c, "id", None) for c in parts if isinstance(c, dcc.Store)}
    trends = {str(getattr(c, "id", ""))[: -len("-range")] for c in parts if isinstance(c, dcc.RadioItems)}
    assert trends, "no trend range control"
    for prefix in trends:  # the custom range's picker appears in <prefix>-custom; its dates live in the store
        assert f"{prefix}-dates" in stores, prefix
        assert f"{prefix}-custom" in ids, prefix


def test_rack_points_show_kw_and_states(data: DashboardData) -> None:
    """The rack page's PDU and controller points read power in kW, flags as words and counts whole (no ``0.00``)."""
    rack = data.racks[next(iter(data.racks))]
    ctl = next(d for d in rack.devices if data.site.device(d).kind == "rack")
    pdu = next(d for d in rack.devices if data.site.device(d).kind == "pdu")
    ctl_dev, pdu_dev = data.site.device(ctl), data.site.device(pdu)
    sids = {
        SeriesKey.of(ctl_dev.profile.measurement, "leak_detected", ctl_dev.tags).id: 0.0,
        SeriesKey.of(ctl_dev.profile.measurement, "gpus_throttled", ctl_dev.tags).id: 0.0,
        SeriesKey.of(pdu_dev.profile.measurement, "active_power_w", pdu_dev.tags).id: 61234.5,
    }
    ids = np.array(list(sids), dtype=object)
    data.live.update(Batch(ids, np.full(len(ids), NOW.value), np.array(list(sids.values())),
                           np.zeros(len(ids), np.uint8), []))  # fmt: skip
    rows = {r["point"]: r for r in floor.point_rows(data, ctl) + floor.point_rows(data, pdu)}
    assert (rows["leak_detected"]["value"], rows["leak_detected"]["unit"]) == ("dry", "")
    assert (rows["active_power_w"]["value"], rows["active_power_w"]["unit"]) == ("61.2", "kW")
    assert rows["gpus_throttled"]["value"] == "0"  # a count, not "0.00"


def test_trend_range_type_is_what_the_data_layer_takes(data: DashboardData) -> None:
    """The data layer accepts a resolved range as well as a preset name (both bounded)."""
    rng = resolve("1h", None, None, now=NOW, tz=TZ)
    assert isinstance(rng, TrendRange)
    assert data.series_trend([], rng).empty


def test_bad_points_say_since_when_in_site_time(data: DashboardData) -> None:
    """The Data quality page's "since" of a bad point is site time with the zone's name, not bare UTC."""
    sid = data.all_series.ids[0]
    data.live.update(Batch(np.array([sid], dtype=object), np.array([NOW.value]), np.array([np.nan]),
                           np.array([2], np.uint8), ["timeout"]))  # fmt: skip
    _count, rows = data.bad_points(5)
    since = next(r["since"] for r in rows if r["series"] == sid)
    assert since == "07 Dec 10:00:00 EST"


def test_style_accepts_a_figure_with_a_sankey() -> None:
    """A figure holding a trace type without legend entries (the Power chain's Sankey) is styled, not refused."""
    import plotly.graph_objects as go

    from dashboards.components import style

    fig = go.Figure(go.Sankey(node={"label": ["utility", "UPS"]}, link={"source": [0], "target": [1], "value": [1.0]}))
    assert style(fig).layout.height is not None


def test_cooling_decisions_read_simulated_and_live_decision_times_together(data: DashboardData) -> None:
    """Decision times with and without fractional seconds (the demo's history, then live) draw in one figure."""
    audit = data.data_dir / "audit" / "control.jsonl"
    audit.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        {"kind": "decision", "ts": "2026-12-07T11:20:00Z", "predicted_saving_kw": 9.5},
        {"kind": "decision", "ts": "2026-12-07T11:25:55.317397Z", "predicted_saving_kw": 9.9},
    ]
    audit.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    fig = cooling._decisions(data)
    xs = [x for trace in fig.data for x in (trace.x if trace.x is not None else [])]
    assert len(xs) >= 2, fig
