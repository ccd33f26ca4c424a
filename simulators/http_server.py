"""A small asyncio HTTP/1.1 server for the simulated HTTP devices (dcgm-exporter pages, Redfish services).

h11 does the protocol (keep-alive, framing); a handler maps (method, path, headers, body) to a reply. Faults as on
the other servers: ``drop`` hangs up on the device's requests, ``delay`` answers late, ``exception`` answers
503, ``restart`` closes the listener and every connection for a while. HTTPS with a self-signed certificate
generated once under ``<data_dir>/pki`` (``cryptography``) and reused, so a pinned collector sees the same one.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import h11
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from simulators.restart import RestartFault

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Request:
    """One request as the handler sees it."""

    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes


@dataclass(frozen=True, slots=True)
class Response:
    """What the handler answers; ``device`` names the simulated device whose faults apply ('' for none)."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    device: str = ""


Handler = Callable[[Request], Awaitable[Response]]
FaultCheck = Callable[[str], tuple[bool, float, bool]]  # device -> (drop, delay_s, exception)


def self_signed(cert_path: Path, key_path: Path, host: str) -> None:
    """Create a self-signed certificate and key for ``host`` once (kept for later starts)."""
    if cert_path.is_file() and key_path.is_file():
        return
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "aidc simulator")])
    now = dt.datetime.now(dt.UTC)
    try:
        alt: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        alt = x509.DNSName(host)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName([alt]), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


class HttpListener:
    """One listening port serving a handler, with the devices' faults applied per reply."""

    def __init__(
        self, host: str, port: int, handler: Handler, faults: FaultCheck, *, tls: tuple[Path, Path] | None = None
    ) -> None:
        self.host, self.port = host, port
        self.handler, self.faults = handler, faults
        self.tls = tls
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._restart = RestartFault(f"http {host}:{port}", self._close, self.start)
        self.requests = 0
        self.in_flight = 0
        self.most_in_flight = 0  # requests handled at once, at most (tests check the clients' bound)

    @property
    def running(self) -> bool:
        """Whether the port is listening."""
        return self._server is not None

    async def start(self) -> None:
        """Listen (OSError if the port is taken)."""
        ctx = None
        if self.tls is not None:
            self_signed(self.tls[0], self.tls[1], self.host)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(self.tls[0], self.tls[1])
        self._server = await asyncio.start_server(self._serve, self.host, self.port, ssl=ctx, reuse_address=True)

    async def _close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for w in list(self._conns):
            w.close()
        for t in list(self._tasks):  # a handler waiting out a delay fault ends with its connection
            t.cancel()
        if server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2.0)

    async def stop(self) -> None:
        """Stop listening and close every connection."""
        self._restart.cancel()
        await self._close()

    def restart(self, after_s: float) -> None:
        """Go away for ``after_s`` seconds, then listen again (the ``restart`` fault)."""
        self._restart.schedule(after_s)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self._conns.add(writer)
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                req = await self._read_request(conn, reader)
                if req is None:
                    return
                self.requests += 1
                self.in_flight += 1
                self.most_in_flight = max(self.most_in_flight, self.in_flight)
                try:
                    resp = await self.handler(req)
                    drop, delay, exception = self.faults(resp.device) if resp.device else (False, 0.0, False)
                    if drop:
                        return
                    if delay:
                        await asyncio.sleep(delay)
                finally:
                    self.in_flight -= 1
                if exception:
                    resp = Response(503, b'{"error": "service unavailable (simulated fault)"}')
                headers = [("Content-Type", resp.content_type), ("Content-Length", str(len(resp.body))),
                           *resp.headers]  # fmt: skip
                out = conn.send(h11.Response(status_code=resp.status, headers=headers)) or b""
                out += conn.send(h11.Data(data=resp.body)) or b""
                out += conn.send(h11.EndOfMessage()) or b""
                writer.write(out)
                await writer.drain()
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
        except (h11.ProtocolError, OSError, asyncio.IncompleteReadError, asyncio.CancelledError):
            return
        finally:
            if task is not None:
                self._tasks.discard(task)
            self._conns.discard(writer)
            writer.close()

    @staticmethod
    async def _read_request(conn: h11.Connection, reader: asyncio.StreamReader) -> Request | None:
        method, path, headers, body = "", "", {}, bytearray()
        while True:
            ev = conn.next_event()
            if ev is h11.NEED_DATA:
                conn.receive_data(await reader.read(65536))
                continue
            if isinstance(ev, h11.Request):
                method, path = ev.method.decode(), ev.target.decode("latin-1")
                headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in ev.headers}
            elif isinstance(ev, h11.Data):
                body += ev.data
            elif isinstance(ev, h11.EndOfMessage):
                return Request(method, path, headers, bytes(body))
            elif isinstance(ev, h11.ConnectionClosed) or ev is h11.PAUSED:
                return None
