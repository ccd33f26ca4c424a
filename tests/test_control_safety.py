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


async def test_nan_gpu_series_on_one_cdu_holds_only_that_cdu_then_reverts_it(tmp_path: Path) -> None:
    """A NaN GPU series on one CDU holds that CDU's setpoints (naming it) while the other CDU is still decided and
    written; held past hold_revert_s, only that CDU reverts to its safe defaults."""
    rig = Rig(tmp_path, hold_revert_s=600.0)
    rig.sup.core = WarmCore()  # type: ignore[assignment]
    lim = rig.sup.lim
    await rig.sup.decide_once()
    before = _written(rig)
    _nan_gpu(rig, 0)
    rec = await rig.sup.decide_once()
    assert rec["state"] != "holding", "the site is not held for one CDU's series"
    holds = rec["cdu_holds"]
    assert isinstance(holds, dict)
    assert set(holds) == {lim.cdu_names[0]}
    assert "hottest GPU" in str(holds[lim.cdu_names[0]]["reason"])
    after = _written(rig)
    assert after[(lim.cdu_names[0], lim.tcs_point)] == pytest.approx(before[(lim.cdu_names[0], lim.tcs_point)])
    assert after[(lim.cdu_names[1], lim.tcs_point)] == pytest.approx(before[(lim.cdu_names[1], lim.tcs_point)] + 1)
    rig.advance(700.0)
    _nan_gpu(rig, 0)
    await rig.sup.decide_once()
    last = _written(rig)
    assert last[(lim.cdu_names[0], lim.tcs_point)] == pytest.approx(lim.safe.tcs_c[0])
    assert last[(lim.cdu_names[0], lim.dp_point)] == pytest.approx(lim.safe.dp_kpa[0])
    assert last[(lim.cdu_names[1], lim.tcs_point)] == pytest.approx(before[(lim.cdu_names[1], lim.tcs_point)] + 2)
    assert [a["device"] for a in rig.audit() if a["kind"] == "cdu_revert"] == [lim.cdu_names[0]]
    assert rig.sup.counts["cdu_reverts"] == 1


async def test_stale_racks_of_one_cdu_hold_only_that_cdu(tmp_path: Path) -> None:
    """Readings of one CDU's racks older than stale_s hold that CDU alone; the plant, meters and the other CDU being
    fresh, the other CDU is still decided and written."""
    rig = Rig(tmp_path, stale_s=120.0)
    rig.sup.core = WarmCore()  # type: ignore[assignment]
    lim = rig.sup.lim
    await rig.sup.decide_once()
    before = _written(rig)
    rig.advance(300.0, feed_live=False)
    stale = {d.name for d in _rack_devices(rig, 0)}
    got: list[Batch] = []
    feed(got.append, rig.site, rig.fac)
    b = got[0]
    keep = np.array([not any(f"device={n}," in s for n in stale) for s in b.series])
    rig.live.update(Batch(b.series[keep], b.ts_ns[keep], b.values[keep], b.quality[keep]))
    rec = await rig.sup.decide_once()
    assert rec["state"] != "holding"
    holds = rec["cdu_holds"]
    assert isinstance(holds, dict)
    assert list(holds) == [lim.cdu_names[0]]
    assert "stale" in str(holds[lim.cdu_names[0]]["reason"])
    after = _written(rig)
    assert after[(lim.cdu_names[0], lim.tcs_point)] == pytest.approx(before[(lim.cdu_names[0], lim.tcs_point)])
    assert after[(lim.cdu_names[1], lim.tcs_point)] == pytest.approx(before[(lim.cdu_names[1], lim.tcs_point)] + 1)


