"""Safety of the live supervisor: stale and NaN inputs, out-of-range choices, overrides, modes, thermal guard,
heartbeat and revert on SIGTERM, against an in-process facility behind a real live state."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aidc.clock import SteppedClock
from aidc.config import Site
from aidc.live import LiveState
from aidc.model import Batch, Quality, SeriesKey
from control.supervisor import Supervisor, install_signal_handlers
from control.types import Decision, Setpoints, Snapshot
from simulators.facility import Facility
from tests.control_helpers import FacilityWriter, control_site, feed, publish_value


class Rig:
    """A facility, its live state, the writer and a supervisor on a stepped clock."""

    def __init__(self, tmp_path: Path, mode: str = "auto", **control: Any) -> None:
        self.site: Site = control_site(tmp_path, mode=mode, **control)
        self.fac = Facility(self.site, start_ns=self.site.config.simulation.start_ns())
        self.clock = SteppedClock(self.fac.t_ns)
        self.live = LiveState()
        self.writer = FacilityWriter(self.site, self.fac, self.clock)
        self.published: list[Batch] = []
        self.sup = Supervisor(self.site, self.live, self.writer, self.clock, publish=self.published.append,
                              audit_dir=tmp_path / "audit")
        self.advance(60.0)

    def advance(self, seconds: float, *, feed_live: bool = True) -> None:
        """Step the facility and the clock; publish the new readings unless told not to."""
        self.fac.step(seconds)
        self.clock.t_ns = self.fac.t_ns
        if feed_live:
            feed(self.live, self.site, self.fac)

    def audit(self) -> list[dict[str, Any]]:
        """The control audit lines so far."""
        path = self.sup.audit_path
        return [json.loads(x) for x in path.read_text().splitlines()] if path.is_file() else []


class ExtremeCore:
    """A core whose 'model' asks for absurd setpoints, as a broken model predicting out of range would."""

    def __init__(self) -> None:
        self.model = None
        self.rows: list[object] = []

    def decide(self, snap: Snapshot) -> Decision:
        """TCS 60 °C and FWS 45 °C everywhere."""
        n = len(snap.cdu_names)
        return Decision(Setpoints(np.full(n, 60.0), np.full(n, 300.0), 45.0), state="deciding")


async def test_fresh_inputs_lead_to_a_decision_that_is_written_and_audited(tmp_path: Path) -> None:
    """With good inputs in auto mode a decision is made, written through the writer and audited with read-backs."""
    rig = Rig(tmp_path)
    rec = await rig.sup.decide_once()
    assert rec["state"] == "commissioning"
    assert rig.writer.setpoints(), "auto mode writes the chosen setpoints"
    assert all(r.readback == pytest.approx(r.new) for r in rig.writer.setpoints())
    kinds = [a["kind"] for a in rig.audit()]
    assert "decision" in kinds
    assert rig.published
    assert any("controller" in s for s in rig.published[-1].series)


async def test_stale_input_holds_then_reverts_to_safe_defaults(tmp_path: Path) -> None:
    """Readings older than stale_s make the supervisor hold; holding past hold_revert_s reverts to safe defaults."""
    rig = Rig(tmp_path, stale_s=120.0, hold_revert_s=600.0)
    await rig.sup.decide_once()
    rig.advance(300.0, feed_live=False)
    n_before = len(rig.writer.setpoints())
    rec = await rig.sup.decide_once()
    assert rec["state"] == "holding"
    assert "stale" in str(rec["hold_reason"])
    assert len(rig.writer.setpoints()) == n_before, "a hold writes nothing"
    rig.advance(700.0, feed_live=False)
    rec = await rig.sup.decide_once()
    assert rec["state"] == "fallback"
    safe = rig.sup.lim.safe
    last = {(r.device, r.point): r.new for r in rig.writer.setpoints()}
    assert last[(rig.sup.lim.plant_device, rig.sup.lim.fws_point)] == pytest.approx(safe.fws_c)
    for i, cdu in enumerate(rig.sup.lim.cdu_names):
        assert last[(cdu, rig.sup.lim.tcs_point)] == pytest.approx(safe.tcs_c[i])


async def test_nan_sensor_holds_and_names_the_cdu(tmp_path: Path) -> None:
    """A NaN GPU temperature makes the supervisor hold, naming the CDU whose racks lack the reading."""
    rig = Rig(tmp_path)
    rack = next(d for d in rig.site.devices if d.kind == "rack")
    sid = SeriesKey.of(rack.profile.measurement, "gpu_temp_c", {**rack.tags, "gpu": "3"}).id
    publish_value(rig.live, sid, rig.clock.now_ns(), float("nan"), Quality.BAD)
    rec = await rig.sup.decide_once()
    assert rec["state"] == "holding"
    assert "hottest GPU" in str(rec["hold_reason"])
    assert rig.sup.lim.cdu_names[0] in str(rec["hold_reason"])
    assert rig.writer.setpoints() == []


async def test_out_of_range_choice_is_refused_by_the_hard_limit_check(tmp_path: Path) -> None:
    """Setpoints outside the hard limits from the optimiser are refused before any write and audited."""
    rig = Rig(tmp_path)
    rig.sup.core = ExtremeCore()  # type: ignore[assignment]
    rec = await rig.sup.decide_once()
    assert rec["state"] == "holding"
    assert "hard-limit check refused" in str(rec["hold_reason"])
    assert "outside" in str(rec["hold_reason"])
    assert rig.writer.setpoints() == []
    assert rig.sup.status()["counts"]["refused"] == 1  # type: ignore[index]


async def test_override_wins_during_auto_and_expires(tmp_path: Path) -> None:
    """An operator override replaces the optimiser's value for its point until it expires (both audited)."""
    rig = Rig(tmp_path)
    cdu = rig.sup.lim.cdu_names[0]
    point = rig.sup.lim.tcs_point
    # 29 °C: clear of FWS + approach wherever the core's first step puts FWS (at most 26 °C from the safe 24 °C).
    rig.sup.set_override(cdu, point, 29.0, rig.clock.now_ns() + int(900e9), "alice")
    await rig.sup.decide_once()
    last = [r for r in rig.writer.setpoints() if (r.device, r.point) == (cdu, point)]
    assert last
    assert last[-1].new == pytest.approx(29.0)
    assert rig.sup.overrides()[0]["user"] == "alice"
    rig.advance(1000.0)
    assert rig.sup.overrides() == []
    kinds = [a["kind"] for a in rig.audit()]
    assert "override" in kinds
    assert "override_expired" in kinds


