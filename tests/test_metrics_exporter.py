"""/metrics as a facility exporter, in-process: figures from a live state filled by a generated site, by role.

The expected figures are worked out here from the simulator's own telemetry frame, by measurement and field, so the
exporter (which finds series by role, in base units) is checked against an independent reading of the same data.
The Grafana dashboard shipped in docs/grafana is checked against the names a full scrape emits.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import promql_parser
import pytest
from prometheus_client.parser import text_string_to_metric_families

from aidc.clock import SteppedClock
from aidc.config import Site, site_from_dict
from aidc.live import LiveState
from aidc.model import Batch, Quality, SeriesKey
from analytics.alarms.engine import AlarmEngine, Rule
from api import metrics
from api.auth import TokenStore
from api.context import ApiContext
from collectors.link import DeviceHealth
from historian import Historian, open_historian
from historian.writer import HistorianWriter
from simulators.telemetry import generate
from tests.conftest import site_dict

DASHBOARD = Path(__file__).resolve().parents[1] / "docs" / "grafana" / "aidc-facility.json"
START = pd.Timestamp("2026-07-01T12:00Z")
Scrape = dict[tuple[str, tuple[tuple[str, str], ...]], float]


class SupervisorStandIn:
    """The two members of control.supervisor.Supervisor that /metrics reads (mode, status), with its status shape.

    A real supervisor needs a learnt plant model and a running facility; the job's tests drive one through the API.
    """

    mode = "auto"

    def status(self) -> dict[str, object]:
        """The supervisor's status layout: counters under "counts", the last decision's record."""
        return {"mode": "auto", "counts": {"decisions": 7, "holds": 2, "refused": 0},
                "last_decision": {"state": "deciding", "predicted_saving_kw": 12.5}}  # fmt: skip

    def set_mode(self, mode: str) -> None:
        """Not used by /metrics."""

    def set_override(self, point: str, value: float | None) -> None:
        """Not used by /metrics."""


@pytest.fixture(scope="module")
def facility(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Site, pd.Series, Historian]]:
    """A generated 2-rack site, the simulator's last telemetry row (the truth) and an empty DuckDB historian."""
    tmp = tmp_path_factory.mktemp("exporter")
    site = site_from_dict(site_dict(2, data_dir=str(tmp / "var")), source="site.toml", path=tmp / "site.toml")
    tel = generate(site, duration_s=900, sample_s=300, start_ns=START.value, schedule=None)
    with open_historian(site.config.historian, site.data_dir) as hist:
        yield site, tel.frame.iloc[-1], hist


def live_from(truth: pd.Series, bad: tuple[str, ...] = ()) -> LiveState:
    """A live state holding the truth row, with the ``bad`` series marked bad (device down) and NaN."""
    live = LiveState()
    ids = np.array(list(truth.index), dtype=object)
    values = truth.to_numpy(dtype=np.float64).copy()
    quality = np.zeros(len(ids), dtype=np.uint8)
    for sid in bad:
        i = list(truth.index).index(sid)
        values[i], quality[i] = np.nan, Quality.BAD
    ts = pd.Timestamp(str(truth.name)).value
    live.update(Batch(ids, np.full(len(ids), ts, dtype=np.int64), values, quality))
    return live


def scrape(ctx: ApiContext) -> tuple[str, Scrape]:
    """The exposition text and every sample as (name, sorted labels) -> value."""
    registry, _ = metrics.build(ctx)
    text = metrics.render(registry)[0].decode()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for fam in text_string_to_metric_families(text) for s in fam.samples}  # fmt: skip
    return text, samples


def ctx_for(site: Site, hist: Historian, live: LiveState, **kw: Any) -> ApiContext:
    """An API context over the live state (no tokens: /metrics needs none)."""
    return ApiContext(site=site, historian=hist, tokens=TokenStore.from_env({}), live=live, **kw)


def col(truth: pd.Series, measurement: str, fld: str, **tags: str) -> pd.Series:
    """The truth's columns of one measurement and field whose tags include ``tags``."""
    keep = []
    for sid in truth.index:
        k = SeriesKey.parse(sid)
        if k.measurement == measurement and k.field == fld and all(k.tag_dict.get(t) == v for t, v in tags.items()):
            keep.append(sid)
    return truth[keep]


