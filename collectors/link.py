"""The connection supervisor shared by Modbus and OPC-UA links, and per-device health.

One :class:`Link` per connection (a Modbus TCP server, possibly a gateway with several unit ids, or an OPC-UA
endpoint serving several devices) runs one supervisor task with an explicit state: connecting, connected,
backing off. Transport failures back off exponentially with full jitter, capped at the shortest poll interval
of the link's devices so that a restarted server is back within two poll intervals. While connected each device
has its own poll loop with a stable phase, so thousands of devices spread over the interval instead of firing
in the same millisecond; a poll runs to completion before the next starts.
"""

from __future__ import annotations

import abc
import asyncio
import enum
import logging
import math
import random
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from aidc.clock import Clock
from aidc.config import DeviceRef
from aidc.model import Batch, SeriesKey
from collectors.quality import BAD

log = logging.getLogger(__name__)

HEALTH_MEASUREMENT = "collector"
HEALTH_FIELDS = ("up", "state", "latency_ms", "errors_total", "last_success_s")


class LinkState(enum.IntEnum):
    """Supervisor state of a connection (published as the ``state`` health field)."""

    CONNECTING = 0
    CONNECTED = 1
    BACKING_OFF = 2


@dataclass(frozen=True)
class LinkOptions:
    """Timing knobs shared by every link."""

    backoff_initial_s: float = 0.2
    backoff_max_s: float = 30.0
    min_interval_s: float = 0.02  # floor on the wall-clock poll interval when the clock runs fast
    stuck_polls: int = 5
    stale_intervals: int = 3
    timeouts_before_reconnect: int = 3


@dataclass
class DeviceHealth:
    """What the collector knows about one device; logged once per outage, published as series."""

    device: DeviceRef
    interval_s: float  # wall-clock poll interval
    state: LinkState = LinkState.CONNECTING
    up: bool = False
    last_success_ns: int | None = None
    last_fresh_mono: float = field(default_factory=time.monotonic)
    latency_s: float = math.nan
    errors: int = 0
    polls: int = 0
    failing: bool = False
    reason: str = ""
    stale: bool = False
    consecutive_timeouts: int = 0
    _series: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        tags = {k: v for k, v in self.device.tags.items() if k in ("site", "hall", "device")}
        self._series = np.array([SeriesKey.of(HEALTH_MEASUREMENT, f, tags).id for f in HEALTH_FIELDS], dtype=object)
        self._series.flags.writeable = False

    def success(self, ts_ns: int, latency_s: float, partial_reason: str = "") -> None:
        """A poll returned data (``partial_reason``: some points failed with a device exception reply)."""
        self.up, self.stale = True, False
        self.last_success_ns, self.latency_s = ts_ns, latency_s
        self.last_fresh_mono = time.monotonic()
        self.consecutive_timeouts = 0
        self.polls += 1
        if partial_reason:
            self.failure(partial_reason, up=True)
        elif self.failing:
            self.failing, self.reason = False, ""
            log.info("device %s (%s) recovered", self.device.name, self.device.config.address)

    def failure(self, reason: str, *, up: bool = False) -> None:
        """A poll or the connection failed; ERROR the first time, DEBUG until it recovers."""
        self.errors += 1
        self.up = up
        if not self.failing:
            self.failing = True
            log.error("device %s (%s): %s", self.device.name, self.device.config.address, reason)
        elif reason != self.reason:
            log.debug("device %s (%s): %s", self.device.name, self.device.config.address, reason)
        self.reason = reason

    def values(self) -> list[float]:
        """The health fields' values, in :data:`HEALTH_FIELDS` order."""
        last = math.nan if self.last_success_ns is None else self.last_success_ns / 1e9
        return [float(self.up), float(self.state), self.latency_s * 1e3, float(self.errors), last]

    @property
    def series(self) -> np.ndarray:
        """Series ids of the health fields (read-only, shared by every batch of the device)."""
        return self._series

    def batch(self, ts_ns: int) -> Batch:
        """The health fields as one small batch (measurement ``collector``)."""
        vals = np.array(self.values(), dtype=np.float64)
        return Batch(self._series, np.full(len(vals), ts_ns, dtype=np.int64), vals, np.zeros(len(vals), np.uint8))


Emit = Callable[[Batch], None]


class _DeviceFailed(Exception):
    """A device's poll raised an unforeseen exception; already reported, the link restarts."""


