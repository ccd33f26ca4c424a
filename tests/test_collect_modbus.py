"""Modbus collection against the bundled simulators over real loopback sockets (deterministic FakePhysics)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import socket
import tomllib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aidc.clock import ScaledClock
from aidc.config import Site, site_from_dict
from aidc.live import LiveState
from aidc.model import Batch, Quality, SeriesKey
from aidc.sitegen import SiteTemplate, render_site
from collectors.engine import Engine, EngineOptions
from collectors.link import LinkOptions, LinkState
from collectors.modbus_link import ModbusLink
from collectors.writer import Actor, SetpointWriter, WriteRefused
from simulators.runner import SimulatedFacility
from tests import fake_physics
from tests.fake_physics import FakePhysics

POLL_S = 0.05


def free_block(n: int) -> int:
    """First of ``n`` consecutive free loopback ports."""
    for _ in range(200):
        base = random.randrange(20000, 60000 - n)
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port block")


def make_site(tmp_path: Path, racks: int = 2, edit: Callable[[dict[str, Any]], None] | None = None) -> Site:
    """A small generated site on free ports, every device polled every POLL_S seconds."""
    base = free_block(racks + 12)
    doc = tomllib.loads(render_site(SiteTemplate(racks=racks, base_port=base + 1, opcua_port=base + racks + 8,
                                                 data_dir=str(tmp_path / "var"))))
    doc["simulation"]["control_port"] = base
    devs = [doc["plant"], doc["ups"], *doc["meters"]]
    for hall in doc["halls"]:
        devs += list(hall["cdus"])
        for rack in hall["racks"]:
            devs += [rack[k] for k in ("pdu", "controller") if k in rack]
    for d in devs:
        d["poll_interval_s"], d["timeout_s"] = POLL_S, 0.5
    if edit is not None:
        edit(doc)
    return site_from_dict(doc, source="test.toml", path=tmp_path / "test.toml")


@dataclass
class Rig:
    """A running simulated facility, an engine polling it and a live state fed by the engine."""

    site: Site
    facility: SimulatedFacility
    physics: FakePhysics
    engine: Engine
    live: LiveState
    batches: list[Batch]

    def value(self, device: str, point: str, **tags: str) -> tuple[float | None, Quality, str]:
        """Latest (value, quality, reason) of a point."""
        dev = self.site.device(device)
        got = self.live.get(SeriesKey.of(dev.profile.measurement, point, {**dev.tags, **tags}).id)
        assert got is not None, f"{device}.{point} never collected"
        return got.value, got.quality, got.reason


async def until(cond: Callable[[], bool]) -> None:
    """Wait on state: re-check ``cond`` as the loop runs (the per-test timeout bounds it)."""
    while True:
        try:
            if cond():
                return
        except AssertionError:  # not collected yet
            pass
        await asyncio.sleep(0.01)


def serve_now(rig: Rig) -> None:
    """Encode the physics' current values into every Modbus image, SNMP agent and HTTP simulator now, rather than at
    the next simulator tick (which a loaded machine can delay past a test's next polls)."""
    for port in rig.facility.ports.values():
        port.refresh()
    for agent in rig.facility.agents.values():
        agent.refresh()
    for hs in rig.facility.http:
        hs.refresh()


async def polls(rig: Rig, device: str, n: int) -> None:
    """Wait until ``device`` has completed ``n`` more polls."""
    h = rig.engine.health()[device]
    target = h.polls + n
    await until(lambda: h.polls >= target)


@contextlib.asynccontextmanager
async def facility_for(site: Site, protocol: str | None = "modbus",
                       physics: FakePhysics | None = None) -> AsyncIterator[SimulatedFacility]:
    """Run the simulators of a site: Modbus servers only (instant) or everything (OPC-UA servers take seconds)."""
    physics = physics or FakePhysics(site)
    fac = SimulatedFacility(site, physics, speed=1.0)
    if protocol == "modbus":
        for mp in fac.ports.values():
            mp.refresh()
            await mp.start()
        fac.clock = ScaledClock.starting_now(physics.t_ns, 1.0)
        task = asyncio.create_task(_tick_modbus(fac))
    else:
        task = asyncio.create_task(fac.run())
        await fac.ready.wait()
    try:
        yield fac
    finally:
        fac.request_stop()
        if protocol == "modbus":
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            for mp in fac.ports.values():
                await mp.stop()
        else:
            await task


@contextlib.asynccontextmanager
async def engine_on(fac: SimulatedFacility, options: EngineOptions | None = None,
                    protocol: str | None = "modbus") -> AsyncIterator[Rig]:
    """An engine (feeding a live state) over the facility's devices of ``protocol`` (all when None)."""
    site = fac.site
    live, batches = LiveState(), list[Batch]()
    devices = [d for d in site.devices if protocol is None or d.config.protocol == protocol]
    engine = Engine(devices, sinks=[live.update, batches.append], clock=fac.clock,
                    options=options or EngineOptions(link=LinkOptions(stuck_polls=10_000)), data_dir=site.data_dir)
    async with engine:
        yield Rig(site, fac, fac.physics, engine, live, batches)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def rig_for(site: Site, options: EngineOptions | None = None, protocol: str | None = "modbus",
                  physics: FakePhysics | None = None) -> AsyncIterator[Rig]:
    """Simulators plus an engine, for one test."""
    async with facility_for(site, protocol, physics) as fac, engine_on(fac, options, protocol) as rig:
        yield rig


async def _tick_modbus(fac: SimulatedFacility) -> None:
    while True:
        await asyncio.sleep(POLL_S / 2)
        fac.physics.step(POLL_S / 2)
        for mp in fac.ports.values():
            mp.refresh()


def expected(rig: Rig, device: str, point: str) -> float:
    """What the simulator serves for a point, as a float."""
    p = rig.site.device(device).profile.point(point)
    return float(rig.physics.values[device][p.sim or p.name])  # type: ignore[arg-type]


async def test_every_modbus_point_good_and_exact(tmp_path: Path) -> None:
    """Every point of every Modbus device (CDAB meter, 8-register CDU, 3-unit gateway, UINT64 PDU) reads good and exact."""
    site = make_site(tmp_path)
    async with rig_for(site) as rig:
        devs = [d for d in site.devices if d.config.protocol == "modbus"]
        await asyncio.gather(*(polls(rig, d.name, 2) for d in devs))
        for d in devs:
            for p in d.profile.points:
                if p.counter or p.name.startswith("alarm") or p.name == "fallback_active":
                    continue  # counters grow between refresh and read; alarm bits are OR-ed into alarm_word
                value, quality, reason = rig.value(d.name, p.name)
                assert quality is Quality.GOOD, f"{d.name}.{p.name}: {reason}"
                want = expected(rig, d.name, p.name)
                assert value == pytest.approx(float(want), rel=1e-6, abs=abs(p.scale) / 2), f"{d.name}.{p.name}"
        gateway = [lk for lk in rig.engine.links if len(lk.devices) == 3]
        assert len(gateway) == 1  # three meters, one connection, three unit ids
        cdu = rig.engine.link("cdu-h1-01")
        assert isinstance(cdu, ModbusLink)
        assert all(r.count <= 8 for r in cdu.plan("cdu-h1-01").requests)
        assert len(cdu.plan("cdu-h1-01").requests) >= 3  # 11 input registers need two reads, plus holding


ORDERS = ("ABCD", "CDAB", "BADC", "DCBA")
TYPES = {
    "INT16": -12345, "UINT16": 54321, "INT32": -123456789, "UINT32": 3_000_000_000,
    "INT64": -(2**40) - 7, "UINT64": 2**50 + 9, "FLOAT32": -1234.5, "FLOAT64": 2.718281828459045e10,
}


def _all_types_profile(folder: Path) -> None:
    lines = ['name = "all-types"', 'protocol = "modbus"', 'measurement = "meter"', ""]
    addr = 0
    for t in TYPES:
        for o in ORDERS:
            lines += ["[[points]]", f'name = "{t.lower()}_{o.lower()}"', 'table = "holding"', f"address = {addr}",
                      f'type = "{t}"', f'byte_order = "{o}"', ""]
            addr += {"16": 1, "32": 2, "64": 4}[t[-2:]]
    lines += ["[[points]]", 'name = "flag"', 'table = "discrete"', "address = 3", 'type = "BOOL"', ""]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "all-types.toml").write_text("\n".join(lines), encoding="utf-8")


