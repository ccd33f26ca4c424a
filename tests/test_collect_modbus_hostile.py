"""Hostile Modbus byte streams found by the fuzz campaign (bench/fuzz.py), each from a real loopback peer.

Modbus TCP has no checksum: once bytes of an earlier exchange are still on the way, a later reply's frame can take
them in and still pass every header check. The patterns below produced GOOD samples with values the device never
served; the collector must publish the true value or a bad sample, never a wrong good one.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import numpy as np

from aidc.clock import ScaledClock
from aidc.config import DeviceConfig, DeviceRef
from aidc.model import Batch, Quality
from aidc.profiles import Profile
from collectors.link import LinkOptions
from collectors.modbus import TransportError
from collectors.modbus_link import ModbusLink
from tests.test_collect_modbus import until

TRUTH = {"voltage_v": 230.5, "current_a": 12.25}
IMAGE = struct.pack(">ff", TRUTH["voltage_v"], TRUTH["current_a"])  # holding registers 0..3, big-endian floats
PROFILE = Profile.model_validate({
    "name": "hostile-test", "protocol": "modbus", "measurement": "meter",
    "points": [{"name": "voltage_v", "table": "holding", "address": 0, "type": "FLOAT32"},
               {"name": "current_a", "table": "holding", "address": 2, "type": "FLOAT32"}],
})  # fmt: skip


def _reply(tid: int, unit: int, fc: int, addr: int, count: int, image: bytes = IMAGE) -> bytes:
    data = image[2 * addr : 2 * (addr + count)]
    pdu = bytes([fc, len(data)]) + data
    return struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu


@dataclass
class Peer:
    """A Modbus TCP server that answers reads from ``IMAGE`` and misbehaves once, as ``mode`` says.

    ``late-inside-next``: the first request ever gets no reply in time; its reply is then written in the middle
    of the next reply on the same connection (after the next reply's byte count).
    ``partial-after-reply``: the first reply is followed by the first nine bytes of a frame that names the next
    transaction id, so that the next real reply completes it.
    """

    mode: str
    connections: int = 0
    misbehaved: int = 0
    requests: int = 0
    image: bytes = IMAGE  # the register image served
    writers: list[asyncio.Transport] = field(default_factory=list)


class _PeerConn(asyncio.Protocol):
    def __init__(self, peer: Peer) -> None:
        self.peer = peer
        self.buf = bytearray()
        self.held: bytes | None = None
        self.t: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t = transport  # type: ignore[assignment]
        self.peer.connections += 1

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while len(self.buf) >= 12 and self.t is not None:
            tid, _proto, _len, unit, fc, addr, count = struct.unpack_from(">HHHBBHH", self.buf)
            del self.buf[:12]
            self.peer.requests += 1
            ok = _reply(tid, unit, fc, addr, count, self.peer.image)
            first = self.peer.misbehaved == 0
            if self.peer.mode == "late-inside-next" and first:
                self.held, self.peer.misbehaved = ok, 1  # answered only inside the next reply
            elif self.held is not None:
                self.t.write(ok[:9] + self.held + ok[9:])
                self.held = None
            elif self.peer.mode == "partial-after-reply" and first:
                self.peer.misbehaved = 1
                self.t.write(ok + struct.pack(">HHHB", (tid + 1) & 0xFFFF, 0, len(ok) - 6, unit) + ok[7:9])
            else:
                self.t.write(ok)


@asynccontextmanager
async def hostile_link(mode: str) -> AsyncIterator[tuple[ModbusLink, DeviceRef, Peer]]:
    """A connected ModbusLink to a fresh hostile peer on a free loopback port."""
    peer = Peer(mode)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _PeerConn(peer), "127.0.0.1", 0)
    port = int(server.sockets[0].getsockname()[1])
    config = DeviceConfig(name="m1", protocol="modbus", profile=PROFILE.name, port=port, timeout_s=0.3,
                          poll_interval_s=0.05)  # fmt: skip
    dev = DeviceRef("meter", "meters[0]", config, PROFILE, {"site": "t", "device": "m1"})
    link = ModbusLink(f"modbus://127.0.0.1:{port}", [dev], clock=ScaledClock.starting_now(), emit=lambda b: None,
                      options=LinkOptions())  # fmt: skip
    await link.connect()
    try:
        yield link, dev, peer
    finally:
        await link.close()
        server.close()
        await server.wait_closed()


def _published(batches: list[Batch]) -> list[tuple[str, float, Quality]]:
    """(point, value, quality) of every sample that is not bad (health fields left out)."""
    out = []
    for b in batches:
        for s, v, q in zip(b.series, b.values, b.quality, strict=True):
            if not str(s).startswith("collector,") and q != Quality.BAD:
                out.append((str(s).rsplit(" ", 1)[1], float(v), Quality(int(q))))
    return out


async def _polls(link: ModbusLink, dev: DeviceRef, n: int) -> list[Batch]:
    """``n`` polls; a lost connection is reopened, as the link's supervisor would."""
    out = []
    for _ in range(n):
        try:
            out.append(await link.poll(dev))
        except TransportError:
            await link.connect()
    return out


async def test_late_reply_inside_the_next_reply_is_never_published_as_good() -> None:
    """A reply that times out and then arrives inside the next reply's frame gives no wrong value, good or not."""
    async with hostile_link("late-inside-next") as (link, dev, peer):
        batches = await _polls(link, dev, 3)
        assert peer.misbehaved == 1
        published = _published(batches)
        assert [(p, v) for p, v, _ in published if v != TRUTH[p]] == []
        # Not vacuous: after the timed-out poll the device reads good again (on a fresh connection).
        assert {p for p, _, q in published if q == Quality.GOOD} == set(TRUTH)
        assert np.isnan(batches[0].values[:2]).all()  # the timed-out poll: bad, no value


async def test_partial_frame_after_a_reply_does_not_swallow_the_next_reply() -> None:
    """Bytes left after a reply (the start of a frame naming the next transaction) never join the next reply."""
    async with hostile_link("partial-after-reply") as (link, dev, peer):
        batches = await _polls(link, dev, 3)
        assert peer.misbehaved == 1
        published = _published(batches)
        assert [(p, v) for p, v, _ in published if v != TRUTH[p]] == []
        assert len([1 for _, _, q in published if q == Quality.GOOD]) == 3 * len(TRUTH)


async def test_a_timed_out_read_names_its_timeout_and_a_cancelled_one_frees_the_connection() -> None:
    """A read with no reply in time gives bad samples whose reason names the device's timeout; a poll cancelled
    while it waits for a reply hands the connection's turn back, so the next transaction is not blocked."""
    async with hostile_link("late-inside-next") as (link, dev, peer):
        first = await link.poll(dev)
        assert first.reasons[0] == "timeout after 0.3s"
        assert list(first.quality[:2]) == [Quality.BAD, Quality.BAD]
    async with hostile_link("late-inside-next") as (link, dev, peer):
        task = asyncio.create_task(link.poll(dev))
        await until(lambda: peer.requests > 0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert not link.client._busy


async def test_a_poll_waits_its_turn_behind_another_transaction() -> None:
    """A poll that finds the connection's turn held (a write in flight) waits for it, then reads the truth."""
    async with hostile_link("well-behaved") as (link, dev, peer):
        link.client._busy = True  # another transaction holds the turn
        task = asyncio.create_task(link.poll(dev))
        await asyncio.sleep(0.05)
        assert not task.done()
        assert peer.requests == 0
        link.client.end_turn()  # that transaction ends: the turn passes to the poll
        batch = await asyncio.wait_for(task, 2.0)
        assert _published([batch]) == [(p, v, Quality.GOOD) for p, v in TRUTH.items()]
        assert not link.client._busy


async def test_a_one_read_poll_judges_each_poll_on_its_own_reply() -> None:
    """A device read in one request, whose quick check fails (a value out of range) after clean polls and then
    passes again, publishes each poll's own value with its own quality: never the bytes of an earlier reply."""
    ranged = PROFILE.model_copy(
        update={"points": tuple(p.model_copy(update={"range": (0.0, 300.0)}) for p in PROFILE.points)}
    )
    async with hostile_link("well-behaved") as (link, dev, peer):
        dev = DeviceRef(dev.kind, dev.path, dev.config, ranged, dev.tags)
        link = ModbusLink(link.key, [dev], clock=ScaledClock.starting_now(), emit=lambda b: None,
                          options=LinkOptions())  # fmt: skip
        await link.connect()
        assert link.rt[dev.name].one_read
        images = [(230.5, 12.25), (412.0, 12.5), (231.0, 13.0), (229.0, -4.0), (230.0, 12.0)]
        got = []
        for volts, amps in images:
            peer.image = struct.pack(">ff", volts, amps)
            got.append(sorted((p, v, q) for p, v, q in _published([await link.poll(dev)])))
        await link.close()
    want = [
        sorted([("voltage_v", v, Quality.GOOD if 0 <= v <= 300 else Quality.UNCERTAIN),
                ("current_a", a, Quality.GOOD if 0 <= a <= 300 else Quality.UNCERTAIN)])
        for v, a in images
    ]  # fmt: skip
    assert got == want
