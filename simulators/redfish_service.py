"""A simulated Redfish service over HTTPS: the resources the devices' profiles read, from the facility physics.

Every point's ``node`` (``<URI>#<JSON pointer>``, ``{id}`` the device's Redfish id) puts its value into that
resource; the service adds the usual members (``@odata.id``, ``@odata.type``, ``Id``, ``Name``), the service root,
the Chassis and CDU collections and the session service. Status-like booleans (``Health``, ``DetectorState``,
``State``) read ``"OK"`` or ``"Critical"``. Login as a real BMC takes it: POST ``/redfish/v1/SessionService/Sessions``
(``UserName``, ``Password``) gives an ``X-Auth-Token`` (201, ``Location``); basic auth works on every request; the
service root needs no login. A ``restart`` fault forgets every session, as a BMC reboot does. PATCH on a writable
point's resource reaches the physics (``write_point``) and the resource shows the new value at once; any other
property is refused (400, ``PropertyNotWritable``). The certificate is self-signed, made once under ``<data_dir>/pki``.
"""

from __future__ import annotations

import base64
import hmac
import json
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aidc.config import DeviceRef
from aidc.errors import ConfigError
from aidc.profiles import DataType, Point
from simulators.faults import FaultBook
from simulators.http_server import Request, Response
from simulators.http_sim import HttpDeviceSim
from simulators.interface import FacilityPhysics, PointValue

STATUS_KEYS = ("Health", "DetectorState", "State")
ODATA_TYPES = {  # last fixed path segment -> @odata.type
    "EnvironmentMetrics": "#EnvironmentMetrics.v1_3_2.EnvironmentMetrics",
    "PowerSubsystem": "#PowerSubsystem.v1_1_2.PowerSubsystem",
    "ThermalSubsystem": "#ThermalSubsystem.v1_3_2.ThermalSubsystem",
    "ThermalMetrics": "#ThermalMetrics.v1_3_2.ThermalMetrics",
    "CoolantConnectors": "#CoolantConnector.v1_1_0.CoolantConnector",
    "SecondaryCoolantConnectors": "#CoolantConnector.v1_1_0.CoolantConnector",
    "PrimaryCoolantConnectors": "#CoolantConnector.v1_1_0.CoolantConnector",
    "LeakDetectors": "#LeakDetector.v1_2_0.LeakDetector",
    "Pumps": "#Pump.v1_1_0.Pump",
    "Controls": "#Control.v1_5_0.Control",
    "CDUs": "#CoolingUnit.v1_2_0.CoolingUnit",
    "Chassis": "#Chassis.v1_25_0.Chassis",
}


def split_node(node: str) -> tuple[str, tuple[str, ...]]:
    """``URI#/a/b`` to (URI, ("a", "b")) (RFC 6901 escapes ``~1`` and ``~0`` undone)."""
    path, _, pointer = node.partition("#")
    keys = tuple(k.replace("~1", "/").replace("~0", "~") for k in pointer.split("/")[1:]) if pointer else ()
    return path, keys


def resource_id(dev: DeviceRef) -> str:
    """The device's Redfish member id."""
    return dev.config.redfish.id or dev.name


def _odata_type(path: str) -> str:
    for seg in reversed(path.rstrip("/").split("/")):
        if seg in ODATA_TYPES:
            return ODATA_TYPES[seg]
    return "#Resource.v1_0_0.Resource"


@dataclass(frozen=True, slots=True)
class _Where:
    device: str
    point: Point
    keys: tuple[str, ...]


