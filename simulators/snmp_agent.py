"""SNMP agent for simulated rack PDUs: pysnmp's command responder on loopback UDP, answering from the physics.

One agent per UDP port serves one device. It answers GET, GETNEXT and GETBULK (v2c with the site's community,
v3 USM with the site's user and keys, read from the same environment variables the collector uses) for the
OIDs of the device's profile, plus the SNMPv2-MIB system group (``sysDescr``, ``sysObjectID``, ``sysUpTime``):
``sysUpTime`` starts again from 0 when the agent restarts, as a rebooted PDU's does, and SNMPv3's engine boots
start again too, so a collector must rediscover the engine (RFC 3414 time window). Values are encoded per point
with the profile's scale through :func:`simulators.registers.raw_value` (counters wrap, integers saturate), as
Gauge32 / Integer32 / Counter64 by the point's type. Faults: ``drop`` and ``delay`` leave requests unanswered (UDP
has no connection to hang up), ``exception`` answers genErr, ``restart`` closes the port for a while and comes back
as a fresh engine; value faults (stuck, NaN, ...) act through :meth:`FaultBook.apply` like on every server.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import math
import socket
import time
from collections.abc import Mapping
from typing import Any

from pysnmp.carrier.asyncio.dgram import udp
from pysnmp.entity import config, engine
from pysnmp.entity.rfc3413 import cmdrsp, context
from pysnmp.proto import rfc1902, rfc1905
from pysnmp.smi import error as smi_error
from pysnmp.smi import instrum

from aidc.config import DeviceRef
from aidc.errors import ConfigError
from aidc.profiles import DataType, Point
from aidc.snmp_config import SnmpSettings
from aidc.snmp_transport import QuietDispatcher
from simulators.faults import FaultBook
from simulators.interface import FacilityPhysics, PointValue
from simulators.registers import raw_value
from simulators.restart import RestartFault

log = logging.getLogger(__name__)

Oid = tuple[int, ...]
SYS_DESCR: Oid = (1, 3, 6, 1, 2, 1, 1, 1, 0)
SYS_OBJECT_ID: Oid = (1, 3, 6, 1, 2, 1, 1, 2, 0)
SYS_UPTIME: Oid = (1, 3, 6, 1, 2, 1, 1, 3, 0)
RARITAN_ENTERPRISE: Oid = (1, 3, 6, 1, 4, 1, 13742)

AUTH = {
    "SHA": config.USM_AUTH_HMAC96_SHA,
    "SHA256": config.USM_AUTH_HMAC192_SHA256,
    "SHA512": config.USM_AUTH_HMAC384_SHA512,
}
PRIV = {"AES": config.USM_PRIV_CFB128_AES}


def parse_oid(text: str) -> Oid:
    """``1.3.6.1...`` to a tuple of ints."""
    return tuple(int(x) for x in text.split("."))


def snmp_value(point: Point, value: float) -> Any:
    """The ASN.1 value an agent sends for ``point`` at engineering ``value`` (RFC 2578 types)."""
    raw = raw_value(point, value)
    n = 0 if isinstance(raw, float) and math.isnan(raw) else int(raw)
    if point.type is DataType.UINT64:
        return rfc1902.Counter64(max(0, min(n, 2**64 - 1)))
    if point.type is DataType.UINT32:
        return rfc1902.Gauge32(max(0, min(n, 2**32 - 1)))
    return rfc1902.Integer32(max(-(2**31), min(n, 2**31 - 1)))


class _Table(instrum.AbstractMibInstrumController):
    """The agent's MIB view: a sorted OID table answered directly (no MIB modules compiled or loaded)."""

    def __init__(self, agent: SnmpAgent) -> None:
        self.agent = agent

    def _check(self) -> None:
        if self.agent.faults.exception_code(self.agent.device.name) is not None:
            raise smi_error.GenError()

    def read_variables(self, *var_binds: Any, **ctx: Any) -> list[tuple[Any, Any]]:
        """GET: the value of each requested instance, or noSuchInstance / noSuchObject."""
        self._check()
        out = []
        for name, _ in var_binds:
            oid = tuple(name)
            value = self.agent.value_of(oid)
            if value is None:
                value = rfc1905.noSuchInstance if self.agent.has_prefix(oid) else rfc1905.noSuchObject
            out.append((rfc1902.ObjectName(oid), value))
        return out

    def read_next_variables(self, *var_binds: Any, **ctx: Any) -> list[tuple[Any, Any]]:
        """GETNEXT / GETBULK: the next instance in lexicographic order, or endOfMibView."""
        self._check()
        out = []
        for name, _ in var_binds:
            nxt = self.agent.next_of(tuple(name))
            if nxt is None:
                out.append((name, rfc1905.endOfMibView))
            else:
                out.append((rfc1902.ObjectName(nxt), self.agent.value_of(nxt)))
        return out

    def write_variables(self, *var_binds: Any, **ctx: Any) -> list[tuple[Any, Any]]:
        """SET: refused, every point of a simulated PDU is read-only."""
        raise smi_error.NotWritableError()


class _Transport(udp.UdpTransport):
    """pysnmp's UDP transport, dropping requests for a device with the drop or delay fault (UDP cannot hang up)."""

    agent: SnmpAgent

    def datagram_received(self, datagram: bytes, transportAddress: Any) -> None:
        name = self.agent.device.name
        if self.agent.faults.dropping(name) or self.agent.faults.delay_s(name) > 0:
            return
        super().datagram_received(datagram, transportAddress)


