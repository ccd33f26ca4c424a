"""The API's front door: credentials and body size checked before any request body is read, and request metrics.

A pure ASGI middleware (no request object, nothing buffered) wrapped around the whole app, so a request that would
be refused is refused from its headers alone:

- under ``/api/v1`` a request without a known bearer token gets 401 at once, its body never read (an
  unauthenticated 300 MiB POST used to be read and parsed before the token was looked at);
- a declared ``Content-Length`` over :data:`MAX_BODY_BYTES` gets 413 at once; a chunked body is counted as it
  streams and refused with 413 as soon as it passes the cap, so no more than the cap is ever held (FastAPI's own
  ``max_body_size`` is not used: it sits outside every middleware and answers an oversized request with its own
  plain-text 413 even when the caller has no token, where this answers 401 and the API's JSON error);
- a refusal of a request that has a body closes the connection (``Connection: close``): the server discards
  whatever the client still sends instead of reading it as the next request.

The route dependencies (:mod:`api.app`) still check the token and its role; this is the cheap check that comes first.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.exceptions import HTTPException

from api.auth import TokenStore

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]
Observe = Callable[[str, str, int, float], None]

# InfluxDB's default for a write body (max-body-size = 25,000,000 bytes); the largest legitimate body here is a
# weather file of at most 20 MB posted with a forecast request.
MAX_BODY_BYTES = 25_000_000
PROTECTED_PREFIX = "/api/v1"


def bearer_token(scope: Scope) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (scheme case-insensitive), else None."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() or None if scheme.lower() == "bearer" else None
    return None


def _header(scope: Scope, wanted: bytes) -> bytes | None:
    for name, value in scope.get("headers", ()):
        if name == wanted:
            return bytes(value)
    return None


def _has_body(scope: Scope) -> bool:
    length = _header(scope, b"content-length")
    chunked = _header(scope, b"transfer-encoding") is not None
    return chunked or (length is not None and length.strip() not in (b"0", b""))


async def _refuse(send: Send, status: int, message: str, field: str | None, *, close: bool) -> None:
    """The JSON error object (as :mod:`api.errors` writes it), sent without touching the request body."""
    body = json.dumps({"error": {"status": status, "message": message, "field": field}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    if close:  # the unread body must not be taken for the next request: the server closes after this answer
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Guard:
    """Auth and size checks before the app reads a body, and one observation per request for the API's metrics."""

    def __init__(self, app: Asgi, tokens: Callable[[], TokenStore], observe: Observe) -> None:
        self.app, self.tokens, self.observe = app, tokens, observe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500  # what a request that ends in an exception before answering counts as

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            refusal = self._refusal(scope)
            if refusal is not None:
                await _refuse(sending, *refusal, close=_has_body(scope))
                return
            await self.app(scope, _capped(scope, receive), sending)
        finally:
            route = scope.get("route")
            self.observe(scope["method"], getattr(route, "path", "unmatched"), status, time.perf_counter() - t0)

    def _refusal(self, scope: Scope) -> tuple[int, str, str | None] | None:
        """Why the request is refused from its headers alone (status, message, field), or None."""
        path: str = scope.get("path", "")
        if path == PROTECTED_PREFIX or path.startswith(PROTECTED_PREFIX + "/"):
            token = bearer_token(scope)
            if token is None:
                return 401, "no bearer token: send Authorization: Bearer <token>", "Authorization"
            if self.tokens().identify(token) is None:
                return 401, "unknown or revoked token", "Authorization"
        length = _header(scope, b"content-length")
        if length is not None:
            try:
                n = int(length)
            except ValueError:
                return 400, f"Content-Length {length[:40].decode('latin-1')!r} is not a number", "Content-Length"
            if n > MAX_BODY_BYTES:
                return 413, too_large(f"a {n:,}-byte body"), "Content-Length"
        return None


def _capped(scope: Scope, receive: Receive) -> Receive:
    """``receive`` that counts a chunked body and raises 413 (an HTTPException, which the app's handler turns into
    the JSON error) once it passes the cap; a declared length was checked already and the server holds the client
    to it."""
    if _header(scope, b"transfer-encoding") is None:
        return receive
    seen = 0

    async def counted() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > MAX_BODY_BYTES:
                raise HTTPException(413, too_large("a streamed body"))
        return message

    return counted


def too_large(what: str) -> str:
    """The 413 message: what was sent and the limit."""
    return f"request body too large: {what} is over the limit of {MAX_BODY_BYTES:,} bytes"