def poll_phase(device: str, interval_s: float) -> float:
    """Stable offset of a device's polls within its interval, from a hash of its name.

    The same device polls at the same offset in every process and after every restart, and thousands of devices
    spread evenly over the interval instead of firing in the same millisecond.
    """
    return (zlib.crc32(device.encode()) / 2**32) * interval_s


class Link(abc.ABC):
    """A connection supervisor; subclasses implement connect, per-device poll and close."""

    protocol: str = ""

    def __init__(
        self, key: str, devices: Sequence[DeviceRef], *, clock: Clock, emit: Emit, options: LinkOptions
    ) -> None:
        self.key = key
        self.devices = list(devices)
        self.clock = clock
        self.emit = emit
        self.options = options
        self.state = LinkState.CONNECTING
        self.health = {d.name: DeviceHealth(d, self._wall_interval(d)) for d in self.devices}
        self.connected = asyncio.Event()
        self.attempts = 0
        self.last_error = ""
        self.unexpected_errors = 0  # exceptions outside the protocol's error channels (each restarted the link)
        self._unexpected_streak = 0
        self.stopping = False  # set by the engine's stop: the supervisor loop ends at its next turn

    def _wall_interval(self, dev: DeviceRef) -> float:
        return max(self.options.min_interval_s, dev.config.poll_interval_s / max(self.clock.speed, 1e-9))

    def _set_state(self, state: LinkState) -> None:
        self.state = state
        for h in self.health.values():
            h.state = state
        if state is LinkState.CONNECTED:
            self.connected.set()
        else:
            self.connected.clear()

    @abc.abstractmethod
    async def connect(self) -> None:
        """Open the connection (and session); raise a transport error on failure."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close the connection; never raises."""

    @abc.abstractmethod
    async def poll(self, dev: DeviceRef) -> Batch:
        """Poll one device once; raise a transport error if the connection is lost."""

    @abc.abstractmethod
    def series_of(self, dev: DeviceRef) -> np.ndarray:
        """Series ids the device currently publishes (for stale marking)."""

    async def watch(self) -> None:
        """Return (or raise) when the connection is lost; by default never returns."""
        await asyncio.Event().wait()

    @abc.abstractmethod
    def transport_errors(self) -> tuple[type[BaseException], ...]:
        """Exceptions that mean the connection is lost."""

    def _backoff_s(self) -> float:
        cap = min(self.options.backoff_max_s, min(h.interval_s for h in self.health.values()))
        base = min(cap, self.options.backoff_initial_s * 2 ** min(self.attempts, 20))
        return random.uniform(base / 2, base)  # jitter: thousands of devices do not reconnect in step

    def _connection_failed(self, reason: str) -> None:
        self.last_error = reason
        for h in self.health.values():
            h.failure(reason)

    async def run(self) -> None:
        """Supervise the connection forever (until cancelled).

        Any exception of this link, not only a transport error (a reply of the wrong type, a decoder error, a bug
        met by one device's data), stays in this link: the devices' points are marked bad with the reason, it is
        logged once, and the link reconnects with backoff while every other link keeps polling.
        """
        errors = self.transport_errors()
        task = asyncio.current_task()
        while True:
            self._raise_if_stopping()
            base = task.cancelling() if task is not None else 0  # running here: no cancel pending
            self._set_state(LinkState.CONNECTING)
            try:
                await self.connect()
            except errors as exc:
                self._connection_failed(f"unreachable: {exc}")
                await self._back_off()
                continue
            except Exception as exc:  # top of a long-lived task (STYLE.md 8): isolate, never stop the engine
                self._unexpected(None, exc)
                await self.close()
                await self._back_off()
                continue
            except asyncio.CancelledError as exc:
                if self.cancel_requested(base):
                    raise
                self._unexpected(None, exc)  # leaked from a library: obeyed, the link would end silently
                await self.close()
                await self._back_off()
                continue
            self._set_state(LinkState.CONNECTED)
            # A link that keeps failing on bad data backs off further each time, like one that cannot connect.
            self.attempts = self._unexpected_streak
            try:
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(self._watch_then_raise())
                    for dev in self.devices:
                        tg.create_task(self._poll_loop(dev))
            except* errors as eg:
                self._connection_failed(f"connection lost: {eg.exceptions[0]}")
            except* Exception as eg:  # as above; the poll loop already marked its device's points bad
                if not all(isinstance(e, _DeviceFailed) for e in eg.exceptions):
                    self._unexpected(None, eg.exceptions[0])
            finally:
                await self.close()
            await self._back_off()

    def _unexpected(self, dev: DeviceRef | None, exc: BaseException) -> None:
        """An exception no protocol rule foresaw: the device's (or every device's) points bad, logged once."""
        reason = f"unexpected {type(exc).__name__}: {exc}"[:300]
        devices = self.devices if dev is None else [dev]
        self.unexpected_errors += 1
        self._unexpected_streak += 1
        # ERROR once per outage comes from DeviceHealth.failure; the traceback is for a bug report, at DEBUG.
        log.debug("link %s: %s", self.key, reason, exc_info=(type(exc), exc, exc.__traceback__))
        self.last_error = reason
        ts = self.clock.now_ns()
        for d in devices:
            h = self.health[d.name]
            h.failure(reason)
            series = self.series_of(d)
            n = len(series)
            bad = Batch(
                series,
                np.full(n, ts, dtype=np.int64),
                np.full(n, np.nan),
                np.full(n, BAD, dtype=np.uint8),
                [reason] * n,
            )
            self.emit(Batch.concat([bad, h.batch(ts)]))

    def cancel_requested(self, base: int = 0) -> bool:
        """Whether a CancelledError met here is a real request to stop: the engine stopping, or a pending cancel().

        A library can also raise one from its own internals (asyncua's wait_for2 does, see ``OpcUaLink.connect``)
        without anyone cancelling this task; obeying that one ended the link's task without a trace, its devices
        never polled again and the engine went on as if nothing happened (bench/fuzz.py: OPC-UA values stopped).
        ``base``: the task's ``cancelling()`` count when it was last known not to be cancelled (3.11's TaskGroup
        leaves one behind each time a child fails while it waits, so the supervisor's count only ever grows).
        """
        task = asyncio.current_task()
        return self.stopping or (task is not None and task.cancelling() > base)

    def _raise_if_stopping(self) -> None:
        """Raise CancelledError once the engine is stopping, even if an await inside the link swallowed the cancel.

        On Python 3.11 a cancellation that lands in the same loop iteration as an ``asyncio.timeout`` expiring (the
        Modbus connect) can come out as TimeoutError; the link then took it for a failed connect and reconnected
        forever while the engine's stop waited for it (``bench/fuzz.py`` hung about one run in five). The engine
        sets :attr:`stopping` before it cancels, so the supervisor loop ends at its next turn whatever happened.
        (``Task.cancelling()`` cannot serve: 3.11's TaskGroup leaves it raised after a child's failure.)
        """
        if self.stopping:
            raise asyncio.CancelledError

    async def _back_off(self) -> None:
        self._raise_if_stopping()
        self._set_state(LinkState.BACKING_OFF)
        delay = self._backoff_s()
        self.attempts += 1
        await asyncio.sleep(delay)

    async def _watch_then_raise(self) -> None:
        await self.watch()
        raise self.transport_errors()[0]("connection closed by peer")

    async def _poll_loop(self, dev: DeviceRef) -> None:
        health = self.health[dev.name]
        interval = health.interval_s
        loop = asyncio.get_running_loop()
        phase = poll_phase(dev.name, interval)
        nxt = loop.time()  # first poll right after (re)connecting
        while True:
            delay = nxt - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                batch = await self.poll(dev)
            except self.transport_errors():
                raise
            except Exception as exc:  # one device's unforeseen reply: its points bad, then the link restarts
                self._unexpected(dev, exc)
                raise _DeviceFailed(dev.name) from exc
            except asyncio.CancelledError as exc:  # TaskGroup ignores a cancelled child: the device would stop
                if self.cancel_requested():
                    raise
                self._unexpected(dev, exc)
                raise _DeviceFailed(dev.name) from exc
            self.emit(batch)
            self._unexpected_streak = 0
            now = loop.time()
            nxt = phase + (math.floor((now - phase) / interval) + 1) * interval

    async def poll_once(self) -> dict[str, Batch | str]:
        """Connect, poll every device once, close: per device a batch, or the reason it could not be read."""
        out: dict[str, Batch | str] = {}
        try:
            await self.connect()
        except self.transport_errors() as exc:
            return {d.name: f"unreachable: {exc}" for d in self.devices}
        try:
            for dev in self.devices:
                try:
                    out[dev.name] = await self.poll(dev)
                except self.transport_errors() as exc:
                    out[dev.name] = f"unreachable: {exc}"
        finally:
            await self.close()
        return out
