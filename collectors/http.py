"""A small async HTTP/1.1 client for the DCGM and Redfish sources: h11 on asyncio streams.

h11 (python-hyper, maintained; uvicorn's own HTTP/1.1 engine) does the protocol: framing, chunked bodies,
keep-alive and every malformed-reply check. This module adds what the collectors need around it: a bounded pool
of keep-alive connections (``max_in_flight`` requests at once), a deadline per request, a cap on the reply size,
and HTTPS with the server certificate pinned the way the OPC-UA client pins (``trusted`` fingerprints, else trust
on first use in ``<pki>/known_servers.json``, the file OPC-UA endpoints are pinned in). A failed or timed-out
request closes its connection (its stream can no longer be trusted) and raises :class:`HttpError` or
``TimeoutError``; a reply with any status is returned to the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import h11
from cryptography import x509
from cryptography.hazmat.primitives import serialization

log = logging.getLogger(__name__)

KNOWN_SERVERS = "known_servers.json"  # the OPC-UA client's pin file (collectors/opcua.py), shared
MAX_BODY_BYTES = 16 * 1024 * 1024  # a reply larger than this is refused (a broken or hostile server)
USER_AGENT = "aidc-collector"


class HttpError(ConnectionError):
    """The exchange failed: refused, reset, a malformed reply, a certificate that is not the pinned one."""


@dataclass(frozen=True, slots=True)
class Reply:
    """A complete HTTP reply."""

    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> object:
        """The body as JSON; ValueError when it is not (caller decides what that means)."""
        return json.loads(self.body)


def cert_fingerprint(path: Path) -> str:
    """SHA-256 (hex) of a PEM or DER certificate file; ValueError names the file when it is neither."""
    data = path.read_bytes()
    try:
        cert = x509.load_pem_x509_certificate(data) if b"-----BEGIN" in data else x509.load_der_x509_certificate(data)
    except ValueError:
        raise ValueError(f"{path}: not a PEM or DER certificate") from None
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


class Pinning:
    """Certificate pinning for one origin: a fixed list of fingerprints, or trust on first use in a file."""

    def __init__(self, origin: str, trusted: Sequence[Path], pki_dir: Path) -> None:
        self.origin = origin
        self.trusted = {cert_fingerprint(p) for p in trusted}
        self.path = pki_dir / KNOWN_SERVERS

    def check(self, der: bytes | None) -> None:
        """Accept the peer certificate or raise HttpError saying why not."""
        if der is None:
            raise HttpError(f"{self.origin}: server sent no certificate")
        got = hashlib.sha256(der).hexdigest()
        if self.trusted:
            if got not in self.trusted:
                raise HttpError(
                    f"{self.origin}: server certificate SHA-256 {got} is not in trusted_server_certs; refused"
                )
            return
        known: dict[str, str] = {}
        if self.path.is_file():
            try:
                known = dict(json.loads(self.path.read_text(encoding="utf-8")))
            except (ValueError, TypeError) as exc:
                raise HttpError(f"{self.path}: unreadable list of pinned server certificates ({exc})") from None
        pinned = known.get(self.origin)
        if pinned == got:
            return
        if pinned is not None:
            raise HttpError(
                f"{self.origin}: server certificate changed (SHA-256 {got}, pinned {pinned}); refused. If the server "
                f"was re-keyed on purpose, remove its line from {self.path} or list its certificate in "
                "trusted_server_certs"
            )
        known[self.origin] = got
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(known, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, self.path)
        log.warning(
            "%s: trusting server certificate SHA-256 %s on first use (pinned in %s)", self.origin, got, self.path
        )


def _tls_context() -> ssl.SSLContext:
    # The chain is not checked against CAs: BMCs and exporters carry self-signed certificates, and the pin (the
    # exact certificate) is a stronger check than a CA chain. TLS 1.2 at least.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


class _Conn:
    """One keep-alive connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=64 * 1024)

    def close(self) -> None:
        self.writer.close()