def one(samples: Scrape, name: str, **labels: str) -> float:
    """The value of the one sample with this name whose labels include ``labels``."""
    hits = [v for (n, ls), v in samples.items() if n == name and labels.items() <= dict(ls).items()]
    assert len(hits) == 1, f"{name}{labels}: {len(hits)} samples"
    return hits[0]


def test_facility_figures_match_the_simulated_site(facility: tuple[Site, pd.Series, Historian]) -> None:
    """PUE (category 2, PDU output), power by kind, per-rack power and hottest GPU, CDU and plant figures equal the
    simulator's values in base units, one series per rack."""
    site, truth, hist = facility
    _, s = scrape(ctx_for(site, hist, live_from(truth)))
    facility_w = float(col(truth, "meter", "active_power_w", purpose="utility").sum())
    it_w = float(col(truth, "pdu", "active_power_w").sum())
    assert one(s, "aidc_pue", site="dc1", category="2") == pytest.approx(facility_w / it_w)
    assert one(s, "aidc_power_watts", kind="facility") == pytest.approx(facility_w)
    assert one(s, "aidc_power_watts", kind="it") == pytest.approx(it_w)
    cooling = float(col(truth, "meter", "active_power_w", purpose="cooling").sum())
    assert one(s, "aidc_power_watts", kind="cooling") == pytest.approx(cooling)
    assert one(s, "aidc_pue_meters_missing") == 0
    racks = [r.name for _, r in site.racks()]
    assert len([k for k in s if k[0] == "aidc_rack_power_watts"]) == len(racks) == 2
    for rack in racks:
        power = float(col(truth, "gpu_rack", "rack_power_w", rack=rack).sum())
        assert power > 10_000  # watts, not kilowatts
        assert one(s, "aidc_rack_power_watts", site="dc1", hall="h1", rack=rack) == pytest.approx(power)
        hottest = float(col(truth, "gpu_rack", "gpu_temp_c", rack=rack).max())
        assert one(s, "aidc_rack_gpu_temperature_max_celsius", hall="h1", rack=rack) == pytest.approx(hottest)
    supply = col(truth, "cdu", "tcs_supply_temp_c")
    cdu = SeriesKey.parse(supply.index[0]).tag_dict["device"]
    assert one(s, "aidc_cdu_supply_temperature_celsius", cdu=cdu) == pytest.approx(supply.iloc[0])
    assert one(s, "aidc_cdu_return_temperature_celsius", cdu=cdu) == pytest.approx(
        col(truth, "cdu", "tcs_return_temp_c").iloc[0]
    )
    lpm = col(truth, "cdu", "flow_lpm").iloc[0]
    assert one(s, "aidc_cdu_flow_cubic_meters_per_second", cdu=cdu) == pytest.approx(lpm / 60_000)
    for part, fld in (("chiller", "chiller_power_w"), ("pumps", "pump_power_w")):
        assert one(s, "aidc_plant_power_watts", part=part) == pytest.approx(col(truth, "plant", fld).iloc[0])


def test_pue_falls_back_to_a_complete_category_or_is_absent(facility: tuple[Site, pd.Series, Historian]) -> None:
    """One PDU unreadable: PUE at category 1 (UPS output), one meter named missing, never a category-2 figure from
    the other PDU; UPS unreadable too: no aidc_pue sample and no IT power at all."""
    site, truth, hist = facility
    pdu = col(truth, "pdu", "active_power_w").index[0]
    _, s = scrape(ctx_for(site, hist, live_from(truth, bad=(pdu,))))
    ups_w = float(col(truth, "ups", "output_power_w").sum())
    facility_w = float(col(truth, "meter", "active_power_w", purpose="utility").sum())
    assert one(s, "aidc_pue", category="1") == pytest.approx(facility_w / ups_w)
    assert not [k for k in s if k[0] == "aidc_pue" and dict(k[1])["category"] == "2"]
    assert one(s, "aidc_power_watts", kind="it") == pytest.approx(ups_w)
    assert one(s, "aidc_pue_meters_missing") == 1
    ups = col(truth, "ups", "output_power_w").index[0]
    text, s = scrape(ctx_for(site, hist, live_from(truth, bad=(pdu, ups))))
    assert "# TYPE aidc_pue gauge" in text
    assert not [k for k in s if k[0] == "aidc_pue" or (k[0] == "aidc_power_watts" and ("kind", "it") in k[1])]
    assert one(s, "aidc_pue_meters_missing") == 2
    assert one(s, "aidc_power_watts", kind="facility") == pytest.approx(facility_w)


