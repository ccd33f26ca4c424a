"""The connection supervisor's policies: phases, backoff, no overlapping polls, and log-once-per-outage."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

import numpy as np
import pytest

from aidc.clock import SteppedClock
from aidc.config import DeviceConfig, DeviceRef
from aidc.model import Batch
from aidc.profiles import Point, Profile
from collectors.link import DeviceHealth, Link, LinkOptions, LinkState, poll_phase


def _device(name: str = "pdu-1", interval_s: float = 10.0) -> DeviceRef:
    prof = Profile(name="t", protocol="modbus", measurement="t",
                   points=(Point(name="p", table="input", address=0, type="INT16"),))  # fmt: skip
    cfg = DeviceConfig(name=name, protocol="modbus", profile="t", port=1502, poll_interval_s=interval_s)
    return DeviceRef("pdu", "t", cfg, prof, {"site": "s", "device": name})


class ScriptedLink(Link):
    """A link whose connect and poll are scripted by the test (no protocol: it checks the supervisor alone)."""

    protocol = "test"

    def __init__(self, devices: list[DeviceRef], *, poll_s: float = 0.0, fail_connects: int = 0) -> None:
        self.batches: list[Batch] = []
        self.five_polls = asyncio.Event()
        super().__init__("test://x", devices, clock=SteppedClock(0), emit=self.batches.append,
                         options=LinkOptions(backoff_initial_s=0.01, min_interval_s=0.01))  # fmt: skip
        self.poll_s, self.fail_connects = poll_s, fail_connects
        self.active = self.max_active = self.polls = self.connects = 0

    async def connect(self) -> None:
        self.connects += 1
        if self.connects <= self.fail_connects:
            raise ConnectionRefusedError("refused")

    async def close(self) -> None:
        return None

    async def poll(self, dev: DeviceRef) -> Batch:
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        await asyncio.sleep(self.poll_s)
        self.active -= 1
        self.polls += 1
        if self.polls >= 5:
            self.five_polls.set()
        return Batch.empty()

    def series_of(self, dev: DeviceRef) -> np.ndarray:
        return np.empty(0, dtype=object)

    def transport_errors(self) -> tuple[type[BaseException], ...]:
        return (ConnectionError,)


def test_phases_spread_thousands_of_devices_over_the_interval() -> None:
    """Phases of 10,000 devices on a 10 s interval are stable and spread: every second gets 10 % +- 1.5 points and
    no 10 ms slot holds more than 0.25 % of the devices."""
    names = [f"pdu-h{h}-r{r:02d}-{i:02d}" for h in range(10) for r in range(40) for i in range(25)]
    phases = [poll_phase(n, 10.0) for n in names]
    assert all(0.0 <= p < 10.0 for p in phases)
    assert phases == [poll_phase(n, 10.0) for n in names], "the same device gets the same phase every time"
    per_second = Counter(int(p) for p in phases)
    assert all(850 <= per_second[s] <= 1150 for s in range(10))
    busiest = Counter(int(p / 0.01) for p in phases).most_common(1)[0][1]
    assert busiest <= 25  # 10 per slot on average; hashing is Poisson-like, the maximum over 1,000 slots is ~20


def test_backoff_grows_with_jitter_and_is_capped_by_the_poll_interval() -> None:
    """Reconnect delays double per attempt within [base/2, base] and never exceed the shortest poll interval."""
    link = ScriptedLink([_device(interval_s=1.0)])
    link.options = LinkOptions(backoff_initial_s=0.2, backoff_max_s=30.0)
    seen: dict[int, list[float]] = {}
    for attempts in (0, 1, 2, 8):
        link.attempts = attempts
        seen[attempts] = [link._backoff_s() for _ in range(200)]
    assert all(0.1 <= d <= 0.2 for d in seen[0])
    assert all(0.2 <= d <= 0.4 for d in seen[1])
    assert all(0.4 <= d <= 0.8 for d in seen[2])
    assert all(0.5 <= d <= 1.0 for d in seen[8]), "capped at the 1 s poll interval"
    assert len(set(seen[8])) > 150, "jittered, so many devices do not reconnect in step"


async def test_a_slow_poll_is_never_started_twice() -> None:
    """When a poll takes longer than the interval the next one waits for it: at most one poll per device runs."""
    link = ScriptedLink([_device(interval_s=0.02)], poll_s=0.05)
    task = asyncio.create_task(link.run())
    await asyncio.wait_for(link.connected.wait(), 5)
    await asyncio.wait_for(link.five_polls.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert link.max_active == 1


async def test_supervisor_backs_off_then_connects() -> None:
    """Refused connections move the link through connecting and backing off, then to connected and polling."""
    link = ScriptedLink([_device(interval_s=0.02)], fail_connects=3)
    states: list[LinkState] = []
    orig = link._set_state

    def record(state: LinkState) -> None:
        states.append(state)
        orig(state)

    link._set_state = record  # type: ignore[method-assign]
    task = asyncio.create_task(link.run())
    await asyncio.wait_for(link.connected.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert states[:7] == [LinkState.CONNECTING, LinkState.BACKING_OFF] * 3 + [LinkState.CONNECTING]
    assert LinkState.CONNECTED in states
    assert link.health["pdu-1"].errors == 3


def test_failing_device_is_logged_once_then_quiet_then_recovery_once(caplog: pytest.LogCaptureFixture) -> None:
    """A failing device logs one ERROR, nothing above DEBUG while it keeps failing, and one INFO on recovery."""
    caplog.set_level(logging.DEBUG, logger="collectors.link")
    health = DeviceHealth(_device(), 10.0)
    for _ in range(5):
        health.failure("timeout after 2s")
    health.failure("unreachable: refused")
    health.success(1, 0.01)
    health.success(2, 0.01)
    levels = [r.levelno for r in caplog.records]
    assert levels.count(logging.ERROR) == 1
    assert levels.count(logging.INFO) == 1
    assert max(levels[1:-1]) == logging.DEBUG
    assert "pdu-1" in caplog.records[0].getMessage()
    assert "127.0.0.1:1502" in caplog.records[0].getMessage(), "the device's address is in the message"
    health.failure("timeout after 2s")
    assert [r.levelno for r in caplog.records].count(logging.ERROR) == 2, "a new outage is logged again"