class HttpClient:
    """Requests to one origin (scheme, host, port) over at most ``max_in_flight`` keep-alive connections."""

    def __init__(
        self, origin: str, *, timeout_s: float, max_in_flight: int = 2, pinning: Pinning | None = None
    ) -> None:
        u = urlsplit(origin)
        self.origin = f"{u.scheme}://{u.netloc}"
        self.host = u.hostname or ""
        self.port = u.port or (443 if u.scheme == "https" else 80)
        self.tls = u.scheme == "https"
        self.timeout_s = timeout_s
        self.pinning = pinning
        self._idle: list[_Conn] = []
        self._slots = asyncio.Semaphore(max_in_flight)
        self._ctx = _tls_context() if self.tls else None
        self.requests = 0

    async def _open(self) -> _Conn:
        try:
            reader, writer = await asyncio.open_connection(
                self.host,
                self.port,
                ssl=self._ctx,
                server_hostname=self.host if self.tls else None,
                limit=256 * 1024,
            )
        except ssl.SSLError as exc:
            raise HttpError(f"{self.origin}: TLS handshake failed: {exc.reason or exc}") from None
        except OSError as exc:
            raise HttpError(f"{self.origin}: {exc.strerror or exc}") from None
        conn = _Conn(reader, writer)
        if self.tls and self.pinning is not None:
            sslobj = writer.get_extra_info("ssl_object")
            try:
                self.pinning.check(sslobj.getpeercert(binary_form=True) if sslobj is not None else None)
            except HttpError:
                conn.close()
                raise
        return conn

    async def request(
        self, method: str, target: str, *, headers: Sequence[tuple[str, str]] = (), body: bytes = b""
    ) -> Reply:
        """One exchange within ``timeout_s``; HttpError or TimeoutError when it fails (the connection is dropped)."""
        async with self._slots:
            conn = self._idle.pop() if self._idle else None
            try:
                async with asyncio.timeout(self.timeout_s):
                    if conn is None:
                        conn = await self._open()
                    reply = await self._exchange(conn, method, target, headers, body)
            except TimeoutError:
                if conn is not None:
                    conn.close()
                raise TimeoutError(f"{self.origin}{target}: no reply within {self.timeout_s:g}s") from None
            except h11.ProtocolError as exc:
                if conn is not None:
                    conn.close()
                raise HttpError(f"{self.origin}{target}: malformed reply ({exc})") from None
            except (OSError, EOFError) as exc:
                if conn is not None:
                    conn.close()
                if isinstance(exc, HttpError):
                    raise
                raise HttpError(
                    f"{self.origin}{target}: {getattr(exc, 'strerror', None) or exc or type(exc).__name__}"
                ) from None
            except BaseException:  # cancelled: the stream is mid-exchange
                if conn is not None:
                    conn.close()
                raise
            self.requests += 1
            if conn.h11.our_state is h11.DONE and conn.h11.their_state is h11.DONE:
                conn.h11.start_next_cycle()
                self._idle.append(conn)
            else:
                conn.close()
            return reply

    async def _exchange(
        self, conn: _Conn, method: str, target: str, headers: Sequence[tuple[str, str]], body: bytes
    ) -> Reply:
        hdrs = [("Host", f"{self.host}:{self.port}"), ("User-Agent", USER_AGENT), *headers]
        if body or method in ("POST", "PATCH", "PUT"):
            hdrs.append(("Content-Length", str(len(body))))
        out = conn.h11.send(h11.Request(method=method, target=target, headers=hdrs)) or b""
        if body:
            out += conn.h11.send(h11.Data(data=body)) or b""
        out += conn.h11.send(h11.EndOfMessage()) or b""
        conn.writer.write(out)
        await conn.writer.drain()
        status, rheaders, parts, size = 0, {}, [], 0
        while True:
            ev = conn.h11.next_event()
            if ev is h11.NEED_DATA:
                data = await conn.reader.read(65536)
                conn.h11.receive_data(data)  # b"": the peer closed; h11 says whether that ends the reply
                continue
            if isinstance(ev, h11.Response):
                status = ev.status_code
                rheaders = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in ev.headers}
            elif isinstance(ev, h11.Data):
                size += len(ev.data)
                if size > MAX_BODY_BYTES:
                    raise HttpError(f"{self.origin}{target}: reply larger than {MAX_BODY_BYTES} bytes")
                parts.append(bytes(ev.data))
            elif isinstance(ev, h11.EndOfMessage):
                return Reply(status, rheaders, b"".join(parts))
            elif isinstance(ev, h11.ConnectionClosed):
                raise HttpError(f"{self.origin}{target}: connection closed before a complete reply")

    async def close(self) -> None:
        """Close every idle connection (requests in flight close their own)."""
        idle, self._idle = self._idle, []
        for c in idle:
            with contextlib.suppress(Exception):
                c.close()