def test_a_rack_with_an_unread_gpu_has_no_hottest_gpu_figure(facility: tuple[Site, pd.Series, Historian]) -> None:
    """The hottest GPU of a rack with one GPU unread is absent (it might be that one), the other rack's is there."""
    site, truth, hist = facility
    first, second = (r.name for _, r in site.racks())
    gpu = col(truth, "gpu_rack", "gpu_temp_c", rack=first).index[5]
    _, s = scrape(ctx_for(site, hist, live_from(truth, bad=(gpu,))))
    names = {dict(ls)["rack"] for n, ls in s if n == "aidc_rack_gpu_temperature_max_celsius"}
    assert names == {second}
    assert one(s, "aidc_rack_power_watts", rack=first) > 0


def full_context(site: Site, truth: pd.Series, hist: Historian) -> ApiContext:
    """A context with everything the job hands over: alarm engine, supervisor, collector and writer health."""
    clock = SteppedClock(pd.Timestamp(str(truth.name)).value)
    engine = AlarmEngine([
        Rule("gpu_hot", "hot GPU", "major", "°C", 80.0, lambda _f, _e: {"h1-r01-01": 91.0, "h1-r01-02": 70.0}),
        Rule("leak", "leak", "critical", "", 0.5, lambda _f, _e: {"h1-r01-02": 1.0}),
    ])  # fmt: skip
    engine.evaluate(pd.DataFrame(), clock.now_ns())
    pdu, cdu = site.device("pdu-h1-r01-01"), site.device("cdu-h1-01")
    health = {"pdu-h1-r01-01": DeviceHealth(pdu, 10.0), "cdu-h1-01": DeviceHealth(cdu, 10.0)}
    for _ in range(3):
        health["pdu-h1-r01-01"].success(clock.now_ns(), 0.012)
    health["cdu-h1-01"].failure("connection refused")
    writer = HistorianWriter(hist, clock)
    writer(
        Batch(np.array(["x,site=dc1 v"], dtype=object), np.array([clock.now_ns()]), np.ones(1), np.zeros(1, np.uint8))
    )
    asyncio.run(writer.drain())
    return ctx_for(site, hist, live_from(truth), alarm_engine=engine, controller=SupervisorStandIn(),
                   collector_health=lambda: health, writer=writer)  # fmt: skip


def test_alarms_controller_collector_and_historian_health(facility: tuple[Site, pd.Series, Historian]) -> None:
    """Active alarms by severity, controller mode and predicted saving (W), per-device up/polls/errors, and the
    writer's written total and backlog, read from the objects the job hands over; counters end in _total."""
    site, truth, hist = facility
    text, s = scrape(full_context(site, truth, hist))
    assert one(s, "aidc_alarms_active", severity="critical") == 1
    assert one(s, "aidc_alarms_active", severity="major") == 1
    assert one(s, "aidc_alarms_active", severity="warning") == 0
    assert one(s, "aidc_controller_mode", mode="auto") == 1
    assert one(s, "aidc_controller_mode", mode="off") == 0
    assert one(s, "aidc_controller_predicted_saving_watts") == pytest.approx(12_500)
    assert one(s, "aidc_controller_decisions_total") == 7
    assert one(s, "aidc_collector_up", device="pdu-h1-r01-01") == 1
    assert one(s, "aidc_collector_up", device="cdu-h1-01") == 0
    assert one(s, "aidc_collector_polls_total", device="pdu-h1-r01-01") == 3
    assert one(s, "aidc_collector_errors_total", device="cdu-h1-01") == 1
    assert one(s, "aidc_collector_poll_latency_seconds", device="pdu-h1-r01-01") == pytest.approx(0.012)
    assert one(s, "aidc_historian_writer_points_written_total") >= 1
    assert one(s, "aidc_historian_writer_backlog_points") == 0
    assert one(s, "aidc_historian_writer_points_dropped_total", reason="spool_full") == 0
    counters = [
        line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ") and line.endswith("counter")
    ]
    assert "aidc_collector_polls_total" in counters
    assert [c for c in counters if not c.endswith("_total")] == []
    units = ("_kw", "_kwh", "_ms", "_lpm", "_pct", "_c")
    assert not [n for n, _ in s if n.endswith(units)], "a metric name carries a non-base unit"


