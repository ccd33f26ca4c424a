"""Fault prediction as a service: automatic baseline, learning status, predictive alarms through the alarm engine."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from aidc.clock import SteppedClock
from aidc.config import Site, load_site
from aidc.errors import AidcError
from aidc.model import Batch, Quality, SeriesKey
from aidc.roles import Role
from aidc.sitegen import SiteTemplate, render_site
from analytics.alarms import baseline
from analytics.alarms.engine import AlarmEngine, AlarmPolicy, Webhook, default_rules
from analytics.alarms.faults import ROLES, ModelState
from analytics.alarms.prediction import FaultPredictionService, PredictionSettings, verdicts
from historian import Historian, open_historian
from simulators.degradation import Degradation, SlowFault
from simulators.facility import Facility
from simulators.telemetry import ExplorationSchedule, generate

START = pd.Timestamp("2026-07-01T00:00Z")
DAY = pd.Timedelta("1D")
FAULTY_CDU, OTHER_CDU = "cdu-h1-02", "cdu-h1-01"
FAULT_START = START + 3 * DAY
# A transient on the other CDU during day 1 (its pump power reads 30 % high) that the alarm engine flagged.
GLITCH = (START + DAY + pd.Timedelta("6h"), START + DAY + pd.Timedelta("12h"))


@dataclass
class Store:
    """A site and its historian holding six days: three healthy, then a strainer clogging on one CDU."""

    site: Site
    historian: Historian
    tmp: Path


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """Eight racks of eight GPUs on two CDUs; 5-minute telemetry of the fault models' points, written to a DuckDB historian."""
    tmp = tmp_path_factory.mktemp("faultsvc")
    path = tmp / "site.toml"
    # Eight GPUs a rack (not 72) keeps the store small; the faults and models are per rack and CDU all the same.
    template = SiteTemplate(racks=8, gpus_per_rack=8, rated_kw=20.0, start=START.isoformat(), data_dir="var")
    path.write_text(render_site(template), encoding="utf-8")
    site = load_site(path)
    fac = Facility(site, start_ns=START.value)
    fac.degradation = Degradation.for_facility(
        fac, site, [SlowFault("strainer", FAULTY_CDU, FAULT_START.value, 5.0, 1.0)]
    )
    tel = generate(site, duration_s=6 * 86400, sample_s=300, schedule=ExplorationSchedule(seed=4), facility=fac,
                   keep=lambda d, p: d.role_of(p.name) in ROLES)  # fmt: skip
    pump = next(s for s, r in tel.roles.items() if r is Role.PUMP_POWER and f"device={OTHER_CDU}" in s)
    rows = (tel.frame.index >= GLITCH[0]) & (tel.frame.index < GLITCH[1])
    tel.frame.loc[rows, pump] *= 1.3
    hist = open_historian(site.config.historian, site.data_dir)
    for batch in tel.batches():
        hist.write(batch)
    hist.flush()
    yield Store(site, hist, tmp)
    hist.close()


def glitch_alarm(engine: AlarmEngine) -> None:
    """The engine raises and clears a CDU-approach alarm on the other CDU around the glitch."""

    def approach(k: float) -> pd.DataFrame:
        tags = {"device": OTHER_CDU}
        return pd.DataFrame([{"measurement": "cdu", "field": f, "value": v, "quality": "good", **tags}
                             for f, v in (("tcs_supply_temp_c", 30.0 + k), ("fws_supply_temp_c", 30.0))])  # fmt: skip

    engine.evaluate(approach(12.0), GLITCH[0].value)
    engine.evaluate(approach(2.0), GLITCH[1].value)


def make_engine(site: Site, tmp: Path, webhook: Webhook | None = None) -> AlarmEngine:
    """An engine with the site's rules, no raise or clear delay, storing under tmp."""
    rules = default_rules(site, AlarmPolicy(raise_delay_s=0, clear_delay_s=0))
    return AlarmEngine(rules, store=tmp / "alarms.jsonl", webhook=webhook)


def test_learns_before_it_watches(store: Store, tmp_path: Path) -> None:
    """With a day of history the service says 'learning, 23.9 of 48 hours', fits nothing and raises nothing."""
    engine = make_engine(store.site, tmp_path)
    svc = FaultPredictionService(store.site, store.historian, engine, SteppedClock(0))
    status = svc.step((START + 2 * DAY).value)
    assert status.state == "learning"
    # The first sample lands 5 minutes after midnight: 23.9 h of the day before the guard.
    assert "learning: 23.9 of 48 hours of clean history" in status.message
    assert svc.detector is None
    assert engine.active() == []
    assert status.scored_at is None


