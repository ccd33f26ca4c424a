"""Run the whole simulated facility in one process: physics, every device server, the tick loop, a control API.

Real devices are separate from the manager, so the simulators run in their own process (``aidc simulate``).
The tick loop advances the physics by ``simulation.tick_s`` simulated seconds at a time, following a
:class:`ScaledClock` published in ``<data_dir>/clock.json`` so the app can share it (``--speed 60``), and then
refreshes every server from the physics; at high speed several physics steps run between two server
refreshes, which are capped at :data:`MAX_REFRESH_HZ` so the simulators leave CPU for the app. A small
HTTP/JSON API on ``127.0.0.1:<simulation.control_port>`` lets tests and operators inject faults
(``POST /faults``), list devices (``GET /devices``), read key physics values (``GET /state``) and pause the
physics (``POST /pause``, ``POST /resume``).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import signal
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aidc.clock import NS, ScaledClock
from aidc.config import DeviceRef, Site
from aidc.errors import AidcError, ConfigError
from simulators.control_api import ControlApi
from simulators.faults import FaultBook
from simulators.http_devices import HTTP_PROTOCOLS, HttpSim, http_sims
from simulators.interface import FacilityPhysics
from simulators.modbus_server import ModbusPort
from simulators.opcua_server import OpcUaEndpoint
from simulators.snmp_agent import SnmpAgent, plan_agents

log = logging.getLogger(__name__)

MAX_REFRESH_HZ = 5.0
MAX_STEPS_PER_REFRESH = 10_000
PhysicsFactory = Callable[[Site], FacilityPhysics]


def default_physics(site: Site) -> FacilityPhysics:
    """The facility model from ``simulators.facility``, its temperature probes reading with sensor noise."""
    from simulators.facility import Facility  # the physics is heavy; import it only to run

    fac = Facility(site, sensor_noise=True)
    fac.weather.check_span(fac.t_ns, None, "the simulator")  # it runs until stopped: a short file would run out
    return fac


def load_physics_factory(spec: str) -> PhysicsFactory:
    """``module:Class`` to a physics factory (tests plug in a deterministic stand-in this way)."""
    module, _, name = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        raise ConfigError(f"--physics {spec!r}: expected module:Class naming an importable class") from None
    return factory


def plan_listeners(site: Site) -> tuple[dict[int, list[DeviceRef]], dict[str, list[DeviceRef]]]:
    """Group devices into Modbus ports and OPC-UA endpoints; ConfigError names clashing devices."""
    ports: dict[int, list[DeviceRef]] = defaultdict(list)
    endpoints: dict[str, list[DeviceRef]] = defaultdict(list)
    for dev in site.devices:
        if dev.config.protocol == "modbus":
            assert dev.config.port is not None
            ports[dev.config.port].append(dev)
        elif dev.config.protocol in HTTP_PROTOCOLS:
            continue  # served by simulators.http_devices
        elif dev.config.protocol == "opcua":
            assert dev.config.endpoint is not None
            endpoints[dev.config.endpoint].append(dev)
    used: dict[int, str] = {port: f"{devs[0].path} ({devs[0].name})" for port, devs in ports.items()}
    by_port: dict[int, str] = {}
    for url, devs in endpoints.items():
        port = OpcUaEndpoint.port_of(url, devs[0].path)
        other = used.get(port) or (by_port[port] if port in by_port and by_port[port] != url else None)
        if other:
            raise ConfigError(f"{devs[0].path}.endpoint: port {port} is also used by {other}")
        by_port[port] = url
    control = site.config.simulation.control_port
    if control in used or control in by_port:
        raise ConfigError(f"simulation.control_port: {control} is also used by a device")
    return dict(ports), dict(endpoints)


class SimulatedFacility:
    """Physics plus every device server plus the tick loop and the control API."""

    def __init__(self, site: Site, physics: FacilityPhysics, *, speed: float | None = None) -> None:
        self.site = site
        self.physics = physics
        sim = site.config.simulation
        self.tick_s = sim.tick_s
        self.speed = speed or sim.speed
        self.bind = sim.bind
        self.faults = FaultBook({d.name: d.profile for d in site.devices}, on_restart=self._restart_device)
        try:
            port_plan, endpoint_plan = plan_listeners(site)
            self.ports = {p: ModbusPort(self.bind, p, devs, physics, self.faults) for p, devs in port_plan.items()}
            pki = site.data_dir / "pki"
            self.endpoints = {url: OpcUaEndpoint(url, devs, physics, self.faults, pki)
                              for url, devs in endpoint_plan.items()}
            self.agents = plan_agents(list(site.devices), self.bind, physics, self.faults)
            taken = {*self.ports, sim.control_port, *(ep.port for ep in self.endpoints.values())}
            self.http = http_sims(site, physics, self.faults, pki, taken=taken)
        except ConfigError as exc:
            raise ConfigError(f"{site.path or '<site>'}: {exc}") from None
        self._device_port: dict[str, ModbusPort | OpcUaEndpoint | SnmpAgent | HttpSim] = {}
        for mp in self.ports.values():
            self._device_port.update({d.name: mp for d in mp.devices.values()})
        for ep in self.endpoints.values():
            self._device_port.update({d.name: ep for d in ep.devices})
        self._device_port.update({a.device.name: a for a in self.agents.values()})
        for hs in self.http:
            self._device_port.update({d.name: hs for d in hs.devices})
        self.clock = ScaledClock.starting_now(physics.t_ns, self.speed)
        self.paused = False
        self.ready = asyncio.Event()
        self._stop = asyncio.Event()
        self.api = ControlApi(self, self.bind, sim.control_port)

    @property
    def clock_path(self) -> Path:
        """Where the shared clock is published."""
        return self.site.data_dir / "clock.json"

    def _restart_device(self, device: str, seconds: float) -> None:
        self._device_port[device].restart(seconds)

    def listener_of(self, device: str) -> ModbusPort | OpcUaEndpoint | SnmpAgent | HttpSim:
        """The Modbus port, OPC-UA endpoint, SNMP agent or HTTP listener (DCGM, Redfish) serving a device."""
        return self._device_port[device]

    async def start(self) -> None:
        """Start the control API and every server (Modbus first: they are instant); AidcError if one cannot bind."""
        await self.api.start()
        for mp in self.ports.values():
            mp.refresh()
            try:
                await mp.start()
            except OSError as exc:
                names = ", ".join(d.name for d in mp.devices.values())
                raise AidcError(f"{exc} for {names}") from None
        for agent in self.agents.values():
            try:
                await agent.start()
            except OSError as exc:
                raise AidcError(f"{exc} for {agent.device.name}") from None
        for ep in self.endpoints.values():
            try:
                await ep.start()
            except OSError as exc:
                raise AidcError(f"{exc} for {', '.join(d.name for d in ep.devices)}") from None
            await ep.refresh()
        for hs in self.http:
            try:
                await hs.start()
            except OSError as exc:
                raise AidcError(f"{exc} for {', '.join(d.name for d in hs.devices)}") from None
        self.clock = ScaledClock.starting_now(self.physics.t_ns, self.speed)
        self.clock.save(self.clock_path)
        self.ready.set()

    async def stop(self) -> None:
        """Close every server and the control API."""
        self._stop.set()
        for mp in self.ports.values():
            await mp.stop()
        for agent in self.agents.values():
            await agent.stop()
        for ep in self.endpoints.values():
            with contextlib.suppress(Exception):  # a half-started server must not block the others' shutdown
                await ep.stop()
        for hs in self.http:
            await hs.stop()
        await self.api.stop()

    def request_stop(self) -> None:
        """Ask :meth:`run` to return (signal handlers call this)."""
        self._stop.set()

    async def tick(self) -> int:
        """Advance the physics to the clock's time in ``tick_s`` steps and refresh the servers; returns steps."""
        tick_ns = int(self.tick_s * NS)
        target = self.clock.now_ns()
        steps = 0
        while not self.paused and self.physics.t_ns + tick_ns <= target and steps < MAX_STEPS_PER_REFRESH:
            self.physics.step(self.tick_s)
            steps += 1
        if steps == MAX_STEPS_PER_REFRESH:
            log.warning("simulation lags the clock by %.0f s; physics steps are too slow for --speed %g",
                        (target - self.physics.t_ns) / NS, self.speed)
        for mp in self.ports.values():
            mp.refresh()
        for agent in self.agents.values():
            agent.refresh()
        for ep in self.endpoints.values():
            await ep.refresh()
        for hs in self.http:
            hs.refresh()
        return steps

    async def run(self) -> None:
        """Start, tick until asked to stop, then shut down."""
        try:
            await self.start()
            period = max(self.tick_s / self.speed, 1.0 / MAX_REFRESH_HZ)
            while not self._stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), timeout=period)
                if not self._stop.is_set():
                    await self.tick()
        finally:
            await self.stop()

    def state(self) -> dict[str, Any]:
        """Key physics values: time, the physics' snapshot if it has one, and every device's values."""
        snapshot = getattr(self.physics, "snapshot", None)
        return {
            "t_ns": self.physics.t_ns,
            "paused": self.paused,
            "speed": self.speed,
            "snapshot": snapshot() if callable(snapshot) else {},
            "devices": {d.name: self.physics.device_values(d.name) for d in self.site.devices},
        }

    def devices(self) -> list[dict[str, Any]]:
        """Every device, where it listens, whether it is up and its active faults."""
        out = []
        for d in self.site.devices:
            listener = self._device_port[d.name]
            out.append({"device": d.name, "kind": d.kind, "protocol": d.config.protocol,
                        "address": listen_address(d, self.bind), "listening": listener.running,
                        "faults": self.faults.active(d.name)})
        return out


def listen_address(dev: DeviceRef, bind: str) -> str:
    """Where the simulator serves a device (Modbus on the bind address; OPC-UA at its endpoint URL)."""
    if dev.config.protocol == "modbus":
        return f"modbus://{bind}:{dev.config.port} unit {dev.config.unit_id}"
    if dev.config.protocol == "snmp":
        return f"snmp://{bind}:{dev.config.port}"
    return dev.config.address if dev.config.protocol in HTTP_PROTOCOLS else str(dev.config.endpoint)


async def serve(site: Site, physics: FacilityPhysics, *, speed: float | None = None,
                on_ready: Callable[[SimulatedFacility], None] | None = None) -> None:
    """Run the simulated facility until SIGINT/SIGTERM."""
    facility = SimulatedFacility(site, physics, speed=speed)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, facility.request_stop)

    async def announce() -> None:
        await facility.ready.wait()
        if on_ready is not None:
            on_ready(facility)

    announcer = asyncio.create_task(announce())
    try:
        await facility.run()
    finally:
        announcer.cancel()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
