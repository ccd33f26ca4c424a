"""asyncua servers for the simulated OPC-UA devices: one server per endpoint, shared by the devices on it.

Node ids come from the profiles with ``{device}`` substituted (``ns=2;s=rack-h1-r01-01.Gpu.Temp``); the
simulator's namespace is registered first so ``ns=2`` is valid. One variable per point, array points as
Double[] (one element per GPU). Values are pushed each tick with ``write_attribute_value`` and only when they
changed, so subscriptions see real changes. Writable points carry write access, and client writes reach the
physics through a PostWrite callback. Security: policy None for the demo; when the devices' ``security`` asks
for Basic256Sha256 (Sign or SignAndEncrypt) only that endpoint is offered, with a certificate generated under
``<data_dir>/pki/`` on first start and reused, and a username/password whose password comes from the
environment variable named by ``password_env`` (never logged). The profile's ``max_nodes_per_read`` quirk is
published in the server's OperationLimits and enforced (BadTooManyOperations).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import os
import re
import socket
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from asyncua import Server, ua
from asyncua.common.callback import CallbackType, ServerItemCallback
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.crypto.permission_rules import User, UserRole
from cryptography.x509.oid import ExtendedKeyUsageOID

from aidc import logs
from aidc.config import DeviceRef, OpcUaSecurity
from aidc.errors import ConfigError
from aidc.profiles import DataType, Point
from simulators.faults import FaultBook
from simulators.interface import FacilityPhysics, PointValue
from simulators.restart import RestartFault

log = logging.getLogger(__name__)
# asyncua's DEBUG records print whole requests, including the password of an ActivateSession request: it is
# kept off DEBUG (aidc -vv included), and quiet unless -v asks for its INFO lines (aidc/logs.py).
logs.never_debug("asyncua")

NAMESPACE_URI = "urn:aidc:simulator"
VARIANT: dict[DataType, ua.VariantType] = {
    DataType.INT16: ua.VariantType.Int16, DataType.UINT16: ua.VariantType.UInt16,
    DataType.INT32: ua.VariantType.Int32, DataType.UINT32: ua.VariantType.UInt32,
    DataType.INT64: ua.VariantType.Int64, DataType.UINT64: ua.VariantType.UInt64,
    DataType.FLOAT32: ua.VariantType.Float, DataType.FLOAT64: ua.VariantType.Double,
    DataType.BOOL: ua.VariantType.Boolean,
}
_INT_TYPES = {DataType.INT16, DataType.UINT16, DataType.INT32, DataType.UINT32, DataType.INT64, DataType.UINT64}
_POLICY = {
    "Sign": ua.SecurityPolicyType.Basic256Sha256_Sign,
    "SignAndEncrypt": ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
}


class _PasswordUsers:
    """asyncua user manager accepting exactly one username/password pair."""

    def __init__(self, username: str, password: str) -> None:
        self._username, self._password = username, password

    def get_user(self, iserver: Any, username: str | None = None, password: str | None = None,
                 certificate: Any = None) -> User | None:
        if username == self._username and password is not None and hmac.compare_digest(password, self._password):
            return User(role=UserRole.User)
        return None


def _variant(point: Point, value: PointValue) -> ua.Variant:
    vtype = VARIANT[point.type]
    if point.array:
        seq = value if isinstance(value, Sequence) else [value]
        return ua.Variant([float(v) for v in seq], ua.VariantType.Double)
    if isinstance(value, Sequence):
        raise TypeError(f"point {point.name}: expected a number, got a sequence")
    if point.type is DataType.BOOL:
        return ua.Variant(bool(value) and not math.isnan(value), vtype)
    if point.type in _INT_TYPES:
        v = float(value)
        # Integer nodes cannot carry NaN; a device without a reading sends 0 with a Bad status (see refresh).
        return ua.Variant(0 if math.isnan(v) else round(v), vtype)
    return ua.Variant(float(value), vtype)


def _security_of(devices: Sequence[DeviceRef]) -> OpcUaSecurity:
    first = devices[0].config.security
    for dev in devices[1:]:
        if dev.config.security != first:
            raise ConfigError(f"{dev.path}.security: devices sharing {dev.config.endpoint} need the same security "
                              f"settings as {devices[0].name}")
    return first


class OpcUaEndpoint:
    """One asyncua server at one endpoint URL, exposing every device configured there."""

    def __init__(self, endpoint: str, devices: Sequence[DeviceRef], physics: FacilityPhysics, faults: FaultBook,
                 pki_dir: Path) -> None:
        self.endpoint = endpoint
        self.port = self.port_of(endpoint, devices[0].path)
        self.host = str(urlparse(endpoint).hostname)
        self.devices = list(devices)
        self.security = _security_of(self.devices)
        self.physics, self.faults, self.pki_dir = physics, faults, pki_dir
        self.server = Server()
        self._nodes: dict[str, list[tuple[Point, ua.NodeId]]] = {}
        self._writable: dict[ua.NodeId, tuple[str, Point]] = {}
        self._owner: dict[ua.NodeId, str] = {}
        self._last: dict[ua.NodeId, Any] = {}
        self._max_nodes_per_read = min(
            (d.profile.workarounds.max_nodes_per_read or 10000 for d in self.devices), default=10000)
        self._restart = RestartFault(f"opcua {endpoint}", self._go_down, self._come_back)
        self.running = False

    @staticmethod
    def port_of(endpoint: str, where: str) -> int:
        """TCP port of an endpoint URL; ConfigError names the key if it has none."""
        url = urlparse(endpoint)
        try:
            port = url.port
        except ValueError:
            port = None
        if url.hostname is None or port is None:
            raise ConfigError(f"{where}.endpoint: {endpoint!r} needs a host and a port (opc.tcp://host:port/path)")
        return port

    async def start(self) -> None:
        """Build the address space, set up security and listen; OSError if the port cannot be bound."""
        srv = self.server
        await srv.init()
        srv.set_endpoint(self.endpoint)
        srv.set_server_name(f"aidc simulator {urlparse(self.endpoint).path}")
        await srv.set_application_uri(f"urn:aidc:simulator:{self.host}:{self.port}")
        await self._setup_security()
        idx = await srv.register_namespace(NAMESPACE_URI)
        if idx != 2:
            raise ConfigError(f"{self.endpoint}: simulator namespace got index {idx}, profiles expect ns=2")
        await self._build()
        limit = srv.get_node(ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead)
        await limit.write_value(ua.Variant(self._max_nodes_per_read, ua.VariantType.UInt32))
        srv.subscribe_server_callback(CallbackType.PreRead, self._pre_read)
        srv.subscribe_server_callback(CallbackType.PostWrite, self._post_write)
        try:
            await srv.start()
        except OSError as exc:
            raise OSError(f"cannot listen on {self.host}:{self.port}: {exc.strerror}") from None
        self.running = True

    async def _setup_security(self) -> None:
        sec, srv = self.security, self.server
        if sec.policy == "None":
            srv.set_security_policy([ua.SecurityPolicyType.NoSecurity])
            srv.set_identity_tokens([ua.AnonymousIdentityToken])
            return
        srv.set_security_policy([_POLICY[sec.mode]])
        if sec.username:
            assert sec.password_env is not None  # the config model guarantees it
            password = os.environ.get(sec.password_env)
            if not password:
                raise ConfigError(f"{self.devices[0].path}.security.password_env: environment variable "
                                  f"{sec.password_env} is not set")
            srv.iserver.set_user_manager(_PasswordUsers(sec.username, password))  # type: ignore[arg-type]
            srv.set_identity_tokens([ua.UserNameIdentityToken])
        else:
            srv.set_identity_tokens([ua.AnonymousIdentityToken])
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{self.host}_{self.port}")
        key, cert = self.pki_dir / f"{name}.key.pem", self.pki_dir / f"{name}.cert.der"
        self.pki_dir.mkdir(parents=True, exist_ok=True)
        await setup_self_signed_certificate(
            key, cert, srv.get_application_uri(), socket.gethostname(),
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH], {"commonName": "aidc simulator"},
        )
        key.chmod(0o600)  # private keys are readable by their owner only
        await srv.load_certificate(str(cert))
        await srv.load_private_key(str(key))

    async def _build(self) -> None:
        objects = self.server.nodes.objects
        for dev in self.devices:
            folder_id = ua.NodeId.from_string(f"ns=2;s={dev.name}")
            folder = await objects.add_object(folder_id, ua.QualifiedName(dev.name, 2))
            values = self.physics.device_values(dev.name)
            nodes: list[tuple[Point, ua.NodeId]] = []
            for p in dev.profile.points:
                assert p.node is not None
                nid = ua.NodeId.from_string(p.node.replace("{device}", dev.name))
                initial = values.get(p.sim or p.name, [] if p.array else (p.safe_default or 0))
                bname = ua.QualifiedName(p.node.rsplit(".", 1)[-1], 2)
                var = await folder.add_variable(nid, bname, _variant(p, initial))
                if p.writable:
                    await var.set_writable()
                    self._writable[nid] = (dev.name, p)
                self._owner[nid] = dev.name
                nodes.append((p, nid))
            self._nodes[dev.name] = nodes

    async def refresh(self) -> None:
        """Push changed values of every device from the physics (after a tick)."""
        now = datetime.now(UTC)
        for dev in self.devices:
            values = self.faults.apply(dev.name, self.physics.device_values(dev.name))
            bad = self.faults.exception_code(dev.name) is not None or self.faults.dropping(dev.name)
            nan = self.faults.active(dev.name).get("nan", False)
            for p, nid in self._nodes[dev.name]:
                v = values.get(p.sim or p.name)
                if v is None:
                    continue
                variant = _variant(p, v)
                status = ua.StatusCodes.BadDeviceFailure if bad else (
                    ua.StatusCodes.BadSensorFailure if nan and p.type in _INT_TYPES else ua.StatusCodes.Good)
                key = (variant.Value, status)
                if self._last.get(nid) == key:
                    continue
                self._last[nid] = key
                dv = ua.DataValue(variant, StatusCode=ua.StatusCode(ua.UInt32(status)),
                                  SourceTimestamp=now, ServerTimestamp=now)  # type: ignore[arg-type]
                await self.server.write_attribute_value(nid, dv)
        if any(self.faults.dropping(d.name) for d in self.devices):
            self.drop_connections()

    def drop_connections(self) -> None:
        """Close every client connection of this server (it keeps listening)."""
        for transport in list(self.server.iserver.asyncio_transports):
            transport.close()

    async def _pre_read(self, event: ServerItemCallback, _dispatcher: Any) -> None:
        nodes = event.request_params.NodesToRead
        if len(nodes) > self._max_nodes_per_read:
            raise ua.uaerrors.BadTooManyOperations()
        delay = max((self.faults.delay_s(self._owner[n.NodeId]) for n in nodes if n.NodeId in self._owner),
                    default=0.0)
        if delay:
            await asyncio.sleep(delay)

    async def _post_write(self, event: ServerItemCallback, _dispatcher: Any) -> None:
        for wv, status in zip(event.request_params.NodesToWrite, event.response_params, strict=False):
            target = self._writable.get(wv.NodeId)
            if target is None or not status.is_good() or wv.AttributeId != ua.AttributeIds.Value:
                continue
            device, point = target
            value = wv.Value.Value.Value if wv.Value and wv.Value.Value else None
            if isinstance(value, int | float):
                self.physics.write_point(device, point.name, float(value))
                self._last.pop(wv.NodeId, None)  # the next tick republishes what the physics accepted

    def restart(self, after_s: float) -> None:
        """Stop listening for ``after_s`` seconds (clients disconnected), then listen again."""
        if self.server.bserver is not None:  # never started: nothing to restart
            self._restart.schedule(after_s)

    async def _go_down(self) -> None:
        assert self.server.bserver is not None  # checked when the restart was scheduled
        self.running = False
        await self.server.bserver.stop()

    async def _come_back(self) -> None:
        assert self.server.bserver is not None
        await self.server.bserver.start()
        self.running = True

    async def stop(self) -> None:
        """Stop the server."""
        self._restart.cancel()
        if self.server.bserver is not None:
            await self.server.stop()
        self.running = False
