"""The supervisor's fast path (feed-forward on a load step), its pure pieces, the lock-out and the guard's rate
exemptions."""

from __future__ import annotations

import asyncio
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from aidc.model import SeriesKey
from control.fastpath import LoadStepDetector, cold_side, core_step_ready, step_ready_rule
from control.guard import alarmed_cdus, verify
from control.holds import Lockout, fill_held
from control.types import Setpoints, Snapshot
from tests.control_helpers import publish_value
from tests.test_control_safety import Rig, WarmCore, _hot_gpu, _rack_devices, _written


def _sp(tcs: float, dp: float, fws: float, n: int = 2) -> Setpoints:
    return Setpoints(np.full(n, tcs), np.full(n, dp), fws)


def test_detector_acts_once_on_a_rise_and_never_on_a_drop() -> None:
    """A rise of more than the threshold since the last decision is a step (once); a drop is not; a drop then a rise
    within one interval counts from the low point."""
    d = LoadStepDetector(2)
    d.reset(np.array([10.0, 90.0]))
    stepped, base = d.check(np.array([35.0, 10.0]), 20.0)
    assert stepped.tolist() == [True, False]
    assert base[0] == pytest.approx(10.0)
    assert math.isnan(base[1])
    stepped, _ = d.check(np.array([36.0, 10.0]), 20.0)
    assert not stepped.any(), "one step acts once"
    stepped, base = d.check(np.array([36.0, 35.0]), 20.0)
    assert stepped.tolist() == [False, True], "90 -> 10 -> 35 is a 25-point rise"
    assert base[1] == pytest.approx(10.0)
    stepped, _ = d.check(np.array([np.nan, np.nan]), 20.0)
    assert not stepped.any()


def test_step_ready_rule_interpolates_toward_the_safe_defaults_by_the_load_step() -> None:
    """The rule moves the stepped CDU the step's share of the way to full load toward the safe defaults' cold side,
    leaves the others, and never moves warmer than the safe defaults' cold side."""
    cur, safe = _sp(34.0, 80.0, 28.0), _sp(30.0, 120.0, 24.0)
    out = step_ready_rule(cur, safe, np.array([20.0, np.nan]), np.array([60.0, 50.0]))
    assert out.tcs_c.tolist() == pytest.approx([32.0, 34.0])  # (60 - 20) / (100 - 20) = 0.5 of 4 K
    assert out.dp_kpa.tolist() == pytest.approx([100.0, 80.0])
    assert out.fws_c == pytest.approx(26.0)
    colder = step_ready_rule(_sp(28.0, 150.0, 22.0), safe, np.array([0.0, 0.0]), np.array([100.0, 100.0]))
    assert colder.tcs_c.tolist() == pytest.approx([28.0, 28.0])
    assert colder.dp_kpa.tolist() == pytest.approx([150.0, 150.0])


def test_cold_side_moves_only_stepped_cdus_colder_and_the_plant_for_the_approach(tmp_path: Path) -> None:
    """cold_side never warms or lowers flow, leaves CDUs that did not step, and lowers FWS when the colder TCS needs
    it for the CDU approach."""
    lim = Rig(tmp_path).sup.lim
    cur = _sp(30.0, 120.0, 26.0)
    target = Setpoints(np.array([27.0, 25.0]), np.array([100.0, 150.0]), 30.0)
    out = cold_side(target, cur, np.array([True, False]), lim, None)
    assert out.tcs_c.tolist() == pytest.approx([27.0, 30.0])
    assert out.dp_kpa.tolist() == pytest.approx([120.0, 120.0])
    assert out.fws_c == pytest.approx(27.0 - lim.cfg.cdu_approach_k)
    assert math.isnan(out.chw_c)


def test_core_step_ready_is_used_only_where_the_core_offers_it(tmp_path: Path) -> None:
    """core_step_ready returns the core's step-ready setpoints when it has the method and None otherwise."""
    snap = Rig(tmp_path).sup.snapshot()

    class Ready:
        def step_ready(self, snap: Snapshot) -> Setpoints:
            """Fixed full-load setpoints."""
            return _sp(28.0, 140.0, 22.0)

    got = core_step_ready(Ready(), snap)
    assert got is not None
    assert got.tcs_c.tolist() == [28.0, 28.0]
    assert core_step_ready(WarmCore(), snap) is None