async def test_every_type_and_byte_order_over_the_wire(tmp_path: Path) -> None:
    """Every data type in every byte order, served by the simulator, reads back exactly (table-driven)."""
    _all_types_profile(tmp_path / "profiles")

    def edit(doc: dict[str, Any]) -> None:
        doc["site"]["profile_dirs"] = [str(tmp_path / "profiles")]
        doc["meters"][2]["profile"] = "all-types"

    site = make_site(tmp_path, edit=edit)
    physics = FakePhysics(site)
    for t, v in TYPES.items():
        for o in ORDERS:
            physics.values["meter-other"][f"{t.lower()}_{o.lower()}"] = v
    physics.values["meter-other"]["flag"] = True
    async with rig_for(site, physics=physics) as rig:
        await polls(rig, "meter-other", 2)
        for t, v in TYPES.items():
            for o in ORDERS:
                value, quality, reason = rig.value("meter-other", f"{t.lower()}_{o.lower()}")
                assert quality is Quality.GOOD, reason
                assert value == pytest.approx(float(np.float32(v)) if t == "FLOAT32" else float(v), rel=1e-12), (t, o)
        assert rig.value("meter-other", "flag")[0] == 1.0


async def test_exception_reply_marks_points_bad_and_keeps_connection(tmp_path: Path) -> None:
    """A device exception reply makes its points bad with the code; the connection stays up; then it recovers."""
    async with rig_for(make_site(tmp_path)) as rig:
        await polls(rig, "ups-1", 1)
        link = rig.engine.link("ups-1")
        rig.facility.faults.inject("ups-1", "exception", 2)
        await polls(rig, "ups-1", 2)
        value, quality, reason = rig.value("ups-1", "load_pct")
        assert (value, quality) == (None, Quality.BAD)
        assert "exception 2 (ILLEGAL_ADDRESS)" in reason
        assert link.state is LinkState.CONNECTED
        assert link.attempts == 0
        rig.facility.faults.clear("ups-1")
        await polls(rig, "ups-1", 1)
        assert rig.value("ups-1", "load_pct")[1] is Quality.GOOD


