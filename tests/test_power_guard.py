"""The power guard against the in-process facility: a surge held under every feed's and the UPS's rating, audited
writes, limits restored; the budget rule on its own; a capped simulated rack draws at most its limit."""

from __future__ import annotations

import asyncio
import json
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aidc.clock import SteppedClock
from aidc.config import Site, load_site, site_from_dict
from aidc.errors import ConfigError
from aidc.live import LiveState
from aidc.sitegen import SiteTemplate, render_site
from collectors.writer import Actor
from control.field import FieldTelemetry, FieldWriter
from control.power_budget import Level, RackBudget, allocate
from control.power_guard import PowerGuard
from simulators.facility import Facility

RACKS = 4
FEED_KW = 110.0  # rack 1's PDU feed: below what the 132 kW rack draws at full load
UPS_KW = 470.0  # below the four racks' full load (about 530 kW)


def _site(tmp: Path, **guard: Any) -> Site:
    doc = tomllib.loads(render_site(SiteTemplate(racks=RACKS, base_port=30000, opcua_port=30100,
                                                 data_dir=str(tmp / "var"), poll_interval_s=1.0)))  # fmt: skip
    for i, rack in enumerate(doc["halls"][0]["racks"]):
        rack["controller"]["profile"] = "gpu-rack-opcua-powerlimit"
        rack["controller"]["security"] = {"allow_insecure": True}
        rack["cappable"] = True
        if i == 0:
            rack["pdu_rated_kw"] = FEED_KW
    doc["ups"]["rated_kw"] = UPS_KW
    doc["power_guard"] = guard
    return site_from_dict(doc, source=str(tmp / "site.toml"), path=tmp / "site.toml")


class Surge:
    """Utilisation 0.5, a ramp to 1.0 from 10 s to 30 s, held to 70 s, then 0.3: a surge, then the load falls."""

    def rack_util(self, t_ns: int) -> np.ndarray:
        t = (t_ns - T0) / 1e9
        u = 0.3 if t >= 70 else 0.5 + 0.5 * min(1.0, max(0.0, (t - 10) / 20))
        return np.full(RACKS, u)


T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00Z


