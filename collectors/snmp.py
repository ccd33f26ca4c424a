"""SNMP source: rack PDUs polled with GET and GETBULK over UDP (v2c, or v3 USM authPriv), through pysnmp.

One :class:`SnmpLink` per agent (``host:port``). Every poll reads the profile's OIDs: points under a table column the
profile lists in ``workarounds.bulk_columns`` by walking that column with GETBULK (one request returns the whole
inlet sensor table of a Raritan PDU2-MIB agent), the others with GET in chunks of ``max_oids_per_get``, the first
chunk carrying ``sysUpTime.0`` so that an agent restart is seen (its uptime starts again from 0). Secrets (the v2c
community, the v3 keys) come from the environment variables the site file names and are never logged.

Error channels, as for Modbus: a reply that is not what was asked (wrong OIDs, a value that is not a number, an
exception such as ``noSuchInstance``, an error status) marks the points of that request bad with the reason and
keeps polling; no reply (UDP: the agent is down, the reply was garbage pysnmp discarded, or a v3 message failed its
authentication) is a timeout: the poll's points go bad and after ``timeouts_before_reconnect`` polls the link
reconnects, which builds a fresh SNMP engine and so rediscovers a restarted v3 agent (RFC 3414 engine boots and
time). Other SNMP engine errors (unknown engine id, wrong digest, decryption failure) reconnect at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from pyasn1.type import univ
from pysnmp.hlapi.v3arch.asyncio import (
    CommunityData,
    ContextData,
    ObjectIdentity,
    ObjectType,
    SnmpEngine,
    UdpTransportTarget,
    UsmUserData,
    bulk_cmd,
    get_cmd,
    usmAesCfb128Protocol,
    usmHMAC192SHA256AuthProtocol,
    usmHMAC384SHA512AuthProtocol,
    usmHMACSHAAuthProtocol,
    usmNoAuthProtocol,
    usmNoPrivProtocol,
)
from pysnmp.proto import errind, rfc1902

from aidc.clock import Clock
from aidc.config import DeviceRef
from aidc.errors import ConfigError
from aidc.model import Batch
from aidc.snmp_config import SnmpSettings
from aidc.snmp_transport import QuietDispatcher
from collectors.link import Emit, Link, LinkOptions
from collectors.plan import series_ids
from collectors.quality import QualityTracker

log = logging.getLogger(__name__)

Oid = tuple[int, ...]
SYS_UPTIME: Oid = (1, 3, 6, 1, 2, 1, 1, 3, 0)
UPTIME_SLACK_S = 1.0  # request latency and clock granularity between two sysUpTime reads
UPTIME_DRIFT = 0.02  # an agent's clock may run this much slow against ours over a long poll interval
MAX_BULK_REQUESTS = 64  # a column walk that has not ended after this many GETBULKs is an agent looping
AUTH = {"SHA": usmHMACSHAAuthProtocol, "SHA256": usmHMAC192SHA256AuthProtocol, "SHA512": usmHMAC384SHA512AuthProtocol}
PRIV = {"AES": usmAesCfb128Protocol}


class SnmpTransportError(ConnectionError):
    """The agent cannot be used: no reply for several polls, or an SNMP engine error (authentication, engine id)."""


class _Timeout(Exception):
    """One request got no reply in time."""


def parse_oid(text: str) -> Oid:
    """``1.3.6.1...`` to a tuple of ints."""
    return tuple(int(x) for x in text.split("."))


def number(value: Any) -> float | str:
    """An SNMP value as a float, or why it is not a reading (wrong type, noSuchInstance, endOfMibView...)."""
    # Integer32, Unsigned32 / Gauge32, Counter32 and Counter64 are all INTEGER subtypes; TimeTicks is not a reading.
    if isinstance(value, univ.Integer) and not isinstance(value, rfc1902.TimeTicks):
        return float(int(value))
    return f"not a number: {type(value).__name__}"


@dataclass
class _Plan:
    """How one device is read: GET chunks and GETBULK columns, each a list of (oid, point index)."""

    gets: list[list[tuple[Oid, int]]] = field(default_factory=list)
    columns: dict[Oid, dict[Oid, int]] = field(default_factory=dict)


def plan_snmp(dev: DeviceRef) -> _Plan:
    """Split a device's points into GETBULK column walks and GET chunks, per its profile's workarounds."""
    w = dev.profile.workarounds
    cols = [parse_oid(c) for c in w.bulk_columns]
    plan = _Plan(columns={c: {} for c in cols})
    single: list[tuple[Oid, int]] = []
    for i, p in enumerate(dev.profile.points):
        assert p.oid is not None  # the profile validator requires it for SNMP
        oid = parse_oid(p.oid)
        col = next((c for c in cols if oid[: len(c)] == c and len(oid) > len(c)), None)
        if col is None:
            single.append((oid, i))
        else:
            plan.columns[col][oid] = i
    plan.columns = {c: wanted for c, wanted in plan.columns.items() if wanted}
    n = w.max_oids_per_get
    plan.gets = [single[k : k + n] for k in range(0, len(single), n)]
    return plan


def auth_data(dev: DeviceRef) -> CommunityData | UsmUserData:
    """pysnmp credentials for a device, secrets from the environment (ConfigError names a missing variable)."""
    s: SnmpSettings | None = dev.config.snmp
    if s is None:
        raise ConfigError(f"{dev.path}: SNMP device without an [snmp] table")
    if s.version == "2c":
        community = s.secret(s.community_env, "community_env", dev.name) if s.community_env else "public"
        return CommunityData(community, mpModel=1)  # noqa: S508 (v2c is the operator's choice, flagged in the docs)
    assert s.user is not None
    auth, priv, auth_key, priv_key = usmNoAuthProtocol, usmNoPrivProtocol, None, None
    if s.security_level != "noAuthNoPriv":
        auth, auth_key = AUTH[s.auth_protocol], s.secret(s.auth_key_env, "auth_key_env", dev.name)
    if s.security_level == "authPriv":
        priv, priv_key = PRIV[s.priv_protocol], s.secret(s.priv_key_env, "priv_key_env", dev.name)
    return UsmUserData(s.user, auth_key, priv_key, authProtocol=auth, privProtocol=priv)


class SnmpLink(Link):
    """One SNMP agent (UDP host:port), its device polled with GET / GETBULK."""

    protocol = "snmp"

    def __init__(self, key: str, devices: list[DeviceRef], *, clock: Clock, emit: Emit, options: LinkOptions) -> None:
        super().__init__(key, devices, clock=clock, emit=emit, options=options)
        self.plans = {d.name: plan_snmp(d) for d in devices}
        self.trackers = {
            d.name: QualityTracker(
                d.profile.points, sentinels=d.profile.workarounds.sentinels, stuck_polls=options.stuck_polls
            )
            for d in devices
        }
        self.series = {d.name: series_ids(d, d.profile.points) for d in devices}
        self._engine: SnmpEngine | None = None
        self._target: UdpTransportTarget | None = None
        self._auth: dict[str, CommunityData | UsmUserData] = {}
        self._uptime: dict[str, tuple[int, float]] = {}  # last sysUpTime read and when (monotonic)
        self.agent_restarts = 0  # sysUpTime went backwards: the agent rebooted between two polls

    def transport_errors(self) -> tuple[type[BaseException], ...]:
        """Agent-level failures (the link reconnects)."""
        return (SnmpTransportError,)

    def series_of(self, dev: DeviceRef) -> np.ndarray:
        """Series ids of the device's points."""
        return self.series[dev.name]

    async def connect(self) -> None:
        """A fresh SNMP engine and target; one GET of sysUpTime.0 proves the agent answers (and, v3, discovers it)."""
        dev = self.devices[0]
        c = dev.config
        assert c.port is not None
        assert c.snmp is not None
        self._auth = {d.name: auth_data(d) for d in self.devices}
        if self._engine is None or c.snmp.version == "3":
            # v3: a fresh engine forgets the agent's engine id, boots and time, so a restarted agent is rediscovered
            # (a kept engine goes on sending with the old time window and the agent drops every request). v2c keeps
            # its engine. Building one costs about 0.2 s of CPU (pysnmp loads its MIB modules): in a worker thread,
            # so the loop's other links keep polling meanwhile.
            self._close_engine()
            engine = await asyncio.to_thread(SnmpEngine)
            engine.register_transport_dispatcher(QuietDispatcher())
            self._engine = engine
        try:
            self._target = await UdpTransportTarget.create(
                (c.host, c.port), timeout=c.timeout_s, retries=c.snmp.retries
            )
        except Exception as exc:  # pysnmp wraps resolver errors in its own PySnmpError
            raise SnmpTransportError(f"{c.address}: {exc}") from None
        try:
            await self._get(dev, [SYS_UPTIME])
        except _Timeout:
            raise SnmpTransportError(f"{c.address}: no reply (timeout after {c.timeout_s:g}s)") from None
        except ValueError as exc:  # answered, but not what was asked: not usable yet, try again after backoff
            raise SnmpTransportError(f"{c.address}: bad reply to sysUpTime.0: {exc}") from None

    async def close(self) -> None:
        """Forget the target; the engine (and its UDP socket) is closed only when the engine stops."""
        self._target = None
        if self.stopping:
            self._close_engine()

    async def poll_once(self) -> dict[str, Batch | str]:
        """Connect, poll every device once, close (engine included)."""
        try:
            return await super().poll_once()
        finally:
            self._close_engine()

    def _close_engine(self) -> None:
        eng, self._engine = self._engine, None
        if eng is not None:
            try:
                eng.close_dispatcher()
            except Exception as exc:  # closing must never raise (Link.close contract)
                log.debug("snmp %s: close: %s", self.key, exc)

    async def _request(self, dev: DeviceRef, coro: Any) -> tuple[Any, ...]:
        """Await one pysnmp request with an outer bound; _Timeout when no reply came."""
        c = dev.config
        assert c.snmp is not None
        bound = c.timeout_s * (c.snmp.retries + 1) + 1.0  # pysnmp's own timer runs in coarse ticks
        try:
            async with asyncio.timeout(bound):
                err_ind, err_status, err_index, var_binds = await coro
        except TimeoutError:
            raise _Timeout(f"no reply within {bound:g}s") from None
        if err_ind:
            if isinstance(err_ind, errind.RequestTimedOut):
                raise _Timeout(f"timeout after {c.timeout_s:g}s")
            raise SnmpTransportError(f"{c.address}: {err_ind}")
        if err_status:
            raise ValueError(f"agent error {err_status.prettyPrint()} at varbind {int(err_index)}")
        return tuple(var_binds)

    async def _get(self, dev: DeviceRef, oids: list[Oid]) -> list[Any]:
        """GET: the values in request order; ValueError if the reply names other OIDs than asked."""
        if self._engine is None or self._target is None:
            raise SnmpTransportError(f"{dev.config.address}: not connected")
        objs = [ObjectType(ObjectIdentity(o)) for o in oids]
        vbs = await self._request(
            dev, get_cmd(self._engine, self._auth[dev.name], self._target, ContextData(), *objs, lookupMib=False)
        )
        if len(vbs) != len(oids):
            raise ValueError(f"reply has {len(vbs)} varbinds for {len(oids)} requested")
        out = []
        for (name, value), oid in zip(vbs, oids, strict=True):
            if tuple(name) != oid:
                raise ValueError(f"reply names {name.prettyPrint()} where {'.'.join(map(str, oid))} was asked")
            out.append(value)
        return out

    async def _walk(self, dev: DeviceRef, column: Oid, wanted: dict[Oid, int]) -> dict[Oid, Any]:
        """GETBULK along a column until past it (or every wanted OID seen); OIDs must increase."""
        assert self._engine is not None
        assert self._target is not None
        reps = dev.profile.workarounds.max_repetitions
        found: dict[Oid, Any] = {}
        cur = column
        for _ in range(MAX_BULK_REQUESTS):
            vbs = await self._request(
                dev,
                bulk_cmd(
                    self._engine,
                    self._auth[dev.name],
                    self._target,
                    ContextData(),
                    0,
                    reps,
                    ObjectType(ObjectIdentity(cur)),
                    lookupMib=False,
                ),
            )
            if not vbs:
                raise ValueError(f"empty GETBULK reply at {'.'.join(map(str, cur))}")
            for name, value in vbs:
                oid = tuple(name)
                if oid[: len(column)] != column or isinstance(value, univ.Null):
                    return found  # past the column, or endOfMibView: the walk is over
                if oid <= cur:
                    where = ".".join(map(str, cur))
                    raise ValueError(f"GETBULK reply not increasing: {name.prettyPrint()} after {where}")
                cur = oid
                if oid in wanted:
                    found[oid] = value
            if len(found) == len(wanted):
                return found
        raise ValueError(f"GETBULK walk of {'.'.join(map(str, column))} did not end after {MAX_BULK_REQUESTS} requests")

    async def poll(self, dev: DeviceRef) -> Batch:
        """Read every point (GETBULK columns, then GET chunks), then quality-check."""
        plan = self.plans[dev.name]
        health = self.health[dev.name]
        n = len(dev.profile.points)
        raw = np.full(n, np.nan)
        failures: list[tuple[tuple[int, ...], str]] = []
        ts = self.clock.now_ns()
        t0 = time.perf_counter()
        timed_out = False
        requests = 0

        def fail(idx: list[int], why: str) -> None:
            failures.append((tuple(idx), why[:200]))

        for column, wanted in plan.columns.items():
            requests += 1
            if timed_out:
                fail(list(wanted.values()), "timeout")
                continue
            try:
                got = await self._walk(dev, column, wanted)
            except _Timeout as exc:
                timed_out = True
                fail(list(wanted.values()), str(exc))
                continue
            except ValueError as exc:
                fail(list(wanted.values()), str(exc))
                continue
            for oid, i in wanted.items():
                self._store(raw, i, got.get(oid, "noSuchInstance (not in the walk)"), failures)
        for k, chunk in enumerate(plan.gets or [[]]):
            requests += 1
            oids = [o for o, _ in chunk]
            idx = [i for _, i in chunk]
            if k == 0:
                oids = [SYS_UPTIME, *oids]
            if timed_out:
                fail(idx, "timeout")
                continue
            try:
                answers = await self._get(dev, oids)
            except _Timeout as exc:
                timed_out = True
                fail(idx, str(exc))
                continue
            except ValueError as exc:
                fail(idx, str(exc))
                continue
            if k == 0:
                self._check_uptime(dev, answers[0])
                answers = answers[1:]
            for i, value in zip(idx, answers, strict=True):
                self._store(raw, i, value, failures)
        latency = time.perf_counter() - t0
        profile = dev.profile
        scale = np.array([p.scale for p in profile.points])
        offset = np.array([p.offset for p in profile.points])
        eng = raw * scale + offset
        values, quality, reasons = self.trackers[dev.name].assess(raw, eng, failures)
        if timed_out and all(why.startswith(("timeout", "no reply")) for _, why in failures):
            health.consecutive_timeouts += 1
            health.failure(f"no reply ({failures[0][1]})")
            if health.consecutive_timeouts >= self.options.timeouts_before_reconnect:
                self.emit(self._batch(dev, ts, values, quality, reasons))
                raise SnmpTransportError(f"{dev.config.address}: no reply for {health.consecutive_timeouts} polls")
        else:
            health.success(ts, latency, failures[0][1] if failures else "")
        return self._batch(dev, ts, values, quality, reasons)

    @staticmethod
    def _store(raw: npt.NDArray[np.float64], i: int, value: Any, failures: list[tuple[tuple[int, ...], str]]) -> None:
        v = value if isinstance(value, str) else number(value)
        if isinstance(v, str):
            failures.append(((i,), v))
        else:
            raw[i] = v

    def _check_uptime(self, dev: DeviceRef, value: Any) -> None:
        """Note an agent restart: sysUpTime (hundredths of a second) advanced less than the time since the last poll.

        Not merely "went backwards": an agent down for longer than it had been up before comes back with an uptime
        above the last one read, yet short of it plus the time elapsed. UPTIME_SLACK_S absorbs request latency and
        UPTIME_DRIFT a slow agent clock; a TimeTicks wrap (after 497 days) is recognised as such.
        """
        if not isinstance(value, univ.Integer):  # TimeTicks, an INTEGER subtype; anything else is not an uptime
            return
        v, now = int(value), time.monotonic()
        prev = self._uptime.get(dev.name)
        self._uptime[dev.name] = (v, now)
        if prev is None:
            return
        elapsed = now - prev[1]
        expected = prev[0] + (elapsed - max(UPTIME_SLACK_S, UPTIME_DRIFT * elapsed)) * 100
        if v < expected and not (v < prev[0] and prev[0] > 2**32 - 100 * 86400):
            self.agent_restarts += 1
            log.info(
                "device %s (%s): agent restarted (sysUpTime %d, at least %d expected)",
                dev.name,
                dev.config.address,
                v,
                expected,
            )

    def _batch(
        self,
        dev: DeviceRef,
        ts: int,
        values: npt.NDArray[np.float64],
        quality: npt.NDArray[np.uint8],
        reasons: list[str],
    ) -> Batch:
        data = Batch(self.series[dev.name], np.full(len(values), ts, dtype=np.int64), values, quality, reasons)
        return Batch.concat([data, self.health[dev.name].batch(ts)])
