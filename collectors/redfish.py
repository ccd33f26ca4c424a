"""Redfish source: chassis, rack and CDU resources (EnvironmentMetrics, ThermalSubsystem, PowerSubsystem, CoolingUnit)
read over HTTPS from a BMC, rack manager or CDU controller, and their Control setpoints written.

A point's ``node`` is the resource URI and a JSON pointer into it (``/redfish/v1/Chassis/{id}/EnvironmentMetrics
#/PowerWatts/Reading``; ``{id}`` the device's ``redfish.id``, default its name). One link is one login to one
service: a Redfish session (POST ``SessionService/Sessions``, then ``X-Auth-Token``; DELETEd on close) or HTTP
basic auth, over HTTPS with the server's certificate pinned as OPC-UA servers are (``collectors/http.py``). Each
poll GETs the device's resources, at most ``redfish.max_in_flight`` at once; a resource that fails (an HTTP error
status, a body that is not a JSON object, a property missing or of the wrong type) makes its points bad with the
reason while the others stay good; a 401 means the session is gone (the service restarted): the link logs in again.
Status properties (``Health``, ``DetectorState``) read on BOOL points: ``OK`` false, ``Warning``/``Critical`` true.
Writes PATCH the property (``{"SetPoint": 30.0}`` for ``#/SetPoint``) through the audited setpoint writer.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from aidc.clock import Clock
from aidc.config import DeviceRef
from aidc.errors import ConfigError
from aidc.model import Batch
from aidc.profiles import DataType, Point
from collectors.http import HttpClient, HttpError, Pinning, Reply
from collectors.http_batch import PointRows
from collectors.link import Emit, Link, LinkOptions
from collectors.modbus_link import DeviceWriteError

SESSIONS = "/redfish/v1/SessionService/Sessions"
STATUS_TRUE = {"Warning": True, "Critical": True, "OK": False}


class RedfishError(HttpError):
    """Login refused, session lost, or a service that does not answer as Redfish."""


def split_node(node: str, rid: str) -> tuple[str, tuple[str, ...]]:
    """``URI#/a/b`` with ``{id}`` filled in to (URI, ("a", "b")); RFC 6901 escapes undone."""
    path, _, pointer = node.replace("{id}", rid).partition("#")
    if not path.startswith("/redfish/v1") or not pointer.startswith("/"):
        raise ValueError(node)
    return path, tuple(k.replace("~1", "/").replace("~0", "~") for k in pointer.split("/")[1:])


def lookup(doc: Any, keys: tuple[str, ...]) -> tuple[Any, str]:
    """The value at a JSON pointer, or (None, why not)."""
    cur = doc
    for i, k in enumerate(keys):
        if isinstance(cur, dict) and k in cur:
            cur = cur[k]
        elif isinstance(cur, list) and k.isdigit() and int(k) < len(cur):
            cur = cur[int(k)]
        else:
            return None, f"no /{'/'.join(keys[: i + 1])}"
    return cur, ""


def to_float(point: Point, v: Any) -> tuple[float, str]:
    """A property value as the point's raw number, or (NaN, why not): never a string or a boolean for a number."""
    if point.type is DataType.BOOL:
        if isinstance(v, bool):
            return float(v), ""
        if isinstance(v, str) and v in STATUS_TRUE:
            return float(STATUS_TRUE[v]), ""
        return math.nan, f"not a status: {json.dumps(v)[:40]}"
    if v is None:
        return math.nan, "null (no reading)"
    if isinstance(v, bool) or not isinstance(v, int | float):
        return math.nan, f"not a number: {type(v).__name__}"
    try:
        f = float(v)
    except OverflowError:  # an integer beyond any float (JSON allows it)
        return math.nan, "not finite: too large"
    return f, "" if math.isfinite(f) else f"not finite: {v}"


@dataclass(frozen=True, slots=True)
class _Read:
    path: str
    keys: tuple[str, ...]


