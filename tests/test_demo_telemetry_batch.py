"""The demo's history backfill reads the simulated facility column by column (simulators/facility_batch.py): the
same series, values (bit for bit) and quality as reading it device by device, step after step, with sensor noise,
slow faults, a drifting sensor, a leak and setpoint writes in between."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aidc.config import Site
from app.evaluation.harness import ExactTelemetry
from simulators.degradation import Degradation, SlowFault
from simulators.facility import Facility
from simulators.facility_batch import FacilityBatch


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit for bit (NaN included)."""
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def test_column_batch_equals_the_device_by_device_batch(small_site: Site) -> None:
    """Every step's batch equals ExactTelemetry's over the facility's device_arrays: ids, order, values, quality."""
    site = small_site
    fac = Facility(site, sensor_noise=True)
    racks = [r for _, r in site.racks()]
    cdu = next(c.name for h in site.config.halls for c in h.cdus)
    t0 = fac.t_ns
    fac.degradation = Degradation.for_facility(fac, site, [
        SlowFault("pump_wear", cdu, t0, ramp_days=0.01, severity=0.5),
        SlowFault("sensor_drift", racks[1].name, t0, ramp_days=0.01, severity=2.0),
    ])  # fmt: skip
    fast, slow = FacilityBatch(fac), ExactTelemetry(site, fac.device_arrays)
    assert fast.batch(fac.t_ns).series is fast.batch(fac.t_ns).series  # the sinks map it once
    pdu = next(r.pdu.name for r in racks if r.pdu is not None)
    for step in range(12):
        if step == 3:
            fac.set_fault(racks[0].controller.name if racks[0].controller else pdu, "leak")
        if step == 6:
            fac.write_point(cdu, "tcs_supply_temp_setpoint_c", 31.5)
        a, b = fast.batch(fac.t_ns), slow.batch(fac.t_ns)
        assert list(a.series) == list(b.series)
        assert _same(a.values, b.values), step
        assert _same(a.ts_ns, b.ts_ns)
        assert _same(a.quality, b.quality)
        fac.step(300.0)
    drifting = f"device={racks[1].controller.name}," if racks[1].controller else ""
    i = next(i for i, s in enumerate(a.series) if drifting in s and "coolant_inlet_temp_c" in s)
    assert a.values[i] > fac.rack_inlet_c[fac.rack_index[racks[1].name]] + 0.5  # the drift is in the reading


def test_held_points_are_the_served_writable_points(small_site: Site) -> None:
    """Facility.device_held (a write's read-back in the backfill) equals device_values on every writable point."""
    fac = Facility(small_site, sensor_noise=True)
    cdu = next(c.name for h in small_site.config.halls for c in h.cdus)
    plant = next(d.name for d in small_site.devices if d.kind == "plant")
    fac.write_point(cdu, "dp_setpoint_kpa", 135.0)
    fac.write_point(plant, "fws_supply_temp_setpoint_c", 26.0)
    fac.step(300.0)
    checked = 0
    for dev in small_site.devices:
        served = fac.device_values(dev.name)
        want = {p.sim or p.name: served[p.sim or p.name] for p in dev.profile.points if p.writable}
        assert fac.device_held(dev.name) == want, dev.name
        checked += len(want)
    assert checked >= 4
    assert fac.device_held(cdu)["dp_setpoint_kpa"] == 135.0


def test_history_runs_on_its_own_loop_and_stops_when_asked(tmp_path: Path) -> None:
    """run_in_own_loop simulates every step of the plan (the supervisor deciding, its core called inline) into the
    sink, awaiting the writer between chunks; a set stop event ends it before its next chunk."""
    import asyncio
    import dataclasses
    import threading

    import pandas as pd

    from aidc.config import site_from_dict
    from app.backfill import CHUNK_STEPS, HistoryRun, Progress, plan_history, run_in_own_loop
    from tests.conftest import site_dict

    site = site_from_dict(site_dict(1, data_dir=str(tmp_path / "var")), source="s.toml", path=tmp_path / "s.toml")
    plan = plan_history(site, pd.Timestamp("2026-12-07T09:00Z").value, 1)
    assert plan is not None
    plan = dataclasses.replace(plan, end_ns=plan.start_ns + 2 * CHUNK_STEPS * int(plan.step_s * 10**9))
    stamps: set[int] = set()
    waits: list[int] = []

    async def wait_writer(points: int) -> None:
        waits.append(points)

    run = HistoryRun(site, plan)
    run_in_own_loop(run, lambda b: stamps.update(b.ts_ns.tolist()), wait_writer, Progress(), None, threading.Event())
    assert len(stamps) >= 2 * CHUNK_STEPS  # every step's telemetry (and the supervisor's records)
    assert len(waits) == 3  # after each chunk, then the final flush (-1)
    assert waits[-1] == -1
    assert run.supervisor.decided.is_set()  # it decided
    stop = threading.Event()
    stop.set()
    with pytest.raises(asyncio.CancelledError):
        run_in_own_loop(HistoryRun(site, plan), lambda b: None, wait_writer, Progress(), None, stop)