async def test_gateway_unit_timeout_does_not_stop_other_units(tmp_path: Path) -> None:
    """A unit behind a gateway that stops answering reads bad (timeout) and good again once it answers."""
    async with rig_for(make_site(tmp_path)) as rig:
        await polls(rig, "meter-utility", 1)
        rig.facility.faults.inject("meter-cooling", "delay", 2.0)
        await until(lambda: "timeout" in rig.value("meter-cooling", "voltage_v")[2])
        assert rig.value("meter-cooling", "voltage_v")[1] is Quality.BAD
        rig.facility.faults.clear("meter-cooling")
        await until(lambda: rig.value("meter-cooling", "voltage_v")[1] is Quality.GOOD)
        await polls(rig, "meter-utility", 1)
        assert rig.value("meter-utility", "voltage_v")[1] is Quality.GOOD


async def test_server_restart_reconnects_without_engine_restart(tmp_path: Path) -> None:
    """After the Modbus server restarts the link backs off, reconnects by itself and values are good again."""
    async with rig_for(make_site(tmp_path)) as rig:
        await polls(rig, "ups-1", 1)
        link = rig.engine.link("ups-1")
        rig.facility.faults.inject("ups-1", "restart", 0.5)
        await until(lambda: link.state is not LinkState.CONNECTED)
        await until(lambda: link.state is LinkState.CONNECTED)
        await polls(rig, "ups-1", 2)
        assert rig.value("ups-1", "load_pct")[1] is Quality.GOOD
        assert rig.engine.health()["ups-1"].up