class RedfishService(HttpDeviceSim):
    """Every Redfish device behind one HTTPS port."""

    def __init__(
        self,
        bind: str,
        port: int,
        devices: Sequence[DeviceRef],
        physics: FacilityPhysics,
        faults: FaultBook,
        pki_dir: Path,
    ) -> None:
        https = all(str(d.config.endpoint).startswith("https://") for d in devices)
        tls = (pki_dir / f"redfish-sim-{port}-cert.pem", pki_dir / f"redfish-sim-{port}-key.pem") if https else None
        super().__init__(bind, port, devices, physics, faults, tls)
        self.by_path: dict[str, list[_Where]] = {}
        self.roots: dict[str, str] = {}  # path of each device's own resource -> device
        for d in devices:
            rid = resource_id(d)
            for p in d.profile.points:
                path, keys = split_node(str(p.node).replace("{id}", rid))
                self.by_path.setdefault(path, []).append(_Where(d.name, p, keys))
            cdu = any("/ThermalEquipment/CDUs/" in str(p.node) for p in d.profile.points)
            self.roots[f"/redfish/v1/ThermalEquipment/CDUs/{rid}" if cdu else f"/redfish/v1/Chassis/{rid}"] = d.name
        self.credentials = self._credentials(devices)
        self.sessions: dict[str, str] = {}  # token -> session id
        self._next_session = 1
        self.docs: dict[str, bytes] = {}
        self.writes: list[tuple[str, str, float]] = []

    @staticmethod
    def _credentials(devices: Sequence[DeviceRef]) -> dict[str, str]:
        out: dict[str, str] = {}
        for d in devices:
            r = d.config.redfish
            if r.username is None or r.password_env is None:
                continue
            pw = os.environ.get(r.password_env)
            if pw is None:
                raise ConfigError(f"{d.path}.redfish.password_env: environment variable {r.password_env} is not set")
            out[r.username] = pw
        return out

    def restart(self, seconds: float) -> None:
        """The restart fault: the service goes away for ``seconds`` and forgets its sessions."""
        self.sessions.clear()
        super().restart(seconds)

    # --- resources ------------------------------------------------------------------------------------

    def refresh(self, only: str | None = None) -> None:
        """Rebuild every resource (or one device's) from the physics' current values."""
        values = {d.name: self.faults.apply(d.name, self.physics.device_values(d.name))
                  for d in self.devices if only is None or d.name == only}  # fmt: skip
        docs = dict(self.docs) if only is not None else {}
        for path, where in self.by_path.items():
            if only is not None and all(w.device != only for w in where):
                continue
            doc = self._skeleton(path)
            for w in where:
                vals = values.get(w.device)
                if vals is None:
                    continue
                _put(doc, w.keys, _json_value(w.point, vals.get(w.point.sim or w.point.name)))
            docs[path] = json.dumps(doc).encode()
        if only is None:
            for path in self.roots:
                if path not in docs:
                    docs[path] = json.dumps(self._skeleton(path)).encode()
            docs["/redfish/v1"] = json.dumps(self._service_root()).encode()
            for coll, prefix in (
                ("/redfish/v1/Chassis", "/redfish/v1/Chassis/"),
                ("/redfish/v1/ThermalEquipment/CDUs", "/redfish/v1/ThermalEquipment/CDUs/"),
            ):
                members = [{"@odata.id": p} for p in self.roots if p.startswith(prefix)]
                docs[coll] = json.dumps({"@odata.id": coll, "Name": coll.rsplit("/", 1)[1], "Members": members,
                                         "Members@odata.count": len(members)}).encode()  # fmt: skip
        self.docs = docs

    @staticmethod
    def _skeleton(path: str) -> dict[str, Any]:
        rid = path.rstrip("/").rsplit("/", 1)[1]
        return {"@odata.id": path, "@odata.type": _odata_type(path), "Id": rid, "Name": rid}

    @staticmethod
    def _service_root() -> dict[str, Any]:
        return {
            "@odata.id": "/redfish/v1", "@odata.type": "#ServiceRoot.v1_17_0.ServiceRoot", "Id": "RootService",
            "Name": "aidc simulated Redfish service", "RedfishVersion": "1.21.0",
            "Chassis": {"@odata.id": "/redfish/v1/Chassis"},
            "ThermalEquipment": {"@odata.id": "/redfish/v1/ThermalEquipment"},
            "SessionService": {"@odata.id": "/redfish/v1/SessionService"},
            "Links": {"Sessions": {"@odata.id": "/redfish/v1/SessionService/Sessions"}},
        }  # fmt: skip

    # --- requests -------------------------------------------------------------------------------------

    def _devices_of(self, path: str) -> str:
        names = {w.device for w in self.by_path.get(path, [])} | ({self.roots[path]} if path in self.roots else set())
        return ",".join(sorted(names))

    def _authorised(self, req: Request) -> bool:
        token = req.headers.get("x-auth-token")
        if token is not None:
            return token in self.sessions
        auth = req.headers.get("authorization", "")
        if auth.startswith("Basic "):
            try:
                user, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return False
            want = self.credentials.get(user)
            return want is not None and hmac.compare_digest(pw, want)
        return False

    async def _handle(self, req: Request) -> Response:
        path = urlsplit(req.path).path.rstrip("/") or "/"
        if path == "/redfish/v1" and req.method == "GET":
            return Response(200, self.docs.get(path, b"{}"))
        if path == "/redfish/v1/SessionService/Sessions" and req.method == "POST":
            return self._login(req)
        if not self._authorised(req):
            return Response(
                401,
                _error("Base.1.0.NoValidSession", "no valid session or credentials"),
                headers=(("WWW-Authenticate", 'Basic realm="Redfish"'),),
            )
        if path.startswith("/redfish/v1/SessionService/Sessions/") and req.method == "DELETE":
            sid = path.rsplit("/", 1)[1]
            self.sessions = {t: s for t, s in self.sessions.items() if s != sid}
            return Response(204)
        devices = self._devices_of(path)
        if req.method == "GET":
            body = self.docs.get(path)
            if body is None:
                return Response(404, _error("Base.1.0.ResourceMissingAtURI", f"{path} not found"))
            return Response(200, body, device=devices)
        if req.method == "PATCH" and path in self.by_path:
            return self._patch(path, req, devices)
        return Response(405, _error("Base.1.0.OperationNotAllowed", f"{req.method} {path}"))

    def _login(self, req: Request) -> Response:
        try:
            body = json.loads(req.body)
            user, pw = str(body["UserName"]), str(body["Password"])
        except (ValueError, KeyError, TypeError):
            return Response(400, _error("Base.1.0.MalformedJSON", "UserName and Password expected"))
        want = self.credentials.get(user)
        if want is None or not hmac.compare_digest(pw, want):
            return Response(401, _error("Base.1.0.ResourceAtUriUnauthorized", "login refused"))
        sid, self._next_session = str(self._next_session), self._next_session + 1
        token = secrets.token_hex(16)
        self.sessions[token] = sid
        loc = f"/redfish/v1/SessionService/Sessions/{sid}"
        doc = {"@odata.id": loc, "@odata.type": "#Session.v1_7_0.Session", "Id": sid, "UserName": user}
        return Response(201, json.dumps(doc).encode(), headers=(("X-Auth-Token", token), ("Location", loc)))

    def _patch(self, path: str, req: Request, devices: str) -> Response:
        try:
            body = json.loads(req.body)
        except ValueError:
            return Response(400, _error("Base.1.0.MalformedJSON", "body is not JSON"))
        changes = list(_leaves(body))
        where = {w.keys: w for w in self.by_path[path]}
        for keys, value in changes:
            w = where.get(keys)
            if w is None or not w.point.writable:
                return Response(400, _error("Base.1.0.PropertyNotWritable", "/".join(keys)), device=devices)
            if isinstance(value, bool) or not isinstance(value, int | float):
                return Response(400, _error("Base.1.0.PropertyValueTypeError", "/".join(keys)), device=devices)
        for keys, value in changes:
            w = where[keys]
            raw = float(value)
            eng = raw * w.point.scale + w.point.offset
            try:
                self.physics.write_point(w.device, w.point.name, eng)
            except (ValueError, KeyError) as exc:  # the physics refuses (not finite, not writable there)
                return Response(400, _error("Base.1.0.PropertyValueError", str(exc)[:200]), device=devices)
            self.writes.append((w.device, w.point.name, eng))
        for name in {where[k].device for k, _ in changes}:
            self.refresh(only=name)
        return Response(200, self.docs[path], device=devices)