async def test_modes_off_and_advisory_never_write_and_leaving_auto_reverts(tmp_path: Path) -> None:
    """off decides nothing, advisory records without writing, and leaving auto reverts to the safe defaults."""
    rig = Rig(tmp_path, mode="off")
    rec = await rig.sup.decide_once()
    assert rec["state"] == "off"
    assert rig.writer.log == []
    rig.sup.set_mode("advisory", "bob")
    rec = await rig.sup.decide_once()
    assert "chosen" in rec
    assert rig.writer.log == []
    rig.sup.set_mode("auto", "bob")
    await rig.sup.decide_once()
    assert rig.writer.setpoints()
    rig.sup.set_mode("advisory", "bob")
    rig.advance(300.0)
    rec = await rig.sup.decide_once()
    assert "reverted" in rec
    modes = [(a["from"], a["to"], a["user"]) for a in rig.audit() if a["kind"] == "mode"]
    assert modes == [("off", "advisory", "bob"), ("advisory", "auto", "bob"), ("auto", "advisory", "bob")]
    with pytest.raises(Exception, match="choose off, advisory or auto"):
        rig.sup.set_mode("manual", "bob")


async def test_thermal_alarm_is_acted_on_at_the_next_guard_tick(tmp_path: Path) -> None:
    """A GPU reading at its alarm limit makes the running supervisor write colder setpoints before its next
    decision, i.e. within one guard (collector) tick."""
    rig = Rig(tmp_path)
    stop = asyncio.Event()
    task = asyncio.create_task(rig.sup.run(stop, guard_s=0.02))
    async with asyncio.timeout(5):
        await rig.sup.decided.wait()
    before = rig.sup.written
    assert before is not None
    rack = next(d for d in rig.site.devices if d.kind == "rack" and d.tags["rack"] in _racks(rig, 0))
    sid = SeriesKey.of(rack.profile.measurement, "gpu_temp_c", {**rack.tags, "gpu": "0"}).id
    publish_value(rig.live, sid, rig.clock.now_ns(), 86.5)
    async with asyncio.timeout(5):
        await rig.sup.cooled.wait()
    assert rig.sup.counts["decisions"] == 1, "acted on by the guard, not by a later decision"
    after = rig.sup.written
    assert after is not None
    assert after.tcs_c[0] < before.tcs_c[0]
    assert after.dp_kpa[0] > before.dp_kpa[0]
    stop.set()
    await task