async def test_counter_wrap_and_reset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A UINT32 counter wrap keeps the delta correct and stays good; a counter reset is flagged uncertain."""
    # Counters hold still unless the test moves them, so the delta across the wrap is exactly known however
    # long the polls take on a busy machine.
    monkeypatch.setattr(fake_physics, "COUNTER_RATE_PER_S", 0.0)
    async with rig_for(make_site(tmp_path)) as rig:
        link = rig.engine.link("ups-1")
        assert isinstance(link, ModbusLink)
        p = rig.site.device("ups-1").profile.point("output_energy_kwh")
        modulus = p.modulus
        assert modulus is not None
        await polls(rig, "ups-1", 1)
        rig.physics.values["ups-1"]["output_energy_kwh"] = modulus - 1.0
        await until(lambda: (rig.value("ups-1", "output_energy_kwh")[0] or 0) > modulus - 2)
        rig.physics.values["ups-1"]["output_energy_kwh"] = modulus + 2.0  # the register wraps to 2.00 kWh
        await until(lambda: (rig.value("ups-1", "output_energy_kwh")[0] or 1e9) < 100)
        _value, quality, reason = rig.value("ups-1", "output_energy_kwh")
        assert quality is Quality.GOOD
        assert "wrapped" in reason
        i = [q.name for q in link.plan("ups-1").points].index("output_energy_kwh")
        assert link.rt["ups-1"].tracker.counter_delta[i] == pytest.approx(3.0, abs=0.011)  # 1 kWh to the wrap, 2 after
        rig.facility.faults.inject("ups-1", "counter_reset")
        await until(lambda: rig.value("ups-1", "output_energy_kwh")[1] is Quality.UNCERTAIN)
        assert rig.value("ups-1", "output_energy_kwh")[2] == "counter reset"


async def test_stuck_and_stale(tmp_path: Path) -> None:
    """A must-move point frozen for N polls is uncertain (stuck); a dropped device goes bad (stale) after 3 intervals."""
    opts = EngineOptions(link=LinkOptions(stuck_polls=3))
    async with rig_for(make_site(tmp_path), options=opts) as rig:
        rig.facility.faults.inject("meter-utility", "stuck")
        await polls(rig, "meter-utility", 4)
        _value, quality, reason = rig.value("meter-utility", "voltage_v")
        assert quality is Quality.UNCERTAIN
        assert reason.startswith("stuck")
        assert rig.value("meter-utility", "current_a")[1] is Quality.GOOD  # not a must-move point
        rig.facility.faults.inject("ups-1", "drop")
        await until(lambda: rig.value("ups-1", "load_pct")[1] is Quality.BAD)
        assert rig.value("ups-1", "load_pct")[2].startswith("stale")
        assert not rig.engine.health()["ups-1"].up


async def test_writer_clamps_reads_back_and_audits(tmp_path: Path) -> None:
    """The writer refuses non-operators and read-only points, clamps to max, verifies by read-back, audits, reverts."""
    async with rig_for(make_site(tmp_path)) as rig:
        await rig.engine.wait_connected("cdu-h1-01")
        writer = SetpointWriter(rig.engine, tmp_path / "audit")
        op = Actor("alice", "operator")
        with pytest.raises(WriteRefused, match="role operator"):
            await writer.write(Actor("bob", "viewer"), "cdu-h1-01", "tcs_supply_temp_setpoint_c", 30, "test")
        with pytest.raises(WriteRefused, match="not writable"):
            await writer.write(op, "cdu-h1-01", "tcs_supply_temp_c", 30, "test")
        r = await writer.write(op, "cdu-h1-01", "tcs_supply_temp_setpoint_c", 99.0, "raise for free cooling")
        assert r.ok, r.error
        assert (r.clamped, r.new, r.readback, r.old) == (True, 45.0, pytest.approx(45.0), pytest.approx(30.0))
        assert rig.physics.values["cdu-h1-01"]["tcs_supply_temp_setpoint_c"] == pytest.approx(45.0)
        reverted = await writer.revert_all(op, "test over")
        assert all(x.ok for x in reverted)
        assert rig.physics.values["cdu-h1-01"]["tcs_supply_temp_setpoint_c"] == pytest.approx(30.0)
        log = writer.audit_log()
        assert log[0]["who"] == "alice"
        assert log[0]["why"] == "raise for free cooling"
        assert log[0]["old"] == pytest.approx(30.0)
        assert len(log) == 1 + len(reverted)
        assert any(str(b.series[0]).startswith("setpoint_write,") for b in rig.batches if len(b) == 1)
        assert math.isfinite(rig.value("cdu-h1-01", "tcs_supply_temp_setpoint_c")[0] or math.nan)