def _put(doc: dict[str, Any], keys: tuple[str, ...], value: Any) -> None:
    cur = doc
    for k in keys[:-1]:
        cur = cur.setdefault(k, {})
    if keys:
        cur[keys[-1]] = value


def _leaves(obj: Any, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    if isinstance(obj, dict):
        out: list[tuple[tuple[str, ...], Any]] = []
        for k, v in obj.items():
            out += _leaves(v, (*prefix, str(k)))
        return out
    return [(prefix, obj)]


def _json_value(point: Point, v: PointValue | None) -> Any:
    """A point's value as the resource shows it: raw units, status strings for status booleans, null for NaN."""
    if v is None or isinstance(v, list | tuple):
        return None
    if point.type is DataType.BOOL:
        on = bool(v) if not (isinstance(v, float) and v != v) else None
        if point.node is not None and split_node(point.node)[1][-1:] and split_node(point.node)[1][-1] in STATUS_KEYS:
            return None if on is None else ("Critical" if on else "OK")
        return on
    f = float(v)  # type: ignore[arg-type]  # a sequence was returned above
    if f != f:
        return None
    return (f - point.offset) / point.scale


def _error(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


def plan_services(devices: Sequence[DeviceRef]) -> dict[int, list[DeviceRef]]:
    """Redfish devices by the port of their endpoint."""
    out: dict[int, list[DeviceRef]] = {}
    for d in devices:
        port = urlsplit(str(d.config.endpoint)).port
        assert port is not None  # the site file checks it
        out.setdefault(port, []).append(d)
    return out