class Recording(FieldWriter):
    """The in-process setpoint writer (the real writer's role check, clamp and read-back), keeping every write."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.done: list[Any] = []

    async def write(self, actor: Any, device: str, point: str, value: float, why: str) -> Any:
        r = await super().write(actor, device, point, value, why)
        self.done.append(r)
        return r


def _run(tmp: Path, *, guarded: bool, seconds: int = 100, actor: object | None = None) -> dict[str, Any]:
    site = _site(tmp, mode="auto" if guarded else "off")
    fac = Facility(site, workload=Surge(), start_ns=T0)
    clock = SteppedClock(T0)
    live = LiveState()
    tele = FieldTelemetry(site, fac.device_values, model=None, start_ns=T0)
    writer = Recording(site, fac.write_point, fac.device_values, clock.now_ns)
    guard = PowerGuard(site, live, writer, clock, actor=actor, audit_dir=tmp / "audit")
    feeds, ups, limits = [], [], []
    tele.feed(T0, live.update)
    for _ in range(seconds):
        fac.step(1.0)
        clock.t_ns = fac.t_ns
        tele.feed(fac.t_ns, live.update)
        if guard.active:
            asyncio.run(guard.tick())
        feeds.append(fac.rack_power_w.copy() / 1e3)  # each rack's PDU feed carries its rack (kW)
        ups.append(float(fac.state.ups_output_w.ravel()[0]) / 1e3)
        limits.append(fac.rack_power_limit_w.copy() / 1e3)
    return {"guard": guard, "writer": writer, "feeds": np.array(feeds), "ups": np.array(ups),
            "limits": np.array(limits), "site": site}  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any], Path]:
    """The surge without the guard (70 s) and with it (110 s: the surge, then the load falls)."""
    tmp = tmp_path_factory.mktemp("power-guard")
    return _run(tmp / "off", guarded=False, seconds=70), _run(tmp / "on", guarded=True, seconds=110), tmp / "on"


def test_surge_is_held_under_every_feed_and_ups_rating(runs: tuple[dict[str, Any], dict[str, Any], Path]) -> None:
    """A load surge that overloads rack 1's feed and the UPS without the guard stays under both ratings, sampled at
    every simulated second of the surge, with the guard; every limit write is audited and read back."""
    free, out, on = runs
    assert free["feeds"][:, 0].max() > FEED_KW  # the surge does overload the feed (and the UPS) unguarded
    assert free["ups"].max() > UPS_KW
    feeds, ups = out["feeds"], out["ups"]
    ratings = np.array([FEED_KW, 132.0, 132.0, 132.0])
    assert (feeds <= ratings).all(), f"feed over its rating: {feeds.max(axis=0)}"
    assert ups.max() <= UPS_KW, f"UPS {ups.max():.1f} kW over {UPS_KW} kW"
    guard: PowerGuard = out["guard"]
    written = out["writer"].done
    assert written
    assert all(r.ok for r in written)
    audited = [w for line in (on / "audit" / "power_guard.jsonl").read_text().splitlines()
               for w in json.loads(line).get("writes", [])]  # fmt: skip
    assert len(audited) == len(written) == guard.counts["writes"]
    assert [(w["device"], w["to_kw"]) for w in audited] == [(r.device, round(r.new / 1e3, 3)) for r in written]
    assert all(r.who == "power-guard" and r.role == "operator" for r in written)
    assert guard.counts["cuts"] > 0
    assert guard.counts["restores"] > 0


def test_limits_restored_to_feed_ceilings_after_the_surge(runs: tuple[dict[str, Any], dict[str, Any], Path]) -> None:
    """Once the load falls, the racks' limits climb back stepwise to their ceilings (the feed's rating less the
    headroom), never above."""
    limits = runs[1]["limits"]
    ceilings = np.array([FEED_KW, 132.0, 132.0, 132.0]) * 0.95
    assert (limits <= ceilings + 1e-6).all()
    surge = limits[30:70]
    assert (surge < ceilings - 0.1).any(axis=0).all()  # every rack was cut below its ceiling during the surge
    np.testing.assert_allclose(limits[-1], ceilings, atol=1e-3)
    steps = np.diff(limits[70:], axis=0)
    assert steps.max() <= 5.0 + 1e-6  # restored by at most restore_step_kw a tick


def test_refused_writes_are_counted_and_audited(tmp_path: Path) -> None:
    """An actor without the operator role is refused by the writer: counted, audited, and nothing is written."""
    out = _run(tmp_path, guarded=True, seconds=5, actor=Actor("viewer-x", "viewer"))
    guard: PowerGuard = out["guard"]
    assert guard.counts["refused"] > 0
    assert guard.counts["writes"] == 0
    assert out["writer"].done == []
    lines = [json.loads(x) for x in (tmp_path / "audit" / "power_guard.jsonl").read_text().splitlines()]
    assert any("refused" in w for rec in lines for w in rec.get("writes", []))
    assert np.isinf(out["limits"]).all()  # the racks were never capped


def test_budget_cuts_proportionally_and_reports_what_it_cannot_shed() -> None:
    """A level over its line sheds the excess over its cappable racks in proportion to their room above their
    minimum; what the minimums leave is reported as short."""
    racks = [RackBudget("a", True, 50.0, 120.0, 120.0, 110.0), RackBudget("b", True, 50.0, 120.0, 120.0, 70.0),
             RackBudget("c", False, 50.0, 120.0, 120.0, 100.0)]  # fmt: skip
    ups = Level("UPS", 300.0, 300.0, (0, 1, 2))  # line 285: 15 kW over
    alloc = allocate(racks, [ups], headroom=0.05, hysteresis=0.03, step_kw=5.0)
    a, b, c = alloc.limits_kw
    assert (110 - a) / (70 - b) == pytest.approx(60 / 20)  # rooms 60 and 20 kW
    assert (110 - a) + (70 - b) == pytest.approx(15.0)
    assert c == 120.0
    assert not alloc.short_kw
    big = allocate(racks, [Level("UPS", 300.0, 400.0, (0, 1, 2))], headroom=0.05, hysteresis=0.03, step_kw=5.0)
    assert big.limits_kw[:2] == [50.0, 50.0]
    assert big.short_kw["UPS"] == pytest.approx(115.0 - 80.0)


def test_cappable_rack_without_a_limit_point_is_refused(tmp_path: Path) -> None:
    """cappable = true on a rack whose devices have no writable power limit is one clear ConfigError."""
    site = _site(tmp_path)
    doc = site.config.model_dump(mode="json")
    doc["halls"][0]["racks"][1]["controller"]["profile"] = "gpu-rack-opcua"
    bad = site_from_dict(doc, source="site.toml", path=tmp_path / "site.toml")
    with pytest.raises(ConfigError, match=r"rack .*cappable = true but no device of the rack has a writable"):
        PowerGuard(bad, LiveState(), None, SteppedClock(T0))


@pytest.mark.asyncio
async def test_guard_writes_through_the_audited_setpoint_writer_over_opcua(tmp_path: Path) -> None:
    """In the main job's set-up (engine, SetpointWriter, OPC-UA rack controller over loopback), the guard's first tick
    sets a cappable rack's limit to its feed's guarded rating: written, read back and audited in writes.jsonl."""
    from collectors.writer import SetpointWriter
    from tests.sim_helpers import site_doc, write_site
    from tests.test_collect_modbus import polls, rig_for

    doc = site_doc(tmp_path, racks=1)
    rack = doc["halls"][0]["racks"][0]
    rack["controller"]["profile"] = "gpu-rack-opcua-powerlimit"
    rack["controller"]["security"] = {"allow_insecure": True}
    rack["cappable"], rack["pdu_rated_kw"] = True, 100.0
    site = load_site(write_site(tmp_path, doc))
    async with rig_for(site, protocol=None) as rig:
        controller = next(d.name for d in site.devices if d.kind == "rack")
        await polls(rig, controller, 1)
        writer = SetpointWriter(rig.engine, tmp_path / "audit")
        guard = PowerGuard(site, rig.live, writer, rig.engine.clock, audit_dir=tmp_path / "audit")
        rec = await guard.tick()
    writes = rec["writes"]
    assert isinstance(writes, list)
    (w,) = writes
    assert w["ok"] is True
    assert w["to_kw"] == pytest.approx(95.0)
    (line,) = writer.audit_log()
    assert (line["who"], line["role"], line["device"], line["point"]) == ("power-guard", "operator", controller,
                                                                           "power_limit_w")  # fmt: skip
    assert line["readback"] == pytest.approx(95_000.0)
    assert "power guard" in str(line["why"])
    assert line["ok"]
    assert rig.physics.writes[-1] == (controller, "power_limit_w", pytest.approx(95_000.0))


def test_main_job_runs_the_guard_only_for_a_site_with_cappable_racks(tmp_path: Path) -> None:
    """``aidc run``'s parts: a site with cappable racks gets the power guard in its start and stop hooks (and /health);
    a site without any gets none."""
    from app.job import MainJob
    from app.power_guard_service import start_power_guard

    job = MainJob.build(_site(tmp_path / "capped"))
    try:
        guard = start_power_guard(job)
        assert guard is not None
        assert guard.active
        assert "power guard" in job.ready_checks
        assert len(job.on_start) == 1
        assert len(job.on_stop) == 1
    finally:
        job.historian.close()
    doc = _site(tmp_path / "plain").config.model_dump(mode="json")
    for rack in doc["halls"][0]["racks"]:
        rack["cappable"] = False
    plain = MainJob.build(site_from_dict(doc, source="site.toml", path=tmp_path / "plain" / "site.toml"))
    try:
        assert start_power_guard(plain) is None
        assert plain.on_start == []
    finally:
        plain.historian.close()


def test_stale_or_missing_readings_are_unknown_loads(tmp_path: Path) -> None:
    """A level whose meter reading is older than stale_s, or never read, has no load: the guard neither cuts on it
    nor restores past it."""
    from aidc.model import Batch, SeriesKey

    site = _site(tmp_path, stale_s=10.0)
    clock, live = SteppedClock(T0), LiveState()
    guard = PowerGuard(site, live, None, clock)
    ups = next(d for d in site.devices if d.kind == "ups")
    sid = SeriesKey.of(ups.profile.measurement, "output_power_w", ups.tags).id
    live.update(Batch(np.array([sid], dtype=object), np.array([T0], dtype=np.int64), np.array([400_000.0]),
                      np.zeros(1, dtype=np.uint8)))  # fmt: skip
    clock.t_ns = T0 + 5 * 10**9
    _, levels = guard.budget()
    level = {lv.name: lv for lv in levels}
    assert level[f"UPS {ups.name}"].load_kw == pytest.approx(400.0)
    assert all(lv.load_kw is None for name, lv in level.items() if name.startswith("feed"))  # never read
    clock.t_ns = T0 + 11 * 10**9
    _, levels = guard.budget()
    assert {lv.name: lv for lv in levels}[f"UPS {ups.name}"].load_kw is None