def test_lockout_keeps_guarded_cdus_and_plant_no_warmer_until_it_ends() -> None:
    """While armed, the lock-out caps the guarded CDU's TCS and the plant's FWS at what the guard left and floors its
    dp, names what it limited, leaves the other CDU free, and lets go after its duration."""
    lock = Lockout(("a", "b"))
    lock.arm(0, 100.0, _sp(26.0, 140.0, 20.0), np.array([True, False]), "thermal guard")
    sp, limited = lock.apply(_sp(28.0, 120.0, 22.0), int(50e9))
    assert sp.tcs_c.tolist() == [26.0, 28.0]
    assert sp.dp_kpa.tolist() == [140.0, 120.0]
    assert sp.fws_c == 20.0
    assert limited == ["a.tcs", "a.dp", "plant.fws"]
    sp, limited = lock.apply(_sp(28.0, 120.0, 22.0), int(100e9))
    assert limited == []
    assert sp.tcs_c.tolist() == [28.0, 28.0]


def test_verify_exempts_only_the_named_points_and_the_cold_direction(tmp_path: Path) -> None:
    """verify's rate check skips exactly the exempt (device, point) pairs, and with cold_free the colder / more-flow
    moves only."""
    rig = Rig(tmp_path)
    lim, snap = rig.sup.lim, rig.sup.snapshot()
    a, b = lim.cdu_names
    prev = _sp(32.0, 120.0, 24.0)
    big = Setpoints(np.array([28.0, 32.0]), np.array([120.0, 180.0]), 24.0)
    v = verify(big, prev, snap, lim, exempt={(a, lim.tcs_point)})
    assert not v.ok
    assert [r.split(":")[0] for r in v.reasons] == [f"{b}.{lim.dp_point}"]
    assert verify(big, prev, snap, lim, cold_free=True).ok
    warm = Setpoints(np.array([36.0, 32.0]), np.array([120.0, 120.0]), 24.0)
    assert not verify(warm, prev, snap, lim, cold_free=True).ok


def _set_util(rig: Rig, cdu_index: int, pct: float) -> None:
    """Publish every GPU's utilisation on one CDU's racks."""
    gpus = {r.name: r.gpus for _h, r in rig.site.racks()}
    for dev in _rack_devices(rig, cdu_index):
        for g in range(gpus[dev.tags["rack"]]):
            sid = SeriesKey.of(dev.profile.measurement, "gpu_util_pct", {**dev.tags, "gpu": str(g)}).id
            publish_value(rig.live, sid, rig.clock.now_ns(), pct)


async def test_load_step_between_decisions_is_met_within_one_guard_tick(tmp_path: Path) -> None:
    """A utilisation step on one CDU between decisions makes the running supervisor write colder, higher-flow
    setpoints for that CDU before its next decision (audited as feed_forward, counted, then locked out), while a
    drop on the other CDU writes nothing for it."""
    rig = Rig(tmp_path, feedforward_util_rise_pct=20.0)
    rig.sup.core = WarmCore()  # type: ignore[assignment]
    lim = rig.sup.lim
    a, b = lim.cdu_names
    _set_util(rig, 0, 10.0)
    stop = asyncio.Event()
    task = asyncio.create_task(rig.sup.run(stop, guard_s=0.02))
    async with asyncio.timeout(5):
        await rig.sup.decided.wait()
    before = _written(rig)
    _set_util(rig, 1, 10.0)  # a drop: no action
    _set_util(rig, 0, 95.0)  # a step: act now
    async with asyncio.timeout(5):
        await rig.sup.fed_forward.wait()
    stop.set()
    await task
    assert rig.sup.counts["decisions"] == 1, "met by the fast path, not by a later decision"
    assert rig.sup.counts["feed_forwards"] == 1
    ff = [x for x in rig.writer.setpoints() if x.why.startswith("feed forward")]
    assert {(x.device, x.point) for x in ff} >= {(a, lim.tcs_point), (a, lim.dp_point)}
    assert all(x.device != b for x in ff), "a drop does not act"
    after = {(x.device, x.point): x.new for x in ff}
    assert after[(a, lim.tcs_point)] < before[(a, lim.tcs_point)]
    assert after[(a, lim.dp_point)] > before[(a, lim.dp_point)]
    rec = next(x for x in rig.audit() if x["kind"] == "feed_forward")
    assert rec["cdus"] == [a]
    assert rec["source"] == "rule"
    assert "lockout_until" in rec