async def test_alarm_word_on_one_cdu_holds_it_then_reverts_it(tmp_path: Path) -> None:
    """A non-zero alarm word on one CDU keeps that CDU from moving warmer (the other CDU moves as decided), and an
    alarm lasting hold_revert_s reverts that CDU alone to its safe defaults; both audited."""
    rig = Rig(tmp_path, hold_revert_s=600.0)
    rig.sup.core = WarmCore()  # type: ignore[assignment]
    lim = rig.sup.lim
    a, b = lim.cdu_names
    await rig.sup.decide_once()
    before = _written(rig)
    _alarm(rig, 0, 4)  # pump fault (bit 2)
    rec = await rig.sup.decide_once()
    after = _written(rig)
    assert after[(a, lim.tcs_point)] == pytest.approx(before[(a, lim.tcs_point)]), "no warmer while alarmed"
    assert after[(a, lim.dp_point)] == pytest.approx(before[(a, lim.dp_point)]), "no less flow while alarmed"
    assert after[(b, lim.tcs_point)] == pytest.approx(before[(b, lim.tcs_point)] + 1)
    assert rec["cdu_holds"][a]["kind"] == "alarm"  # type: ignore[index]
    rig.advance(700.0)
    _alarm(rig, 0, 4)
    await rig.sup.decide_once()
    last = _written(rig)
    assert last[(a, lim.tcs_point)] == pytest.approx(lim.safe.tcs_c[0])
    assert last[(b, lim.tcs_point)] == pytest.approx(before[(b, lim.tcs_point)] + 2)
    kinds = [(x["kind"], x.get("device")) for x in rig.audit()]
    assert ("cdu_hold", a) in kinds
    assert ("cdu_revert", a) in kinds
    rig.advance(300.0)  # the alarm word clears: the CDU is decided again
    await rig.sup.decide_once()
    assert ("cdu_hold_cleared", a) in [(x["kind"], x.get("device")) for x in rig.audit()]
    assert _written(rig)[(a, lim.tcs_point)] == pytest.approx(lim.safe.tcs_c[0] + 1)


async def test_alarm_bits_outside_the_mask_do_not_hold(tmp_path: Path) -> None:
    """An alarm word with only a bit outside alarm_word_mask (dp not reached, bit 5, by default) holds nothing."""
    rig = Rig(tmp_path)
    rig.sup.core = WarmCore()  # type: ignore[assignment]
    lim = rig.sup.lim
    await rig.sup.decide_once()
    before = _written(rig)
    _alarm(rig, 0, 32)
    rec = await rig.sup.decide_once()
    assert "cdu_holds" not in rec
    assert _written(rig)[(lim.cdu_names[0], lim.tcs_point)] == pytest.approx(before[(lim.cdu_names[0],
                                                                                       lim.tcs_point)] + 1)


async def test_a_reverted_cdu_reaches_its_safe_defaults_after_a_refused_decision(tmp_path: Path) -> None:
    """A CDU reverted while the decision was refused still goes straight to its safe defaults at the next decision:
    its revert stays exempt from the rate limit until it is written."""
    rig = Rig(tmp_path, hold_revert_s=600.0)
    rig.sup.core = WarmCore()  # type: ignore[assignment]
    lim = rig.sup.lim
    for _ in range(3):  # three steps of +1 K: 3 K from the safe default, more than one rate step
        await rig.sup.decide_once()
        rig.advance(300.0)
    _nan_gpu(rig, 0)
    await rig.sup.decide_once()
    rig.advance(700.0)
    _nan_gpu(rig, 0)
    rig.sup.core = ExtremeCore()  # type: ignore[assignment]
    rec = await rig.sup.decide_once()
    assert "hard-limit check refused" in str(rec["hold_reason"])
    rig.sup.core = WarmCore()  # type: ignore[assignment]
    rig.advance(300.0)
    _nan_gpu(rig, 0)
    rec = await rig.sup.decide_once()
    assert rec["state"] != "holding", rec.get("hold_reason")
    assert _written(rig)[(lim.cdu_names[0], lim.tcs_point)] == pytest.approx(lim.safe.tcs_c[0])


async def test_override_on_one_point_does_not_exempt_another_from_the_rate_check(tmp_path: Path) -> None:
    """An operator override exempts its own point from the rate limit but leaves every other point checked: a core
    asking for an oversized dp step on another CDU is refused while the override is active."""
    rig = Rig(tmp_path)
    lim = rig.sup.lim
    a, b = lim.cdu_names
    rig.sup.set_override(a, lim.tcs_point, 27.5, rig.clock.now_ns() + int(3600e9), "alice")
    rig.sup.core = StepCore(dp_step=3 * lim.cfg.max_step_dp_kpa, cdu=1)  # type: ignore[assignment]
    rec = await rig.sup.decide_once()
    assert rec["state"] == "holding"
    assert f"{b}.{lim.dp_point}: step" in str(rec["hold_reason"])
    assert rig.writer.setpoints() == []
    rig.sup.core = StepCore(dp_step=0.0, cdu=1)  # type: ignore[assignment]
    await rig.sup.decide_once()
    assert _written(rig)[(a, lim.tcs_point)] == pytest.approx(27.5), "the override itself skips the rate limit"