def test_predictive_alarm_goes_through_the_engine(store: Store, tmp_path: Path,
                                                  hook_server: tuple[str, list[dict[str, Any]]]) -> None:  # fmt: skip
    """The service fits by itself, raises one strainer alarm on the faulty CDU in the engine, the webhook gets it once,
    and an operator acknowledges it through the engine."""
    url, received = hook_server
    engine = make_engine(store.site, tmp_path, Webhook(url))
    glitch_alarm(engine)
    svc = FaultPredictionService(store.site, store.historian, engine, SteppedClock(0))
    raised_at = None
    for hours in range(1, 72, 6):  # from 01:00: two full days of history (the first sample is at 00:05)
        now = FAULT_START + pd.Timedelta(hours=hours)
        status = svc.step(now.value)
        assert status.state == "watching", status.message
        if raised_at is None and engine.active():
            raised_at = now
    active = [a for a in engine.active() if a.rule.startswith("predicted_")]
    assert [(a.id, a.subject, a.rule) for a in active] == [
        (f"predicted_strainer:{FAULTY_CDU}", FAULTY_CDU, "predicted_strainer")
    ]
    assert raised_at is not None
    assert raised_at < FAULT_START + 2 * DAY
    assert "strainer clogging" in active[0].message
    assert active[0].unit == "%"
    assert svc.alarms() == [active[0].to_dict()]
    acked = engine.acknowledge(active[0].id, "alice", (FAULT_START + 3 * DAY).value)
    assert acked.acked_by == "alice"
    engine.close()
    events = [(e["event"], e["id"]) for e in received if e["id"].startswith("predicted_")]
    assert events == [("raise", active[0].id), ("ack", active[0].id)]


def test_baseline_leaves_out_an_alarmed_period(store: Store, tmp_path: Path) -> None:
    """A period the engine had an alarm on (a 30 % pump-power glitch) is left out of that CDU's and its racks'
    baseline; learnt with it, the CDU's pump-power model would be several times noisier."""
    fits = {}
    for name, with_alarm in (("excluded", True), ("learnt", False)):
        engine = make_engine(store.site, tmp_path / name)
        if with_alarm:
            glitch_alarm(engine)
        svc = FaultPredictionService(store.site, store.historian, engine, SteppedClock(0))
        status = svc.refit((FAULT_START + pd.Timedelta("9h")).value)
        assert svc.detector is not None
        fits[name] = (status, {(m.device, m.name): m.sigma for m in svc.detector.models})
    status, sigma = fits["excluded"]
    # Six hours of alarm plus an hour's margin either side, on the CDU and on the four racks it cools.
    assert status.excluded_hours == dict.fromkeys([OTHER_CDU, "h1-r01-01", "h1-r01-02", "h1-r01-03", "h1-r01-04"],
                                                  8.0)  # fmt: skip
    assert fits["learnt"][0].excluded_hours == {}
    assert fits["learnt"][1][(OTHER_CDU, "power")] > 3 * sigma[(OTHER_CDU, "power")]
    assert status.baseline_to == (FAULT_START - DAY + pd.Timedelta("9h")).isoformat()


def test_outages_and_alarms_taint_the_subjects_they_feed() -> None:
    """A rack controller's outage taints its rack only; an alarm on a CDU taints the CDU and every rack it cools."""
    rack_cdu = {"r1": "cdu-1", "r2": "cdu-1", "r3": "cdu-2"}
    cols = [SeriesKey.of("gpu_rack", "gpu_temp_c", {"rack": r, "device": f"rack-{r}"}).id for r in rack_cdu]
    fed = baseline.feeders(cols, rack_cdu)
    assert fed["r1"] == {"r1", "rack-r1", "cdu-1"}
    index = pd.date_range(START, periods=24, freq="1h")
    t = START.value
    periods = [baseline.Period("rack-r1", t, t + 3600 * 10**9, "outage"),
               baseline.Period("cdu-2", t + 5 * 3600 * 10**9, t + 7 * 3600 * 10**9, "alarm x")]  # fmt: skip
    masks = baseline.exclusions(index, fed, periods)
    assert {s: int(m.sum()) for s, m in masks.items()} == {"r1": 1, "r2": 0, "r3": 2, "cdu-1": 0, "cdu-2": 2}


def test_bad_windows_are_blanked(store: Store, tmp_path: Path) -> None:
    """A 5-minute window holding a bad sample reads as missing, so bad data never enters the baseline."""
    site = store.site
    sid = SeriesKey.of("cdu", "pump_power_w", {"site": site.name, "hall": "h1", "device": OTHER_CDU}).id
    with open_historian(site.config.historian, tmp_path) as hist:
        ts = np.array([START.value + i * 60 * 10**9 for i in range(10)], dtype=np.int64)
        quality = np.where(np.arange(10) == 7, int(Quality.BAD), int(Quality.GOOD)).astype(np.uint8)
        hist.write(Batch(np.array([sid] * 10, dtype=object), ts, np.full(10, 900.0), quality))
        hist.flush()
        wide, roles = baseline.read_signals(hist, site, [Role.PUMP_POWER], START, START + pd.Timedelta("10min"), "5m")
    assert list(wide.columns) == [sid]
    assert roles[sid] is Role.PUMP_POWER
    assert wide[sid].iloc[0] == 900.0
    assert np.isnan(wide[sid].iloc[1])