def dashboard_exprs(doc: dict[str, Any]) -> list[str]:
    """Every PromQL expression of a Grafana dashboard: panel targets and query variables."""
    exprs = [t["expr"] for p in doc["panels"] for t in p.get("targets", []) if "expr" in t]
    for var in doc.get("templating", {}).get("list", []):
        query = var.get("query")
        if var.get("type") == "query":
            text = query.get("query", "") if isinstance(query, dict) else str(query)
            # label_values(metric, label) is Grafana's, not PromQL: its first argument is a selector.
            exprs.append(text.removeprefix("label_values(").rsplit(",", 1)[0] if "label_values(" in text else text)
    return exprs


def metric_names(expr: str) -> set[str]:
    """Metric names selected by a PromQL expression (Grafana's $__ interval variables stood in by 5m)."""
    for var in ("$__rate_interval", "$__interval", "$__range"):
        expr = expr.replace(var, "5m")
    names: set[str] = set()

    def visit(node: object) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            by_matcher = [m.value for m in node.matchers.matchers if m.name == "__name__"]
            names.update([node.name] if node.name else by_matcher)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


def test_grafana_dashboard_uses_only_exported_names(facility: tuple[Site, pd.Series, Historian]) -> None:
    """Every metric name in every PromQL expression of docs/grafana/aidc-facility.json is one /metrics emits, and the
    dashboard covers PUE, power by kind, racks, GPUs, CDUs, alarms and the controller's mode."""
    site, truth, hist = facility
    text, s = scrape(full_context(site, truth, hist))
    emitted = {n for n, _ in s} | {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
    doc = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    used = {n for e in dashboard_exprs(doc) for n in metric_names(e)}
    assert used - emitted == set()
    assert {"aidc_pue", "aidc_power_watts", "aidc_rack_power_watts", "aidc_rack_gpu_temperature_max_celsius",
            "aidc_cdu_supply_temperature_celsius", "aidc_cdu_flow_cubic_meters_per_second", "aidc_alarms_active",
            "aidc_controller_mode"} <= used  # fmt: skip


def test_the_dashboard_check_sees_an_unknown_name() -> None:
    """The PromQL walk finds names in functions, aggregations, binary operations and __name__ matchers."""
    expr = 'sum by (rack) (rate(aidc_x_total[$__rate_interval])) / on() group_left max({__name__="aidc_y"})'
    assert metric_names(expr) == {"aidc_x_total", "aidc_y"}
    doc = {"panels": [{"targets": [{"expr": "aidc_pue_typo"}]}],
           "templating": {"list": [{"type": "query", "query": {"query": "label_values(aidc_z, site)"}}]}}  # fmt: skip
    assert {n for e in dashboard_exprs(doc) for n in metric_names(e)} == {"aidc_pue_typo", "aidc_z"}


def test_stand_alone_server_exports_stored_health_and_no_facility(small_site: Site) -> None:
    """Without a live state (``aidc api`` beside a remote store) no facility sample is invented; the writer's figures
    come from the aidc_writer series the job stored."""
    clock = SteppedClock(START.value)
    with open_historian(small_site.config.historian, small_site.data_dir) as hist:
        stored = HistorianWriter(hist, clock)
        stored.points_written, stored.refused_points = 1234, 5
        hist.write(stored.stats_batch(clock.now_ns()))
        hist.flush()
        ctx = ApiContext(site=small_site, historian=hist, tokens=TokenStore.from_env({}))
        text, s = scrape(ctx)
    assert one(s, "aidc_historian_writer_points_written_total") == 1234
    assert one(s, "aidc_historian_writer_points_dropped_total", reason="spool_full") == 5
    assert "# TYPE aidc_rack_power_watts gauge" not in text
    assert not [n for n, _ in s if n.startswith(("aidc_pue", "aidc_power", "aidc_rack", "aidc_cdu"))]
