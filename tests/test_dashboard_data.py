"""The dashboard's read side: floor metrics, alarm input, device health and audit rows from live state and files."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest

from aidc.clock import ScaledClock
from aidc.config import Site, site_from_dict
from aidc.historian_config import HistorianConfig
from aidc.live import LiveState
from aidc.model import Batch
from aidc.sitegen import SiteTemplate, render_site
from analytics.alarms.engine import AlarmEngine
from dashboards.data import DashboardData
from dashboards.pages.floor import floor_figure
from dashboards.supervisor import audit_entries
from historian import open_historian


def _site(tmp_path: Path, racks: int) -> Site:
    return site_from_dict(tomllib.loads(render_site(SiteTemplate(racks=racks, data_dir=str(tmp_path)))))


def _data(tmp_path: Path, racks: int = 2) -> tuple[DashboardData, LiveState]:
    site = _site(tmp_path, racks)
    live = LiveState()
    hist = open_historian(HistorianConfig(), tmp_path)
    data = DashboardData(site, live, hist, ScaledClock.starting_now(), AlarmEngine.from_site(site))
    return data, live


def _feed(live: LiveState, values: dict[str, float], quality: int = 0) -> None:
    ids = np.array(list(values), dtype=object)
    n = len(ids)
    live.update(Batch(ids, np.full(n, 1, dtype=np.int64), np.array(list(values.values()), dtype=float),
                      np.full(n, quality, dtype=np.uint8), []))


def test_live_indices_and_read_are_vectorised_and_stable() -> None:
    """Unknown series read as NaN and bad; positions survive the arrays growing."""
    live = LiveState()
    _feed(live, {"m a": 1.0})
    idx = live.indices(["m a", "m b"])
    assert idx[1] == -1
    _feed(live, {f"m x{i}": float(i) for i in range(3000)})  # grows the arrays
    _ts, v, q = live.read(idx)
    assert v[0] == 1.0
    assert np.isnan(v[1])
    assert q.tolist() == [0, 2]


def test_floor_metrics_per_rack(tmp_path: Path) -> None:
    """Power, headroom, hottest GPU, margin, coolant ΔT and good-data share come out per rack."""
    data, live = _data(tmp_path)
    r1, r2 = data.racks.values()
    _feed(live, dict.fromkeys(r2.scalars, 1.0))
    _feed(live, {r1.power: 120_000.0, r2.power: 60_000.0, r1.inlet: 30.0, r1.outlet: 39.5})  # type: ignore[dict-item]
    _feed(live, {s: 60.0 + i for i, s in enumerate(r1.gpu_temp)})
    _feed(live, {r1.gpu_temp[5]: 99.0}, quality=2)  # a bad reading never counts as the hottest
    assert data.floor("power")["value"].tolist() == [120.0, 60.0]
    assert data.floor("power_headroom")["value"].tolist() == [r1.rated_kw - 120.0, r2.rated_kw - 60.0]
    hottest = data.floor("hottest_gpu")["value"].tolist()
    assert hottest[0] == 60.0 + len(r1.gpu_temp) - 1
    assert np.isnan(hottest[1])
    assert data.floor("thermal_margin")["value"].iloc[0] == pytest.approx(data.gpu_limit_c - hottest[0])
    assert data.floor("coolant_dt")["value"].iloc[0] == pytest.approx(9.5)
    quality = data.floor("data_quality")["value"].tolist()
    assert quality[1] == 100.0
    assert 0 < quality[0] < 100


def test_alarm_frame_drives_the_engine(tmp_path: Path) -> None:
    """The vectorised alarm input raises a hot-GPU alarm on the right rack."""
    data, live = _data(tmp_path)
    r1 = next(iter(data.racks.values()))
    _feed(live, {r1.gpu_temp[3]: 97.0})
    engine = data.alarms
    engine.evaluate(data.alarm_frame(), 0)
    raised = engine.evaluate(data.alarm_frame(), 10**12)  # past the default raise delay
    assert [a.id for a in raised] == [f"gpu_hot:{r1.name}"]


def test_device_health_counts_bad_points_and_reads_collector_health(tmp_path: Path) -> None:
    """Each device row shows up/down from its collector series and how many of its points are bad."""
    data, live = _data(tmp_path)
    r1 = next(iter(data.racks.values()))
    pdu = data.site.device(r1.devices[0])
    health = f"collector,device={pdu.name},hall={pdu.tags['hall']},site={pdu.tags['site']}"
    _feed(live, {f"{health} up": 1.0, f"{health} latency_ms": 3.5})
    pdu_ids = [s for s in r1.scalars if s.startswith("pdu,")]
    _feed(live, dict.fromkeys(pdu_ids, 1.0))
    _feed(live, {pdu_ids[0]: float("nan")}, quality=2)
    rows = data.device_health().set_index("device")
    assert rows.loc[pdu.name, "up"] == "up"
    assert rows.loc[pdu.name, "latency_ms"] == 3.5
    assert rows.loc[pdu.name, "bad_points"] == f"1/{len(pdu_ids)}"
    assert rows.loc["plant-1", "up"] == "down"
    count, bad = data.bad_points(5)
    assert count > 0
    assert len(bad) == 5


def test_audit_rows_merge_the_supervisor_the_writer_and_acknowledgements(tmp_path: Path) -> None:
    """Rows from control.jsonl (ts_ns, user), writes.jsonl (ISO ts, who) and alarm acks come newest first."""
    audit = tmp_path / "audit"
    audit.mkdir()
    (audit / "control.jsonl").write_text(json.dumps({"ts_ns": 2_000_000_000_000_000_000, "user": "ann",
                                                     "action": "set_mode", "new": "advisory"}) + "\n{torn")
    (audit / "writes.jsonl").write_text(json.dumps({"ts": "2033-05-18T03:33:21Z", "who": "sup", "ok": True,
                                                    "device": "cdu-1", "point": "sp", "new": 31.0}) + "\n")
    acks = [{"event": "ack", "ts_ns": 1_000_000_000_000_000_000, "acked_by": "bob", "message": "hot GPU"}]
    rows = audit_entries(tmp_path, acks)
    assert [(r["source"], r["actor"], r["action"]) for r in rows] == [
        ("writes", "sup", "write"), ("control", "ann", "set_mode"), ("alarms", "bob", "acknowledge")]
    assert rows[0]["target"] == "cdu-1 · sp"
    assert rows[1]["result"] == "new advisory"  # an unknown line as plain text, not a JSON blob


def test_floor_map_is_one_heatmap_at_1000_racks(tmp_path: Path) -> None:
    """A 1,000-rack hall is drawn as a single heatmap trace (not a component per rack) with every rack placed."""
    data, _ = _data(tmp_path, racks=1000)
    fig = floor_figure(data, "power")
    assert len(fig.data) == 1
    assert fig.data[0].type == "heatmap"
    names = {n for row in fig.data[0].customdata for n in row if n}
    assert len(names) == 1000


@pytest.mark.parametrize("ups_w", [202_000.0, None])
def test_overview_pue_with_an_unreachable_pdu_is_never_the_half_site_figure(
    tmp_path: Path, ups_w: float | None
) -> None:
    """One PDU of two unreachable: the Overview shows 220/202 kW at category 1 (UPS output), not 2.2 at category 2;
    without a UPS reading it shows no PUE and names the PDU."""
    data, live = _data(tmp_path)
    meters = data.power_meters
    (fac,), (p1, p2), (ups,) = meters.facility, meters.it[2], meters.it[1]
    now = data.now().value
    values = {fac: 220_000.0, p1: 100_000.0, p2: float("nan"), ups: float("nan") if ups_w is None else ups_w}
    ids = np.array(list(values), dtype=object)
    quality = np.array([2 if np.isnan(v) else 0 for v in values.values()], dtype=np.uint8)  # unreachable: bad
    live.update(Batch(ids, np.full(len(ids), now, dtype=np.int64), np.array(list(values.values())), quality, []))
    o = data.overview()
    if ups_w is None:
        assert o["pue"] is None
        assert o["pue_category"] is None
        assert o["it_kw"] is None
        assert set(o["pue_missing"]) == {p2, ups}
        assert "no fresh good value" in o["pue_note"]
    else:
        assert o["pue"] == pytest.approx(220 / 202)
        assert o["pue_category"] == 1
        assert o["it_kw"] == pytest.approx(202.0)
        assert o["pue_missing"] == [p2]
    assert o["facility_kw"] == pytest.approx(220.0)