def test_worker_thread_follows_the_job_clock(store: Store, tmp_path: Path) -> None:
    """start() fits and scores on the clock's time from a worker thread; stop() ends it."""
    clock = SteppedClock((START + 3 * DAY + pd.Timedelta("1h")).value)
    svc = FaultPredictionService(store.site, store.historian, make_engine(store.site, tmp_path), clock,
                                 PredictionSettings(check_every_s=0.05)).start()  # fmt: skip
    deadline = time.monotonic() + 30
    while svc.status().scored_at is None and time.monotonic() < deadline:
        time.sleep(0.05)  # waiting on the worker's state, with a deadline
    svc.stop()
    assert svc.status().state == "watching"
    assert svc.status().scored_at == (START + 3 * DAY + pd.Timedelta("1h")).isoformat()


def test_external_alarms_keep_their_own_semantics(store: Store, tmp_path: Path) -> None:
    """Raising an active external alarm again is silent; evaluate never clears it; only clear_external does; a
    measured rule cannot be raised from outside; a restart replays it with its acknowledgement."""
    engine = make_engine(store.site, tmp_path)
    engine.add_external_rule("predicted_x", "predicted x", "minor", "K", 1.0, "test")
    assert engine.raise_external("predicted_x", "cdu-1", 2.0, 1, "x on cdu-1") is not None
    assert engine.raise_external("predicted_x", "cdu-1", 3.0, 2, "x on cdu-1, worse") is None
    engine.acknowledge("predicted_x:cdu-1", "bob", 3)
    engine.evaluate(pd.DataFrame(), 4)
    assert [(a.id, a.value, a.acked_by) for a in engine.active()] == [("predicted_x:cdu-1", 3.0, "bob")]
    with pytest.raises(AidcError, match="'gpu_hot' is not an external rule"):
        engine.raise_external("gpu_hot", "r1", 1.0, 5, "no")
    with pytest.raises(AidcError, match="measured by the engine"):
        engine.add_external_rule("gpu_hot", "x", "minor", "K", 1.0, "test")
    assert [a.id for a in make_engine(store.site, tmp_path).active()] == ["predicted_x:cdu-1"]
    assert engine.clear_external("predicted_x", "cdu-1", 6) is not None
    assert engine.clear_external("predicted_x", "cdu-1", 7) is None
    assert engine.active() == []
    assert [a.id for a in engine.alarms_between(5, 6)] == ["predicted_x:cdu-1"]
    lines = [json.loads(x)["event"] for x in (tmp_path / "alarms.jsonl").read_text().splitlines()]
    assert lines == ["raise", "ack", "clear"]


FIRED = START + DAY


@pytest.mark.parametrize(("states", "expected"), [
    ([ModelState("cdu-1", "speed", FIRED, 0.05)], [("cdu-1", "raise")]),  # fired, day's mean past the effect
    ([ModelState("cdu-1", "speed", FIRED, 0.012)], [("cdu-1", "raise")]),  # fired, still past half of it: held
    ([ModelState("cdu-1", "speed", None, 0.012)], []),  # inside the band, not fired: nothing changes
    ([ModelState("cdu-1", "speed", FIRED, 0.009)], [("cdu-1", "clear")]),  # back under half of 2 %: clears
    ([ModelState("cdu-1", "speed", FIRED, float("nan"))], []),  # too little recent data: neither
    ([ModelState("cdu-1", "speed", FIRED, 0.05), ModelState("cdu-1", "power", FIRED, 0.08)],
     [("cdu-1", "raise")]),  # pump power moved with the speed: the strainer is blamed, not the pump
])  # fmt: skip
def test_raise_and_clear_have_a_hysteresis_band(states: list[ModelState], expected: list[tuple[str, str]]) -> None:
    """An alarm is raised when the CUSUM fired, held while the day's mean stays above half the minimum effect and
    cleared only below it; missing data changes nothing."""
    assert [(st.device, v) for st, v in verdicts(states)] == expected


def test_a_repaired_fault_clears_through_the_engine(store: Store, tmp_path: Path) -> None:
    """Once the residual is back near zero the service clears its alarm in the engine (one clear event)."""
    engine = make_engine(store.site, tmp_path)
    svc = FaultPredictionService(store.site, store.historian, engine, SteppedClock(0))
    svc.refit((FAULT_START + pd.Timedelta("1h")).value)
    engine.raise_external("predicted_strainer", OTHER_CDU, 5.0, 1, "predicted strainer clogging on the other CDU")
    svc.step((FAULT_START + pd.Timedelta("1h")).value)  # the other CDU is healthy: its speed residual is ~0
    assert engine.active() == []
    assert [a.id for a in engine.history()] == [f"predicted_strainer:{OTHER_CDU}"]