async def test_decisions_cannot_warm_a_guarded_cdu_during_the_lockout(tmp_path: Path) -> None:
    """After the thermal guard cools a CDU, decisions wanting warmer water are limited to what the guard left for
    lockout_s (recorded in the decision), and move warmer again once it has passed."""
    rig = Rig(tmp_path, lockout_s=1800.0)
    rig.sup.core = WarmCore()  # type: ignore[assignment]
    lim = rig.sup.lim
    a = lim.cdu_names[0]
    await rig.sup.decide_once()
    _hot_gpu(rig, 0)
    assert await rig.sup.thermal_check()
    guard_left = _written(rig)[(a, lim.tcs_point)]
    rig.advance(300.0)
    rec = await rig.sup.decide_once()
    assert _written(rig)[(a, lim.tcs_point)] == pytest.approx(guard_left)
    lock = rec["lockout"]
    assert isinstance(lock, dict)
    assert f"{a}.tcs" in lock["limited"]
    assert lock["cdus"] == [a]
    assert rig.sup.counts["lockout_limits"] == 1
    rig.advance(1600.0)
    rec = await rig.sup.decide_once()
    assert "lockout" not in rec
    assert _written(rig)[(a, lim.tcs_point)] == pytest.approx(guard_left + 1)


class WarmCore:
    """A core that asks for 1 K warmer TCS and 10 kPa less dp on every CDU at every decision (within the rates)."""

    def __init__(self) -> None:
        self.model = None
        self.rows: list[object] = []

    def decide(self, snap: Snapshot) -> Decision:
        """The snapshot's setpoints, warmer and at less flow."""
        cur = snap.current
        return Decision(Setpoints(cur.tcs_c + 1.0, cur.dp_kpa - 10.0, cur.fws_c), state="deciding")


class StepCore(WarmCore):
    """A core that keeps every setpoint but moves one CDU's dp by ``dp_step``."""

    def __init__(self, dp_step: float, cdu: int) -> None:
        super().__init__()
        self.dp_step, self.cdu = dp_step, cdu

    def decide(self, snap: Snapshot) -> Decision:
        """The snapshot's setpoints with one dp moved."""
        cur = snap.current.copy()
        cur.dp_kpa[self.cdu] += self.dp_step
        return Decision(cur, state="deciding")


def _written(rig: Rig) -> dict[tuple[str, str], float]:
    """The last value written to each (device, point)."""
    return {(r.device, r.point): r.new for r in rig.writer.setpoints()}


def _rack_devices(rig: Rig, cdu_index: int) -> list[Any]:
    racks = set(_racks(rig, cdu_index))
    return [d for d in rig.site.devices if d.kind == "rack" and d.tags["rack"] in racks]


def _nan_gpu(rig: Rig, cdu_index: int) -> None:
    rack = _rack_devices(rig, cdu_index)[0]
    sid = SeriesKey.of(rack.profile.measurement, "gpu_temp_c", {**rack.tags, "gpu": "3"}).id
    publish_value(rig.live, sid, rig.clock.now_ns(), float("nan"), Quality.BAD)


def _hot_gpu(rig: Rig, cdu_index: int) -> None:
    rack = _rack_devices(rig, cdu_index)[0]
    sid = SeriesKey.of(rack.profile.measurement, "gpu_temp_c", {**rack.tags, "gpu": "0"}).id
    publish_value(rig.live, sid, rig.clock.now_ns(), 86.5)


def _alarm(rig: Rig, cdu_index: int, word: int) -> None:
    dev = next(d for d in rig.site.devices if d.name == rig.sup.lim.cdu_names[cdu_index])
    sid = SeriesKey.of(dev.profile.measurement, "alarm_word", dev.tags).id
    publish_value(rig.live, sid, rig.clock.now_ns(), float(word))


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
    feed(got.append, rig.site, rig.fac)
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


def test_inputs_ready_only_once_every_input_has_been_read(tmp_path: Path) -> None:
    """Before any poll the supervisor's inputs are not ready (a start waits rather than holding); fed, they are."""
    site = control_site(tmp_path)
    fac = Facility(site, start_ns=site.config.simulation.start_ns())
    clock = SteppedClock(fac.t_ns)
    live = LiveState()
    sup = Supervisor(site, live, FacilityWriter(site, fac, clock), clock, audit_dir=tmp_path / "audit")
    assert not sup.inputs_ready()
    fac.step(60.0)
    clock.t_ns = fac.t_ns
    feed(live, site, fac)
    assert sup.inputs_ready()
