"""Field telemetry (control/field.py) and the deployed supervisor in the evaluated loop (app/evaluation/harness.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aidc.config import DeviceRef, Site
from aidc.live import LiveState
from aidc.model import Quality, SeriesKey
from app.evaluation.harness import DAY_NS, EvalSetup, Kpis, SupervisedRun, evaluate, feed_live
from control.baselines import FixedController
from control.field import FieldModel, FieldTelemetry, FieldWriter
from control.policy import site_limits
from control.types import Snapshot
from simulators.facility import Facility
from simulators.weather import load_weather
from tests.control_helpers import control_site

S = 1_000_000_000


def _cdu(site: Site) -> DeviceRef:
    return next(d for d in site.devices if d.kind == "cdu")


def _plant(site: Site) -> DeviceRef:
    return next(d for d in site.devices if d.kind == "plant")


def test_a_value_between_register_steps_decodes_to_a_register_step(tmp_path: Path) -> None:
    """An INT16 tenths register reads 29.96 °C as 30.0 and 29.94 °C as 29.9 (the collectors' decoding); an
    OPC-UA Double node keeps the value."""
    site = control_site(tmp_path)
    cdu, plant = _cdu(site).name, _plant(site).name
    served = {cdu: {"tcs_supply_temp_c": 29.96}, plant: {"fws_supply_temp_c": 24.123}}
    ft = FieldTelemetry(
        site, served.__getitem__, model=None, points={cdu: ["tcs_supply_temp_c"], plant: ["fws_supply_temp_c"]}
    )
    b = ft.poll(cdu, 0)
    assert b.values[0] == pytest.approx(30.0, abs=1e-9)
    assert b.quality[0] == int(Quality.GOOD)
    served[cdu]["tcs_supply_temp_c"] = 29.94
    assert ft.poll(cdu, 0).values[0] == pytest.approx(29.9, abs=1e-9)
    assert ft.poll(plant, 0).values[0] == 24.123


def test_a_nan_reply_is_bad_quality(tmp_path: Path) -> None:
    """NaN from an OPC-UA node and from an INT16 register (sent as the type's no-reading sentinel) is published
    bad with no value, as the collectors flag it."""
    site = control_site(tmp_path)
    cdu, plant = _cdu(site).name, _plant(site).name
    served = {
        cdu: {"tcs_supply_temp_c": math.nan, "valve_pct": 40.0},
        plant: {"fws_supply_temp_c": math.nan, "outdoor_drybulb_c": 20.0},
    }
    ft = FieldTelemetry(
        site,
        served.__getitem__,
        model=None,
        points={cdu: ["tcs_supply_temp_c", "valve_pct"], plant: ["fws_supply_temp_c", "outdoor_drybulb_c"]},
    )
    for dev in (cdu, plant):
        b = ft.poll(dev, 0)
        assert list(b.quality) == [int(Quality.BAD), int(Quality.GOOD)]
        assert math.isnan(b.values[0])


def test_a_missing_poll_leaves_the_reading_older(tmp_path: Path) -> None:
    """Polls lost after the first leave the live state's sample at its first poll time, so it ages."""
    site = control_site(tmp_path)
    cdu = _cdu(site)
    served = {cdu.name: {"tcs_supply_temp_c": 30.0}}
    ft = FieldTelemetry(
        site,
        served.__getitem__,
        model=FieldModel(loss=0.0, burst=0.0),
        points={cdu.name: ["tcs_supply_temp_c"]},
        start_ns=1000 * S,
    )
    live = LiveState()
    sid = SeriesKey.of(cdu.profile.measurement, "tcs_supply_temp_c", cdu.tags).id
    assert ft.feed(1000 * S, live) == 1
    first = live.get(sid)
    assert first is not None
    assert 1000 * S - first.ts_ns < cdu.config.poll_interval_s * S
    ft.feed(1060 * S, live)
    fresh = live.get(sid)
    assert fresh is not None
    assert fresh.ts_ns > first.ts_ns
    ft.model = FieldModel(loss=1.0)
    assert ft.feed(1120 * S, live) == 0
    stale = live.get(sid)
    assert stale is not None
    assert stale.ts_ns == fresh.ts_ns
    assert ft.lost == 6  # six 10 s polls in the minute, all lost


def test_the_same_seed_gives_the_same_telemetry(tmp_path: Path) -> None:
    """Noise, phases and lost polls are seeded: the same seed repeats every batch, another seed differs."""
    site = control_site(tmp_path)
    cdu, plant = _cdu(site).name, _plant(site).name
    rack = next(d for d in site.devices if d.kind == "rack")

    def run(seed: int) -> list[tuple[list[str], list[int], list[float]]]:
        def values(dev: str) -> dict[str, object]:
            return {"tcs_supply_temp_c": 30.0, "fws_supply_temp_c": 24.0, "gpu_temp_c": [60.0] * 72}

        ft = FieldTelemetry(
            site,
            values,
            seed=seed,
            model=FieldModel(loss=0.2),
            points={cdu: ["tcs_supply_temp_c"], plant: ["fws_supply_temp_c"], rack.name: ["gpu_temp_c"]},
        )
        out = []
        for i in range(30):
            for b in ft.poll_due(i * 20 * S):
                out.append((list(b.series), b.ts_ns.tolist(), np.round(b.values, 9).tolist()))
        return out

    a = run(7)
    assert a == run(7)
    assert a != run(8)
    temps = [v for s, _t, vals in a for sid, v in zip(s, vals, strict=True) if "gpu_temp_c" in sid]
    assert 0.05 < float(np.std(temps)) < 0.2  # 0.1 K sensor noise on a Double node


def test_the_writer_holds_what_the_register_holds(tmp_path: Path) -> None:
    """The in-process writer clamps to the profile's range and writes the register's tenth; the read-back is it."""
    site = control_site(tmp_path)
    cdu = _cdu(site)
    held: dict[str, float] = {}

    def write(dev: str, point: str, v: float) -> None:
        held[point] = v

    w = FieldWriter(site, write, lambda dev: dict(held), lambda: 0)
    import asyncio

    from collectors.writer import Actor

    r = asyncio.run(w.write(Actor("t", "operator"), cdu.name, "tcs_supply_temp_setpoint_c", 31.26, "test"))
    assert held["tcs_supply_temp_setpoint_c"] == pytest.approx(31.3, abs=1e-9)
    assert r.ok
    assert r.readback == pytest.approx(31.3, abs=1e-9)
    p = cdu.profile.point("tcs_supply_temp_setpoint_c")
    assert p.max is not None
    r = asyncio.run(w.write(Actor("t", "operator"), cdu.name, "tcs_supply_temp_setpoint_c", 1e3, "test"))
    assert r.new == p.max
    assert r.clamped


def _setup(tmp_path: Path, telemetry: str, **control: Any) -> EvalSetup:
    site = control_site(tmp_path, **control)
    return EvalSetup(
        site,
        site_limits(site),
        load_weather("builtin:leesburg"),
        days=183,
        stride=1,
        first_day=182,
        warmup_h=0.0,
        step_s=100.0,
        telemetry=telemetry,
    )


def test_the_evaluated_aidc_is_the_supervisor_with_its_guard(tmp_path: Path) -> None:
    """On a contrived hot site (TCS alarm at 20 °C) the evaluated aidc decides through the Supervisor and its
    thermal guard writes colder setpoints between decisions; the audit goes to a temporary directory and nothing is
    written under the site's data directory."""
    setup = _setup(tmp_path, "field", alarm_tcs_c=20.0, commissioning_days=0.0)
    run = SupervisedRun(setup)
    k = Kpis()
    run.run_day(setup.day_starts()[0], k, warmup_h=0.0, days=0.25)
    recs = [json.loads(line) for line in run.audit_path.read_text(encoding="utf-8").splitlines()]
    kinds = {r["kind"] for r in recs}
    assert {"decision", "thermal_guard"} <= kinds
    guard = [r for r in recs if r["kind"] == "thermal_guard"]
    assert any(w["ok"] for r in guard for w in r.get("written", []))
    assert k.decisions == 72
    assert run.counts["thermal_actions"] > 0
    run.close()
    data = setup.site.data_dir
    assert not data.exists() or not any(data.rglob("*"))


def test_a_hold_on_stale_input_shows_in_the_kpis(tmp_path: Path) -> None:
    """When every poll is lost after two hours, the supervisor holds on stale input (audited), reverts to the safe
    defaults, and the holds are counted in aidc's KPIs."""
    setup = _setup(tmp_path, "field", commissioning_days=0.0)
    run = SupervisedRun(setup)
    day = setup.day_starts()[0]

    def lose_polls(fac: Facility) -> None:
        if fac.t_ns >= day + DAY_NS // 12 and isinstance(run.feed, FieldTelemetry):
            run.feed.model = FieldModel(loss=1.0)

    k = Kpis()
    run.run_day(day, k, warmup_h=0.0, days=0.25, hook=lose_polls)
    k.extra.update(run.counts)
    assert k.as_dict()["holds"] >= 40
    recs = [json.loads(line) for line in run.audit_path.read_text(encoding="utf-8").splitlines()]
    assert any("stale input" in str(r.get("hold_reason")) for r in recs)
    assert any(r.get("state") == "fallback" for r in recs)
    run.close()


def test_every_controller_is_scored_over_the_commissioning_days(tmp_path: Path) -> None:
    """The commissioning days before the first evaluated day count in every controller's KPIs (here one day of
    commissioning and one evaluated day: 2880 minutes)."""
    setup = _setup(tmp_path, "exact", commissioning_days=1.0)
    setup.step_s = 300.0
    assert setup.spans()[0] == (setup.day_starts()[0] - DAY_NS, 1, 0.0)
    k = evaluate(setup, FixedController(setup.limits))
    assert k.minutes == setup.counted_minutes() == 2880.0


def _first_snapshot(tmp_path: Path, telemetry: str) -> tuple[EvalSetup, Facility, Snapshot]:
    """The setup, its facility a minute into the first evaluated day, and the snapshot a baseline reads then."""
    from app.evaluation.harness import SimPlant

    setup = _setup(tmp_path / telemetry, telemetry)
    fac = setup.facility(setup.day_starts()[0])
    plant = SimPlant(setup.site, setup.limits, setup.builder, fac, field=setup.field_telemetry(fac))
    fac.step(60.0)
    return setup, fac, plant.snapshot()


def test_field_telemetry_reaches_the_baselines_snapshot(tmp_path: Path) -> None:
    """A baseline's snapshot with field telemetry reads register tenths and ages; exact telemetry reads the
    facility's values with no age."""
    for telemetry in ("field", "exact"):
        setup, _, snap = _first_snapshot(tmp_path, telemetry)
        step = abs(_cdu(setup.site).profile.point("heat_load_kw").scale)
        on_steps = np.abs(snap.heat_kw / step - np.round(snap.heat_kw / step)) < 1e-6
        if telemetry == "field":
            assert on_steps.all()
            assert snap.max_age_s > 0
        else:
            assert not on_steps.all()
            assert snap.max_age_s == 0


def test_the_snapshot_reads_the_plants_free_cooling_state(tmp_path: Path) -> None:
    """The snapshot carries the plant's free-cooling state (Role.FREE_COOLING_STATE: 0 none, 1 partial, 2 full) and
    its free cooler's fan speed (Role.FREE_COOLER_FAN_SPEED, %), the facility's own values with exact and with field
    telemetry, so the rule can measure its free cooler's approach."""
    for telemetry in ("field", "exact"):
        _, fac, snap = _first_snapshot(tmp_path, telemetry)
        assert snap.free_cooling_state in (0.0, 1.0, 2.0)
        assert snap.free_cooling_state == float(fac.free_cooling_state), telemetry
        assert snap.free_cooler_fan_pct == pytest.approx(100.0 * float(fac.free_cooler_speed), abs=2.0), telemetry


def test_feed_live_publishes_one_series_per_gpu_as_before(tmp_path: Path) -> None:
    """feed_live (ids cached per facility) publishes every point as collectors would, the same ids and values as
    building each SeriesKey, one series per GPU."""
    site = control_site(tmp_path)
    setup = EvalSetup(site, site_limits(site), load_weather("builtin:leesburg"))
    fac = setup.facility(setup.day_starts()[0])
    got: list[object] = []
    live = LiveState()
    for _ in range(2):
        fac.step(60.0)
        feed_live(live, site, fac, got.append)
    b = got[-1]
    assert got[0].series is b.series  # type: ignore[attr-defined]
    rack = next(d for d in site.devices if d.kind == "rack")
    temps = list(fac.device_values(rack.name)["gpu_temp_c"])  # type: ignore[arg-type]
    for i in (0, len(temps) - 1):
        sid = SeriesKey.of(rack.profile.measurement, "gpu_temp_c", {**rack.tags, "gpu": str(i)}).id
        v = live.get(sid)
        assert v is not None
        assert v.value == temps[i]
        assert v.ts_ns == fac.t_ns


def _samples(batches: list[Any]) -> dict[str, tuple[int, float, int]]:
    """Every sample of some batches by series: (time, value rounded to 1e-12 with NaN as a marker, quality)."""
    out: dict[str, tuple[int, float, int]] = {}
    for b in batches:
        for sid, t, v, q in zip(b.series, b.ts_ns.tolist(), b.values.tolist(), b.quality.tolist(), strict=True):
            out[sid] = (t, -1e300 if math.isnan(v) else v, q)
    return out


def test_cdus_polled_together_give_the_samples_polled_one_by_one(tmp_path: Path) -> None:
    """The CDUs (Modbus devices of one profile) are encoded, decoded and noised in one pass; every sample, poll
    time and quality is the one a poll device by device gives, lost polls and bursts included."""
    setup = _setup(tmp_path, "field")
    site = setup.site
    fac = setup.facility(setup.day_starts()[0])
    model = FieldModel(loss=0.05, burst=0.01)
    kw: dict[str, Any] = {"seed": 3, "model": model, "points": setup.builder.needed(), "start_ns": fac.t_ns}
    together = FieldTelemetry(site, fac.device_arrays, **kw)
    alone = FieldTelemetry(site, fac.device_arrays, **kw)
    assert any(run is not None and len(ix) == 2 for ix, run in together.runs)  # both CDUs of the site in one run
    alone.runs = [([i], None) for i in alone.single]
    cdu = _cdu(site).name
    for step in range(240):
        fac.step(60.0)
        if step % 17 == 0:
            fac.write_point(cdu, setup.limits.tcs_point, 25.0 + step % 5)
        assert _samples(together.poll_due(fac.t_ns)) == _samples(alone.poll_due(fac.t_ns))
    assert together.lost == alone.lost > 0


def test_device_arrays_are_the_device_values_as_read_only_arrays(tmp_path: Path) -> None:
    """``Facility.device_arrays`` serves the numbers ``device_values`` serves, array points as read-only numpy
    arrays; after a step and a write both follow the new state."""
    setup = _setup(tmp_path, "field")
    fac = setup.facility(setup.day_starts()[0])
    cdu = _cdu(setup.site).name
    for step in range(3):
        fac.step(60.0)
        fac.write_point(cdu, setup.limits.dp_point, 60.0 + 10 * step)
        for dev in setup.site.devices:
            lists, arrays = fac.device_values(dev.name), fac.device_arrays(dev.name)
            assert lists.keys() == arrays.keys()
            for key, v in lists.items():
                a = arrays[key]
                if isinstance(v, list):
                    assert isinstance(a, np.ndarray)
                    assert not a.flags.writeable
                    assert a.tolist() == v
                else:
                    assert a == v
                    assert type(a) is type(v)


def test_the_oracle_counted_span_by_span_is_the_oracle_counted_in_one_go(tmp_path: Path) -> None:
    """The oracle's spans run apart (as the parallel evaluation runs them, one worker job each) and counted back in
    their order give exactly the KPIs of one run over every span."""
    from app.evaluation.evaluate import KpiLog, OracleController, oracle_span

    site = control_site(tmp_path, racks=4, interval_s=900.0)  # one CDU, a decision every 15 min: a quick oracle
    setup = EvalSetup(site, site_limits(site), load_weather("builtin:leesburg"), days=183, stride=1, first_day=182,
                      warmup_h=0.0, step_s=900.0, telemetry="field")
    spans: list[Any] = [(start, 0.125, 1.0) for start, _days, _warm in setup.spans()]  # 3 h each, after an hour
    setup.spans = lambda: spans  # type: ignore[method-assign]
    assert len(spans) == 2
    o = OracleController(setup)
    whole = evaluate(setup, o, o.bind).as_dict()
    k = Kpis()
    for i in range(len(setup.spans())):
        log, scope = oracle_span(setup, i)
        assert isinstance(log, KpiLog)
        assert scope == o.scope
        log.replay(k)
    parts = k.as_dict()
    whole.pop("decision_ms")
    parts.pop("decision_ms")
    assert parts == whole


def test_carbon_intensity_is_read_by_hour_of_the_utc_year() -> None:
    """An hourly carbon series is read at (day of the year − 1) · 24 + hour, UTC, in any year (leap days and the
    turn of the year included), the year's own hour zero again each 1 January."""
    import pandas as pd

    from app.evaluation.harness import Carbon

    hourly = np.arange(8784, dtype=np.float64)
    c = Carbon(100.0, hourly, "test")
    for stamp in ("2024-02-29T13:30", "2024-12-31T23:59", "2025-01-01T00:00", "2026-07-01T05:00", "2023-03-01"):
        ts = pd.Timestamp(stamp, tz="UTC")
        assert c.at(int(ts.value)) == float((ts.day_of_year - 1) * 24 + ts.hour)


def test_split_spans_in_worker_processes_give_the_kpis_of_one_process(tmp_path: Path) -> None:
    """With two workers, fixed setpoints run one span a job and are counted back in order: the same KPIs as in one
    process."""
    from app.evaluation.evaluate import Carbon, evaluate_all

    site = control_site(tmp_path)
    lim = site_limits(site)
    weather = load_weather("builtin:leesburg")
    docs = [
        evaluate_all(site, lim, weather, ["fixed"], days=2, stride=1, warmup_h=0.5, carbon=Carbon(), year=2026,
                     jobs=jobs, step_s=300.0, telemetry="field")
        for jobs in (1, 2)
    ]
    for doc in docs:
        doc["controllers"]["fixed"].pop("decision_ms")
    assert docs[0] == docs[1]
    assert docs[0]["evaluated_minutes"] == 3 * 1440.0  # the commissioning day and two days


def test_the_guard_ticks_at_the_collectors_rate_only_around_a_load_change() -> None:
    """aidc's facility step splits into guard ticks of the collectors' poll interval where the hall's utilisation
    moves by LOAD_CHANGE or more within it (a load step the fast path must meet as deployed), else it stays whole."""
    from types import SimpleNamespace

    from app.evaluation.harness import substeps

    class Steps:
        def rack_util(self, t_ns: int) -> np.ndarray:
            return np.full(4, 0.95 if t_ns >= 90_000_000_000 else 0.05)

    fac = SimpleNamespace(workload=Steps(), t_ns=0)
    assert substeps(fac, 60.0, 10.0) == 1  # type: ignore[arg-type]
    fac.t_ns = 60_000_000_000
    assert substeps(fac, 60.0, 10.0) == 6  # type: ignore[arg-type]
    assert substeps(fac, 60.0, 60.0) == 1  # type: ignore[arg-type]
    fac.t_ns = 120_000_000_000
    assert substeps(fac, 60.0, 10.0) == 1  # type: ignore[arg-type]
