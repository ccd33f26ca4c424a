"""Device isolation: an unforeseen exception in one link marks that device bad and restarts that link, nothing else."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from asyncua import ua

from aidc.clock import ScaledClock, SteppedClock
from aidc.config import DeviceRef
from aidc.model import Batch, Quality
from collectors.engine import Engine, EngineOptions
from collectors.link import LinkOptions
from simulators.faults import FaultBook
from simulators.opcua_server import OpcUaEndpoint
from tests.fake_physics import FakePhysics
from tests.sim_helpers import free_port_block
from tests.test_collect_engine import ScriptedLink, _device
from tests.test_collect_modbus import facility_for, make_site, until


class GarbageLink(ScriptedLink):
    """A scripted link whose every poll meets an exception no protocol rule foresaw (a decoder bug, say)."""

    def series_of(self, dev: DeviceRef) -> np.ndarray:
        return np.array([f"t,device={dev.name} p"], dtype=object)

    async def poll(self, dev: DeviceRef) -> Batch:
        self.polls += 1
        raise RuntimeError("decoder met a reply it cannot parse")


def _engine_with(links: list[ScriptedLink]) -> Engine:
    engine = Engine([], clock=SteppedClock(0), options=EngineOptions(link=LinkOptions(backoff_initial_s=0.01)))
    engine.links = list(links)
    return engine


def test_unexpected_exception_restarts_only_its_link(caplog: pytest.LogCaptureFixture) -> None:
    """A link whose polls raise RuntimeError: its points are bad with the reason, it is logged once at ERROR, the
    link reconnects with growing backoff, and another link keeps polling while the engine task stays alive."""

    async def scenario() -> tuple[GarbageLink, ScriptedLink]:
        # Its own loop (asyncio.run): independent of any module-scoped loop a previous test module left behind.
        bad = GarbageLink([_device("pdu-bad", interval_s=0.05)])
        good = ScriptedLink([_device("pdu-good", interval_s=0.05)])
        engine = _engine_with([bad, good])
        task = engine.start()
        await asyncio.wait_for(until(lambda: bad.connects >= 4 and good.polls >= 20), 60)
        assert not task.done(), "the engine must survive one link's exception"
        await engine.stop()
        return bad, good

    with caplog.at_level(logging.DEBUG, logger="collectors"):
        bad, _good = asyncio.run(scenario())
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and "pdu-bad" in r.getMessage()]
    assert len(errors) == 1
    assert "RuntimeError" in errors[0].getMessage()
    marked = [b for b in bad.batches if len(b) and b.series[0] == "t,device=pdu-bad p"]
    assert marked
    assert all(int(b.quality[0]) == int(Quality.BAD) for b in marked)
    assert "decoder met a reply" in marked[0].reasons[0]  # type: ignore[index]
    assert bad.unexpected_errors >= 4
    assert not any(r.levelno >= logging.ERROR and "pdu-good" in r.getMessage() for r in caplog.records)


class SwallowingLink(ScriptedLink):
    """A link whose connect turns a cancellation into a failed connect, as Python 3.11's asyncio.timeout can when a
    cancel lands in the same loop iteration as the timeout expiring."""

    def __init__(self, devices: list[DeviceRef]) -> None:
        super().__init__(devices)
        self.in_connect = asyncio.Event()
        self.swallow = True

    async def connect(self) -> None:
        self.connects += 1
        self.in_connect.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            if not self.swallow:
                raise
            raise ConnectionRefusedError("connect timed out") from None
        finally:
            self.in_connect.clear()


def test_engine_stops_even_when_a_connect_swallows_the_cancellation() -> None:
    """A cancellation swallowed inside a connect still stops the link: the engine's stop returns within seconds."""

    async def scenario() -> tuple[bool, int]:
        link = SwallowingLink([_device("pdu-x", interval_s=0.05)])
        engine = _engine_with([link])
        task = engine.start()
        await asyncio.wait_for(link.in_connect.wait(), 30)
        stop = asyncio.ensure_future(engine.stop())
        done, _ = await asyncio.wait({stop}, timeout=5)  # before the fix: the link reconnected, stop never returned
        if not done:  # let the test end: the next cancellation of the link's task goes through
            link.swallow = False
            for t in asyncio.all_tasks():
                if t not in (asyncio.current_task(), stop, task):
                    t.cancel()
            await stop
        return bool(done), link.connects

    stopped_in_time, connects = asyncio.run(scenario())
    assert stopped_in_time, "the engine's stop waited for a link that had swallowed its cancellation"
    assert connects == 1


