"""OPC-UA client side: the only module importing asyncua's client.

A link is one session to one endpoint (several devices may share it, e.g. every rack controller of a hall).
The supervisor (``link.Link``) owns reconnection: on a lost connection, a server restart or an invalid session,
the whole client is discarded and a new one connects, re-resolves node handles, reads MaxNodesPerRead again and
re-creates the subscription, so nodes never stay broken until an agent restart (Telegraf #14066, #18694).
Reads are split to the smaller of the server's MaxNodesPerRead and the profile's ``max_nodes_per_read``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from asyncua import Client, Node, ua
from asyncua.crypto import security_policies, uacrypto
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID

from aidc import logs
from aidc.clock import Clock
from aidc.config import DeviceRef, OpcUaSecurity
from aidc.model import Batch
from aidc.profiles import DataType, Point
from collectors.link import Emit, Link, LinkOptions
from collectors.modbus_link import DeviceWriteError, _fast_concat
from collectors.plan import OpcUaPlan, array_series_ids, chunks, plan_opcua
from collectors.quality import QualityTracker

log = logging.getLogger(__name__)
# asyncua's DEBUG records print whole requests, including the password of an ActivateSession request: it is
# kept off DEBUG (aidc -vv included), and quiet unless -v asks for its INFO lines (aidc/logs.py).
logs.never_debug("asyncua")

APP_URI = "urn:aidc:collector"
KNOWN_SERVERS = "known_servers.json"  # endpoint -> SHA-256 of the server certificate, pinned on first use
MAX_NODES_PER_READ = ua.NodeId(ua.Int32(ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead))
VARIANT: dict[DataType, ua.VariantType] = {
    DataType.INT16: ua.VariantType.Int16,
    DataType.UINT16: ua.VariantType.UInt16,
    DataType.INT32: ua.VariantType.Int32,
    DataType.UINT32: ua.VariantType.UInt32,
    DataType.INT64: ua.VariantType.Int64,
    DataType.UINT64: ua.VariantType.UInt64,
    DataType.FLOAT32: ua.VariantType.Float,
    DataType.FLOAT64: ua.VariantType.Double,
    DataType.BOOL: ua.VariantType.Boolean,
}


class OpcUaError(ConnectionError):
    """The session is unusable (or could not be opened)."""


@dataclass(frozen=True)
class SubscriptionOptions:
    """Subscription mode: sampling interval, queue size and deadband (absolute or percent of EURange)."""

    enabled: bool = False
    sampling_ms: float | None = None  # default: the device's poll interval
    queue_size: int = 1
    deadband: Literal["none", "absolute", "percent"] = "none"
    deadband_value: float = 0.0


@dataclass
class _Runtime:
    plan: OpcUaPlan
    reads: list[ua.ReadParameters] = field(default_factory=list)
    layout: tuple[int, ...] = ()
    series: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=object))
    tracker: QualityTracker | None = None
    latest: list[ua.DataValue | None] = field(default_factory=list)  # subscription mode


def _dv_status(dv: ua.DataValue) -> str:
    code = dv.StatusCode
    if code is None or code.is_good():
        return ""
    return f"status {code.name}"


class _Handler:
    """Subscription callbacks: store the latest DataValue per node; the poll loop publishes snapshots."""

    def __init__(self, index: dict[ua.NodeId, tuple[_Runtime, int]], lost: asyncio.Event) -> None:
        self.index = index
        self.lost = lost
        self.last_publish = time.monotonic()

    def datachange_notification(self, node: Node, val: Any, data: Any) -> None:
        self.last_publish = time.monotonic()
        hit = self.index.get(node.nodeid)
        if hit is not None:
            hit[0].latest[hit[1]] = data.monitored_item.Value

    def status_change_notification(self, status: Any) -> None:
        self.lost.set()  # BadTimeout / BadShutdown: re-establish everything


class OpcUaLink(Link):
    """One session to one endpoint with the devices it serves."""

    protocol = "opcua"

    def __init__(
        self,
        key: str,
        devices: list[DeviceRef],
        *,
        clock: Clock,
        emit: Emit,
        options: LinkOptions,
        subscription: SubscriptionOptions = SubscriptionOptions(),
        pki_dir: Path = Path("var/pki"),
    ) -> None:
        super().__init__(key, devices, clock=clock, emit=emit, options=options)
        cfg = devices[0].config
        assert cfg.endpoint is not None
        self.endpoint = cfg.endpoint
        self.security: OpcUaSecurity = cfg.security
        self.sub_options = subscription
        self.pki_dir = pki_dir
        self.client: Client | None = None
        self.max_nodes = 0
        self._lost = asyncio.Event()
        self.rt = {d.name: _Runtime(plan_opcua(d)) for d in devices}

    def transport_errors(self) -> tuple[type[BaseException], ...]:
        """Failures after which the session is rebuilt."""
        return (OpcUaError, ConnectionError, OSError, TimeoutError, ua.UaError)

    def series_of(self, dev: DeviceRef) -> np.ndarray:
        """Series ids the device published last (arrays expanded), else its scalar points."""
        rt = self.rt[dev.name]
        return rt.series if len(rt.series) else rt.plan.series

    async def _secure(self, client: Client) -> None:
        sec = self.security
        if sec.username:
            password = os.environ.get(sec.password_env or "")
            if password is None:
                raise OpcUaError(f"environment variable {sec.password_env} (password for {sec.username}) is not set")
            client.set_user(sec.username)
            client.set_password(password)
        if sec.policy == "None":
            return
        cert = sec.certificate or self.pki_dir / "aidc-collector-cert.der"
        key = sec.private_key or self.pki_dir / "aidc-collector-key.pem"
        if not (cert.is_file() and key.is_file()):  # generated once and kept, so servers can trust it
            cert.parent.mkdir(parents=True, exist_ok=True)
            await setup_self_signed_certificate(
                key,
                cert,
                APP_URI,
                socket.gethostname(),
                [ExtendedKeyUsageOID.CLIENT_AUTH],
                {"countryName": "US", "organizationName": "aidc", "commonName": "aidc collector"},
            )
            key.chmod(0o600)  # the private key is readable by its owner only
        mode = getattr(ua.MessageSecurityMode, sec.mode)
        policy = security_policies.SecurityPolicyBasic256Sha256
        endpoints = await client.connect_and_get_server_endpoints()
        try:
            ep = Client.find_endpoint(endpoints, mode, policy.URI)
        except ValueError:
            raise OpcUaError(f"{self.endpoint}: server offers no {sec.policy} {sec.mode} endpoint") from None
        server_cert: bytes = ep.ServerCertificate
        got = uacrypto.x509_from_der(server_cert).fingerprint(hashes.SHA256()).hex()
        if sec.trusted_server_certs:
            trusted = [
                (await uacrypto.load_certificate(p)).fingerprint(hashes.SHA256()).hex()
                for p in sec.trusted_server_certs
            ]
            if got not in trusted:
                raise OpcUaError(
                    f"{self.endpoint}: server certificate SHA-256 {got} is not in trusted_server_certs; refused"
                )
        else:
            await asyncio.to_thread(self._trust_on_first_use, got)
        await client.set_security(policy, cert, key, server_certificate=server_cert, mode=mode)

    def _trust_on_first_use(self, fingerprint: str) -> None:
        """Pin the server's certificate on first connect (as SSH does); refuse a different one later."""
        path = self.pki_dir / KNOWN_SERVERS
        known: dict[str, str] = {}
        if path.is_file():
            try:
                known = dict(json.loads(path.read_text(encoding="utf-8")))
            except (ValueError, TypeError) as exc:
                raise OpcUaError(f"{path}: unreadable list of pinned server certificates ({exc})") from None
        pinned = known.get(self.endpoint)
        if pinned == fingerprint:
            return
        if pinned is not None:
            raise OpcUaError(
                f"{self.endpoint}: server certificate changed (SHA-256 {fingerprint}, pinned {pinned}); refused. "
                f"If the server was re-keyed on purpose, remove its line from {path} or list its certificate in "
                "security.trusted_server_certs"
            )
        known[self.endpoint] = fingerprint
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(known, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)
        log.warning("%s: trusting server certificate SHA-256 %s on first use (pinned in %s)",
                    self.endpoint, fingerprint, path)  # fmt: skip

    async def connect(self) -> None:
        """Open a session, resolve nodes, read the server's read limit, subscribe if configured."""
        await self.close()
        self._lost = asyncio.Event()
        timeout = max(d.config.timeout_s for d in self.devices)
        client = Client(
            self.endpoint, timeout=timeout, watchdog_intervall=min(h.interval_s for h in self.health.values())
        )
        client.application_uri = APP_URI
        # Ten minutes: what common servers grant anyway (asyncua asks for an hour and logs a warning when it is
        # cut down); the session is renewed on every reconnect.
        client.session_timeout = 600_000
        client.name = client.description = "aidc collector"

        async def lost(exc: Exception) -> None:
            self._lost.set()

        client.connection_lost_callback = lost
        await self._secure(client)
        timer = asyncio.timeout(timeout * 3)
        try:
            async with timer:
                await client.connect()
        except ua.uaerrors.BadUserAccessDenied as exc:
            client.disconnect_socket()
            raise OpcUaError(f"{self.endpoint}: login refused ({exc})") from None
        except asyncio.CancelledError:
            client.disconnect_socket()
            if self.stopping or not timer.expired():
                raise
            # The timeout expired just as asyncua's request completed: its wait_for2 then raises a CancelledError
            # subclass (CancelledWithResultError), which 3.11's asyncio.timeout passes on instead of turning it
            # into TimeoutError. Obeyed, it ended the link for good (bench/fuzz.py under load): a failed connect.
            raise OpcUaError(f"{self.endpoint}: connect timed out after {timeout * 3:g}s") from None
        except BaseException:
            client.disconnect_socket()
            raise
        self.client = client
        try:
            limit = int((await client.get_node(MAX_NODES_PER_READ).read_value()) or 0)
        except ua.UaError:
            limit = 0  # the server does not publish OperationLimits: no limit
        for dev in self.devices:
            rt = self.rt[dev.name]
            own = dev.profile.workarounds.max_nodes_per_read or 0
            n = min(x for x in (limit, own, len(rt.plan.node_ids)) if x > 0)
            self.max_nodes = n
            ids = [ua.NodeId.from_string(s) for s in rt.plan.node_ids]
            rt.reads = []
            for rng in chunks(len(ids), n):
                params = ua.ReadParameters()
                params.NodesToRead = [ua.ReadValueId(NodeId=ids[i], AttributeId=ua.AttributeIds.Value) for i in rng]
                rt.reads.append(params)
            log.info("plan %s (server MaxNodesPerRead %s)", rt.plan.describe(n), limit or "unlimited")
        if self.sub_options.enabled:
            await self._subscribe(client)

    async def _subscribe(self, client: Client) -> None:
        index: dict[ua.NodeId, tuple[_Runtime, int]] = {}
        nodes: list[Node] = []
        for rt in self.rt.values():
            rt.latest = [None] * len(rt.plan.node_ids)
            for i, s in enumerate(rt.plan.node_ids):
                nid = ua.NodeId.from_string(s)
                index[nid] = (rt, i)
                nodes.append(client.get_node(nid))
        period_ms = self.sub_options.sampling_ms or 1e3 * min(h.interval_s for h in self.health.values())
        handler = _Handler(index, self._lost)
        sub = await client.create_subscription(period_ms, handler)
        mfilter = None
        if self.sub_options.deadband != "none":
            mfilter = ua.DataChangeFilter()
            mfilter.Trigger = ua.DataChangeTrigger.StatusValue
            mfilter.DeadbandType = 1 if self.sub_options.deadband == "absolute" else 2
            mfilter.DeadbandValue = self.sub_options.deadband_value
        # ``_subscribe`` is the one asyncua call taking sampling interval, queue size and filter together.
        results = await sub._subscribe(  # type: ignore[call-overload]
            nodes, ua.AttributeIds.Value, mfilter, self.sub_options.queue_size, sampling_interval=period_ms
        )
        bad = [r for r in results if isinstance(r, ua.StatusCode)]
        if bad:
            log.warning("%s: %d monitored items refused (%s)", self.endpoint, len(bad), bad[0].name)

    async def close(self) -> None:
        """Close the session; a dead server is not waited for."""
        client, self.client = self.client, None
        if client is None:
            return
        # A separate task bounded by asyncio.wait, not asyncio.timeout: asyncua's request path (wait_for2) can
        # swallow the cancellation a timeout relies on, and a broken server must never hang the engine's stop.
        task = asyncio.ensure_future(client.disconnect())
        done, _ = await asyncio.wait({task}, timeout=1.0)
        if not done:
            task.cancel()
            task.add_done_callback(_retrieve)
            client.disconnect_socket()
        elif task.exception() is not None:
            client.disconnect_socket()

    async def watch(self) -> None:
        """Return when asyncua reports the connection or the subscription lost."""
        await self._lost.wait()

    async def _read(self, rt: _Runtime) -> list[ua.DataValue | None]:
        client = self.client
        if client is None or self._lost.is_set():
            raise OpcUaError(f"{self.endpoint}: not connected")
        if self.sub_options.enabled:
            return list(rt.latest)
        out: list[ua.DataValue | None] = []
        for params in rt.reads:
            out.extend(await client.uaclient.read(params))
        return out

    async def poll(self, dev: DeviceRef) -> Batch:
        """Read (or snapshot the subscription of) every node of the device; arrays unpack to indexed series."""
        rt = self.rt[dev.name]
        health = self.health[dev.name]
        ts = self.clock.now_ns()
        t0 = time.perf_counter()
        dvs = await self._read(rt)
        latency = time.perf_counter() - t0
        points = rt.plan.points
        if len(dvs) != len(points):  # a broken server: the session cannot be trusted, rebuild it
            raise OpcUaError(f"{self.endpoint}: {len(dvs)} values returned for {len(points)} nodes of {dev.name}")
        parts: list[Any] = []
        lengths: list[int] = []
        failures: list[tuple[list[int], str]] = []
        pos = 0
        old = dict(zip(range(len(points)), _split(rt.layout, len(points)), strict=False))
        for i, (p, dv) in enumerate(zip(points, dvs, strict=True)):
            why = "no value yet" if dv is None else _dv_status(dv)
            val = None if dv is None or dv.Value is None else dv.Value.Value
            if p.array:
                arr, bad_type = _float_array(val, p.type is DataType.BOOL)
                why = why or bad_type
                if why or not len(arr):
                    # Length unknown until a good read: one bad element still says the point failed, and why.
                    arr = np.full(old.get(i, 0) or 1, np.nan)
                    why = why or "empty array"
                n = len(arr)
                parts.append(arr)
            else:
                n = 1
                try:
                    if isinstance(val, str | bytes):  # a String node where a number belongs, even if "12.5"
                        raise TypeError(val)
                    if isinstance(val, bool) and p.type is not DataType.BOOL:  # True is no 1.0 W (fuzz campaign)
                        raise TypeError(val)
                    parts.append(np.nan if val is None else float(val))
                except (TypeError, ValueError, OverflowError):
                    parts.append(np.nan)
                    why = why or f"not a number: {type(val).__name__}"
            if why:
                failures.append((list(range(pos, pos + n)), why))
            lengths.append(n)
            pos += n
        if tuple(lengths) != rt.layout:
            self._relayout(rt, tuple(lengths))
        raw = np.hstack(parts).astype(np.float64) if parts else np.empty(0)
        eng = raw * np.repeat([p.scale for p in points], lengths) + np.repeat([p.offset for p in points], lengths)
        assert rt.tracker is not None
        values, quality, reasons = rt.tracker.assess(raw, eng, failures)
        if len(failures) == len(points):
            health.failure(failures[0][1], up=True)
        else:
            health.success(ts, latency, failures[0][1] if failures else "")
        data = Batch(rt.series, np.full(len(values), ts, dtype=np.int64), values, quality, reasons)
        hb = health.batch(ts)
        return Batch.concat([data, hb]) if reasons else _fast_concat(data, hb)

    def _relayout(self, rt: _Runtime, layout: tuple[int, ...]) -> None:
        dev = rt.plan.device
        series: list[Any] = []
        expanded: list[Point] = []
        for p, n, sid in zip(rt.plan.points, layout, rt.plan.series, strict=True):
            if p.array:
                series.extend(array_series_ids(dev, p, n))
            else:
                series.append(sid)
            expanded.extend([p] * n)
        rt.series = np.array(series, dtype=object)
        rt.tracker = QualityTracker(
            expanded, sentinels=dev.profile.workarounds.sentinels, stuck_polls=self.options.stuck_polls
        )
        rt.layout = layout

    # --- writer support -----------------------------------------------------------------------------

    def _node(self, dev: DeviceRef, point: Point) -> Node:
        if self.client is None:
            raise DeviceWriteError(f"{dev.name}: not connected")
        return self.client.get_node(str(point.node).replace("{device}", dev.name))

    async def read_point(self, dev: DeviceRef, point: Point) -> float:
        """Read one node now (engineering units)."""
        return float(await self._node(dev, point).read_value()) * point.scale + point.offset

    async def write_point(self, dev: DeviceRef, point: Point, value: float) -> None:
        """Write one node with the variant type its profile declares."""
        raw: Any = (value - point.offset) / point.scale
        vt = VARIANT[point.type]
        if point.type not in (DataType.FLOAT32, DataType.FLOAT64):
            raw = bool(raw) if point.type is DataType.BOOL else round(raw)
        try:
            await self._node(dev, point).write_value(ua.DataValue(ua.Variant(raw, vt)))
        except ua.UaStatusCodeError as exc:
            raise DeviceWriteError(f"{dev.name}.{point.name}: write refused: {exc}") from None


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Mark an abandoned task's outcome as seen (no "exception was never retrieved" noise)."""
    if not task.cancelled():
        task.exception()


def _float_array(val: Any, bools: bool = False) -> tuple[np.ndarray, str]:
    """An array node's value as floats, or an empty array and why not (a String[], Boolean[], nested lists, a scalar).

    ``bools``: the point is declared BOOL, so Boolean elements are its values rather than a wrong type.
    """
    if not isinstance(val, list | tuple):
        return np.empty(0), "" if val is None else f"not an array: {type(val).__name__}"
    if not bools and any(isinstance(v, bool) for v in val):
        return np.empty(0), "not a numeric array: bool"
    try:
        arr = np.asarray(val, dtype=np.float64)
    except (TypeError, ValueError):
        kinds = sorted({type(v).__name__ for v in val})
        return np.empty(0), f"not a numeric array: {'/'.join(kinds)}"
    if arr.ndim != 1:
        return np.empty(0), f"not a flat array: shape {arr.shape}"
    return arr, ""


def _split(layout: tuple[int, ...], n: int) -> list[int]:
    return list(layout) if len(layout) == n else []
