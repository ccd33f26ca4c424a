"""The collection engine: links per connection, sinks, stale detection, one-shot collection and the live summary.

The app starts it inside its own event loop::

    engine = Engine.from_site(site, sinks=[historian.write, live.update], clock=clock)
    task = engine.start()          # or: async with engine: ...
    ...
    await engine.stop()

Devices that share a connection (unit ids behind one Modbus gateway, nodes of several devices on one OPC-UA
endpoint) share one link and one supervisor task.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import numpy as np

from aidc.clock import Clock, ScaledClock
from aidc.config import DeviceRef, Site
from aidc.errors import ConfigError
from aidc.live import LiveState
from aidc.model import Batch, SeriesKey
from aidc.roles import Role
from collectors.dcgm import DcgmLink, dcgm_key
from collectors.link import DeviceHealth, Link, LinkOptions
from collectors.modbus_link import ModbusLink
from collectors.opcua import OpcUaLink, SubscriptionOptions
from collectors.output import Output, Sink
from collectors.quality import BAD
from collectors.redfish import RedfishLink, redfish_key
from collectors.snmp import SnmpLink

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineOptions:
    """Engine-wide settings."""

    link: LinkOptions = field(default_factory=LinkOptions)
    subscription: SubscriptionOptions = field(default_factory=SubscriptionOptions)
    pki_dir: Path | None = None  # OPC-UA client certificate folder (default <data_dir>/pki)


def link_key(dev: DeviceRef) -> str:
    """Devices with the same key share one connection."""
    c = dev.config
    if c.protocol == "modbus":
        return f"modbus://{c.host}:{c.port}"
    if c.protocol == "snmp":
        return f"snmp://{c.host}:{c.port}"
    if c.protocol == "dcgm":
        return dcgm_key(dev)
    if c.protocol == "redfish":
        return redfish_key(dev)
    return f"{c.endpoint}#{c.security.model_dump_json()}"


def parse_shard(text: str) -> tuple[int, int]:
    """``i/n`` (0 <= i < n) to a tuple; ConfigError on anything else."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard {text!r}: expected i/n, e.g. 0/4") from None
    if not 0 <= i < n:
        raise ConfigError(f"--shard {text!r}: need 0 <= i < n")
    return i, n


def shard(devices: Sequence[DeviceRef], index: int, count: int) -> list[DeviceRef]:
    """A stable share of the devices: by a hash of the connection, so a gateway's units stay together."""
    return [d for d in devices if zlib.crc32(link_key(d).encode()) % count == index]


class Engine:
    """Collects every device of a site (or a shard of it) and hands batches to sinks."""

    def __init__(
        self,
        devices: Sequence[DeviceRef],
        *,
        sinks: Sequence[Sink] = (),
        clock: Clock | None = None,
        options: EngineOptions | None = None,
        data_dir: Path = Path("var"),
    ) -> None:
        self.options = options or EngineOptions()
        self.clock: Clock = clock or ScaledClock.starting_now()
        self.output = Output(sinks)
        self.devices = list(devices)
        groups: dict[str, list[DeviceRef]] = defaultdict(list)
        for d in self.devices:
            groups[link_key(d)].append(d)
        pki = self.options.pki_dir or data_dir / "pki"
        self.links: list[Link] = []
        for key, devs in groups.items():
            if devs[0].config.protocol == "modbus":
                self.links.append(ModbusLink(key, devs, clock=self.clock, emit=self._emit, options=self.options.link))
            elif devs[0].config.protocol == "snmp":
                self.links.append(SnmpLink(key, devs, clock=self.clock, emit=self._emit, options=self.options.link))
            elif devs[0].config.protocol in ("dcgm", "redfish"):
                kind = DcgmLink if devs[0].config.protocol == "dcgm" else RedfishLink
                opts = self.options.link
                self.links.append(kind(key, devs, clock=self.clock, emit=self._emit, options=opts, pki_dir=pki))
            else:
                self.links.append(
                    OpcUaLink(
                        key,
                        devs,
                        clock=self.clock,
                        emit=self._emit,
                        options=self.options.link,
                        subscription=self.options.subscription,
                        pki_dir=pki,
                    )
                )
        self._by_device = {d.name: link for link in self.links for d in link.devices}
        self._task: asyncio.Task[None] | None = None
        self.restarts = 0  # link or watchdog tasks restarted after an exception escaped them

    @classmethod
    def from_site(
        cls,
        site: Site,
        *,
        sinks: Sequence[Sink] = (),
        clock: Clock | None = None,
        shard_spec: tuple[int, int] | None = None,
        options: EngineOptions | None = None,
    ) -> Engine:
        """An engine for every device of the site, or the share ``shard_spec = (i, n)``."""
        devices = list(site.devices) if shard_spec is None else shard(site.devices, *shard_spec)
        return cls(devices, sinks=sinks, clock=clock, options=options, data_dir=site.data_dir)

    def _emit(self, batch: Batch) -> None:
        self.output.publish(batch)

    def add_sink(self, sink: Sink) -> None:
        """Add a sink (before or while running)."""
        self.output.add(sink)

    def link(self, device: str) -> Link:
        """The link serving a device."""
        try:
            return self._by_device[device]
        except KeyError:
            raise ConfigError(f"device {device!r} is not collected by this engine") from None

    def health(self) -> dict[str, DeviceHealth]:
        """Health of every device."""
        return {name: h for link in self.links for name, h in link.health.items()}

    async def run(self) -> None:
        """Run every link supervisor and the stale watchdog until cancelled."""
        async with asyncio.TaskGroup() as tg:
            for link in self.links:
                tg.create_task(self._supervised(link.run, f"link {link.key}"), name=f"link {link.key}")
            tg.create_task(self._supervised(self._stale_watchdog, "stale watchdog"), name="stale watchdog")

    async def _supervised(self, run: Callable[[], Awaitable[None]], what: str) -> None:
        """Run a long-lived task, restarting it after any exception so that one link never stops the others.

        Links isolate their own failures (``Link.run``); this is the last line of defence against a bug there.
        """
        delay = self.options.link.backoff_initial_s
        while True:
            try:
                await run()
                return
            except Exception:  # top of a long-lived task (STYLE.md 8)
                self.restarts += 1
                log.exception("%s stopped unexpectedly; restarting it in %.1f s", what, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.options.link.backoff_max_s)

    def start(self) -> asyncio.Task[None]:
        """Start :meth:`run` as a task in the running loop."""
        if self._task is None or self._task.done():
            for link in self.links:
                link.stopping = False
            self._task = asyncio.create_task(self.run(), name="collector engine")
        return self._task

    async def stop(self) -> None:
        """Cancel the supervisors, close connections, flush sinks."""
        for link in self.links:
            link.stopping = True  # a link whose await swallowed the cancel still ends (Link._raise_if_stopping)
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        for link in self.links:
            await link.close()
        await self.output.flush()

    async def __aenter__(self) -> Engine:
        self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def wait_connected(self, device: str) -> None:
        """Wait until the device's link is connected."""
        await self.link(device).connected.wait()

    async def _stale_watchdog(self) -> None:
        """Mark a device's series bad once no fresh value arrived for ``stale_intervals`` poll intervals."""
        k = self.options.link.stale_intervals
        period = max(0.01, min((h.interval_s for h in self.health().values()), default=1.0) / 2)
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for link in self.links:
                for dev in link.devices:
                    h = link.health[dev.name]
                    age = now - h.last_fresh_mono
                    if h.stale or age < k * h.interval_s:
                        continue
                    h.stale, h.up = True, False
                    series = link.series_of(dev)
                    ts = self.clock.now_ns()
                    why = f"stale: no fresh value for {age * self.clock.speed:.3g}s" + (
                        f" ({h.reason})" if h.reason else ""
                    )
                    n = len(series)
                    stale = Batch(
                        series,
                        np.full(n, ts, dtype=np.int64),
                        np.full(n, np.nan),
                        np.full(n, BAD, dtype=np.uint8),
                        [why] * n,
                    )
                    self._emit(Batch.concat([stale, h.batch(ts)]))

    async def collect_once(self) -> dict[str, Batch | str]:
        """Poll every device once (links in parallel): per device its batch or why it could not be read."""
        results = await asyncio.gather(*(link.poll_once() for link in self.links))
        out: dict[str, Batch | str] = {}
        for r in results:
            out.update(r)
        for v in out.values():
            if isinstance(v, Batch):
                self._emit(v)
        return out


