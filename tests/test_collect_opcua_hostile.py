"""Hostile OPC-UA behaviour found by the fuzz campaign (bench/fuzz.py), against a real asyncua server on loopback.

A CancelledError that asyncua raises from its own internals never ends a link: asyncua's ``wait_for2`` raises
``CancelledWithResultError`` (a CancelledError subclass) when a timeout expires in the same loop turn as the reply
arrives, and Python 3.11's ``asyncio.timeout`` passes that subclass on instead of turning it into TimeoutError. The
race needs the two to land in one loop turn, which no test can arrange on purpose, so the asyncua call raises it once
here (the only mock); server, client and sockets are real. And a value of the wrong variant type (a Boolean where a
Double belongs) is bad, never a good number.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from asyncua import Client, Server, ua
from wait_for2.impl import CancelledWithResultError

from aidc.clock import ScaledClock
from aidc.config import DeviceConfig, DeviceRef
from aidc.model import Batch, Quality
from aidc.profiles import Profile
from collectors.engine import Engine, EngineOptions
from collectors.link import LinkOptions
from collectors.opcua import OpcUaLink

POWER = 1234.5
PROFILE = Profile.model_validate({
    "name": "cancel-test", "protocol": "opcua", "measurement": "rack",
    "points": [{"name": "power_w", "node": "ns=2;s={device}.Power", "type": "FLOAT64"}],
})  # fmt: skip


@asynccontextmanager
async def opcua_engine(tmp_path: Path, value: ua.Variant | None = None) -> AsyncIterator[tuple[Engine, Seen]]:
    """A real asyncua server with one node (``POWER``, or ``value``) and an engine polling it."""
    server = Server()
    await server.init()
    server.set_endpoint("opc.tcp://127.0.0.1:0/t")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    idx = await server.register_namespace("urn:t")
    assert idx == 2
    node = await server.nodes.objects.add_variable(
        ua.NodeId.from_string("ns=2;s=r1.Power"), "Power", POWER if value is None else value
    )
    assert node is not None
    await server.start()
    try:
        port = server.bserver._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        config = DeviceConfig(name="r1", protocol="opcua", profile=PROFILE.name, poll_interval_s=0.05,
                              timeout_s=0.5, endpoint=f"opc.tcp://127.0.0.1:{port}/t")  # fmt: skip
        dev = DeviceRef("rack", "racks[0]", config, PROFILE, {"site": "t", "device": "r1"})
        seen = Seen()
        engine = Engine([dev], sinks=[seen], clock=ScaledClock.starting_now(),
                        options=EngineOptions(link=LinkOptions(backoff_initial_s=0.05, backoff_max_s=0.2),
                                              pki_dir=tmp_path / "pki"))  # fmt: skip
        async with engine:
            yield engine, seen
    finally:
        await server.stop()


def _raise_once(real: Callable[..., Any], *, after_cancel: bool = False) -> Callable[..., Any]:
    """``real``, except that its first call raises CancelledWithResultError, as wait_for2 does.

    ``after_cancel``: first wait until the caller's own timeout cancels the call, the race seen in the fuzz run (the
    reply completing in the same loop turn as the timeout's cancel).
    """
    calls = {"n": 0}

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            if after_cancel:
                try:
                    await asyncio.sleep(3600)
                except asyncio.CancelledError:
                    raise CancelledWithResultError(None, False) from None
            raise CancelledWithResultError(None, False)
        return await real(*args, **kwargs)

    return wrapper


class Seen:
    """A sink that keeps every batch and sets ``good`` once a GOOD power sample with the server's value arrives."""

    def __init__(self) -> None:
        self.batches: list[Batch] = []
        self.good = asyncio.Event()
        self.polled = asyncio.Event()  # a few polls of the device published

    def __call__(self, b: Batch) -> None:
        self.batches.append(b)
        if sum(str(s).endswith(" power_w") for x in self.batches for s in x.series) >= 3:
            self.polled.set()
        for s, v, q in zip(b.series, b.values, b.quality, strict=True):
            if str(s).endswith(" power_w") and q == Quality.GOOD and v == POWER:
                self.good.set()


@pytest.mark.timeout(60)
async def test_cancellation_leaked_by_asyncua_connect_is_a_failed_connect(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """asyncua's CancelledError when its connect times out is a failed connect (not a stop): the link reconnects."""
    monkeypatch.setattr(Client, "connect", _raise_once(Client.connect, after_cancel=True))
    async with opcua_engine(tmp_path) as (engine, seen):
        await asyncio.wait_for(seen.good.wait(), 30)
        link = engine.links[0]
        assert isinstance(link, OpcUaLink)
        assert link.health["r1"].errors >= 1  # the failed connect was reported
        assert link.unexpected_errors == 0  # the designed channel, not the safety net


@pytest.mark.timeout(60)
async def test_cancellation_leaked_by_a_poll_restarts_the_link(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A CancelledError out of a poll's read (nobody cancelled the link) marks the device bad and the link restarts."""
    monkeypatch.setattr(OpcUaLink, "_read", _raise_once(OpcUaLink._read))
    async with opcua_engine(tmp_path) as (_engine, seen):
        await asyncio.wait_for(seen.good.wait(), 30)
        assert any("unexpected CancelledWithResultError" in r for b in seen.batches for r in b.reasons)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "value",
    [ua.Variant(True, ua.VariantType.Boolean), ua.Variant([1.0, 2.0], ua.VariantType.Double),
     ua.Variant("12.5", ua.VariantType.String)],
    ids=["boolean", "array", "string"],
)  # fmt: skip
async def test_wrong_variant_type_is_bad_never_a_good_number(tmp_path: Path, value: ua.Variant) -> None:
    """A FLOAT64 point whose node serves a Boolean, an array or a String is published bad with the type it got."""
    async with opcua_engine(tmp_path, value) as (_engine, seen):
        await asyncio.wait_for(seen.polled.wait(), 30)
    points = [(v, q, b.reasons[i] if b.reasons else "") for b in seen.batches
              for i, (s, v, q) in enumerate(zip(b.series, b.values, b.quality, strict=True))
              if str(s).endswith(" power_w")]  # fmt: skip
    assert points
    assert all(q == Quality.BAD and np.isnan(v) and "not a number" in why for v, q, why in points), points