async def test_the_fast_paths_lockout_lasts_feedforward_lockout_s_the_guards_lockout_s(tmp_path: Path) -> None:
    """A load step met by the fast path (before any temperature rose) locks its CDU for feedforward_lockout_s, and a
    thermal guard action for the full lockout_s."""
    rig = Rig(tmp_path, feedforward_util_rise_pct=20.0, lockout_s=1800.0, feedforward_lockout_s=600.0)
    rig.sup.core = WarmCore()  # type: ignore[assignment]
    _set_util(rig, 0, 10.0)
    await rig.sup.decide_once()
    _set_util(rig, 0, 95.0)
    now = rig.clock.now_ns()
    assert await rig.sup.fast_check() == [rig.sup.lim.cdu_names[0]]
    assert rig.sup.lockout.until_ns == now + 600_000_000_000
    assert rig.sup.lockout.source == "feed forward"
    rig.advance(700.0)
    assert not rig.sup.lockout.active(rig.clock.now_ns()), "the fast path's lock-out has ended"
    (tmp_path / "guard").mkdir()
    guarded = Rig(tmp_path / "guard", lockout_s=1800.0, feedforward_lockout_s=600.0)
    guarded.sup.core = WarmCore()  # type: ignore[assignment]
    await guarded.sup.decide_once()
    _hot_gpu(guarded, 0)
    now = guarded.clock.now_ns()
    assert await guarded.sup.thermal_check()
    assert guarded.sup.lockout.until_ns == now + 1_800_000_000_000
    assert guarded.sup.lockout.source == "thermal guard"


def test_alarm_words_count_only_the_bits_of_the_mask(tmp_path: Path) -> None:
    """alarmed_cdus names the CDUs whose alarm word has a bit of alarm_word_mask set and ignores the other bits."""
    snap = Rig(tmp_path).sup.snapshot()
    a, b = snap.cdu_names
    snap = replace(snap, alarms=(f"{a}: alarm word 4", f"{b}: alarm word 32"))
    assert set(alarmed_cdus(snap)) == {a, b}
    assert alarmed_cdus(snap, 0b10111) == {a: f"{a}: alarm word 4"}


def test_a_failing_core_step_ready_falls_back_to_the_rule(tmp_path: Path) -> None:
    """An exception in the core's step_ready does not stop the fast path: core_step_ready returns None."""
    snap = Rig(tmp_path).sup.snapshot()

    class Broken:
        def step_ready(self, snap: Snapshot) -> Setpoints:
            """Fails as a model without data would."""
            raise ValueError("no model")

    assert core_step_ready(Broken(), snap) is None


def test_fill_held_gives_the_core_finite_values_for_a_bad_cdu(tmp_path: Path) -> None:
    """fill_held shows a bad CDU with its last readings (before any: the hottest good CDU) and its held setpoints,
    and leaves the good CDUs as measured."""
    snap = Rig(tmp_path).sup.snapshot()
    gpu = snap.gpu_max_c.copy()
    gpu[0] = np.nan
    bad_snap = replace(snap, gpu_max_c=gpu)
    held = _sp(31.0, 110.0, 24.0)
    first = fill_held(bad_snap, np.array([True, False]), None, held)
    assert first.finite
    assert first.gpu_max_c.tolist() == [gpu[1], gpu[1]]
    assert first.current.tcs_c[0] == 31.0
    assert first.current.tcs_c[1] == snap.current.tcs_c[1]
    last = replace(snap, gpu_max_c=np.array([70.0, 71.0]))
    again = fill_held(bad_snap, np.array([True, False]), last, held)
    assert again.gpu_max_c.tolist() == [70.0, gpu[1]]
    assert fill_held(snap, np.array([False, False]), last, held) is snap