# --- live summary ----------------------------------------------------------------------------------------

# IT power by measurement point, best category first (ISO/IEC 30134-2: equipment input, PDU output, UPS output).
IT_POWER_ROLES = (Role.IT_POWER_EQUIPMENT_INPUT, Role.IT_POWER_PDU_OUTPUT, Role.IT_POWER_UPS_OUTPUT)


def role_series(devices: Sequence[DeviceRef], role: Role) -> list[str]:
    """Series ids of every point with ``role`` (site overrides and meter purposes included)."""
    out = []
    for d in devices:
        for p in d.profile.points:
            if not p.array and d.role_of(p.name) == role:
                out.append(SeriesKey.of(d.profile.measurement, p.name, d.tags).id)
    return out


# (IT W, facility W, IT metering category) from the live state; None where no complete figure exists.
PowerFigures = Callable[[], tuple[float | None, float | None, int | None]]


class Summary:
    """The short live line of the demo: devices up, points per second, IT power, facility power.

    The main job hands in ``power``, the one IT-metering rule (``analytics.energy.metering.live_pue``); without it
    (``aidc collect`` on its own) the line sums the first IT role's series and shows n/a unless every one of them
    has a value, never a part sum.
    """

    def __init__(self, engine: Engine, live: LiveState, power: PowerFigures | None = None) -> None:
        self.engine, self.live, self.power = engine, live, power
        self._last = (time.monotonic(), engine.output.samples)
        self._it = next((s for r in IT_POWER_ROLES if (s := role_series(engine.devices, r))), [])
        self._fac = role_series(engine.devices, Role.FACILITY_POWER)

    def _figures(self) -> tuple[float, float, int | None]:
        if self.power is not None:
            it_w, fac_w, cat = self.power()
            return (float("nan") if it_w is None else it_w), (float("nan") if fac_w is None else fac_w), cat
        it = float(np.sum(self.live.values(self._it))) if self._it else float("nan")  # NaN if one is missing
        fac = float(np.sum(self.live.values(self._fac))) if self._fac else float("nan")
        return it, fac, None

    def line(self) -> str:
        """One line, e.g. ``devices 70/70 up | 1520 points/s | IT 3.95 MW | facility 4.57 MW``."""
        now, samples = time.monotonic(), self.engine.output.samples
        rate = (samples - self._last[1]) / max(now - self._last[0], 1e-9)
        self._last = (now, samples)
        health = self.engine.health()
        up = sum(h.up for h in health.values())
        it, fac, cat = self._figures()
        where = f" (category {cat})" if cat is not None else ""
        line = f"devices {up}/{len(health)} up | {rate:.0f} points/s | IT {_mw(it)}{where} | facility {_mw(fac)}"
        dropped = self.engine.output.dropped
        return line + (f" | dropped {dropped} points (sink backlog full)" if dropped else "")


def _mw(w: float) -> str:
    return "n/a" if w != w else f"{w / 1e6:.2f} MW"