def _first_ts(batches: list[Batch], series: set[str]) -> dict[str, int]:
    """Each series' first sample time: the origin of its poll schedule."""
    first: dict[str, int] = {}
    for b in batches:
        for s, ts in zip(b.series, b.ts_ns, strict=True):
            if s in series and s not in first:
                first[s] = int(ts)
    return first


def _slots(batches: list[Batch], origin: dict[str, int], interval_ns: int, lo_ns: int, hi_ns: int) -> dict[str, int]:
    """Per series: how many poll slots (interval steps from its origin) in [lo, hi) hold a good sample."""
    seen: dict[str, set[int]] = defaultdict(set)
    for b in batches:
        for s, ts, q in zip(b.series, b.ts_ns, b.quality, strict=True):
            if s in origin and lo_ns <= ts < hi_ns and q == 0:
                seen[s].add(round((int(ts) - origin[s]) / interval_ns))
    return {s: len(seen[s]) for s in origin}


@pytest.mark.timeout(180)
async def test_one_garbage_device_for_an_hour_leaves_every_other_count_as_clean(tmp_path: Path) -> None:
    """One OPC-UA rack answering String[] where its GPU arrays belong, for an hour of simulated time (speed 60):
    every other device's count of polled slots equals that of a clean engine running beside it."""
    site = make_site(tmp_path)
    speed, interval_s = 60.0, 10.0
    modbus = [d for d in site.devices if d.config.protocol == "modbus"]
    rack = next(d for d in site.devices if d.kind == "rack")
    port = free_port_block(1)
    url = f"opc.tcp://127.0.0.1:{port}/garbage"
    garbage = dataclasses.replace(
        rack, config=rack.config.model_copy(update={"endpoint": url, "name": "rack-garbage"}),
        tags={**rack.tags, "device": "rack-garbage"},
    )  # fmt: skip
    physics = FakePhysics(site)
    physics.values["rack-garbage"] = physics.values[rack.name]
    server = OpcUaEndpoint(url, [garbage], physics, FaultBook({"rack-garbage": garbage.profile}), tmp_path / "pki")
    await server.start()
    try:
        aspace = server.server.iserver.aspace
        for p in garbage.profile.points:  # String[] for every array node: the server answers it on every read
            if p.array:
                nid = ua.NodeId.from_string(str(p.node).replace("{device}", "rack-garbage"))
                aspace.set_attribute_value_callback(nid, ua.AttributeIds.Value, _strings)
        async with facility_for(site, physics=physics) as _fac:
            clock = ScaledClock.starting_now(speed=speed)
            opts = EngineOptions(link=LinkOptions(stuck_polls=10_000), pki_dir=tmp_path / "pki-client")
            clean_b: list[Batch] = []
            dirty_b: list[Batch] = []
            clean = Engine(modbus, sinks=[clean_b.append], clock=clock, options=opts)
            dirty = Engine([*modbus, garbage], sinks=[dirty_b.append], clock=clock, options=opts)
            async with clean, dirty:
                start = clock.now_ns()
                await until(lambda: dirty.link("rack-garbage").unexpected_errors + _bad_polls(dirty) > 0)
                await asyncio.sleep(3600 / speed)
                end = clock.now_ns()
                assert dirty._task is not None
                assert not dirty._task.done()
        lo, hi = start + int(30e9), end - int(30e9)  # whole slots well inside the hour on both engines
        series = {s for d in modbus for s in dirty.link(d.name).series_of(d)[:1]}
        ns = int(interval_s * 1e9)
        origin = _first_ts(clean_b, series)
        want, got = _slots(clean_b, origin, ns, lo, hi), _slots(dirty_b, origin, ns, lo, hi)
        expected_slots = (hi - lo) // ns
        assert min(want.values()) >= 0.9 * expected_slots, "the clean run itself must have polled (nearly) every slot"
        assert got == want
        garbage_bad = [b for b in dirty_b if any("rack-garbage" in str(s) and q == 2 for s, q in
                                                 zip(b.series, b.quality, strict=True))]  # fmt: skip
        assert garbage_bad, "the garbage device's points must be published bad"
    finally:
        await server.stop()


def _strings(nodeid: ua.NodeId, attr: ua.AttributeIds) -> ua.DataValue:
    """A String[] value with a Good status: garbage where a Double[] belongs."""
    return ua.DataValue(ua.Variant(["x", "y"], ua.VariantType.String))


def _bad_polls(engine: Engine) -> int:
    h = engine.health()["rack-garbage"]
    return h.errors