class RedfishLink(Link):
    """One login to one Redfish service and the devices whose resources it serves."""

    protocol = "redfish"

    def __init__(
        self,
        key: str,
        devices: list[DeviceRef],
        *,
        clock: Clock,
        emit: Emit,
        options: LinkOptions,
        pki_dir: Path = Path("var/pki"),
    ) -> None:
        super().__init__(key, devices, clock=clock, emit=emit, options=options)
        cfg = devices[0].config
        assert cfg.endpoint is not None
        u = urlsplit(cfg.endpoint)
        self.origin = f"{u.scheme}://{u.netloc}"
        self.opts = cfg.redfish
        self.pki_dir = pki_dir
        self.timeout_s = max(d.config.timeout_s for d in devices)
        self.rows = {d.name: PointRows(d, options.stuck_polls) for d in devices}
        self.reads: dict[str, list[_Read]] = {}
        for d in devices:
            rid = d.config.redfish.id or d.name
            out = []
            for p in d.profile.points:
                try:
                    out.append(_Read(*split_node(str(p.node), rid)))
                except ValueError:
                    raise ConfigError(
                        f"profile {d.profile.name!r} point {p.name}: node {p.node!r} is not a Redfish URI and JSON "
                        "pointer (/redfish/v1/...#/Property/Reading)"
                    ) from None
            self.reads[d.name] = out
        self.client: HttpClient | None = None
        self.token: str | None = None
        self.session_uri: str | None = None
        self.gets = 0

    def transport_errors(self) -> tuple[type[BaseException], ...]:
        """Failures after which the link logs in again over new connections."""
        return (HttpError, ConnectionError, OSError, TimeoutError)

    def series_of(self, dev: DeviceRef) -> np.ndarray:
        """The device's series."""
        return self.rows[dev.name].current_series()

    def _password(self) -> str:
        env = self.opts.password_env or ""
        pw = os.environ.get(env)
        if pw is None:
            raise RedfishError(f"environment variable {env} (password for {self.opts.username}) is not set")
        return pw

    def _auth(self) -> list[tuple[str, str]]:
        if self.token is not None:
            return [("X-Auth-Token", self.token)]
        cred = base64.b64encode(f"{self.opts.username}:{self._password()}".encode()).decode()
        return [("Authorization", f"Basic {cred}")]

    async def connect(self) -> None:
        """Open the connection, check the certificate and log in (a session, or a first request with basic auth)."""
        await self.close()
        https = self.origin.startswith("https://")
        try:
            pin = Pinning(self.origin, self.opts.trusted_server_certs, self.pki_dir) if https else None
        except (OSError, ValueError) as exc:
            raise RedfishError(f"{self.origin}: trusted_server_certs: {exc}") from None
        client = HttpClient(self.origin, timeout_s=self.timeout_s, max_in_flight=self.opts.max_in_flight, pinning=pin)
        self.client = client
        if self.opts.auth == "session":
            body = json.dumps({"UserName": self.opts.username, "Password": self._password()}).encode()
            r = await client.request("POST", SESSIONS, headers=[("Content-Type", "application/json")], body=body)
            token = r.headers.get("x-auth-token")
            if r.status in (401, 403):
                raise RedfishError(f"{self.origin}: login as {self.opts.username!r} refused (HTTP {r.status})")
            if r.status not in (200, 201) or not token:
                raise RedfishError(
                    f"{self.origin}: no session (HTTP {r.status}{', no X-Auth-Token' if not token else ''})"
                )
            self.token, self.session_uri = token, r.headers.get("location")
        else:
            r = await client.request("GET", "/redfish/v1/Chassis", headers=self._auth())
            if r.status in (401, 403):
                raise RedfishError(f"{self.origin}: basic auth as {self.opts.username!r} refused (HTTP {r.status})")

    async def close(self) -> None:
        """Log out (DELETE the session, briefly: a dead service is not waited for) and close the connections."""
        client, self.client = self.client, None
        token, uri = self.token, self.session_uri
        self.token = self.session_uri = None
        if client is None:
            return
        if token is not None and uri:
            path = urlsplit(uri).path or uri
            task = asyncio.ensure_future(client.request("DELETE", path, headers=[("X-Auth-Token", token)]))
            done, _ = await asyncio.wait({task}, timeout=1.0)
            if not done:
                task.cancel()
            task.add_done_callback(_retrieve)
        await client.close()

    async def _get(self, path: str) -> Any:
        """A resource as parsed JSON, or a string saying why it has none; a lost session raises."""
        client = self.client
        if client is None:
            raise RedfishError(f"{self.origin}: not connected")
        r: Reply = await client.request("GET", path, headers=[*self._auth(), ("Accept", "application/json")])
        self.gets += 1
        if r.status == 401:
            raise RedfishError(f"{self.origin}: session no longer valid (HTTP 401 on {path})")
        if r.status != 200:
            return f"HTTP {r.status} on {path}"
        try:
            doc = json.loads(r.body)
        except (ValueError, UnicodeDecodeError) as exc:
            return f"{path}: not JSON ({str(exc)[:80]})"
        except RecursionError:
            return f"{path}: JSON nested too deep"
        if not isinstance(doc, dict):
            return f"{path}: not a JSON object"
        return doc

    async def poll(self, dev: DeviceRef) -> Batch:
        """GET the device's resources and publish its points."""
        reads = self.reads[dev.name]
        paths = list(dict.fromkeys(r.path for r in reads))
        ts = self.clock.now_ns()
        t0 = time.perf_counter()
        got = await asyncio.gather(*(self._get(p) for p in paths), return_exceptions=True)
        latency = time.perf_counter() - t0
        errors = [g for g in got if isinstance(g, BaseException)]
        for g in errors:
            if not isinstance(g, Exception) or isinstance(g, RedfishError):
                raise g  # cancelled, or the session is gone: log in again
        health = self.health[dev.name]
        if errors and len(errors) == len(got):
            # Refused or reset: the service is gone. Late: the points read bad (timeout), and only
            # timeouts_before_reconnect polls in a row without any reply log in again, as a silent Modbus unit does.
            if not all(isinstance(e, TimeoutError) for e in errors):
                raise next(e for e in errors if not isinstance(e, TimeoutError))
            health.consecutive_timeouts += 1
            if health.consecutive_timeouts >= self.options.timeouts_before_reconnect:
                raise errors[0]
        docs = {p: (_why(g) if isinstance(g, BaseException) else g) for p, g in zip(paths, got, strict=True)}
        parts: list[np.ndarray] = []
        reasons: list[list[str]] = []
        for p, r in zip(dev.profile.points, reads, strict=True):
            doc = docs[r.path]
            if isinstance(doc, str):
                v, why = math.nan, doc
            else:
                val, why = lookup(doc, r.keys)
                v, why = (math.nan, f"{r.path}: {why}") if why else to_float(p, val)
            parts.append(np.array([v]))
            reasons.append([why])
        return self.rows[dev.name].batch(ts, parts, reasons, health, latency)

    # --- writer support (collectors/writer.py) --------------------------------------------------------

    def _read_of(self, dev: DeviceRef, point: Point) -> _Read:
        return self.reads[dev.name][[p.name for p in dev.profile.points].index(point.name)]

    async def read_point(self, dev: DeviceRef, point: Point) -> float:
        """Read one property now (engineering units)."""
        r = self._read_of(dev, point)
        doc = await self._get(r.path)
        if isinstance(doc, str):
            raise DeviceWriteError(f"{dev.name}.{point.name}: {doc}")
        val, why = lookup(doc, r.keys)
        v, why = (math.nan, why) if why else to_float(point, val)
        if why:
            raise DeviceWriteError(f"{dev.name}.{point.name}: {r.path}: {why}")
        return v * point.scale + point.offset

    async def write_point(self, dev: DeviceRef, point: Point, value: float) -> None:
        """PATCH one property (``#/A/SetPoint`` → ``{"A": {"SetPoint": raw}}``); DeviceWriteError if refused."""
        r = self._read_of(dev, point)
        if self.client is None:
            raise DeviceWriteError(f"{dev.name}: not connected")
        body: Any = (value - point.offset) / point.scale
        for k in reversed(r.keys):
            body = {k: body}
        reply = await self.client.request(
            "PATCH",
            r.path,
            headers=[*self._auth(), ("Content-Type", "application/json")],
            body=json.dumps(body).encode(),
        )
        if reply.status not in (200, 202, 204):
            detail = ""
            try:
                detail = str(json.loads(reply.body)["error"]["message"])[:120]
            except (ValueError, KeyError, TypeError):
                pass
            raise DeviceWriteError(
                f"{dev.name}.{point.name}: write refused (HTTP {reply.status}{': ' + detail if detail else ''})"
            )


def redfish_key(dev: DeviceRef) -> str:
    """Devices on the same service with the same login share one link."""
    r = dev.config.redfish
    return f"{dev.config.endpoint}#redfish:{r.model_dump_json(exclude={'id'})}"


def _why(exc: BaseException) -> str:
    return f"timeout: {exc}" if isinstance(exc, TimeoutError) else f"unreachable: {exc}"


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()