class SnmpAgent:
    """One UDP port answering SNMP for one device, from the facility physics."""

    def __init__(self, host: str, port: int, device: DeviceRef, physics: FacilityPhysics, faults: FaultBook) -> None:
        self.host, self.port = host, port
        self.device = device
        self.devices = [device]
        self.physics, self.faults = physics, faults
        settings = device.config.snmp
        assert settings is not None  # DeviceConfig requires [snmp] for protocol "snmp"
        self.settings: SnmpSettings = settings
        self.points = {parse_oid(p.oid): p for p in device.profile.points if p.oid is not None}
        self._values: dict[Oid, Any] = {}
        self._order: list[Oid] = sorted([*self.points, SYS_DESCR, SYS_OBJECT_ID, SYS_UPTIME])
        self._engine: engine.SnmpEngine | None = None
        self._started = 0.0
        self._restart = RestartFault(f"snmp {host}:{port}", self._close, self.start)
        self.requests = 0

    @property
    def running(self) -> bool:
        """Whether the agent is listening."""
        return self._engine is not None

    def has_prefix(self, oid: Oid) -> bool:
        """Whether ``oid`` lies under an object this agent implements (noSuchInstance rather than noSuchObject)."""
        return any(oid[: len(p) - 1] == p[:-1] for p in self._order)

    def value_of(self, oid: Oid) -> Any:
        """The current value of an instance, or None."""
        self.requests += 1
        if oid == SYS_UPTIME:
            return rfc1902.TimeTicks(int((time.monotonic() - self._started) * 100) % 2**32)
        if oid == SYS_DESCR:
            return rfc1902.OctetString(f"aidc simulated {self.device.profile.manufacturer_style} ({self.device.name})")
        if oid == SYS_OBJECT_ID:
            return rfc1902.ObjectIdentifier(RARITAN_ENTERPRISE)
        return self._values.get(oid)

    def next_of(self, oid: Oid) -> Oid | None:
        """The first instance after ``oid`` (lexicographic), or None at the end of the MIB view."""
        i = bisect.bisect_right(self._order, oid)
        return self._order[i] if i < len(self._order) else None

    def refresh(self) -> None:
        """Re-encode every point from the physics (after a tick)."""
        name = self.device.name
        values: Mapping[str, PointValue] = self.faults.apply(name, self.physics.device_values(name))
        for oid, p in self.points.items():
            v = values.get(p.sim or p.name)
            if isinstance(v, bool | int | float):
                self._values[oid] = snmp_value(p, float(v))

    def _secret(self, env: str | None, what: str) -> str:
        return self.settings.secret(env, what, self.device.name)

    def _build(self, sock: socket.socket) -> engine.SnmpEngine:
        eng = engine.SnmpEngine()
        eng.register_transport_dispatcher(QuietDispatcher())
        transport = _Transport()
        transport.agent = self
        config.add_transport(eng, udp.DOMAIN_NAME, transport.open_server_mode(sock=sock))
        s = self.settings
        if s.version == "2c":
            community = self._secret(s.community_env, "community_env") if s.community_env else "public"
            config.add_v1_system(eng, "aidc-area", community)
            config.add_vacm_user(eng, 2, "aidc-area", "noAuthNoPriv", (1,))
        else:
            assert s.user is not None
            auth = AUTH[s.auth_protocol] if s.security_level != "noAuthNoPriv" else config.USM_AUTH_NONE
            priv = PRIV[s.priv_protocol] if s.security_level == "authPriv" else config.USM_PRIV_NONE
            auth_key = self._secret(s.auth_key_env, "auth_key_env") if auth != config.USM_AUTH_NONE else None
            priv_key = self._secret(s.priv_key_env, "priv_key_env") if priv != config.USM_PRIV_NONE else None
            config.add_v3_user(eng, s.user, auth, auth_key, priv, priv_key)
            config.add_vacm_user(eng, 3, s.user, s.security_level, (1,))
        ctx = context.SnmpContext(eng)
        ctx.context_names[b""] = _Table(self)  # our table instead of compiled MIBs
        for responder in (cmdrsp.GetCommandResponder, cmdrsp.NextCommandResponder, cmdrsp.BulkCommandResponder):
            responder(eng, ctx)
        return eng

    async def start(self) -> None:
        """Listen on UDP ``host:port``; OSError naming the address if it cannot be bound."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise OSError(f"cannot listen on udp {self.host}:{self.port} (in use or not permitted)") from None
        sock.setblocking(False)
        self._started = time.monotonic()
        self.refresh()
        self._engine = self._build(sock)
        self._engine.open_dispatcher()
        await asyncio.sleep(0)  # let the datagram endpoint open

    async def stop(self) -> None:
        """Close the port."""
        self._restart.cancel()
        await self._close()

    async def _close(self) -> None:
        if self._engine is not None:
            eng, self._engine = self._engine, None
            eng.close_dispatcher()

    def restart(self, after_s: float) -> None:
        """Go away for ``after_s`` seconds (requests unanswered), then come back as a freshly booted agent."""
        self._restart.schedule(after_s)


def plan_agents(
    devices: list[DeviceRef], host: str, physics: FacilityPhysics, faults: FaultBook
) -> dict[int, SnmpAgent]:
    """One agent per SNMP device, by UDP port; ConfigError names two devices that share a port."""
    agents: dict[int, SnmpAgent] = {}
    for dev in devices:
        if dev.config.protocol != "snmp":
            continue
        port = dev.config.port
        assert port is not None  # DeviceConfig requires it for SNMP
        if port in agents:
            raise ConfigError(f"{dev.path}.port: udp port {port} is also used by {agents[port].device.path}")
        agents[port] = SnmpAgent(host, port, dev, physics, faults)
    return agents