def _racks(rig: Rig, cdu_index: int) -> tuple[str, ...]:
    dev = next(d for d in rig.site.devices if d.name == rig.sup.lim.cdu_names[cdu_index])
    return tuple(getattr(dev.config, "racks", ()))


async def test_heartbeat_changes_in_auto_only(tmp_path: Path) -> None:
    """Heartbeats are written to every controlled device with a heartbeat point in auto, never in advisory."""
    rig = Rig(tmp_path, mode="advisory")
    await rig.sup.heartbeat()
    assert rig.writer.log == []
    rig.sup.set_mode("auto", "ops")
    await rig.sup.heartbeat()
    await rig.sup.heartbeat()
    beats = [(r.device, r.new) for r in rig.writer.log if r.why == "heartbeat"]
    devices = {d for d, _ in beats}
    assert devices == set(rig.sup.controlled)
    assert len({v for _, v in beats}) == 2, "the value changes every beat"


async def test_sigterm_reverts_every_controlled_setpoint(tmp_path: Path) -> None:
    """SIGTERM to the process stops the running supervisor, which writes every safe default on the way out."""
    rig = Rig(tmp_path)
    stop = asyncio.Event()
    install_signal_handlers(stop)
    try:
        task = asyncio.create_task(rig.sup.run(stop, guard_s=0.02))
        async with asyncio.timeout(5):
            await rig.sup.decided.wait()
        os.kill(os.getpid(), signal.SIGTERM)
        async with asyncio.timeout(5):
            await task
    finally:
        loop = asyncio.get_running_loop()
        loop.remove_signal_handler(signal.SIGTERM)
        loop.remove_signal_handler(signal.SIGINT)
    lim = rig.sup.lim
    reverts = [r for r in rig.writer.log if r.why.startswith("revert: supervisor stopping")]
    assert lim.chw_point is not None, "the demo plant's CRAH chilled-water setpoint is controlled too"
    assert len(reverts) == 2 * len(lim.cdu_names) + 2
    assert rig.fac.device_values(lim.plant_device)[lim.chw_point] == pytest.approx(lim.safe.chw_c)
    for i, cdu in enumerate(lim.cdu_names):
        assert rig.fac.device_values(cdu)[lim.tcs_point] == pytest.approx(lim.safe.tcs_c[i])
        assert rig.fac.device_values(cdu)[lim.dp_point] == pytest.approx(lim.safe.dp_kpa[i])
    assert rig.fac.device_values(lim.plant_device)[lim.fws_point] == pytest.approx(lim.safe.fws_c)


async def test_input_sink_and_live_state_give_the_same_snapshot(tmp_path: Path) -> None:
    """The supervisor's own input sink reads the same values and ages as the live state it stands beside."""
    rig = Rig(tmp_path)
    slow = rig.sup.snapshot()
    feed(rig.live, rig.site, rig.fac)
    rig.sup.sink(next(iter([_batch_of(rig)])))
    fast = rig.sup.snapshot()
    assert rig.sup.reader.seen
    np.testing.assert_allclose(fast.gpu_max_c, slow.gpu_max_c)
    np.testing.assert_allclose(fast.current.tcs_c, slow.current.tcs_c)
    assert fast.facility_kw == pytest.approx(slow.facility_kw)
    assert fast.max_age_s == pytest.approx(slow.max_age_s)


def _batch_of(rig: Rig) -> Batch:
    got: list[Batch] = []
    feed(got.append, rig.site, rig.fac)  # type: ignore[arg-type]
    return got[0]


async def test_status_is_json_and_decisions_reach_the_historian_series(tmp_path: Path) -> None:
    """status() serialises to JSON with mode, state, last decision and counts; every decision is published as
    controller series, one per controlled setpoint (tagged with its device)."""
    rig = Rig(tmp_path)
    await rig.sup.decide_once()
    st = json.loads(json.dumps(rig.sup.status()))
    assert st["mode"] == "auto"
    assert st["state"] == "commissioning"
    assert st["counts"]["decisions"] == 1
    last = st["last_decision"]
    cdu = rig.sup.lim.cdu_names[0]
    assert set(last["chosen"][cdu]) == {rig.sup.lim.tcs_point, rig.sup.lim.dp_point}
    assert "written" in last
    assert all(w["ok"] for w in last["written"])
    series = set(rig.published[-1].series)
    site = rig.site.name
    assert SeriesKey.of("controller", rig.sup.lim.tcs_point, {"site": site, "device": cdu}).id in series
    assert SeriesKey.of("controller", "predicted_facility_kw", {"site": site}).id in series
