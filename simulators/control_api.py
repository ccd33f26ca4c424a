"""The simulator's control API: a tiny HTTP/JSON server on loopback, and a client for it.

Routes: ``GET /health`` (ready once every server listens), ``GET /devices``, ``GET /state``,
``POST /faults`` ``{"device": ..., "fault": ..., "value": ...}``, ``POST /faults/clear``
``{"device": ... | "*", "fault": optional}``, ``POST /pause`` and ``POST /resume`` (freeze the physics, so tests
can compare values exactly). Errors come back as ``{"error": "one line"}`` with status 400 or 404.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import logging
from typing import Any, Protocol

from aidc.config import Site
from aidc.errors import AidcError
from simulators.faults import FaultBook

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024


class ControlError(AidcError):
    """The control API refused a request or could not be reached."""


class ControlledFacility(Protocol):
    """What the control API needs of the running simulated facility (``simulators.runner.SimulatedFacility``)."""

    site: Site
    ready: asyncio.Event
    paused: bool
    faults: FaultBook

    def state(self) -> dict[str, Any]:
        """Physics state for ``GET /state``."""
        ...

    def devices(self) -> list[dict[str, Any]]:
        """Device list for ``GET /devices``."""
        ...


class ControlApi:
    """HTTP/JSON endpoint through which faults are injected and state is read."""

    def __init__(self, facility: ControlledFacility, host: str, port: int) -> None:
        self.facility, self.host, self.port = facility, host, port
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Listen; AidcError names the port if it cannot be bound."""
        try:
            self._server = await asyncio.start_server(self._handle, self.host, self.port)
        except OSError as exc:
            raise AidcError(f"simulation.control_port: cannot listen on {self.host}:{self.port}: {exc.strerror}")\
                from None

    async def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, body = await self._respond(reader)
        except (asyncio.IncompleteReadError, ConnectionError, ValueError) as exc:
            status, body = 400, {"error": f"malformed request: {exc}"}
        data = json.dumps(body).encode()
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}.get(status, "Error")
        writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode() + data)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    async def _respond(self, reader: asyncio.StreamReader) -> tuple[int, Any]:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        length = 0
        for line in lines[1:]:
            key, _, value = line.partition(":")
            if key.strip().lower() == "content-length":
                length = int(value.strip())
        if length > MAX_BODY:
            return 400, {"error": f"body of {length} bytes is too large"}
        raw = await reader.readexactly(length) if length else b""
        try:
            payload = json.loads(raw) if raw else {}
        except json.JSONDecodeError as exc:
            return 400, {"error": f"body is not JSON: {exc.msg}"}
        if not isinstance(payload, dict):
            return 400, {"error": "body must be a JSON object"}
        try:
            return self._route(method, path, payload)
        except AidcError as exc:
            return 400, {"error": str(exc)}

    def _route(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        fac = self.facility
        if (method, path) == ("GET", "/health"):
            return 200, {"ready": fac.ready.is_set(), "site": fac.site.name}
        if (method, path) == ("GET", "/devices"):
            return 200, fac.devices()
        if (method, path) == ("GET", "/state"):
            return 200, fac.state()
        if (method, path) in (("POST", "/pause"), ("POST", "/resume")):
            fac.paused = path == "/pause"
            return 200, {"paused": fac.paused}
        if (method, path) == ("POST", "/faults"):
            device, fault = _text(body, "device"), _text(body, "fault")
            value = body.get("value")
            log.info("fault %s on %s (value %s)", fault, device, value)
            return 200, {"device": device, "faults": fac.faults.inject(device, fault, value)}
        if (method, path) == ("POST", "/faults/clear"):
            device = _text(body, "device")
            which = body.get("fault")
            if which is not None and not isinstance(which, str):
                raise ControlError(f"'fault' must be text, not {which!r}")
            if device == "*":
                fac.faults.clear_all()
                return 200, {"device": "*", "faults": {}}
            return 200, {"device": device, "faults": fac.faults.clear(device, which)}
        return 404, {"error": f"no route {method} {path}"}


def _text(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise ControlError(f"missing or non-text {key!r} in request body")
    return value


def control_request(host: str, port: int, method: str, path: str, body: dict[str, Any] | None = None,
                    timeout_s: float = 10.0) -> Any:
    """Call the control API (blocking); ControlError carries the API's one-line error or the connection failure."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        payload = json.loads(resp.read() or b"null")
    except OSError as exc:
        raise ControlError(f"simulator control API at {host}:{port} is not reachable: {exc}") from None
    finally:
        conn.close()
    if resp.status != 200:
        raise ControlError(payload.get("error", f"HTTP {resp.status}") if isinstance(payload, dict) else str(payload))
    return payload
